//! OBJECT IDENTIFIER values (X.690 §8.19) as used for ACSE context names and EXTERNAL
//! direct references.

use bytes::Bytes;
use std::fmt;
use std::str::FromStr;

/// An OID held as its BER content octets.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Oid(pub Bytes);

impl Oid {
    /// The arcs, or `None` when the content is malformed or an arc exceeds u64.
    pub fn arcs(&self) -> Option<Vec<u64>> {
        let mut out = Vec::new();
        let mut acc: u64 = 0;
        let mut first = true;
        if self.0.is_empty() || self.0[self.0.len() - 1] & 0x80 != 0 {
            return None;
        }
        for b in self.0.iter() {
            if acc > (u64::MAX >> 7) {
                return None;
            }
            acc = (acc << 7) | (b & 0x7f) as u64;
            if b & 0x80 == 0 {
                if first {
                    let (x, y) = if acc < 40 {
                        (0, acc)
                    } else if acc < 80 {
                        (1, acc - 40)
                    } else {
                        (2, acc - 80)
                    };
                    out.push(x);
                    out.push(y);
                    first = false;
                } else {
                    out.push(acc);
                }
                acc = 0;
            }
        }
        Some(out)
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.arcs() {
            Some(a) => {
                let s: Vec<String> = a.iter().map(|x| x.to_string()).collect();
                f.write_str(&s.join("."))
            }
            None => write!(f, "<bad oid {:02x?}>", &self.0[..]),
        }
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({self})")
    }
}

/// Error for an OID text that is not dotted decimal with at least two arcs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidParseError(pub String);

impl fmt::Display for OidParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an object identifier (expected dotted decimal such as 1.3.12.0.218)",
            self.0
        )
    }
}

impl std::error::Error for OidParseError {}

impl FromStr for Oid {
    type Err = OidParseError;
    fn from_str(s: &str) -> Result<Oid, OidParseError> {
        let err = || OidParseError(s.to_string());
        let arcs: Vec<u64> = s
            .split('.')
            .map(|p| p.parse::<u64>().map_err(|_| err()))
            .collect::<Result<_, _>>()?;
        if arcs.len() < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] >= 40) {
            return Err(err());
        }
        let mut out = Vec::new();
        let first = arcs[0]
            .checked_mul(40)
            .and_then(|v| v.checked_add(arcs[1]))
            .ok_or_else(err)?;
        for a in std::iter::once(first).chain(arcs[2..].iter().copied()) {
            let mut groups = Vec::new();
            let mut v = a;
            loop {
                groups.push((v & 0x7f) as u8);
                v >>= 7;
                if v == 0 {
                    break;
                }
            }
            for (i, g) in groups.iter().enumerate().rev() {
                out.push(g | if i > 0 { 0x80 } else { 0 });
            }
        }
        Ok(Oid(Bytes::from(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip() {
        let o: Oid = "1.3.12.0.285.200".parse().unwrap();
        assert_eq!(&o.0[..], &[0x2b, 0x0c, 0x00, 0x82, 0x1d, 0x81, 0x48]);
        assert_eq!(o.to_string(), "1.3.12.0.285.200");
        let o: Oid = "1.3.12.0.218".parse().unwrap();
        assert_eq!(&o.0[..], &[0x2b, 0x0c, 0x00, 0x81, 0x5a]);
        assert!("1".parse::<Oid>().is_err());
        assert!("1.x".parse::<Oid>().is_err());
    }
}
