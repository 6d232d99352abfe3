//! Tests of `ctigate-csta-model`'s typed views against BER: decode fixtures and vectors
//! with the schema codec, read them typed, write them back byte for byte. They live here
//! because the model crate knows no encoding.

mod events;
mod ops;
mod types;

pub(crate) use types::fixtures;

#[test]
fn decode_results_stay_five_words() {
    assert_eq!(
        std::mem::size_of::<Result<crate::Value, crate::error::DecodeError>>(),
        40
    );
}
