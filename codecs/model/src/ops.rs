//! The ECMA-285 operations the gateway and the switch simulator use: [`Operation`] (local
//! codes), a typed argument struct for every operation (the event report's is
//! [`crate::events::EventReport`]), typed results where the result carries data, and
//! builders for the PDUs that carry them.
//!
//! Every argument struct has a field for every component of its ASN.1 type (common ones
//! typed, rarely used ones as [`Value`]), `extensions` as [`CommonArguments`], and `rest` for
//! unknown elements (kept and re-emitted in place), plus `new` with the mandatory
//! components, `from_value`, `to_value`, `payload` and `invoke`.
//!
//! Traps handled by the field names (WIRE.md §6.4, §13): ReconnectCall is
//! (activeCall, heldCall) while Alternate/Transfer/Conference are (heldCall, activeCall);
//! ConsultationCall consultedDevice is `[1] EXPLICIT`; MakeCall calledDirectoryNumber is a
//! plain DeviceID; GenerateDigits charactersToSend is an IA5String.

use crate::events::EventReport;
use crate::opcode;
use crate::payload::Payload;
use crate::schema::{self, ty, TypeId};
use crate::types::{
    open_enum, typed_struct, AgentState, CommonArguments, ConnectionId, ConnectionList, CstaObject,
    DeviceId, EventCause, LocalConnectionState, MonitorCrossRefId, Party, PendingAgentState,
    PrivateData, ReqAgentState, TypeError, Typed,
};
use crate::value::Value;
use bytes::Bytes;

// The typed_struct! invocations, generated from the ASN.1 by codecs/csta/gen/gen_typed.py
// (selection of components and docs: codecs/csta/gen/gen_typed_table.py).
mod generated;
pub use generated::*;

macro_rules! operations {
    ($( $v:ident = $code:ident $name:literal $arg:ident $res:expr ),* $(,)?) => {
        /// An ECMA-285 operation, by its local code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation {
            $( #[doc = concat!("`", $name, "` (local code [`opcode::", stringify!($code), "`])")] $v, )*
        }

        impl Operation {
            pub const ALL: [Operation; 24] = [$(Operation::$v),*];

            /// The local operation code.
            pub fn code(self) -> i64 {
                match self { $(Operation::$v => opcode::$code,)* }
            }
            /// The ASN.1 value name (`makeCall`).
            pub fn name(self) -> &'static str {
                match self { $(Operation::$v => $name,)* }
            }
            pub fn from_code(code: i64) -> Option<Operation> {
                match code {
                    $(opcode::$code => Some(Operation::$v),)*
                    _ => None,
                }
            }
            pub fn from_name(name: &str) -> Option<Operation> {
                match name {
                    $($name => Some(Operation::$v),)*
                    _ => None,
                }
            }
            /// The ARGUMENT type.
            pub fn argument_type(self) -> TypeId {
                match self { $(Operation::$v => ty::$arg,)* }
            }
            /// The RESULT type (`None`: the operation never answers).
            pub fn result_type(self) -> Option<TypeId> {
                match self { $(Operation::$v => $res,)* }
            }
        }
    };
}

operations! {
    AlternateCall = ALTERNATE_CALL "alternateCall" AlternateCallArgument Some(ty::AlternateCallResult),
    AnswerCall = ANSWER_CALL "answerCall" AnswerCallArgument Some(ty::AnswerCallResult),
    ClearCall = CLEAR_CALL "clearCall" ClearCallArgument Some(ty::ClearCallResult),
    ClearConnection = CLEAR_CONNECTION "clearConnection" ClearConnectionArgument
        Some(ty::ClearConnectionResult),
    ConferenceCall = CONFERENCE_CALL "conferenceCall" ConferenceCallArgument Some(ty::ConferenceCallResult),
    ConsultationCall = CONSULTATION_CALL "consultationCall" ConsultationCallArgument
        Some(ty::ConsultationCallResult),
    HoldCall = HOLD_CALL "holdCall" HoldCallArgument Some(ty::HoldCallResult),
    MakeCall = MAKE_CALL "makeCall" MakeCallArgument Some(ty::MakeCallResult),
    ReconnectCall = RECONNECT_CALL "reconnectCall" ReconnectCallArgument Some(ty::ReconnectCallResult),
    RetrieveCall = RETRIEVE_CALL "retrieveCall" RetrieveCallArgument Some(ty::RetrieveCallResult),
    TransferCall = TRANSFER_CALL "transferCall" TransferCallArgument Some(ty::TransferCallResult),
    CstaEventReport = CSTA_EVENT_REPORT "cSTAEventReport" CSTAEventReportArgument None,
    SingleStepTransfer = SINGLE_STEP_TRANSFER "singleStepTrans" SingleStepTransArgument
        Some(ty::SingleStepTransResult),
    Escape = ESCAPE "escape" EscapeArgument Some(ty::EscapeResult),
    MonitorStart = MONITOR_START "monitorStart" MonitorStartArgument Some(ty::MonitorStartResult),
    MonitorStop = MONITOR_STOP "monitorStop" MonitorStopArgument Some(ty::MonitorStopResult),
    SnapshotDevice = SNAPSHOT_DEVICE "snapshotDevice" SnapshotDeviceArgument Some(ty::SnapshotDeviceResult),
    SnapshotCall = SNAPSHOT_CALL "snapshotCall" SnapshotCallArgument Some(ty::SnapshotCallResult),
    SnapshotDeviceData = SNAPSHOT_DEVICE_DATA "snapshotDeviceData" SnapshotDeviceDataArgument None,
    SystemRegister = SYSTEM_REGISTER "systemRegister" SystemRegisterArgument Some(ty::SystemRegisterResult),
    SystemStatus = SYSTEM_STATUS "systemStatus" SystemStatusArg Some(ty::SystemStatusRes),
    GenerateDigits = GENERATE_DIGITS "generateDigits" GenerateDigitsArgument Some(ty::GenerateDigitsResult),
    GetAgentState = GET_AGENT_STATE "getAgentState" GetAgentStateArgument Some(ty::GetAgentStateResult),
    SetAgentState = SET_AGENT_STATE "setAgentState" SetAgentStateArgument Some(ty::SetAgentStateResult),
}

impl Operation {
    /// Whether the result is `CHOICE { extensions CSTACommonArguments, noData NULL }`.
    pub fn has_simple_result(self) -> bool {
        self.result_type()
            .is_some_and(|t| schema::alternatives(t).iter().any(|a| a.name == "noData"))
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The `noData` result of an operation whose result is `CHOICE { extensions, noData }`
/// (answer, hold, retrieve, clear*, alternate, reconnect, monitorStop, systemStatus,
/// generateDigits, escape); `None` for the others.
pub fn no_data(op: Operation) -> Option<Payload> {
    if !op.has_simple_result() {
        return None;
    }
    op.result_type().map(Payload::no_data)
}

// ---- enumerations used by the arguments -------------------------------------------------------

open_enum! {
    /// `ConsultOptions ::= ENUMERATED` (AlternateCall, ConsultationCall).
    pub enum ConsultOptions = "ConsultOptions" {
        Unrestricted = 0 "unrestricted",
        ConsultOnly = 1 "consultOnly",
        TransferOnly = 2 "transferOnly",
        ConferenceOnly = 3 "conferenceOnly",
    }
}

open_enum! {
    /// `AutoOriginate ::= ENUMERATED` (MakeCall).
    pub enum AutoOriginate = "AutoOriginate" {
        Prompt = 0 "prompt",
        DoNotPrompt = 1 "doNotPrompt",
    }
}

open_enum! {
    /// `MonitorType ::= ENUMERATED`.
    pub enum MonitorType = "MonitorType" {
        Call = 0 "call",
        Device = 1 "device",
    }
}

open_enum! {
    /// `SystemStatus ::= ENUMERATED`.
    pub enum SystemStatus = "SystemStatus" {
        Initializing = 0 "initializing",
        Enabled = 1 "enabled",
        Normal = 2 "normal",
        MessagesLost = 3 "messagesLost",
        Disabled = 4 "disabled",
        OverloadImminent = 5 "overloadImminent",
        OverloadReached = 6 "overloadReached",
        OverloadRelieved = 7 "overloadRelieved",
        PartiallyDisabled = 8 "partiallyDisabled",
    }
}

open_enum! {
    /// `DigitMode ::= ENUMERATED` (GenerateDigits).
    pub enum DigitMode = "DigitMode" {
        RotaryPulse = 0 "rotaryPulse",
        Dtmf = 1 "dTMF",
    }
}

// ---- arguments ----------------------------------------------------------------------------

/// A typed operation argument (or event report): the operation whose invoke carries it,
/// and its payload. A dialect builds its invoke from these (BER: an X.880 Invoke).
pub trait TypedArgument {
    fn operation(&self) -> Operation;
    fn payload(&self) -> Payload;
}

/// A typed operation result: the operation it answers, and its payload. A dialect builds
/// its result message from these (BER: an X.880 ReturnResult).
pub trait TypedResult {
    fn operation(&self) -> Operation;
    fn payload(&self) -> Payload;
}

/// What every typed argument and result has: its operation, its payload, the
/// [`TypedArgument`] or [`TypedResult`] view, and a conversion into `$enum`.
macro_rules! operation_payload {
    ($op:ident, $st:ident, $enum:ident, $what:literal, $tr:ident) => {
        impl $st {
            #[doc = concat!("The operation this is the ", $what, " of.")]
            pub const OPERATION: Operation = Operation::$op;
            #[doc = concat!("The ", $what, " as a payload.")]
            pub fn payload(&self) -> Payload {
                Payload::typed(Self::TYPE, self.to_value())
            }
        }
        impl $tr for $st {
            fn operation(&self) -> Operation {
                Operation::$op
            }
            fn payload(&self) -> Payload {
                $st::payload(self)
            }
        }
        impl From<$st> for $enum {
            fn from(x: $st) -> $enum {
                $enum::$op(x)
            }
        }
    };
}

macro_rules! arguments {
    ($( $op:ident($st:ident) ),* $(,)?) => {
        $( operation_payload!($op, $st, Argument, "argument", TypedArgument); )*

        /// The typed argument of any of the 22 operations.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Argument {
            $( $op($st), )*
            /// Boxed: an event report is much larger than the other arguments.
            CstaEventReport(Box<EventReport>),
        }

        impl Argument {
            /// The argument value of `op` (as the codec decoded it).
            pub fn from_value(op: Operation, v: &Value) -> Result<Argument, TypeError> {
                match op {
                    $( Operation::$op => $st::from_value(v).map(Argument::$op), )*
                    Operation::CstaEventReport => {
                        EventReport::from_value(v).map(|e| Argument::CstaEventReport(Box::new(e)))
                    }
                }
            }
            pub fn operation(&self) -> Operation {
                match self {
                    $( Argument::$op(_) => Operation::$op, )*
                    Argument::CstaEventReport(_) => Operation::CstaEventReport,
                }
            }
            pub fn to_value(&self) -> Value {
                match self {
                    $( Argument::$op(a) => a.to_value(), )*
                    Argument::CstaEventReport(e) => e.to_value(),
                }
            }
        }
    };
}

arguments! {
    AlternateCall(AlternateCallArgument),
    AnswerCall(AnswerCallArgument),
    ClearCall(ClearCallArgument),
    ClearConnection(ClearConnectionArgument),
    ConferenceCall(ConferenceCallArgument),
    ConsultationCall(ConsultationCallArgument),
    HoldCall(HoldCallArgument),
    MakeCall(MakeCallArgument),
    ReconnectCall(ReconnectCallArgument),
    RetrieveCall(RetrieveCallArgument),
    TransferCall(TransferCallArgument),
    SingleStepTransfer(SingleStepTransArgument),
    Escape(EscapeArgument),
    MonitorStart(MonitorStartArgument),
    MonitorStop(MonitorStopArgument),
    SnapshotDevice(SnapshotDeviceArgument),
    SnapshotCall(SnapshotCallArgument),
    SnapshotDeviceData(SnapshotDeviceDataArgument),
    SystemRegister(SystemRegisterArgument),
    SystemStatus(SystemStatusArg),
    GenerateDigits(GenerateDigitsArgument),
    GetAgentState(GetAgentStateArgument),
    SetAgentState(SetAgentStateArgument),
}

impl From<EventReport> for Argument {
    fn from(e: EventReport) -> Argument {
        Argument::CstaEventReport(Box::new(e))
    }
}

impl Argument {
    pub fn payload(&self) -> Payload {
        Payload::typed(self.operation().argument_type(), self.to_value())
    }
}

impl TypedArgument for Argument {
    fn operation(&self) -> Operation {
        Argument::operation(self)
    }
    fn payload(&self) -> Payload {
        Argument::payload(self)
    }
}

// ---- results ------------------------------------------------------------------------------

open_enum! {
    /// `SimpleCallState ::= ENUMERATED` (status-reporting.asn1): a call state in one value.
    /// The standard writes each as two connection states, `other-local` (callDelivered is
    /// `alerting-connect`: the far end alerts, this device's connection is connected);
    /// see [`SimpleCallState::local`].
    pub enum SimpleCallState = "SimpleCallState" {
        CallNull = 0 "callNull",
        CallPending = 1 "callPending",
        CallOriginated = 3 "callOriginated",
        CallDelivered = 35 "callDelivered",
        CallDeliveredHeld = 36 "callDeliveredHeld",
        CallReceived = 50 "callReceived",
        CallEstablished = 51 "callEstablished",
        CallEstablishedHeld = 52 "callEstablishedHeld",
        CallReceivedOnHold = 66 "callReceivedOnHold",
        CallEstablishedOnHold = 67 "callEstablishedOnHold",
        CallQueued = 83 "callQueued",
        CallQueuedHeld = 84 "callQueuedHeld",
        CallFailed = 99 "callFailed",
        CallFailedHeld = 100 "callFailedHeld",
        CallBlocked = 96 "callBlocked",
    }
}

impl SimpleCallState {
    /// This device's own connection state: the low hex digit (0 null, 1 initiated,
    /// 2 alerting, 3 connected, 4 hold, 5 queued, 6 fail), so callReceived
    /// (`connect-alerting`) is alerting here and callQueued (`queued-connect`) is the
    /// caller's connected connection while the far end queues. callBlocked (`failed-null`)
    /// is this device's failed attempt (fail). `None` for a value the standard does not
    /// name whose low digit is not a state.
    pub fn local(self) -> Option<LocalConnectionState> {
        if self == SimpleCallState::CallBlocked {
            return Some(LocalConnectionState::Fail);
        }
        nibble_state(self.to_i64() & 0x0f)
    }
    /// The far end's connection state (the high hex digit), when it is one.
    pub fn other(self) -> Option<LocalConnectionState> {
        nibble_state((self.to_i64() >> 4) & 0x0f)
    }
}

/// A connection state from one hex digit of a [`SimpleCallState`].
fn nibble_state(n: i64) -> Option<LocalConnectionState> {
    Some(match n {
        0 => LocalConnectionState::Null,
        1 => LocalConnectionState::Initiated,
        2 => LocalConnectionState::Alerting,
        3 => LocalConnectionState::Connected,
        4 => LocalConnectionState::Hold,
        5 => LocalConnectionState::Queued,
        6 => LocalConnectionState::Fail,
        _ => return None,
    })
}

/// What a snapshot says about a device's own connection in one call (`CallState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotState {
    /// Its connection state (from any of the forms).
    Known(LocalConnectionState),
    /// `unknown`, or a form this code cannot read: the call is there, its state is not
    /// known.
    Unknown,
}

impl SnapshotDeviceResponseInfo {
    /// A `compoundCallState` value from connection states.
    pub fn compound(states: &[LocalConnectionState]) -> Value {
        Value::alt(
            "compoundCallState",
            Value::List(states.iter().map(|s| s.to_value()).collect()),
        )
    }
    /// A `simpleCallState` value.
    pub fn simple(state: SimpleCallState) -> Value {
        Value::alt("simpleCallState", Value::Enumerated(state.to_i64()))
    }
    /// The `unknown` value.
    pub fn unknown() -> Value {
        Value::alt("unknown", Value::Null)
    }
    /// The states of a `compoundCallState`; `None` for the other forms.
    pub fn compound_states(&self) -> Option<Vec<LocalConnectionState>> {
        match self.local_call_state.choice()? {
            ("compoundCallState", Value::List(l)) => l
                .iter()
                .map(|v| LocalConnectionState::from_value(v).ok())
                .collect(),
            _ => None,
        }
    }
    /// This device's connection state in the call, from any form of `localCallState`:
    /// a compound state's last entry (the list ends with the local connection, as the
    /// simple states' `other-local` pairs do), a simple state's local part, `unknown`.
    pub fn state(&self) -> SnapshotState {
        match self.local_call_state.choice() {
            Some(("compoundCallState", _)) => match self.compound_states() {
                Some(l) => l
                    .last()
                    .map_or(SnapshotState::Unknown, |s| SnapshotState::Known(*s)),
                None => SnapshotState::Unknown,
            },
            Some(("simpleCallState", Value::Enumerated(n))) => SimpleCallState::from_i64(*n)
                .local()
                .map_or(SnapshotState::Unknown, SnapshotState::Known),
            _ => SnapshotState::Unknown,
        }
    }
}

/// A snapshot result's `crossRefIDorSnapshotData` CHOICE: `serviceCrossRefID` (the data
/// follows in the switch's own invocations) or `snapshotData` (the list).
macro_rules! cross_ref_or_data {
    ($(#[$m:meta])* $name:ident = $t:literal, $item:ty, $data_doc:literal, $ref_doc:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            #[doc = $ref_doc]
            ServiceCrossRefId(Bytes),
            #[doc = $data_doc]
            Data(Vec<$item>),
        }

        impl Typed for $name {
            fn from_value(v: &Value) -> Result<$name, TypeError> {
                match v.choice() {
                    Some(("serviceCrossRefID", b)) => Bytes::from_value(b)
                        .map($name::ServiceCrossRefId)
                        .map_err(|e| e.within("serviceCrossRefID")),
                    Some(("snapshotData", l)) => Vec::from_value(l)
                        .map($name::Data)
                        .map_err(|e| e.within("snapshotData")),
                    _ => Err(TypeError::new(
                        $t,
                        "expected serviceCrossRefID or snapshotData",
                    )),
                }
            }
            fn to_value(&self) -> Value {
                match self {
                    $name::ServiceCrossRefId(b) => {
                        Value::alt("serviceCrossRefID", Value::Octets(b.clone()))
                    }
                    $name::Data(l) => Value::alt("snapshotData", l.to_value()),
                }
            }
        }
    };
}

cross_ref_or_data! {
    /// `SnapshotDeviceResult.crossRefIDorSnapshotData`.
    SnapshotData = "SnapshotDeviceResult.crossRefIDorSnapshotData",
    SnapshotDeviceResponseInfo,
    "`snapshotData [APPLICATION 22] IMPLICIT SEQUENCE OF SnapshotDeviceResponseInfo`.",
    "`serviceCrossRefID`: the calls follow in Snapshot Device Data invocations (the link collects them)."
}

cross_ref_or_data! {
    /// `SnapshotCallResult.crossRefIDorSnapshotData`.
    SnapshotCallInfo = "SnapshotCallResult.crossRefIDorSnapshotData",
    SnapshotCallResponseInfo,
    "`snapshotData [APPLICATION 23] IMPLICIT SEQUENCE OF SnapshotCallResponseInfo`.",
    "`serviceCrossRefID [0] IMPLICIT`: the data follows (Snapshot Call Data, not read by this gateway: the call's parties then stay unknown)."
}

macro_rules! results {
    ($( $op:ident($st:ident) ),* $(,)?) => {
        $( operation_payload!($op, $st, OperationResult, "result", TypedResult); )*

        /// The typed result of an operation: the ones with data, and `Simple` for the
        /// `CHOICE { extensions, noData }` results.
        // results are moved once (link -> caller); SnapshotCall's is the large one
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq)]
        pub enum OperationResult {
            $( $op($st), )*
            /// `noData` (`extensions: None`) or `extensions` of a simple result.
            Simple {
                op: Operation,
                extensions: Option<CommonArguments>,
            },
        }

        impl OperationResult {
            /// The result value of `op` (as the codec decoded it).
            pub fn from_value(op: Operation, v: &Value) -> Result<OperationResult, TypeError> {
                match op {
                    $( Operation::$op => $st::from_value(v).map(OperationResult::$op), )*
                    _ if op.has_simple_result() => match v.choice() {
                        Some(("noData", _)) => Ok(OperationResult::Simple {
                            op,
                            extensions: None,
                        }),
                        Some(("extensions", e)) => Ok(OperationResult::Simple {
                            op,
                            extensions: Some(
                                CommonArguments::from_value(e)
                                    .map_err(|e| e.within("extensions"))?,
                            ),
                        }),
                        _ => Err(TypeError::new(
                            schema::def(op.result_type().unwrap_or(0)).name,
                            "expected extensions or noData",
                        )),
                    },
                    _ => Err(TypeError::new("Operation", format!("{op} has no result"))),
                }
            }
            pub fn operation(&self) -> Operation {
                match self {
                    $( OperationResult::$op(_) => Operation::$op, )*
                    OperationResult::Simple { op, .. } => *op,
                }
            }
            /// The result value; `Value::Null` (rejected by the encoder) for a `Simple`
            /// result of an operation that has none.
            pub fn to_value(&self) -> Value {
                match self {
                    $( OperationResult::$op(r) => r.to_value(), )*
                    OperationResult::Simple { op, extensions } => match extensions {
                        Some(e) => Value::alt("extensions", e.to_value()),
                        None => no_data(*op).map_or(Value::Null, |p| p.value),
                    },
                }
            }
        }
    };
}

results! {
    MakeCall(MakeCallResult),
    ConsultationCall(ConsultationCallResult),
    TransferCall(TransferCallResult),
    ConferenceCall(ConferenceCallResult),
    SingleStepTransfer(SingleStepTransResult),
    MonitorStart(MonitorStartResult),
    SnapshotDevice(SnapshotDeviceResult),
    SnapshotCall(SnapshotCallResult),
    SystemRegister(SystemRegisterResult),
    GetAgentState(GetAgentStateResult),
    SetAgentState(SetAgentStateResult),
}

impl OperationResult {
    pub fn payload(&self) -> Payload {
        Payload::typed(self.operation().result_type().unwrap_or(0), self.to_value())
    }
}

impl TypedResult for OperationResult {
    fn operation(&self) -> Operation {
        OperationResult::operation(self)
    }
    fn payload(&self) -> Payload {
        OperationResult::payload(self)
    }
}
