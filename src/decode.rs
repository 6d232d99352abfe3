//! `ctigate decode`: turn CSTA PDUs into one JSON object per PDU (the contract outside
//! checks rely on; see README "Decoding a capture").
//!
//! * hex mode: unframed PDUs in hex, one per line; a line that begins with white space
//!   continues the PDU above it, so the annotated files of `fixtures/` (one TLV a line,
//!   indented by depth) read as they are; with `--multiline` ([`HexLayout::Blocks`]) a PDU
//!   ends only at a blank or comment-only line. `#` starts a comment anywhere; white space
//!   and `:` between digits are ignored;
//! * binary mode: a stream of framed PDUs (`u16`: 2-octet length; `xml8`: CSTA-XML header).
//!
//! Success: `{"apdu", "invoke_id", "operation", "family", "event", "value", "reencoded",
//! "canonical"}`; failure: `{"error", "code", "path", "offset", …}` and the next PDU is
//! read. Never a panic: every input error is a line.

use bytes::{Bytes, BytesMut};
use ctigate_csta::framing::{
    Frame, FramingError, U16Codec, Xml8Codec, HANDSHAKE_APP, HANDSHAKE_SWITCH,
};
use ctigate_csta::json::{apdu_json, hex};
use ctigate_csta::{Apdu, Limits};
use serde_json::{json, Map, Value as Json};
use std::io::{BufRead, Read, Write};
use tokio_util::codec::Decoder;

/// Binary stream framings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// 2-octet big-endian length.
    U16,
    /// Siemens HiPath: `26`, `80 | length-high`, `length-low`.
    Hipath,
    Xml8,
}

/// What a run saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub decoded: usize,
    pub failed: usize,
}

impl Summary {
    /// Exit status: 0 when everything decoded, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.failed > 0)
    }
}

/// The longest hex line accepted: a PDU of at most 65535 octets plus separators.
const MAX_HEX_LINE: usize = 4 * 65_536;

/// Decode one unframed PDU into its output object.
pub fn decode_pdu(pdu: &[u8]) -> (Map<String, Json>, bool) {
    let bytes = Bytes::copy_from_slice(pdu);
    match Apdu::decode_with(&bytes, &Limits::DEFAULT) {
        Ok(a) => {
            let mut m = apdu_json(&a);
            match a.encode() {
                Ok(re) => {
                    m.insert("canonical".into(), json!(re == pdu));
                    m.insert("reencoded".into(), json!(hex(&re)));
                }
                Err(e) => {
                    // cannot happen for decoded values; reported rather than hidden
                    m.insert("reencoded".into(), Json::Null);
                    m.insert("reencode_error".into(), json!(e.to_string()));
                }
            }
            (m, true)
        }
        Err(e) => {
            let mut m = Map::new();
            m.insert("error".into(), json!(e.to_string()));
            m.insert("code".into(), json!(e.code()));
            m.insert("path".into(), json!(e.path()));
            m.insert("offset".into(), json!(e.offset));
            if let Some(id) = e.invoke_id {
                m.insert("invoke_id".into(), json!(id));
            }
            m.insert("input".into(), json!(hex(&pdu[..pdu.len().min(256)])));
            (m, false)
        }
    }
}

/// An error line that is not about a PDU's content (bad hex, an over-long line, a stream
/// that ends inside a frame, a framing error): same keys as a decode error.
fn error_line(message: String, code: &str, offset: usize, at: (&str, usize)) -> Map<String, Json> {
    Map::from_iter([
        ("error".to_string(), json!(message)),
        ("code".to_string(), json!(code)),
        ("path".to_string(), json!("")),
        ("offset".to_string(), json!(offset)),
        (at.0.to_string(), json!(at.1)),
    ])
}

fn emit(
    out: &mut dyn Write,
    m: Map<String, Json>,
    s: &mut Summary,
    ok: bool,
) -> std::io::Result<()> {
    if ok {
        s.decoded += 1;
    } else {
        s.failed += 1;
    }
    serde_json::to_writer(&mut *out, &Json::Object(m))?;
    out.write_all(b"\n")
}

fn parse_hex_line(line: &str) -> Result<Vec<u8>, String> {
    let body = match line.find('#') {
        Some(i) => &line[..i],
        None => line,
    };
    let digits: Vec<u8> = body
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b':')
        .collect();
    if digits.len() % 2 != 0 {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    let val = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!("not a hex digit: {:?}", c as char)),
    };
    digits
        .chunks(2)
        .map(|p| Ok(val(p[0])? << 4 | val(p[1])?))
        .collect()
}

/// How hex lines group into PDUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HexLayout {
    /// Decided by the input: an annotated dump, whose first line of hex carries a trailing
    /// `# comment` (every file of `fixtures/`), is read as [`HexLayout::Blocks`]; anything
    /// else as [`HexLayout::Lines`]. An input of comments and no hex at all is one empty
    /// PDU (the fixture format's rule).
    #[default]
    Auto,
    /// `--single-line`: one PDU per line (blank and comment-only lines skipped).
    Lines,
    /// `--multiline`: a PDU runs over as many lines as it takes and ends at a blank line, a
    /// comment-only line or the end of the input (annotated dumps, `xxd -p` output).
    Blocks,
}

/// The PDU being gathered from hex lines: where it started and its octets so far, or
/// the error that spoiled it (reported once, when it ends).
struct HexPdu {
    line: usize,
    octets: Result<Vec<u8>, (String, &'static str)>,
}

impl HexPdu {
    fn add(&mut self, lineno: usize, body: &str) {
        let Ok(octets) = &mut self.octets else {
            return;
        };
        match parse_hex_line(body) {
            Ok(more) if octets.len() + more.len() <= MAX_PDU => octets.extend(more),
            Ok(_) => {
                self.octets = Err((
                    format!(
                        "PDU from line {} is longer than {MAX_PDU} octets",
                        self.line
                    ),
                    "too_large",
                ))
            }
            Err(e) => self.octets = Err((format!("line {lineno}: {e}"), "bad_hex")),
        }
    }

    fn finish(self, out: &mut dyn Write, s: &mut Summary) -> std::io::Result<()> {
        match self.octets {
            Ok(pdu) => {
                let (mut m, ok) = decode_pdu(&pdu);
                if !ok {
                    m.insert("line".into(), json!(self.line));
                }
                emit(out, m, s, ok)
            }
            Err((msg, code)) => {
                let m = error_line(msg, code, 0, ("line", self.line));
                emit(out, m, s, false)
            }
        }
    }
}

/// The largest PDU (the 2-octet framing's limit).
const MAX_PDU: usize = 65_535;

/// Hex mode over any reader, one PDU per line ([`HexLayout::Lines`]).
pub fn run_hex(input: &mut dyn BufRead, out: &mut dyn Write) -> std::io::Result<Summary> {
    run_hex_with(input, HexLayout::Lines, out)
}

/// Hex mode over any reader: `#` starts a comment anywhere; white space and `:` between
/// digits are ignored; each PDU gives one output line, and a bad one names the line it
/// started on (`line`).
pub fn run_hex_with(
    input: &mut dyn BufRead,
    mut layout: HexLayout,
    out: &mut dyn Write,
) -> std::io::Result<Summary> {
    let mut s = Summary::default();
    let mut commented = false;
    let mut lineno = 0usize;
    let mut buf = Vec::new();
    let mut pdu: Option<HexPdu> = None;
    loop {
        buf.clear();
        let n = std::io::Read::take(&mut *input, MAX_HEX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        lineno += 1;
        if buf.len() > MAX_HEX_LINE && !buf.ends_with(b"\n") {
            // skip the rest of the over-long line
            let mut sink = Vec::new();
            loop {
                sink.clear();
                let k = std::io::Read::take(&mut *input, 1 << 16).read_until(b'\n', &mut sink)?;
                if k == 0 || sink.ends_with(b"\n") {
                    break;
                }
            }
            if let Some(p) = pdu.take() {
                p.finish(out, &mut s)?;
            }
            let m = Map::from_iter([
                (
                    "error".to_string(),
                    json!("line longer than a 65535-octet PDU in hex"),
                ),
                ("code".to_string(), json!("too_large")),
                ("line".to_string(), json!(lineno)),
            ]);
            emit(out, m, &mut s, false)?;
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        let body = text.split('#').next().unwrap_or_default();
        if body.trim().is_empty() {
            // no hex: a blank line ends the PDU; so does a comment-only line of a block
            // (in one-line layout a comment may stand between a PDU's annotated lines)
            commented |= !text.trim().is_empty();
            if text.trim().is_empty() || layout == HexLayout::Blocks {
                if let Some(p) = pdu.take() {
                    p.finish(out, &mut s)?;
                }
            }
            continue;
        }
        if layout == HexLayout::Auto {
            layout = if text.contains('#') {
                HexLayout::Blocks
            } else {
                HexLayout::Lines
            };
        }
        match pdu.as_mut() {
            Some(p) if layout == HexLayout::Blocks => p.add(lineno, body),
            _ => {
                if let Some(p) = pdu.take() {
                    p.finish(out, &mut s)?;
                }
                let mut p = HexPdu {
                    line: lineno,
                    octets: Ok(Vec::new()),
                };
                p.add(lineno, body);
                pdu = Some(p);
            }
        }
    }
    if let Some(p) = pdu.take() {
        p.finish(out, &mut s)?;
    } else if layout == HexLayout::Auto && commented {
        // comments and no hex: an annotated file of an empty PDU
        let empty = HexPdu {
            line: 1,
            octets: Ok(Vec::new()),
        };
        empty.finish(out, &mut s)?;
    }
    Ok(s)
}

/// Binary mode over a whole stream.
/// Binary mode over a whole in-memory stream (see [`run_stream`]).
pub fn run_binary(
    data: &[u8],
    framing: Framing,
    handshake: bool,
    out: &mut dyn Write,
) -> std::io::Result<Summary> {
    run_stream(&mut &data[..], framing, handshake, out)
}

/// Binary mode over a reader, read in chunks (memory bounded by the largest frame).
/// With `handshake`, a leading pre-association byte (`B` or `P`) of an OmniPCX Office link
/// is skipped. A HiPath stream that loses its framing (a wrong `26` marker, a missing high
/// bit) ends with a `framing` error line naming the octet.
pub fn run_stream(
    input: &mut dyn Read,
    framing: Framing,
    handshake: bool,
    out: &mut dyn Write,
) -> std::io::Result<Summary> {
    match framing {
        Framing::U16 | Framing::Hipath => {
            let mut codec = U16Codec::new().with_framing(if framing == Framing::Hipath {
                ctigate_csta::framing::Framing::Hipath
            } else {
                ctigate_csta::framing::Framing::Length
            });
            let mut pending = BytesMut::new();
            if handshake {
                let mut first = [0u8; 1];
                if input.read(&mut first)? == 1 {
                    if first[0] == HANDSHAKE_APP || first[0] == HANDSHAKE_SWITCH {
                        codec = codec.expecting_handshake(first[0]);
                    }
                    pending.extend_from_slice(&first);
                }
            }
            drive(codec, pending, input, out, |frame| match frame {
                Frame::Handshake(_) => None,
                Frame::Pdu(p) => Some(decode_pdu(&p)),
            })
        }
        Framing::Xml8 => drive(Xml8Codec::new(), BytesMut::new(), input, out, |f| {
            let m = Map::from_iter([
                ("apdu".to_string(), json!("xml")),
                ("invoke_id".to_string(), json!(f.invoke_id)),
                ("value".to_string(), json!(String::from_utf8_lossy(&f.body))),
            ]);
            Some((m, true))
        }),
    }
}

/// Run a framing codec over the stream: one line per frame (`item` gives it, or `None` for
/// items that are not PDUs), a line for octets left inside an unfinished frame at the end,
/// and a line for a framing error (after which the stream cannot be followed).
fn drive<D, F>(
    mut codec: D,
    mut buf: BytesMut,
    input: &mut dyn Read,
    out: &mut dyn Write,
    mut item: F,
) -> std::io::Result<Summary>
where
    D: Decoder<Error = FramingError>,
    F: FnMut(D::Item) -> Option<(Map<String, Json>, bool)>,
{
    let mut s = Summary::default();
    let mut index = 0usize;
    let mut consumed = 0usize; // stream offset of buf[0]
    let mut chunk = vec![0u8; 64 * 1024];
    let mut eof = false;
    loop {
        let before = buf.len();
        match codec.decode(&mut buf) {
            Ok(Some(it)) => {
                let offset = consumed;
                consumed += before - buf.len();
                if let Some((mut m, ok)) = item(it) {
                    if !ok {
                        m.insert("frame".into(), json!(index));
                        m.insert("stream_offset".into(), json!(offset));
                    }
                    emit(out, m, &mut s, ok)?;
                    index += 1;
                }
            }
            Ok(None) if !eof => {
                let n = input.read(&mut chunk)?;
                if n == 0 {
                    eof = true;
                } else {
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
            Ok(None) => {
                if !buf.is_empty() {
                    let msg = format!(
                        "stream ends inside a frame: {} octet(s) left over",
                        buf.len()
                    );
                    emit(
                        out,
                        error_line(msg, "truncated", consumed, ("frame", index)),
                        &mut s,
                        false,
                    )?;
                }
                return Ok(s);
            }
            Err(e) => {
                framing_error(out, &mut s, e, index, consumed)?;
                return Ok(s);
            }
        }
    }
}

fn framing_error(
    out: &mut dyn Write,
    s: &mut Summary,
    e: FramingError,
    index: usize,
    offset: usize,
) -> std::io::Result<()> {
    let msg = format!("{e}; the rest of the stream cannot be framed");
    let mut m = error_line(msg, "framing", offset, ("frame", index));
    m.insert("stream_offset".into(), json!(offset));
    emit(out, m, s, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> (Vec<Json>, Summary) {
        let mut out = Vec::new();
        let s = run_hex(&mut text.as_bytes(), &mut out).unwrap();
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines, s)
    }

    #[test]
    fn hex_mode_one_line_per_pdu() {
        let (l, s) =
            run("# comment\n\na10f020102020147300730058003323031\nzz\na1\n6203800100  # rlrq\n");
        assert_eq!(
            s,
            Summary {
                decoded: 2,
                failed: 2
            }
        );
        assert_eq!(l[0]["apdu"], "invoke");
        assert_eq!(l[0]["operation"], "monitorStart");
        assert_eq!(l[0]["invoke_id"], 2);
        assert_eq!(
            l[0]["value"]["monitorObject"]["$value"]["deviceIdentifier"]["$value"],
            "201"
        );
        assert_eq!(l[0]["reencoded"], "a10f020102020147300730058003323031");
        assert_eq!(l[1]["code"], "bad_hex");
        assert_eq!(l[2]["code"], "truncated");
        assert_eq!(l[3]["apdu"], "rlrq");
    }

    fn run_layout(text: &str, layout: HexLayout) -> Vec<Json> {
        let mut out = Vec::new();
        run_hex_with(&mut text.as_bytes(), layout, &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn hex_mode_auto_reads_annotated_dumps_as_blocks() {
        // an annotated dump: header comments, one TLV a line with trailing comments
        let text = "# rlrq\n# expect: apdu=rlrq\n62 03      # RLRQ\n  80 01 00  # reason\n\n\
                    a10f020102020147  # invoke\n300730058003323031\nzz\n";
        let l = run_layout(text, HexLayout::Auto);
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(l[0]["apdu"], "rlrq");
        assert_eq!(l[0]["reencoded"], "6203800100");
        // a bad digit spoils its whole PDU once, named by the line it started on
        assert_eq!(
            (l[1]["code"].as_str(), l[1]["line"].as_u64()),
            (Some("bad_hex"), Some(6))
        );
        assert!(l[1]["error"].as_str().unwrap().starts_with("line 8:"));
        // no trailing comment on the first hex line: one PDU a line
        let l = run_layout("# two PDUs\n6203800100\n6303800100\n", HexLayout::Auto);
        assert_eq!(
            (l[0]["apdu"].as_str(), l[1]["apdu"].as_str()),
            (Some("rlrq"), Some("rlre"))
        );
        // comments and no hex: one empty PDU; nothing at all: nothing
        let l = run_layout("# empty\n# expect: error=empty\n", HexLayout::Auto);
        assert_eq!(l.len(), 1);
        assert!(l[0]["error"].is_string());
        assert!(run_layout("\n\n", HexLayout::Auto).is_empty());
    }

    #[test]
    fn hex_mode_blocks() {
        // `xxd -p`-style wrapping, blocks ended by a blank or a comment-only line
        let text = "a10f0201020201\n47300730058003323031\n\n62038001\n00\n# next\n6203\n800100";
        let l = run_layout(text, HexLayout::Blocks);
        assert_eq!(l.len(), 3, "{l:?}");
        assert_eq!(l[0]["operation"], "monitorStart");
        assert_eq!(l[1]["apdu"], "rlrq");
        assert_eq!(l[2]["apdu"], "rlrq");
        // the same input one PDU a line: every line on its own
        assert_eq!(run_layout(text, HexLayout::Lines).len(), 6);
        // a block over the PDU size limit
        let big = "00".repeat(40_000);
        let l = run_layout(&format!("{big}\n{big}\n"), HexLayout::Blocks);
        assert_eq!(l[0]["code"], "too_large");
    }

    #[test]
    fn binary_mode_frames_and_leftovers() {
        let mut data = vec![
            0x00, 0x05, 0x62, 0x03, 0x80, 0x01, 0x00, 0x00, 0x03, 0xa1, 0x05, 0x02,
        ];
        data.extend([0x00, 0x09, 0x01]);
        let mut out = Vec::new();
        let s = run_binary(&data, Framing::U16, false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let l: Vec<Json> = text
            .lines()
            .map(|x| serde_json::from_str(x).unwrap())
            .collect();
        assert_eq!(
            s,
            Summary {
                decoded: 1,
                failed: 2
            }
        );
        assert_eq!(l[0]["apdu"], "rlrq");
        assert_eq!(l[1]["frame"], 1);
        assert_eq!(l[2]["code"], "truncated");
    }

    #[test]
    fn binary_mode_handshake_byte_and_xml8() {
        // an OmniPCX Office capture: 'P' then frames
        let data = [b'P', 0x00, 0x05, 0x63, 0x03, 0x80, 0x01, 0x00];
        let mut out = Vec::new();
        let s = run_binary(&data, Framing::U16, true, &mut out).unwrap();
        assert_eq!(
            s,
            Summary {
                decoded: 1,
                failed: 0
            }
        );
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("\"apdu\":\"rlre\""));
        // CSTA-XML: framing only, the document as text; then a bad header
        let mut data = b"\x00\x00\x00\x0c0001<x/>".to_vec();
        data.extend_from_slice(b"\x00\x01\x00\x0c0002<y/>");
        let mut out = Vec::new();
        let s = run_binary(&data, Framing::Xml8, false, &mut out).unwrap();
        assert_eq!(
            s,
            Summary {
                decoded: 1,
                failed: 1
            }
        );
        let text = String::from_utf8(out).unwrap();
        let l: Vec<Json> = text
            .lines()
            .map(|x| serde_json::from_str(x).unwrap())
            .collect();
        assert_eq!(l[0]["invoke_id"], 1);
        assert_eq!(l[0]["value"], "<x/>");
        assert_eq!(l[1]["code"], "framing");
        assert_eq!(l[1]["stream_offset"], 12);
    }

    #[test]
    fn binary_mode_hipath() {
        // RLRQ and RLRE in HiPath frames, then a frame without the high bit
        let data = [
            0x26, 0x80, 0x05, 0x62, 0x03, 0x80, 0x01, 0x00, 0x26, 0x80, 0x05, 0x63, 0x03, 0x80,
            0x01, 0x00, 0x26, 0x05, 0x62,
        ];
        let mut out = Vec::new();
        let s = run_binary(&data, Framing::Hipath, false, &mut out).unwrap();
        assert_eq!(
            s,
            Summary {
                decoded: 2,
                failed: 1
            }
        );
        let l: Vec<Json> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|x| serde_json::from_str(x).unwrap())
            .collect();
        assert_eq!(
            (l[0]["apdu"].as_str(), l[1]["apdu"].as_str()),
            (Some("rlrq"), Some("rlre"))
        );
        assert_eq!(l[2]["code"], "framing");
        assert_eq!(l[2]["stream_offset"], 16);
        assert!(
            l[2]["error"].as_str().unwrap().contains("high bit"),
            "{}",
            l[2]
        );
        // the same frames read as 2-octet length framing do not decode
        let mut out = Vec::new();
        let s = run_binary(&data[..16], Framing::U16, false, &mut out).unwrap();
        assert_eq!(s.decoded, 0);
    }
}
