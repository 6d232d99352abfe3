//! TCP framings of CSTA links (WIRE.md §2) as tokio-util codecs. ECMA-285 does not define
//! framing; these are what switches use:
//!
//! * [`U16Codec`]: a 2-octet big-endian length (not counting itself) before each BER PDU
//!   (Alcatel, Panasonic, Ericsson, Unify); optionally preceded, once, by the
//!   pre-association byte exchange of Alcatel OmniPCX Office (the application sends `B`,
//!   the switch answers `P`).
//! * the same codec with [`Framing::Hipath`]: Siemens HiPath puts a 3-octet header before
//!   each BER PDU instead: `0x26`, then `0x80 | length-high`, `length-low` (a 15-bit length,
//!   at most [`MAX_HIPATH_FRAME`]; as Net::CSTAv3::Client 0.06 writes and reads it). A wrong
//!   marker or a missing high bit is [`FramingError::BadHipathHeader`].
//! * [`Xml8Codec`]: the 8-octet CSTA-XML header (`00 00`, u16 total length including the
//!   header, 4 ASCII digits of invoke id) before an ECMA-323 document (framing only).
//!
//! "Need more bytes" is `Ok(None)`. A length over the configured maximum is an error
//! before anything is buffered for it; after a framing error the byte stream cannot be
//! resynchronised, so the caller closes the link.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use nom::number::streaming::be_u16;
use std::fmt;
use tokio_util::codec::{Decoder, Encoder};

/// The largest PDU the 2-octet length can carry.
pub const MAX_U16_FRAME: usize = 65_535;
/// The largest PDU the HiPath header's 15-bit length can carry.
pub const MAX_HIPATH_FRAME: usize = 0x7fff;
/// The first octet of every HiPath frame.
pub const HIPATH_MARKER: u8 = 0x26;

/// The header before each BER PDU on the link (the `framing` setting of a link and of the
/// simulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// A 2-octet big-endian length (WIRE.md §2.1): `00 1f a1 1d ...`.
    #[default]
    Length,
    /// Siemens HiPath: `26`, `80 | length-high`, `length-low`: `26 80 1f a1 1d ...`.
    Hipath,
}

impl Framing {
    /// The configuration name (`length`, `hipath`).
    pub fn name(self) -> &'static str {
        match self {
            Framing::Length => "length",
            Framing::Hipath => "hipath",
        }
    }

    /// Octets before each PDU.
    pub fn header_len(self) -> usize {
        match self {
            Framing::Length => 2,
            Framing::Hipath => 3,
        }
    }

    /// The largest PDU the header can announce.
    pub fn max_frame(self) -> usize {
        match self {
            Framing::Length => MAX_U16_FRAME,
            Framing::Hipath => MAX_HIPATH_FRAME,
        }
    }

    /// Every framing, for the messages that list them.
    pub const ALL: [Framing; 2] = [Framing::Length, Framing::Hipath];
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Framing {
    type Err = String;
    fn from_str(s: &str) -> Result<Framing, String> {
        Framing::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown framing {s:?}: use \"length\" (2-octet length) or \"hipath\" (Siemens HiPath 26 8x xx)"))
    }
}

/// Framing errors.
#[derive(Debug)]
pub enum FramingError {
    /// A frame longer than the limit: `len` announced, `max` allowed.
    TooLarge {
        len: usize,
        max: usize,
    },
    /// A pre-association byte other than the one expected.
    UnexpectedHandshake {
        expected: u8,
        found: u8,
    },
    /// A CSTA-XML header that is not `00 00 len(>=8) dddd`.
    BadXmlHeader(&'static str),
    /// A HiPath header that is not `26 8x xx`: what is wrong and the octet found.
    BadHipathHeader {
        what: &'static str,
        found: u8,
    },
    Io(std::io::Error),
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::TooLarge { len, max } => {
                write!(f, "loss of framing: frame of {len} octets exceeds the limit of {max}; is the other side speaking CSTA BER with this framing setting?")
            }
            FramingError::UnexpectedHandshake { expected, found } => write!(
                f,
                "expected pre-association byte {:?}, got 0x{found:02x}; check the link's handshake setting",
                *expected as char
            ),
            FramingError::BadXmlHeader(w) => write!(f, "bad CSTA-XML header: {w}"),
            FramingError::BadHipathHeader { what, found } => write!(
                f,
                "loss of framing: bad HiPath header ({what}, got 0x{found:02x}); is the other side using framing = \"hipath\"?"
            ),
            FramingError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for FramingError {}

impl From<std::io::Error> for FramingError {
    fn from(e: std::io::Error) -> Self {
        FramingError::Io(e)
    }
}

/// An item of a u16-framed link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One BER PDU (may be empty or undecodable: that is the next layer's business).
    Pdu(Bytes),
    /// The single pre-association byte (`B` from the application, `P` from the switch).
    Handshake(u8),
}

/// The pre-association byte exchange of WIRE.md §2 (OmniPCX Office).
pub const HANDSHAKE_APP: u8 = b'B';
pub const HANDSHAKE_SWITCH: u8 = b'P';

/// Length-prefixed BER framing: the 2-octet big-endian length by default, or the HiPath
/// header ([`U16Codec::with_framing`]).
#[derive(Debug, Clone)]
pub struct U16Codec {
    max: usize,
    framing: Framing,
    /// The handshake byte still expected from the peer before the first frame.
    expect_handshake: Option<u8>,
}

impl U16Codec {
    pub fn new() -> Self {
        U16Codec {
            max: MAX_U16_FRAME,
            framing: Framing::Length,
            expect_handshake: None,
        }
    }
    /// Limit the accepted PDU size (at most what the header can announce: 65535, HiPath
    /// 32767).
    pub fn with_max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }
    /// Use this header before each PDU.
    pub fn with_framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }
    pub fn framing(&self) -> Framing {
        self.framing
    }
    /// Expect this single byte from the peer before the first frame (the application side
    /// expects [`HANDSHAKE_SWITCH`], the switch side [`HANDSHAKE_APP`]).
    pub fn expecting_handshake(mut self, byte: u8) -> Self {
        self.expect_handshake = Some(byte);
        self
    }
    pub fn max(&self) -> usize {
        self.max.min(self.framing.max_frame())
    }

    /// The PDU length the header at the start of `src` announces (`Ok(None)`: not all of
    /// the header is there yet). A HiPath marker or flag bit is checked as soon as its
    /// octet arrives.
    fn header(&self, src: &[u8]) -> Result<Option<usize>, FramingError> {
        match self.framing {
            Framing::Length => Ok(be_u16::<_, nom::error::Error<&[u8]>>(src)
                .ok()
                .map(|(_, l)| usize::from(l))),
            Framing::Hipath => {
                if let Some(&m) = src.first() {
                    if m != HIPATH_MARKER {
                        return Err(FramingError::BadHipathHeader {
                            what: "the first octet must be 0x26",
                            found: m,
                        });
                    }
                }
                if let Some(&hi) = src.get(1) {
                    if hi & 0x80 == 0 {
                        return Err(FramingError::BadHipathHeader {
                            what: "the second octet must have its high bit set",
                            found: hi,
                        });
                    }
                }
                Ok(src
                    .get(2)
                    .map(|&lo| usize::from(src[1] & 0x7f) << 8 | usize::from(lo)))
            }
        }
    }
}

impl Default for U16Codec {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for U16Codec {
    type Item = Frame;
    type Error = FramingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FramingError> {
        if let Some(expected) = self.expect_handshake {
            let Some(&b) = src.first() else {
                return Ok(None);
            };
            if b != expected {
                return Err(FramingError::UnexpectedHandshake { expected, found: b });
            }
            src.advance(1);
            self.expect_handshake = None;
            return Ok(Some(Frame::Handshake(b)));
        }
        let Some(len) = self.header(&src[..])? else {
            return Ok(None); // not all of the header yet
        };
        let max = self.max();
        if len > max {
            return Err(FramingError::TooLarge { len, max });
        }
        let h = self.framing.header_len();
        if src.len() < h + len {
            src.reserve(h + len - src.len());
            return Ok(None);
        }
        src.advance(h);
        Ok(Some(Frame::Pdu(src.split_to(len).freeze())))
    }
}

impl Encoder<Frame> for U16Codec {
    type Error = FramingError;
    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), FramingError> {
        match item {
            Frame::Handshake(b) => dst.put_u8(b),
            Frame::Pdu(p) => self.encode(&p[..], dst)?,
        }
        Ok(())
    }
}

impl Encoder<&[u8]> for U16Codec {
    type Error = FramingError;
    fn encode(&mut self, pdu: &[u8], dst: &mut BytesMut) -> Result<(), FramingError> {
        let max = self.max();
        let len = pdu.len();
        if len > max {
            return Err(FramingError::TooLarge { len, max });
        }
        dst.reserve(self.framing.header_len() + len);
        match self.framing {
            Framing::Length => dst.put_u16(len as u16),
            Framing::Hipath => {
                dst.put_u8(HIPATH_MARKER);
                dst.put_u8(0x80 | (len >> 8) as u8);
                dst.put_u8(len as u8);
            }
        }
        dst.put_slice(pdu);
        Ok(())
    }
}

/// One CSTA-XML message: invoke id 0..=9999 (9999 = unsolicited event) and the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlFrame {
    pub invoke_id: u16,
    pub body: Bytes,
}

/// The invoke id CSTA-XML switches put on unsolicited events.
pub const XML_EVENT_INVOKE_ID: u16 = 9999;

/// 8-octet CSTA-XML header framing.
#[derive(Debug, Clone)]
pub struct Xml8Codec {
    max: usize,
}

impl Xml8Codec {
    pub fn new() -> Self {
        Xml8Codec { max: 65_535 }
    }
    pub fn with_max(max: usize) -> Self {
        Xml8Codec {
            max: max.min(65_535),
        }
    }
}

impl Default for Xml8Codec {
    fn default() -> Self {
        Self::new()
    }
}

fn xml_header(i: &[u8]) -> nom::IResult<&[u8], (u16, u16, &[u8])> {
    let (i, zero) = be_u16(i)?;
    let (i, len) = be_u16(i)?;
    let (i, id) = nom::bytes::streaming::take(4usize)(i)?;
    Ok((i, (zero, len, id)))
}

impl Decoder for Xml8Codec {
    type Item = XmlFrame;
    type Error = FramingError;
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<XmlFrame>, FramingError> {
        let (zero, len, id) = match xml_header(&src[..]) {
            Ok((_, h)) => h,
            Err(_) => return Ok(None),
        };
        if zero != 0 {
            return Err(FramingError::BadXmlHeader(
                "the first two octets must be zero",
            ));
        }
        let len = len as usize;
        if len < 8 {
            return Err(FramingError::BadXmlHeader(
                "length smaller than the 8-octet header",
            ));
        }
        if len > self.max {
            return Err(FramingError::TooLarge { len, max: self.max });
        }
        if !id.iter().all(u8::is_ascii_digit) {
            return Err(FramingError::BadXmlHeader(
                "invoke id is not 4 ASCII digits",
            ));
        }
        let invoke_id = id.iter().fold(0u16, |a, d| a * 10 + u16::from(d - b'0'));
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        src.advance(8);
        Ok(Some(XmlFrame {
            invoke_id,
            body: src.split_to(len - 8).freeze(),
        }))
    }
}

impl Encoder<XmlFrame> for Xml8Codec {
    type Error = FramingError;
    fn encode(&mut self, item: XmlFrame, dst: &mut BytesMut) -> Result<(), FramingError> {
        let len = item.body.len() + 8;
        if len > self.max {
            return Err(FramingError::TooLarge { len, max: self.max });
        }
        if item.invoke_id > 9999 {
            return Err(FramingError::BadXmlHeader("invoke id above 9999"));
        }
        dst.reserve(len);
        dst.put_u16(0);
        dst.put_u16(len as u16);
        dst.put_slice(format!("{:04}", item.invoke_id).as_bytes());
        dst.put_slice(&item.body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdu(b: &[u8]) -> Frame {
        Frame::Pdu(Bytes::copy_from_slice(b))
    }

    #[test]
    fn several_frames_per_read_and_split_frames() {
        let mut c = U16Codec::new();
        let mut buf = BytesMut::from(&[0x00, 0x02, 0xa1, 0x00, 0x00, 0x01, 0x05, 0x00][..]);
        assert_eq!(c.decode(&mut buf).unwrap(), Some(pdu(&[0xa1, 0x00])));
        assert_eq!(c.decode(&mut buf).unwrap(), Some(pdu(&[0x05])));
        // a half frame: need more
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 1);
        buf.extend_from_slice(&[0x03, 0x62, 0x03]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&[0x80]);
        assert_eq!(c.decode(&mut buf).unwrap(), Some(pdu(&[0x62, 0x03, 0x80])));
        assert!(buf.is_empty());
        // an empty frame is a frame (the next layer reports it)
        buf.extend_from_slice(&[0, 0]);
        assert_eq!(c.decode(&mut buf).unwrap(), Some(pdu(&[])));
    }

    #[test]
    fn oversized_length_is_an_error_before_buffering() {
        let mut c = U16Codec::new().with_max(1000);
        let mut buf = BytesMut::from(&[0x10, 0x00, 0xa1][..]);
        assert!(matches!(
            c.decode(&mut buf),
            Err(FramingError::TooLarge {
                len: 4096,
                max: 1000
            })
        ));
        let mut enc = BytesMut::new();
        assert!(c.encode(&[0u8; 1001][..], &mut enc).is_err());
        c.encode(&[0xa1, 0x00][..], &mut enc).unwrap();
        assert_eq!(&enc[..], &[0x00, 0x02, 0xa1, 0x00]);
    }

    #[test]
    fn handshake_then_frames() {
        let mut c = U16Codec::new().expecting_handshake(HANDSHAKE_SWITCH);
        let mut buf = BytesMut::from(&b"P\x00\x01\x05"[..]);
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Frame::Handshake(b'P')));
        assert_eq!(c.decode(&mut buf).unwrap(), Some(pdu(&[0x05])));
        let mut c = U16Codec::new().expecting_handshake(HANDSHAKE_SWITCH);
        let mut buf = BytesMut::from(&b"X"[..]);
        assert!(matches!(
            c.decode(&mut buf),
            Err(FramingError::UnexpectedHandshake { .. })
        ));
        let mut out = BytesMut::new();
        c.encode(Frame::Handshake(HANDSHAKE_APP), &mut out).unwrap();
        assert_eq!(&out[..], b"B");
    }

    fn hipath() -> U16Codec {
        U16Codec::new().with_framing(Framing::Hipath)
    }

    #[test]
    fn hipath_header_exact_bytes_both_ways() {
        let mut c = hipath();
        let mut out = BytesMut::new();
        c.encode(&[0xa1, 0x00][..], &mut out).unwrap();
        assert_eq!(&out[..], &[0x26, 0x80, 0x02, 0xa1, 0x00]);
        // a length over 255 uses the high octet (0x80 | 0x01, 0x2c = 300)
        let big = vec![0x55u8; 300];
        let mut out = BytesMut::new();
        c.encode(&big[..], &mut out).unwrap();
        assert_eq!(&out[..3], &[0x26, 0x81, 0x2c]);
        assert_eq!(out.len(), 303);
        assert_eq!(c.decode(&mut out).unwrap(), Some(pdu(&big)));
        // several frames in one read, a frame split across reads, an empty frame
        let mut buf =
            BytesMut::from(&[0x26, 0x80, 0x02, 0xa1, 0x00, 0x26, 0x80, 0x01, 0x05, 0x26][..]);
        assert_eq!(c.decode(&mut buf).unwrap(), Some(pdu(&[0xa1, 0x00])));
        assert_eq!(c.decode(&mut buf).unwrap(), Some(pdu(&[0x05])));
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&[0x80]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&[0x03, 0x62, 0x03]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&[0x80]);
        assert_eq!(c.decode(&mut buf).unwrap(), Some(pdu(&[0x62, 0x03, 0x80])));
        assert!(buf.is_empty());
        buf.extend_from_slice(&[0x26, 0x80, 0x00]);
        assert_eq!(c.decode(&mut buf).unwrap(), Some(pdu(&[])));
        // the largest length: 26 ff ff = 32767 octets
        let mut out = BytesMut::new();
        c.encode(&vec![0u8; MAX_HIPATH_FRAME][..], &mut out)
            .unwrap();
        assert_eq!(&out[..3], &[0x26, 0xff, 0xff]);
        assert!(c
            .encode(&vec![0u8; MAX_HIPATH_FRAME + 1][..], &mut out)
            .is_err());
    }

    #[test]
    fn hipath_bad_headers_are_errors_as_soon_as_seen() {
        // a 2-octet length frame on a HiPath link: the marker is wrong at the first octet
        let mut buf = BytesMut::from(&[0x00][..]);
        let e = hipath().decode(&mut buf).unwrap_err();
        assert!(matches!(
            e,
            FramingError::BadHipathHeader { found: 0x00, .. }
        ));
        assert_eq!(
            e.to_string(),
            "loss of framing: bad HiPath header (the first octet must be 0x26, got 0x00); is the other side using framing = \"hipath\"?"
        );
        // the marker, then the high bit missing
        let mut buf = BytesMut::from(&[0x26, 0x00][..]);
        assert!(matches!(
            hipath().decode(&mut buf),
            Err(FramingError::BadHipathHeader { found: 0x00, .. })
        ));
        let mut buf = BytesMut::from(&[0x26, 0x7f, 0xff, 0xa1][..]);
        assert!(matches!(
            hipath().decode(&mut buf),
            Err(FramingError::BadHipathHeader { found: 0x7f, .. })
        ));
        // the marker alone: need more
        let mut buf = BytesMut::from(&[0x26][..]);
        assert_eq!(hipath().decode(&mut buf).unwrap(), None);
        // oversize: over the configured maximum, before anything is buffered
        let mut buf = BytesMut::from(&[0x26, 0x84, 0x00, 0xa1][..]);
        assert!(matches!(
            hipath().with_max(1000).decode(&mut buf),
            Err(FramingError::TooLarge {
                len: 1024,
                max: 1000
            })
        ));
        // a configured maximum above 32767 is capped at what the header can carry
        assert_eq!(hipath().with_max(65_535).max(), MAX_HIPATH_FRAME);
        assert_eq!(U16Codec::new().with_max(70_000).max(), MAX_U16_FRAME);
        // a HiPath frame on a length link reads as a 9856-octet length (0x2680)
        let mut buf = BytesMut::from(&[0x26, 0x80, 0x02, 0xa1, 0x00][..]);
        assert!(matches!(
            U16Codec::new().with_max(4096).decode(&mut buf),
            Err(FramingError::TooLarge { len: 0x2680, .. })
        ));
    }

    #[test]
    fn framing_names() {
        assert_eq!("hipath".parse::<Framing>(), Ok(Framing::Hipath));
        assert_eq!("length".parse::<Framing>(), Ok(Framing::Length));
        assert!("u16".parse::<Framing>().unwrap_err().contains("\"hipath\""));
        assert_eq!(Framing::default(), Framing::Length);
    }

    #[test]
    fn xml8_header() {
        let mut c = Xml8Codec::new();
        let mut out = BytesMut::new();
        c.encode(
            XmlFrame {
                invoke_id: 1,
                body: Bytes::from_static(b"<x/>"),
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[..], b"\x00\x00\x00\x0c0001<x/>");
        let mut half = BytesMut::from(&out[..10]);
        assert_eq!(c.decode(&mut half).unwrap(), None);
        assert_eq!(
            c.decode(&mut out).unwrap(),
            Some(XmlFrame {
                invoke_id: 1,
                body: Bytes::from_static(b"<x/>")
            })
        );
        let mut bad = BytesMut::from(&b"\x00\x01\x00\x0c0001<x/>"[..]);
        assert!(c.decode(&mut bad).is_err());
        let mut bad = BytesMut::from(&b"\x00\x00\x00\x0c00a1<x/>"[..]);
        assert!(c.decode(&mut bad).is_err());
        let mut bad = BytesMut::from(&b"\x00\x00\x00\x040001"[..]);
        assert!(c.decode(&mut bad).is_err());
    }
}
