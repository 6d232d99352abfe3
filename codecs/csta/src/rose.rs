//! ROSE APDUs (X.880 Remote-Operations-Generic-ROS-PDUs, IMPLICIT TAGS):
//!
//! ```asn1
//! ROS ::= CHOICE { invoke [1] Invoke, returnResult [2] ReturnResult,
//!                  returnError [3] ReturnError, reject [4] Reject }
//! Invoke ::= SEQUENCE { invokeId InvokeId,
//!     linkedId CHOICE { present [0] IMPLICIT present < InvokeId, absent [1] IMPLICIT NULL } OPTIONAL,
//!     opcode OPERATION.&operationCode, argument OPERATION.&ArgumentType OPTIONAL }
//! ReturnResult ::= SEQUENCE { invokeId InvokeId,
//!     result SEQUENCE { opcode OPERATION.&operationCode, result OPERATION.&ResultType } OPTIONAL }
//! ReturnError ::= SEQUENCE { invokeId InvokeId, errcode ERROR.&errorCode, parameter ERROR.&ParameterType OPTIONAL }
//! Reject ::= SEQUENCE { invokeId InvokeId, problem CHOICE { general [0] GeneralProblem,
//!     invoke [1] InvokeProblem, returnResult [2] ReturnResultProblem, returnError [3] ReturnErrorProblem } }
//! InvokeId ::= CHOICE { present INTEGER, absent NULL }
//! Code ::= CHOICE { local INTEGER, global OBJECT IDENTIFIER }
//! ```
//! Arguments, results and error parameters are typed by the operation / error code
//! through the ECMA-285 table ([`crate::schema::OPERATIONS`]); unknown codes keep them raw.

use crate::ber::{self, read_tlv, Children, Limits, Tlv};
use crate::codec;
use crate::error::{DecodeError, DecodeErrorKind as K, EncodeError};
use crate::schema::{self, Class, Tag, TypeId};
use crate::value::Value;
use bytes::Bytes;

/// X.880 InvokeId.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvokeId {
    Present(i64),
    Absent,
}

impl InvokeId {
    pub fn value(self) -> Option<i64> {
        match self {
            InvokeId::Present(i) => Some(i),
            InvokeId::Absent => None,
        }
    }
}

/// X.880 Code: CSTA uses local values only; global ones are kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Code {
    Local(i64),
    Global(Bytes),
}

impl Code {
    pub fn local(&self) -> Option<i64> {
        match self {
            Code::Local(i) => Some(*i),
            Code::Global(_) => None,
        }
    }
}

pub use ctigate_csta_model::Payload;

/// BER of a payload: the schema-driven encoding of its value, or the raw TLV of an untyped
/// one (unknown code).
fn encode_payload(p: &Payload, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match p.ty {
        Some(t) => codec::encode_into(t, &p.value, out),
        None => match &p.value {
            Value::Raw(b) => {
                out.extend_from_slice(b);
                Ok(())
            }
            _ => Err(EncodeError::new("an untyped payload must be a raw TLV")),
        },
    }
}

/// Linked invoke id (X.880 Invoke.linkedId).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkedId {
    Present(i64),
    Absent,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Invoke {
    pub invoke_id: InvokeId,
    pub linked_id: Option<LinkedId>,
    pub opcode: Code,
    pub argument: Option<Payload>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReturnResult {
    pub invoke_id: InvokeId,
    /// `(opcode, result)`; absent when the operation returns nothing.
    pub result: Option<(Code, Payload)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReturnError {
    pub invoke_id: InvokeId,
    pub errcode: Code,
    pub parameter: Option<Payload>,
}

pub use ctigate_csta_model::reject::Problem;

/// The context tag number of a problem's CHOICE alternative (`general [0]`, `invoke [1]`,
/// `returnResult [2]`, `returnError [3]`).
fn problem_tag_number(p: &Problem) -> u32 {
    match p {
        Problem::General(_) => 0,
        Problem::Invoke(_) => 1,
        Problem::ReturnResult(_) => 2,
        Problem::ReturnError(_) => 3,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub invoke_id: InvokeId,
    pub problem: Problem,
}

/// A ROSE APDU.
#[derive(Debug, Clone, PartialEq)]
pub enum Rose {
    Invoke(Invoke),
    ReturnResult(ReturnResult),
    ReturnError(ReturnError),
    Reject(Reject),
}

impl Rose {
    pub fn invoke_id(&self) -> InvokeId {
        match self {
            Rose::Invoke(i) => i.invoke_id,
            Rose::ReturnResult(r) => r.invoke_id,
            Rose::ReturnError(e) => e.invoke_id,
            Rose::Reject(r) => r.invoke_id,
        }
    }
    /// `invoke`, `result`, `error` or `reject`.
    pub fn kind(&self) -> &'static str {
        match self {
            Rose::Invoke(_) => "invoke",
            Rose::ReturnResult(_) => "result",
            Rose::ReturnError(_) => "error",
            Rose::Reject(_) => "reject",
        }
    }
    /// The operation code of an invoke or a result.
    pub fn opcode(&self) -> Option<&Code> {
        match self {
            Rose::Invoke(i) => Some(&i.opcode),
            Rose::ReturnResult(ReturnResult {
                result: Some((c, _)),
                ..
            }) => Some(c),
            _ => None,
        }
    }

    /// Decode a ROSE APDU that fills `buf`.
    pub fn decode(buf: &Bytes, limits: &Limits) -> Result<Rose, DecodeError> {
        if buf.is_empty() {
            return Err(DecodeError::new(K::Empty, 0));
        }
        let top = read_tlv(buf, 0, buf.len(), 1, limits)?;
        if top.end != buf.len() {
            return Err(DecodeError::new(K::TrailingData, top.end));
        }
        if top.tag().class != Class::Context || !(1..=4).contains(&top.tag().number) {
            return Err(DecodeError::new(
                K::UnexpectedTag {
                    found: top.tag(),
                    constructed: top.constructed(),
                },
                0,
            )
            .within("ROSE"));
        }
        if !top.constructed() {
            return Err(DecodeError::new(K::BadForm, 0).within("ROSE"));
        }
        let name =
            ["", "invoke", "returnResult", "returnError", "reject"][top.tag().number as usize];
        let mut r = RoseReader {
            buf,
            limits,
            kids: Children::new(buf, &top, 1, limits),
            top,
            invoke_id: None,
        };
        let out = r.read(name);
        out.map_err(|e| {
            let mut e = e.within(name);
            e.invoke_id = r.invoke_id;
            e
        })
    }

    /// Encode canonically.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out)?;
        Ok(out)
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let ctx = |n| Tag::new(Class::Context, n);
        match self {
            Rose::Invoke(i) => {
                let m = ber::begin(out, ctx(1), true);
                write_invoke_id(out, i.invoke_id);
                match i.linked_id {
                    Some(LinkedId::Present(l)) => {
                        let (b, s) = ber::integer_content(l);
                        ber::write_primitive(out, ctx(0), &b[s..]);
                    }
                    Some(LinkedId::Absent) => ber::write_primitive(out, ctx(1), &[]),
                    None => {}
                }
                write_code(out, &i.opcode);
                if let Some(a) = &i.argument {
                    encode_payload(a, out).map_err(|e| e.within("argument"))?;
                }
                ber::finish(out, m);
            }
            Rose::ReturnResult(r) => {
                let m = ber::begin(out, ctx(2), true);
                write_invoke_id(out, r.invoke_id);
                if let Some((code, p)) = &r.result {
                    let m2 = ber::begin(out, Tag::universal(16), true);
                    write_code(out, code);
                    encode_payload(p, out).map_err(|e| e.within("result"))?;
                    ber::finish(out, m2);
                }
                ber::finish(out, m);
            }
            Rose::ReturnError(e) => {
                let m = ber::begin(out, ctx(3), true);
                write_invoke_id(out, e.invoke_id);
                write_code(out, &e.errcode);
                if let Some(p) = &e.parameter {
                    encode_payload(p, out).map_err(|e| e.within("parameter"))?;
                }
                ber::finish(out, m);
            }
            Rose::Reject(r) => {
                let m = ber::begin(out, ctx(4), true);
                write_invoke_id(out, r.invoke_id);
                let (b, s) = ber::integer_content(r.problem.value());
                ber::write_primitive(out, ctx(problem_tag_number(&r.problem)), &b[s..]);
                ber::finish(out, m);
            }
        }
        Ok(())
    }
}

fn write_invoke_id(out: &mut Vec<u8>, id: InvokeId) {
    match id {
        InvokeId::Present(i) => {
            let (b, s) = ber::integer_content(i);
            ber::write_primitive(out, Tag::universal(2), &b[s..]);
        }
        InvokeId::Absent => ber::write_primitive(out, Tag::universal(5), &[]),
    }
}

fn write_code(out: &mut Vec<u8>, c: &Code) {
    match c {
        Code::Local(i) => {
            let (b, s) = ber::integer_content(*i);
            ber::write_primitive(out, Tag::universal(2), &b[s..]);
        }
        Code::Global(oid) => ber::write_primitive(out, Tag::universal(6), oid),
    }
}

struct RoseReader<'a> {
    buf: &'a Bytes,
    limits: &'a Limits,
    kids: Children<'a>,
    top: Tlv,
    invoke_id: Option<i64>,
}

impl RoseReader<'_> {
    fn next(&mut self, field: &'static str) -> Result<Option<Tlv>, DecodeError> {
        self.kids.next().transpose().map_err(|e| e.within(field))
    }
    fn need(&mut self, field: &'static str) -> Result<Tlv, DecodeError> {
        self.next(field)?
            .ok_or_else(|| DecodeError::new(K::MissingField(field), self.top.content_end))
    }
    fn int(&self, t: &Tlv, field: &'static str) -> Result<i64, DecodeError> {
        if t.constructed() {
            return Err(DecodeError::new(K::BadForm, t.start).within(field));
        }
        ber::parse_integer(&self.buf[t.content_start..t.content_end], t.start)
            .map_err(|e| e.within(field))
    }
    fn invoke_id(&mut self, t: &Tlv) -> Result<InvokeId, DecodeError> {
        match (t.tag().class, t.tag().number) {
            (Class::Universal, 2) => {
                let v = self.int(t, "invokeId")?;
                self.invoke_id = Some(v);
                Ok(InvokeId::Present(v))
            }
            (Class::Universal, 5) if !t.constructed() && t.content_start == t.content_end => {
                Ok(InvokeId::Absent)
            }
            _ => Err(unexpected(t).within("invokeId")),
        }
    }
    fn code(&self, t: &Tlv, field: &'static str) -> Result<Code, DecodeError> {
        match (t.tag().class, t.tag().number) {
            (Class::Universal, 2) => Ok(Code::Local(self.int(t, field)?)),
            (Class::Universal, 6) if !t.constructed() && t.content_end > t.content_start => {
                Ok(Code::Global(self.buf.slice(t.content_start..t.content_end)))
            }
            _ => Err(unexpected(t).within(field)),
        }
    }
    fn payload(&self, ty: Option<TypeId>, t: &Tlv, depth: u32) -> Result<Payload, DecodeError> {
        match ty {
            Some(ty) => Ok(Payload::typed(
                ty,
                codec::decode_tlv(ty, self.buf, t, depth, self.limits)?,
            )),
            None => Ok(Payload {
                ty: None,
                value: Value::Raw(self.buf.slice(t.start..t.end)),
            }),
        }
    }
    fn done(&mut self) -> Result<(), DecodeError> {
        match self.kids.next() {
            None => Ok(()),
            Some(Ok(t)) => Err(DecodeError::new(K::TrailingData, t.start)),
            Some(Err(e)) => Err(e),
        }
    }

    fn read(&mut self, name: &str) -> Result<Rose, DecodeError> {
        let t = self.need("invokeId")?;
        let invoke_id = self.invoke_id(&t)?;
        match name {
            "invoke" => {
                let mut t = self.need("opcode")?;
                let mut linked_id = None;
                if t.tag().class == Class::Context {
                    linked_id = Some(match t.tag().number {
                        0 => LinkedId::Present(self.int(&t, "linkedId")?),
                        1 if !t.constructed() && t.content_start == t.content_end => {
                            LinkedId::Absent
                        }
                        _ => return Err(unexpected(&t).within("linkedId")),
                    });
                    t = self.need("opcode")?;
                }
                let opcode = self.code(&t, "opcode")?;
                let ty = opcode
                    .local()
                    .and_then(schema::operation)
                    .map(|o| o.argument);
                let argument = match self.next("argument")? {
                    Some(a) => Some(self.payload(ty, &a, 2).map_err(|e| e.within("argument"))?),
                    None => None,
                };
                self.done()?;
                Ok(Rose::Invoke(Invoke {
                    invoke_id,
                    linked_id,
                    opcode,
                    argument,
                }))
            }
            "returnResult" => {
                let result = match self.next("result")? {
                    None => None,
                    Some(seq) => {
                        if seq.tag() != Tag::universal(16) || !seq.constructed() {
                            return Err(unexpected(&seq).within("result"));
                        }
                        let mut inner = Children::new(self.buf, &seq, 2, self.limits);
                        let ct = inner.next().ok_or_else(|| {
                            DecodeError::new(K::MissingField("opcode"), seq.content_end)
                        })??;
                        let code = self.code(&ct, "opcode")?;
                        let ty = code
                            .local()
                            .and_then(schema::operation)
                            .and_then(|o| o.result);
                        let rt = inner.next().ok_or_else(|| {
                            DecodeError::new(K::MissingField("result"), seq.content_end)
                        })??;
                        let p = self.payload(ty, &rt, 3).map_err(|e| e.within("result"))?;
                        if let Some(x) = inner.next() {
                            let at = x.map(|t| t.start).unwrap_or(seq.content_end);
                            return Err(DecodeError::new(K::TrailingData, at).within("result"));
                        }
                        Some((code, p))
                    }
                };
                self.done()?;
                Ok(Rose::ReturnResult(ReturnResult { invoke_id, result }))
            }
            "returnError" => {
                let t = self.need("errcode")?;
                let errcode = self.code(&t, "errcode")?;
                let ty = errcode.local().and_then(schema::error).map(|e| e.parameter);
                let parameter = match self.next("parameter")? {
                    Some(p) => Some(self.payload(ty, &p, 2).map_err(|e| e.within("parameter"))?),
                    None => None,
                };
                self.done()?;
                Ok(Rose::ReturnError(ReturnError {
                    invoke_id,
                    errcode,
                    parameter,
                }))
            }
            _ => {
                let t = self.need("problem")?;
                if t.tag().class != Class::Context || t.tag().number > 3 {
                    return Err(unexpected(&t).within("problem"));
                }
                let v = self.int(&t, "problem")?;
                let problem = match t.tag().number {
                    0 => Problem::General(v),
                    1 => Problem::Invoke(v),
                    2 => Problem::ReturnResult(v),
                    _ => Problem::ReturnError(v),
                };
                self.done()?;
                Ok(Rose::Reject(Reject { invoke_id, problem }))
            }
        }
    }
}

fn unexpected(t: &Tlv) -> DecodeError {
    DecodeError::new(
        K::UnexpectedTag {
            found: t.tag(),
            constructed: t.constructed(),
        },
        t.start,
    )
}
