//! Helpers shared by the crate's unit tests.

use bytes::Bytes;

/// Octets from hex (white space ignored).
pub(crate) fn hex(s: &str) -> Bytes {
    let s: String = s.split_whitespace().collect();
    assert!(s.len() % 2 == 0, "odd hex digit count in {s:?}");
    Bytes::from(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
            .collect::<Vec<_>>(),
    )
}
