//! What a wire dialect gives the link session: the [`Dialect`] trait, and the neutral
//! [`Message`] a frame from the switch decodes into.
//!
//! The session ([`super::Session`]) owns everything that does not depend on the encoding:
//! the association state machine, the invoke-id table with deadlines, correlation of
//! results, errors and rejects, the monitor table, keep-alive, release and reconnect
//! backoff. A dialect owns the bytes: its framing codec (run by the driver), association
//! start (ECMA-285 over X.227 ACSE: an optional pre-association handshake, then AARQ/AARE;
//! ECMA-323 CSTA-XML: StartApplicationSession and its positive or negative response),
//! encoding of typed invokes, results, errors and rejects, decoding of a frame into a
//! [`Message`], the invoke-id range, and the keep-alive request.
//!
//! [`super::Ber`] is the ECMA-285 BER dialect. A CSTA-XML dialect adds another
//! implementation of this trait, not another session.

use super::LinkConfig;
use ctigate_csta_model::events::EventReport;
use ctigate_csta_model::ops::{
    Argument, Operation, OperationResult, SystemStatus, SystemStatusArg,
};
use ctigate_csta_model::reject::Problem;
use ctigate_csta_model::types::{TypeError, UniversalFailure};
use std::fmt;
use tokio_util::codec::{Decoder, Encoder};

/// A CSTA wire dialect: framing, association start, and the encoding of typed messages.
///
/// Methods that build a frame get everything they need as arguments; the dialect keeps what
/// it derived from the configuration (BER: the AARQ, built once) and, through
/// [`Dialect::decode`], what the association told it. The session owns everything else.
pub trait Dialect: fmt::Debug + Send + Sized + 'static {
    /// What the transport carries: one message, or a pre-association signal.
    type Frame: fmt::Debug + Clone + PartialEq + Send + 'static;
    /// The framing codec the driver runs over the byte stream (one per connection).
    type Codec: Decoder<Item = Self::Frame, Error: fmt::Display>
        + Encoder<Self::Frame, Error: fmt::Display>
        + Send
        + 'static;

    /// Our first invoke id; ours are `FIRST_INVOKE_ID..=MAX_INVOKE_ID`, wrapping, skipping
    /// ids in flight (X.880 InvokeId is an INTEGER; a dialect bounds it by what peers
    /// accept: BER links 1..=32767, CSTA-XML `0000..9998`).
    const FIRST_INVOKE_ID: i64 = 1;
    /// Highest invoke id we use (see [`Dialect::FIRST_INVOKE_ID`]).
    const MAX_INVOKE_ID: i64;

    /// The dialect for this configuration; an error says why the configuration cannot
    /// work (then the session stays closed and says so).
    fn from_config(cfg: &LinkConfig) -> Result<Self, String>;

    /// A framing codec for a new connection.
    fn codec(&self) -> Self::Codec;

    /// The pre-association signal sent when the transport opens, if this dialect (as
    /// configured) has one; the session then waits for [`Message::Handshake`] before
    /// [`Dialect::associate`].
    fn handshake(&self) -> Option<Self::Frame>;

    /// The association request (X.227 AARQ; CSTA-XML StartApplicationSession).
    fn associate(&self) -> Self::Frame;

    /// Orderly release: the request (X.227 RLRQ; CSTA-XML StopApplicationSession).
    fn release(&self) -> Option<Self::Frame>;

    /// Orderly release: the answer to the switch's release request (X.227 RLRE).
    fn release_response(&self) -> Option<Self::Frame>;

    /// Abort the association (X.227 ABRT); `None` when the dialect just closes.
    fn abort(&self) -> Option<Self::Frame>;

    /// An invoke of `arg`'s operation (X.880 Invoke); an error (nothing sent) when it cannot
    /// be encoded or exceeds the frame limit.
    fn invoke(&self, invoke_id: i64, arg: &Argument) -> Result<Self::Frame, String>;

    /// The result of `op` (X.880 ReturnResult); `None` for the `noData` result.
    fn result(
        &self,
        invoke_id: i64,
        op: Operation,
        result: Option<&OperationResult>,
    ) -> Result<Self::Frame, String>;

    /// A universalFailure answer (X.880 ReturnError, ECMA-285 error-definition).
    fn error(&self, invoke_id: i64, failure: &UniversalFailure) -> Result<Self::Frame, String>;

    /// A reject (X.880 Reject); `None` when the dialect has no such message.
    fn reject(&self, invoke_id: Option<i64>, problem: Problem) -> Option<Self::Frame>;

    /// What a frame from the switch says. Never fails: what cannot be read is
    /// [`Message::Undecodable`], with the dialect's best guess of what it was. Mutable, so
    /// that a dialect can keep what the association told it (CSTA-XML: the sessionID of
    /// StartApplicationSessionPosResponse, needed to stop the session).
    fn decode(&mut self, frame: Self::Frame) -> Message;

    /// Our keep-alive request with `invoke_id` (WIRE.md §9: systemStatus normal, the
    /// default; a CSTA-XML dialect for ECMA-354 sessions may send
    /// ResetApplicationSessionTimer instead). Any answer to it proves the switch alive.
    fn keepalive(&self, invoke_id: i64) -> Result<Self::Frame, String> {
        self.invoke(
            invoke_id,
            &SystemStatusArg::new(SystemStatus::Normal).into(),
        )
    }
}

/// A frame from the switch, in the dialect's neutral reading.
///
/// As large as an event report (the common case); transient.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A pre-association signal; `expected` when it is the one that lets the association
    /// start (BER: `P`), else `text` says what came.
    Handshake { expected: bool, text: String },
    /// Association control (X.227 ACSE; CSTA-XML application session services); `name`
    /// for messages (`AARE`).
    Association {
        name: &'static str,
        what: Association,
    },
    /// An invoke of the switch (its own invoke-id space), not an event report.
    Invoke {
        invoke_id: Option<i64>,
        /// The local operation code (`None`: global or absent).
        opcode: Option<i64>,
        argument: Result<Argument, TypeError>,
    },
    /// A cSTAEventReport (`ALWAYS RESPONDS FALSE`: never answered), read leniently.
    EventReport(Result<EventReport, TypeError>),
    /// A result; `Ok(None)` when it carries none.
    Result {
        invoke_id: Option<i64>,
        result: Result<Option<OperationResult>, TypeError>,
    },
    /// An error answer.
    Error {
        invoke_id: Option<i64>,
        error: SwitchError,
    },
    /// The switch rejected something of ours.
    Reject {
        invoke_id: Option<i64>,
        problem: Problem,
    },
    /// A frame that could not be read: `error` says why, `dump` shows it (hex), `guess`
    /// what it seems to be (for the X.880 answer).
    Undecodable {
        error: String,
        dump: String,
        guess: Garbled,
    },
}

impl Message {
    /// `invoke`, `result`, `error`, `reject`, ... for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Handshake { .. } => "pre-association signal",
            Message::Association { name, .. } => name,
            Message::Invoke { .. } | Message::EventReport(_) => "invoke",
            Message::Result { .. } => "result",
            Message::Error { .. } => "error",
            Message::Reject { .. } => "reject",
            Message::Undecodable { .. } => "undecodable frame",
        }
    }
}

/// An association-control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Association {
    /// The association is accepted (AARE accepted); `detail` for the log (the versions).
    Accepted { detail: String },
    /// The association is refused (AARE rejected): the result and the diagnostic's name.
    Rejected { result: String, diagnostic: String },
    /// The switch aborted (ABRT); `reason` says how.
    Abort { reason: String },
    /// The switch asks for release (RLRQ).
    ReleaseRequest,
    /// The switch answers our release (RLRE).
    ReleaseResponse,
    /// Anything else (an AARQ from the switch, ...): unexpected from a switch.
    Other,
}

/// An error answer, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchError {
    /// universalFailure with its parameter.
    Failure(UniversalFailure),
    /// An error code we do not know (X.880 returnError unrecognizedError); the code.
    Unrecognized(String),
    /// universalFailure whose parameter cannot be read (returnError mistypedParameter).
    Unreadable(String),
}

/// What an undecodable frame seems to be, as far as the X.880 answer needs it (the
/// session's `on_undecodable` maps it to a reject, silence, an abort or a reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Garbled {
    /// An invoke; `event_report` when its operation is cSTAEventReport (never answered).
    Invoke {
        invoke_id: Option<i64>,
        event_report: bool,
        fault: Fault,
    },
    /// A result.
    Result {
        invoke_id: Option<i64>,
        fault: Fault,
    },
    /// An error answer.
    Error {
        invoke_id: Option<i64>,
        fault: Fault,
    },
    /// Nothing to answer (a reject: a reject is never rejected).
    Ignored,
    /// Association control.
    Association,
    /// A well-formed message of a type the dialect does not have (X.880 general
    /// unrecognizedPDU).
    Unknown,
    /// Not a message at all where one must start (BER: an empty frame, or octets that are
    /// neither an APDU nor even one BER value): the framing is lost and the link is reset.
    NotAFrame,
}

/// Where an operation message (invoke, result, error) is broken: it decides the X.880
/// problem of the reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Not valid in the transfer syntax (BER: X.690): general badlyStructuredPDU.
    Encoding,
    /// Well encoded but not the message its type says (a component missing, of the wrong
    /// type, or extra): general mistypedPDU.
    Envelope,
    /// Sound but for its argument, result or error parameter: invoke mistypedArgument,
    /// returnResult mistypedResult, returnError mistypedParameter.
    Content,
}

#[cfg(test)]
mod tests;
