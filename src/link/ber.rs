//! The ECMA-285 BER dialect: X.880 ROSE APDUs after X.227 ACSE association, in 2-octet
//! length framing (WIRE.md §2.1) or Siemens HiPath's `26 8x xx` header, with the optional pre-association `B`/`P` handshake
//! (Alcatel OmniPCX Office, WIRE.md §2.2). Everything here is the `ctigate-csta` crate's
//! code; this file only maps it onto [`Dialect`].

use super::dialect::{Association, Dialect, Fault, Garbled, Message, SwitchError};
use super::LinkConfig;
use bytes::Bytes;
use ctigate_csta::acse::{self, AarqParams, Acse, AcseKind};
use ctigate_csta::apdu::Apdu;
use ctigate_csta::ber::{self, Children, Tlv};
use ctigate_csta::framing::{
    Frame, Framing, U16Codec, HANDSHAKE_APP, HANDSHAKE_SWITCH, MAX_U16_FRAME,
};
use ctigate_csta::rose::{Code, InvokeId, Reject, ReturnError, Rose};
use ctigate_csta::rose_ext::{
    self, FromInvoke, FromReturnResult, ReportFromInvoke, ToInvoke, ToReturnError, ToReturnResult,
};
use ctigate_csta::schema::{Class, Tag};
use ctigate_csta::{DecodeError, Limits, Oid};
use ctigate_csta_model::events::EventReport;
use ctigate_csta_model::opcode;
use ctigate_csta_model::ops::{Argument, Operation, OperationResult};
use ctigate_csta_model::reject::Problem;
use ctigate_csta_model::types::UniversalFailure;

/// Highest invoke id; the next one is 1 again (public client code wraps here, WIRE.md §4).
pub const MAX_INVOKE_ID: i64 = 32767;

/// The ECMA-285 BER dialect (configured: the AARQ, built once; the framing and handshake
/// settings).
#[derive(Debug, Clone)]
pub struct Ber {
    aarq: Bytes,
    framing: Framing,
    handshake: bool,
    max_frame: usize,
}

impl Dialect for Ber {
    type Frame = Frame;
    type Codec = U16Codec;

    const MAX_INVOKE_ID: i64 = MAX_INVOKE_ID;

    fn from_config(cfg: &LinkConfig) -> Result<Ber, String> {
        if !(1..=MAX_U16_FRAME).contains(&cfg.max_frame) {
            return Err(format!(
                "max_frame {} is outside 1..={MAX_U16_FRAME} (the 2-octet framing)",
                cfg.max_frame
            ));
        }
        Ok(Ber {
            aarq: build_aarq(cfg)?,
            framing: cfg.framing,
            handshake: cfg.handshake,
            max_frame: cfg.max_frame,
        })
    }

    fn codec(&self) -> U16Codec {
        let codec = U16Codec::new()
            .with_framing(self.framing)
            .with_max(self.max_frame);
        if self.handshake {
            codec.expecting_handshake(HANDSHAKE_SWITCH)
        } else {
            codec
        }
    }

    fn handshake(&self) -> Option<Frame> {
        self.handshake.then_some(Frame::Handshake(HANDSHAKE_APP))
    }

    fn associate(&self) -> Frame {
        Frame::Pdu(self.aarq.clone())
    }

    fn release(&self) -> Option<Frame> {
        acse_frame(&Acse::rlrq(0))
    }

    fn release_response(&self) -> Option<Frame> {
        acse_frame(&Acse::rlre(0))
    }

    fn abort(&self) -> Option<Frame> {
        acse_frame(&Acse::abrt(0, None))
    }

    fn invoke(&self, invoke_id: i64, arg: &Argument) -> Result<Frame, String> {
        let max = self.framing.max_frame();
        match Apdu::Rose(arg.invoke(invoke_id)).encode() {
            Ok(b) if b.len() <= max => Ok(Frame::Pdu(Bytes::from(b))),
            Ok(b) => Err(format!(
                "{} of {} octets exceeds the {} frame limit of {max}",
                arg.operation(),
                b.len(),
                self.framing
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    fn result(
        &self,
        invoke_id: i64,
        op: Operation,
        result: Option<&OperationResult>,
    ) -> Result<Frame, String> {
        let rose = match result {
            Some(r) => r.return_result(invoke_id),
            None => rose_ext::no_data_result(op, invoke_id)
                .ok_or_else(|| format!("{op} has no noData result"))?,
        };
        rose_frame(rose)
    }

    fn error(&self, invoke_id: i64, failure: &UniversalFailure) -> Result<Frame, String> {
        rose_frame(failure.return_error(invoke_id))
    }

    fn reject(&self, invoke_id: Option<i64>, problem: Problem) -> Option<Frame> {
        let invoke_id = invoke_id.map_or(InvokeId::Absent, InvokeId::Present);
        rose_frame(Rose::Reject(Reject { invoke_id, problem })).ok()
    }

    fn decode(&mut self, frame: Frame) -> Message {
        let pdu = match frame {
            Frame::Handshake(b) => {
                return Message::Handshake {
                    expected: b == HANDSHAKE_SWITCH,
                    text: format!(
                        "unexpected pre-association byte 0x{b:02x}; check the handshake setting"
                    ),
                }
            }
            // the PDU in an allocation of its own, not a slice of the read buffer (16 KiB,
            // many frames): what is kept of the message (a callID in the tracker, an
            // event waiting in the event queue) then keeps its own octets alive, never
            // the buffer it was read with
            Frame::Pdu(p) => Bytes::copy_from_slice(&p),
        };
        // most of a busy link's frames: read straight into the typed event (the same
        // report the general path gives, or `None` and the general path reads it)
        if let Some(report) = ctigate_csta::hot::event_report(&pdu) {
            return Message::EventReport(Ok(report));
        }
        match Apdu::decode(&pdu) {
            Ok(Apdu::Acse(a)) => association(a),
            Ok(Apdu::Rose(r)) => rose(r),
            Err(e) => undecodable(&pdu, e),
        }
    }
}

fn acse_frame(a: &Acse) -> Option<Frame> {
    match a.encode() {
        Ok(b) => Some(Frame::Pdu(Bytes::from(b))),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode an ACSE APDU (bug)");
            None
        }
    }
}

fn rose_frame(r: Rose) -> Result<Frame, String> {
    Apdu::Rose(r)
        .encode()
        .map(|b| Frame::Pdu(Bytes::from(b)))
        .map_err(|e| e.to_string())
}

/// An ACSE APDU from the switch (X.227).
fn association(a: Acse) -> Message {
    let what = match a.kind {
        AcseKind::Aare if a.result() == Some(acse::result::ACCEPTED) => {
            let versions = a.csta_user_info().map(|u| u.versions);
            Association::Accepted {
                detail: format!("{versions:?}"),
            }
        }
        AcseKind::Aare => Association::Rejected {
            result: match a.result() {
                Some(acse::result::REJECTED_PERMANENT) => "rejected-permanent".to_string(),
                Some(acse::result::REJECTED_TRANSIENT) => "rejected-transient".to_string(),
                Some(n) => format!("result {n}"),
                None => "no result".to_string(),
            },
            diagnostic: match a.diagnostic() {
                Some(("service-user", v)) => acse::service_user_diagnostic_name(v).to_string(),
                Some(("service-provider", v)) => service_provider_diagnostic_name(v).to_string(),
                Some((_, v)) => format!("diagnostic {v}"),
                None => "no diagnostic given".to_string(),
            },
        },
        AcseKind::Abrt => {
            let source = match a.abort_source() {
                Some(0) => "service-user",
                Some(1) => "service-provider",
                _ => "unknown source",
            };
            let diag = a
                .abort_diagnostic()
                .map(|d| format!(", diagnostic {}", abort_diagnostic_name(d)))
                .unwrap_or_default();
            Association::Abort {
                reason: format!("the switch aborted the association (ABRT, {source}{diag})"),
            }
        }
        AcseKind::Rlrq => Association::ReleaseRequest,
        AcseKind::Rlre => Association::ReleaseResponse,
        _ => Association::Other,
    };
    Message::Association {
        name: a.kind.name(),
        what,
    }
}

/// A ROSE APDU from the switch (X.880).
fn rose(r: Rose) -> Message {
    match r {
        Rose::Invoke(inv) => match inv.opcode.local() {
            Some(opcode::CSTA_EVENT_REPORT) => {
                Message::EventReport(EventReport::from_invoke_lenient(&inv))
            }
            local => Message::Invoke {
                invoke_id: inv.invoke_id.value(),
                opcode: local,
                argument: Argument::from_invoke(&inv),
            },
        },
        Rose::ReturnResult(rr) => Message::Result {
            invoke_id: rr.invoke_id.value(),
            result: OperationResult::from_return_result(&rr),
        },
        Rose::ReturnError(re) => Message::Error {
            invoke_id: re.invoke_id.value(),
            error: switch_error(&re),
        },
        Rose::Reject(rj) => Message::Reject {
            invoke_id: rj.invoke_id.value(),
            problem: rj.problem,
        },
    }
}

/// A returnError: universalFailure (local 1) with its parameter, or what is wrong with it.
fn switch_error(re: &ReturnError) -> SwitchError {
    if re.errcode != Code::Local(UniversalFailure::ERROR_CODE) {
        return SwitchError::Unrecognized(format!("{:?}", re.errcode));
    }
    match re
        .parameter
        .as_ref()
        .map(|p| UniversalFailure::from_value(&p.value))
    {
        Some(Ok(f)) => SwitchError::Failure(f),
        other => SwitchError::Unreadable(format!("{other:?}")),
    }
}

/// A PDU the codec could not read, classified for the X.880 answer (X.880 §9
/// Remote-Operations-Generic-ROS-PDUs: the problem named by each constraint):
///
/// | the frame | guess |
/// |---|---|
/// | empty, or not an APDU type and not even one BER value | [`Garbled::NotAFrame`] (framing lost) |
/// | one BER value of a type that is no APDU (`30 00`) | [`Garbled::Unknown`]: unrecognizedPDU |
/// | ACSE (`[APPLICATION n]`) | [`Garbled::Association`] |
/// | reject (`a4`) | [`Garbled::Ignored`] |
/// | invoke, result, error: not valid BER | [`Fault::Encoding`]: badlyStructuredPDU |
/// | ... valid BER, the ROS envelope wrong | [`Fault::Envelope`]: mistypedPDU |
/// | ... only the argument / result / parameter wrong | [`Fault::Content`] |
fn undecodable(pdu: &Bytes, e: DecodeError) -> Message {
    let id = e.invoke_id;
    let first = pdu.first().copied();
    let fault = || {
        if !well_formed(pdu) {
            Fault::Encoding
        } else if !rose_envelope(pdu) {
            Fault::Envelope
        } else {
            Fault::Content
        }
    };
    let guess = match first {
        None => Garbled::NotAFrame,
        Some(0xa1) => Garbled::Invoke {
            invoke_id: id,
            event_report: peek_opcode(pdu) == Some(opcode::CSTA_EVENT_REPORT),
            fault: fault(),
        },
        Some(0xa2) => Garbled::Result {
            invoke_id: id,
            fault: fault(),
        },
        Some(0xa3) => Garbled::Error {
            invoke_id: id,
            fault: fault(),
        },
        Some(0xa4) => Garbled::Ignored,
        Some(b) if b & 0xe0 == 0x60 => Garbled::Association,
        Some(_) if well_formed(pdu) => Garbled::Unknown,
        Some(_) => Garbled::NotAFrame,
    };
    Message::Undecodable {
        error: e.to_string(),
        dump: ctigate_csta::json::hex(pdu),
        guess,
    }
}

/// X.690 well-formed: the frame is exactly one TLV, and the contents of every constructed
/// value are TLVs up to its end (to the default depth limit).
fn well_formed(pdu: &[u8]) -> bool {
    fn inside(buf: &[u8], t: &Tlv, depth: u32, l: &Limits) -> bool {
        !t.constructed()
            || Children::new(buf, t, depth, l)
                .all(|c| c.is_ok_and(|c| inside(buf, &c, depth + 1, l)))
    }
    let l = Limits::DEFAULT;
    match ber::read_tlv(pdu, 0, pdu.len(), 1, &l) {
        Ok(top) => top.end == pdu.len() && inside(pdu, &top, 1, &l),
        Err(_) => false,
    }
}

/// The ROS envelope of a well-formed invoke, returnResult or returnError is as X.880 has
/// it (whatever its argument, result or parameter holds): `invokeId` INTEGER or NULL,
/// `linkedId` `[0]`/`[1]` (invoke), `opcode`/`errcode` a local INTEGER or an OID, at most
/// one value after it; a result is `SEQUENCE { opcode, result }`.
fn rose_envelope(pdu: &[u8]) -> bool {
    let l = Limits::DEFAULT;
    let Ok(top) = ber::read_tlv(pdu, 0, pdu.len(), 1, &l) else {
        return false;
    };
    let kids = |t: &Tlv, depth| -> Option<Vec<Tlv>> {
        Children::new(pdu, t, depth, &l)
            .collect::<Result<Vec<_>, _>>()
            .ok()
    };
    let Some(k) = kids(&top, 1) else {
        return false;
    };
    let prim = |t: &Tlv, class: Class, n: u32| t.tag() == Tag::new(class, n) && !t.constructed();
    let int = |t: &Tlv| {
        prim(t, Class::Universal, 2) && (1..=8).contains(&(t.content_end - t.content_start))
    };
    let null = |t: &Tlv| prim(t, Class::Universal, 5) && t.content_end == t.content_start;
    let code =
        |t: &Tlv| int(t) || (prim(t, Class::Universal, 6) && t.content_end > t.content_start);
    let Some((id, rest)) = k.split_first() else {
        return false;
    };
    if !(int(id) || null(id)) {
        return false;
    }
    match pdu[0] {
        0xa1 => {
            let rest = match rest.first() {
                Some(t) if prim(t, Class::Context, 0) && int_content(t) => &rest[1..],
                Some(t) if prim(t, Class::Context, 1) && t.content_end == t.content_start => {
                    &rest[1..]
                }
                _ => rest,
            };
            rest.first().is_some_and(code) && rest.len() <= 2
        }
        0xa2 => match rest {
            [] => true,
            [seq] if seq.tag() == Tag::universal(16) && seq.constructed() => {
                kids(seq, 2).is_some_and(|r| r.len() == 2 && code(&r[0]))
            }
            _ => false,
        },
        0xa3 => rest.first().is_some_and(code) && rest.len() <= 2,
        _ => false,
    }
}

/// A primitive value of 1 to 8 content octets (an INTEGER under an implicit tag).
fn int_content(t: &Tlv) -> bool {
    (1..=8).contains(&(t.content_end - t.content_start))
}

fn build_aarq(cfg: &LinkConfig) -> Result<Bytes, String> {
    let context: Oid = cfg.context.parse().map_err(|_| {
        format!(
            "context {:?} is not a dotted OID (e.g. 1.3.12.0.218)",
            cfg.context
        )
    })?;
    if let Some(v) = cfg.versions.iter().find(|v| **v > 23) {
        return Err(format!(
            "CSTA version bit {v} does not exist (0..=23; ECMA-285 ed1/ed2/ed3/ed4 = 2/4/14/18)"
        ));
    }
    let p = AarqParams {
        context,
        versions: cfg.versions.clone(),
        mechanism: None,
        authentication: cfg.password.clone(),
    };
    let a = Acse::aarq(&p).map_err(|e| format!("cannot build the AARQ: {e}"))?;
    a.encode()
        .map(Bytes::from)
        .map_err(|e| format!("cannot encode the AARQ: {e}"))
}

/// X.227 ABRT abort-diagnostic (ABRT-diagnostic ENUMERATED).
fn abort_diagnostic_name(v: i64) -> String {
    match v {
        1 => "no-reason-given".into(),
        2 => "protocol-error".into(),
        3 => "authentication-mechanism-name-not-recognized".into(),
        4 => "authentication-mechanism-name-required".into(),
        5 => "authentication-failure".into(),
        6 => "authentication-required".into(),
        n => n.to_string(),
    }
}

/// X.227 Associate-source-diagnostic acse-service-provider values.
fn service_provider_diagnostic_name(v: i64) -> &'static str {
    match v {
        0 => "null",
        1 => "no-reason-given",
        2 => "no-common-acse-version",
        _ => "unknown",
    }
}

/// The opcode of an invoke PDU the codec could not read (to tell an event report, which is
/// never answered, from the rest): `a1 L 02 L id [80 L .. | 81 00] 02 L opcode`.
fn peek_opcode(pdu: &[u8]) -> Option<i64> {
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = b.split_first()?;
        let (&l0, rest) = rest.split_first()?;
        let (len, rest) = match l0 {
            0..=0x7f => (usize::from(l0), rest),
            0x81 => (usize::from(*rest.first()?), &rest[1..]),
            0x82 => (
                usize::from(*rest.first()?) << 8 | usize::from(*rest.get(1)?),
                rest.get(2..)?,
            ),
            _ => return None,
        };
        if rest.len() < len {
            return None;
        }
        Some((tag, &rest[..len], &rest[len..]))
    }
    let (tag, body, _) = tlv(pdu).or_else(|| {
        // a truncated outer length: read the children that are there
        pdu.get(2..).map(|body| (pdu[0], body, &[][..]))
    })?;
    if tag != 0xa1 {
        return None;
    }
    let (t, _, mut rest) = tlv(body)?;
    if t != 0x02 {
        return None;
    }
    let (mut t, mut v, r) = tlv(rest)?;
    if t == 0x80 || t == 0x81 {
        rest = r;
        (t, v, _) = tlv(rest)?;
    }
    if t != 0x02 || v.is_empty() || v.len() > 8 {
        return None;
    }
    let mut n: i64 = if v[0] & 0x80 != 0 { -1 } else { 0 };
    for b in v {
        n = (n << 8) | i64::from(*b);
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use ctigate_csta_model::events::Event;
    use tokio_util::codec::{Decoder, Encoder};

    /// `vectors.tsv` row `delivered_event`: cSTAEventReport delivered, crossRefIdentifier
    /// 00000001, connection both(0042, 202) (as in benches/codec.rs).
    const DELIVERED: &str = "a1480201090201153040550400000001a038a4366b0f300d80020042a10730058003323032630730058003323032610730058003323031620730058003323032640287004e01020a0116";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// What is kept of a decoded event (its callID in the tracker, its crossRefIdentifier)
    /// points into an allocation of the frame's own, never into the read buffer that
    /// frames are split from: many frames come in one read, and a callID kept for a call
    /// whose end was shed once held the whole 16 KiB buffer (with every other frame of it)
    /// alive.
    #[test]
    fn a_decoded_event_keeps_no_part_of_the_read_buffer() {
        let pdu = unhex(DELIVERED);
        let mut codec = U16Codec::new();
        let mut buf = BytesMut::with_capacity(16384);
        for _ in 0..100 {
            codec.encode(&pdu[..], &mut buf).expect("framed");
        }
        let read = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.capacity();
        let mut ber = Ber::from_config(&LinkConfig::default()).expect("the default config");
        for _ in 0..100 {
            let frame = codec.decode(&mut buf).expect("a frame").expect("whole");
            let Message::EventReport(Ok(r)) = ber.decode(frame) else {
                panic!("not an event report")
            };
            let Event::Delivered(d) = &r.event else {
                panic!("{:?}", r.event)
            };
            let call = d.connection.call_id().expect("a callID");
            assert_eq!(&call[..], [0x00, 0x42]);
            assert!(!read.contains(&(call.as_ptr() as usize)), "the callID");
            assert_eq!(&r.xref.0[..], [0, 0, 0, 1]);
            assert!(!read.contains(&(r.xref.0.as_ptr() as usize)), "the xref");
        }
        assert!(buf.is_empty());
    }
}
