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
use crate::rose::{Code, Invoke, InvokeId, Payload, ReturnResult, Rose};
use crate::schema::{self, ty, TypeId};
use crate::types::{
    open_enum, typed_struct, AgentState, CommonArguments, ConnectionId, ConnectionList, CstaObject,
    DeviceId, EventCause, LocalConnectionState, MonitorCrossRefId, Party, PendingAgentState,
    PrivateData, ReqAgentState, TypeError, Typed,
};
use crate::value::Value;
use bytes::Bytes;

macro_rules! operations {
    ($( $v:ident = $code:literal $name:literal $arg:ident $res:expr ),* $(,)?) => {
        /// An ECMA-285 operation, by its local code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation {
            $( #[doc = concat!("`", $name, "` (local ", stringify!($code), ")")] $v, )*
        }

        impl Operation {
            pub const ALL: [Operation; 22] = [$(Operation::$v),*];

            /// The local operation code.
            pub fn code(self) -> i64 {
                match self { $(Operation::$v => $code,)* }
            }
            /// The ASN.1 value name (`makeCall`).
            pub fn name(self) -> &'static str {
                match self { $(Operation::$v => $name,)* }
            }
            pub fn from_code(code: i64) -> Option<Operation> {
                match code {
                    $($code => Some(Operation::$v),)*
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
    AlternateCall = 1 "alternateCall" AlternateCallArgument Some(ty::AlternateCallResult),
    AnswerCall = 2 "answerCall" AnswerCallArgument Some(ty::AnswerCallResult),
    ClearCall = 4 "clearCall" ClearCallArgument Some(ty::ClearCallResult),
    ClearConnection = 5 "clearConnection" ClearConnectionArgument
        Some(ty::ClearConnectionResult),
    ConferenceCall = 6 "conferenceCall" ConferenceCallArgument Some(ty::ConferenceCallResult),
    ConsultationCall = 7 "consultationCall" ConsultationCallArgument
        Some(ty::ConsultationCallResult),
    HoldCall = 9 "holdCall" HoldCallArgument Some(ty::HoldCallResult),
    MakeCall = 10 "makeCall" MakeCallArgument Some(ty::MakeCallResult),
    ReconnectCall = 13 "reconnectCall" ReconnectCallArgument Some(ty::ReconnectCallResult),
    RetrieveCall = 14 "retrieveCall" RetrieveCallArgument Some(ty::RetrieveCallResult),
    TransferCall = 16 "transferCall" TransferCallArgument Some(ty::TransferCallResult),
    CstaEventReport = 21 "cSTAEventReport" CSTAEventReportArgument None,
    SingleStepTransfer = 50 "singleStepTrans" SingleStepTransArgument
        Some(ty::SingleStepTransResult),
    Escape = 51 "escape" EscapeArgument Some(ty::EscapeResult),
    MonitorStart = 71 "monitorStart" MonitorStartArgument Some(ty::MonitorStartResult),
    MonitorStop = 73 "monitorStop" MonitorStopArgument Some(ty::MonitorStopResult),
    SnapshotDevice = 74 "snapshotDevice" SnapshotDeviceArgument Some(ty::SnapshotDeviceResult),
    SystemRegister = 207 "systemRegister" SystemRegisterArgument Some(ty::SystemRegisterResult),
    SystemStatus = 211 "systemStatus" SystemStatusArg Some(ty::SystemStatusRes),
    GenerateDigits = 232 "generateDigits" GenerateDigitsArgument Some(ty::GenerateDigitsResult),
    GetAgentState = 304 "getAgentState" GetAgentStateArgument Some(ty::GetAgentStateResult),
    SetAgentState = 312 "setAgentState" SetAgentStateArgument Some(ty::SetAgentStateResult),
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

/// An invoke APDU of `op` with `argument`.
pub fn invoke(op: Operation, invoke_id: i64, argument: Payload) -> Rose {
    Rose::Invoke(Invoke {
        invoke_id: InvokeId::Present(invoke_id),
        linked_id: None,
        opcode: Code::Local(op.code()),
        argument: Some(argument),
    })
}

/// A returnResult APDU of `op` with `result`.
pub fn return_result(op: Operation, invoke_id: i64, result: Payload) -> Rose {
    Rose::ReturnResult(ReturnResult {
        invoke_id: InvokeId::Present(invoke_id),
        result: Some((Code::Local(op.code()), result)),
    })
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

/// A returnResult APDU with `noData` (see [`no_data`]).
pub fn no_data_result(op: Operation, invoke_id: i64) -> Option<Rose> {
    no_data(op).map(|p| return_result(op, invoke_id, p))
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

typed_struct! {
    /// `AlternateCallArgument` (op 1): **heldCall, activeCall**.
    pub struct AlternateCallArgument = ty::AlternateCallArgument;
    required {
        held_call: ConnectionId = "heldCall",
        active_call: ConnectionId = "activeCall",
    }
    optional {
        connection_reservation: bool = "connectionReservation",
        /// DEFAULT unrestricted (omitted on output when unrestricted).
        consult_options: ConsultOptions = "consultOptions",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `AnswerCallArgument` (op 2).
    pub struct AnswerCallArgument = ty::AnswerCallArgument;
    required {
        call_to_be_answered: ConnectionId = "callToBeAnswered",
    }
    optional {
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `ClearCallArgument` (op 4).
    pub struct ClearCallArgument = ty::ClearCallArgument;
    required {
        call_to_be_cleared: ConnectionId = "callToBeCleared",
    }
    optional {
        user_data: Bytes = "userData",
        reason: EventCause = "reason",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `ClearConnectionArgument` (op 5).
    pub struct ClearConnectionArgument = ty::ClearConnectionArgument;
    required {
        connection_to_be_cleared: ConnectionId = "connectionToBeCleared",
    }
    optional {
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        reason: EventCause = "reason",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `ConferenceCallArgument` (op 6): **heldCall, activeCall**.
    pub struct ConferenceCallArgument = ty::ConferenceCallArgument;
    required {
        held_call: ConnectionId = "heldCall",
        active_call: ConnectionId = "activeCall",
    }
    optional {
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `ConsultationCallArgument` (op 7): existingCall `[0] IMPLICIT`, consultedDevice
    /// `[1] EXPLICIT` DeviceID, the rest implicitly tagged.
    pub struct ConsultationCallArgument = ty::ConsultationCallArgument;
    required {
        existing_call: ConnectionId = "existingCall",
        consulted_device: DeviceId = "consultedDevice",
    }
    optional {
        connection_reservation: bool = "connectionReservation",
        account_code: Bytes = "accountCode",
        auth_code: Bytes = "authCode",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        call_characteristics: Value = "callCharacteristics",
        media_call_characteristics: Value = "mediaCallCharacteristics",
        calling_connection_info: Value = "callingConnectionInfo",
        /// DEFAULT unrestricted.
        consult_options: ConsultOptions = "consultOptions",
        subject_of_call: Value = "subjectOfCall",
        language_preferences: Value = "languagePreferences",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `HoldCallArgument` (op 9).
    pub struct HoldCallArgument = ty::HoldCallArgument;
    required {
        call_to_be_held: ConnectionId = "callToBeHeld",
    }
    optional {
        connection_reservation: bool = "connectionReservation",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `MakeCallArgument` (op 10): calledDirectoryNumber is a plain DeviceID in Phase III.
    pub struct MakeCallArgument = ty::MakeCallArgument;
    required {
        calling_device: DeviceId = "callingDevice",
        called_directory_number: DeviceId = "calledDirectoryNumber",
    }
    optional {
        account_code: Bytes = "accountCode",
        auth_code: Bytes = "authCode",
        /// DEFAULT prompt.
        auto_originate: AutoOriginate = "autoOriginate",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        call_characteristics: Value = "callCharacteristics",
        media_call_characteristics: Value = "mediaCallCharacteristics",
        calling_connection_info: Value = "callingConnectionInfo",
        subject_of_call: Value = "subjectOfCall",
        language_preferences: Value = "languagePreferences",
        reason: EventCause = "reason",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `ReconnectCallArgument` (op 13): **activeCall, heldCall** (the reverse of
    /// Alternate/Transfer/Conference).
    pub struct ReconnectCallArgument = ty::ReconnectCallArgument;
    required {
        active_call: ConnectionId = "activeCall",
        held_call: ConnectionId = "heldCall",
    }
    optional {
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `RetrieveCallArgument` (op 14).
    pub struct RetrieveCallArgument = ty::RetrieveCallArgument;
    required {
        call_to_be_retrieved: ConnectionId = "callToBeRetrieved",
    }
    optional {
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `TransferCallArgument` (op 16): **heldCall, activeCall**.
    pub struct TransferCallArgument = ty::TransferCallArgument;
    required {
        held_call: ConnectionId = "heldCall",
        active_call: ConnectionId = "activeCall",
    }
    optional {
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `SingleStepTransArgument` (op 50).
    pub struct SingleStepTransArgument = ty::SingleStepTransArgument;
    required {
        active_call: ConnectionId = "activeCall",
        transferred_to: DeviceId = "transferredTo",
    }
    optional {
        account_code: Bytes = "accountCode",
        auth_code: Bytes = "authCode",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        call_characteristics: Value = "callCharacteristics",
        subject_of_call: Value = "subjectOfCall",
        language_preferences: Value = "languagePreferences",
        reason: EventCause = "reason",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `EscapeArgument` (op 51).
    pub struct EscapeArgument = ty::EscapeArgument;
    required {
        private_data: PrivateData = "privateData",
    }
    optional {
        escape_register_id: Bytes = "escapeRegisterID",
        security: Value = "security",
    }
}

typed_struct! {
    /// `MonitorStartArgument` (op 71). `requestedMonitorFilter`: a set bit *suppresses*
    /// that event (absent: report everything).
    pub struct MonitorStartArgument = ty::MonitorStartArgument;
    required {
        monitor_object: CstaObject = "monitorObject",
    }
    optional {
        requested_monitor_filter: Value = "requestedMonitorFilter",
        monitor_type: MonitorType = "monitorType",
        requested_monitor_media_class: Value = "requestedMonitorMediaClass",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `MonitorStopArgument` (op 73).
    pub struct MonitorStopArgument = ty::MonitorStopArgument;
    required {
        cross_ref_identifier: MonitorCrossRefId = "crossRefIdentifier",
    }
    optional {
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `SnapshotDeviceArgument` (op 74).
    pub struct SnapshotDeviceArgument = ty::SnapshotDeviceArgument;
    required {
        snapshot_object: DeviceId = "snapshotObject",
    }
    optional {
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `SystemRegisterArgument` (op 207): requestTypes is a BIT STRING {systemStatus 0,
    /// requestSystemStatus 1, switchingFunctionCapsChanged 2, switchingFunctionDevicesChanged
    /// 3} (build it with [`Value::bits_from`]).
    pub struct SystemRegisterArgument = ty::SystemRegisterArgument;
    required {
        request_types: Value = "requestTypes",
    }
    optional {
        requested_status_filter: Value = "requestedStatusFilter",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `SystemStatusArg` (op 211, the keep-alive).
    pub struct SystemStatusArg = ty::SystemStatusArg;
    required {
        system_status: SystemStatus = "systemStatus",
    }
    optional {
        sys_stat_register_id: Bytes = "sysStatRegisterID",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `GenerateDigitsArgument` (op 232): charactersToSend is an IA5String.
    pub struct GenerateDigitsArgument = ty::GenerateDigitsArgument;
    required {
        connection_to_send_digits: ConnectionId = "connectionToSendDigits",
        characters_to_send: String = "charactersToSend",
    }
    optional {
        digit_mode: DigitMode = "digitMode",
        tone_duration: i64 = "toneDuration",
        pulse_rate: i64 = "pulseRate",
        pause_duration: i64 = "pauseDuration",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `GetAgentStateArgument` (op 304).
    pub struct GetAgentStateArgument = ty::GetAgentStateArgument;
    required {
        device: DeviceId = "device",
    }
    optional {
        acd_group: DeviceId = "acdGroup",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `SetAgentStateArgument` (op 312).
    pub struct SetAgentStateArgument = ty::SetAgentStateArgument;
    required {
        device: DeviceId = "device",
        requested_agent_state: ReqAgentState = "requestedAgentState",
    }
    optional {
        agent_id: Bytes = "agentID",
        password: Bytes = "password",
        group: DeviceId = "group",
        extensions: CommonArguments = "extensions",
    }
}

/// What every typed argument and result has: its operation, its payload, the APDU that
/// carries it (built by the free function `$build`), and a conversion into `$enum`.
macro_rules! operation_payload {
    ($op:ident, $st:ident, $enum:ident, $what:literal, $method:ident => $build:ident, $doc:literal) => {
        impl $st {
            #[doc = concat!("The operation this is the ", $what, " of.")]
            pub const OPERATION: Operation = Operation::$op;
            #[doc = concat!("The ", $what, " as a ROSE payload.")]
            pub fn payload(&self) -> Payload {
                Payload::typed(Self::TYPE, self.to_value())
            }
            #[doc = $doc]
            pub fn $method(&self, invoke_id: i64) -> Rose {
                $build(Operation::$op, invoke_id, self.payload())
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
        $( operation_payload!($op, $st, Argument, "argument", invoke => invoke, "An invoke APDU carrying this argument."); )*

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
    /// The typed argument of an invoke (error: unknown or global opcode, absent or
    /// untyped argument, or a value of the wrong shape).
    pub fn from_invoke(inv: &Invoke) -> Result<Argument, TypeError> {
        let op = opcode(&inv.opcode)?;
        let arg = inv
            .argument
            .as_ref()
            .ok_or_else(|| TypeError::new("Invoke", format!("{op} without argument")))?;
        Argument::from_value(op, &arg.value).map_err(|e| e.within("argument"))
    }
    pub fn payload(&self) -> Payload {
        Payload::typed(self.operation().argument_type(), self.to_value())
    }
    /// An invoke APDU carrying this argument.
    pub fn invoke(&self, invoke_id: i64) -> Rose {
        invoke(self.operation(), invoke_id, self.payload())
    }
}

fn opcode(c: &Code) -> Result<Operation, TypeError> {
    match c {
        Code::Local(n) => Operation::from_code(*n)
            .ok_or_else(|| TypeError::new("Code", format!("unknown operation code {n}"))),
        Code::Global(_) => Err(TypeError::new("Code", "global operation code")),
    }
}

// ---- results ------------------------------------------------------------------------------

typed_struct! {
    /// `MakeCallResult`.
    pub struct MakeCallResult = ty::MakeCallResult;
    required {
        /// The connection of the calling device in the new call.
        calling_device: ConnectionId = "callingDevice",
    }
    optional {
        media_call_characteristics: Value = "mediaCallCharacteristics",
        initiated_call_info: Value = "initiatedCallInfo",
        call_linkage_data: Value = "callLinkageData",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `ConsultationCallResult`.
    pub struct ConsultationCallResult = ty::ConsultationCallResult;
    required {
        initiated_call: ConnectionId = "initiatedCall",
    }
    optional {
        media_call_characteristics: Value = "mediaCallCharacteristics",
        initiated_call_info: Value = "initiatedCallInfo",
        call_linkage_data: Value = "callLinkageData",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `TransferCallResult`.
    pub struct TransferCallResult = ty::TransferCallResult;
    required {
        transferred_call: ConnectionId = "transferredCall",
    }
    optional {
        connections: ConnectionList = "connections",
        transferred_call_info: Value = "transferredCallInfo",
        call_linkage_data_list: Value = "callLinkageDataList",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `ConferenceCallResult`.
    pub struct ConferenceCallResult = ty::ConferenceCallResult;
    required {
        conference_call: ConnectionId = "conferenceCall",
    }
    optional {
        connections: ConnectionList = "connections",
        conference_call_info: Value = "conferenceCallInfo",
        call_linkage_data_list: Value = "callLinkageDataList",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `SingleStepTransResult`.
    pub struct SingleStepTransResult = ty::SingleStepTransResult;
    required {
        transferred_call: ConnectionId = "transferredCall",
    }
    optional {
        connections: ConnectionList = "connections",
        transferred_call_info: Value = "transferredCallInfo",
        call_linkage_data_list: Value = "callLinkageDataList",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `MonitorStartResult`.
    pub struct MonitorStartResult = ty::MonitorStartResult;
    required {
        cross_ref_identifier: MonitorCrossRefId = "crossRefIdentifier",
    }
    optional {
        /// The filter the switch applies (a set bit suppresses).
        actual_monitor_filter: Value = "actualmonitorFilter",
        actual_monitor_media_class: Value = "actualMonitorMediaClass",
        monitor_existing_calls: bool = "monitorExistingCalls",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// One `SnapshotDeviceResponseInfo`: a call at the device.
    pub struct SnapshotDeviceResponseInfo = ty::SnapshotDeviceResponseInfo;
    required {
        connection_identifier: ConnectionId = "connectionIdentifier",
        /// `CallState ::= CHOICE { compoundCallState [0] SEQUENCE OF LocalConnectionState,
        /// simpleCallState [1] SimpleCallState, unknown [2] NULL }` (see
        /// [`SnapshotDeviceResponseInfo::compound_states`]).
        local_call_state: Value = "localCallState",
    }
    optional {
        endpoint_device: Party = "endpointDevice",
        services_permitted: Value = "servicesPermitted",
        media_service_info_list: Value = "mediaServiceInfoList",
        media_call_characteristics: Value = "mediaCallCharacteristics",
        call_linkage_data: Value = "callLinkageData",
    }
}

impl SnapshotDeviceResponseInfo {
    /// A `compoundCallState` value from connection states.
    pub fn compound(states: &[LocalConnectionState]) -> Value {
        Value::alt(
            "compoundCallState",
            Value::List(states.iter().map(|s| s.to_value()).collect()),
        )
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
}

/// `SnapshotDeviceResult.crossRefIDorSnapshotData`.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotData {
    /// `serviceCrossRefID`: the data follows in snapshot events.
    ServiceCrossRefId(Bytes),
    /// `snapshotData [APPLICATION 22] IMPLICIT SEQUENCE OF SnapshotDeviceResponseInfo`.
    Data(Vec<SnapshotDeviceResponseInfo>),
}

impl Typed for SnapshotData {
    fn from_value(v: &Value) -> Result<SnapshotData, TypeError> {
        const T: &str = "SnapshotDeviceResult.crossRefIDorSnapshotData";
        match v.choice() {
            Some(("serviceCrossRefID", b)) => Bytes::from_value(b)
                .map(SnapshotData::ServiceCrossRefId)
                .map_err(|e| e.within("serviceCrossRefID")),
            Some(("snapshotData", l)) => Vec::from_value(l)
                .map(SnapshotData::Data)
                .map_err(|e| e.within("snapshotData")),
            _ => Err(TypeError::new(
                T,
                "expected serviceCrossRefID or snapshotData",
            )),
        }
    }
    fn to_value(&self) -> Value {
        match self {
            SnapshotData::ServiceCrossRefId(b) => {
                Value::alt("serviceCrossRefID", Value::Octets(b.clone()))
            }
            SnapshotData::Data(l) => Value::alt("snapshotData", l.to_value()),
        }
    }
}

typed_struct! {
    /// `SnapshotDeviceResult`.
    pub struct SnapshotDeviceResult = ty::SnapshotDeviceResult;
    required {
        data: SnapshotData = "crossRefIDorSnapshotData",
    }
    optional {
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `SystemRegisterResult`.
    pub struct SystemRegisterResult = ty::SystemRegisterResult;
    required {
        sys_stat_register_id: Bytes = "sysStatRegisterID",
    }
    optional {
        actual_status_filter: Value = "actualStatusFilter",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `AgentInfo` (an entry of `AgentStateEntry.agentInfo`).
    pub struct AgentInfo = ty::AgentInfo;
    required {
        agent_state: AgentState = "agentState",
    }
    optional {
        acd_group: DeviceId = "acdGroup",
        pending_agent_state: PendingAgentState = "pendingAgentState",
        /// ENUMERATED { forcedPause 0, other 1 }.
        agent_state_condition: Value = "agentStateCondition",
    }
}

typed_struct! {
    /// `AgentStateEntry` (an entry of `GetAgentStateResult.agentStateList`).
    pub struct AgentStateEntry = ty::AgentStateEntry;
    required {
        logged_on: bool = "loggedOn",
    }
    optional {
        agent_id: Bytes = "agentID",
        agent_info: Vec<AgentInfo> = "agentInfo",
    }
}

typed_struct! {
    /// `GetAgentStateResult`.
    pub struct GetAgentStateResult = ty::GetAgentStateResult;
    required {
        agent_state_list: Vec<AgentStateEntry> = "agentStateList",
    }
    optional {
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `SetAgentStateResult`.
    pub struct SetAgentStateResult = ty::SetAgentStateResult;
    required {}
    optional {
        pending_agent_state: PendingAgentState = "pendingAgentState",
        extensions: CommonArguments = "extensions",
    }
}

macro_rules! results {
    ($( $op:ident($st:ident) ),* $(,)?) => {
        $( operation_payload!($op, $st, OperationResult, "result", return_result => return_result, "A returnResult APDU carrying this result."); )*

        /// The typed result of an operation: the ones with data, and `Simple` for the
        /// `CHOICE { extensions, noData }` results.
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
    SystemRegister(SystemRegisterResult),
    GetAgentState(GetAgentStateResult),
    SetAgentState(SetAgentStateResult),
}

impl OperationResult {
    /// The typed result of a returnResult APDU; `Ok(None)` when it carries none.
    pub fn from_return_result(r: &ReturnResult) -> Result<Option<OperationResult>, TypeError> {
        match &r.result {
            None => Ok(None),
            Some((code, p)) => {
                let op = opcode(code)?;
                OperationResult::from_value(op, &p.value)
                    .map(Some)
                    .map_err(|e| e.within("result"))
            }
        }
    }
    pub fn payload(&self) -> Payload {
        Payload::typed(self.operation().result_type().unwrap_or(0), self.to_value())
    }
    /// A returnResult APDU carrying this result.
    pub fn return_result(&self, invoke_id: i64) -> Rose {
        return_result(self.operation(), invoke_id, self.payload())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apdu::Apdu;
    use crate::codec;
    use crate::types::{LocalDeviceId, UniversalFailure};

    use crate::test_util::hex;

    /// A row of shared/spec/captures/vectors.tsv (as fixtures/valid/<name>.hex).
    fn vector(name: &str) -> Bytes {
        crate::types::fixtures::load(name)
    }

    fn decode_rose(b: &Bytes) -> Rose {
        match Apdu::decode(b).unwrap() {
            Apdu::Rose(r) => r,
            a => panic!("not ROSE: {a:?}"),
        }
    }

    fn invoke_of(b: &Bytes) -> Invoke {
        match decode_rose(b) {
            Rose::Invoke(i) => i,
            r => panic!("not an invoke: {r:?}"),
        }
    }

    #[test]
    fn operation_table_agrees_with_schema() {
        assert_eq!(Operation::ALL.len(), schema::OPERATIONS.len());
        for op in Operation::ALL {
            let d = schema::operation(op.code()).unwrap();
            assert_eq!(d.name, op.name());
            assert_eq!(d.argument, op.argument_type(), "{op}");
            assert_eq!(d.result, op.result_type(), "{op}");
            assert_eq!(Operation::from_code(op.code()), Some(op));
            assert_eq!(Operation::from_name(op.name()), Some(op));
        }
        assert_eq!(Operation::from_code(3), None);
        let simple: Vec<_> = Operation::ALL
            .into_iter()
            .filter(|o| o.has_simple_result())
            .map(|o| o.code())
            .collect();
        assert_eq!(simple, [1, 2, 4, 5, 9, 13, 14, 51, 73, 211, 232]);
        assert!(no_data(Operation::MakeCall).is_none());
        assert!(no_data(Operation::CstaEventReport).is_none());
        // the typed structs point at the operation's own types
        let pairs: [(Operation, TypeId); 21] = [
            (
                AlternateCallArgument::OPERATION,
                AlternateCallArgument::TYPE,
            ),
            (AnswerCallArgument::OPERATION, AnswerCallArgument::TYPE),
            (ClearCallArgument::OPERATION, ClearCallArgument::TYPE),
            (
                ClearConnectionArgument::OPERATION,
                ClearConnectionArgument::TYPE,
            ),
            (
                ConferenceCallArgument::OPERATION,
                ConferenceCallArgument::TYPE,
            ),
            (
                ConsultationCallArgument::OPERATION,
                ConsultationCallArgument::TYPE,
            ),
            (HoldCallArgument::OPERATION, HoldCallArgument::TYPE),
            (MakeCallArgument::OPERATION, MakeCallArgument::TYPE),
            (
                ReconnectCallArgument::OPERATION,
                ReconnectCallArgument::TYPE,
            ),
            (RetrieveCallArgument::OPERATION, RetrieveCallArgument::TYPE),
            (TransferCallArgument::OPERATION, TransferCallArgument::TYPE),
            (
                SingleStepTransArgument::OPERATION,
                SingleStepTransArgument::TYPE,
            ),
            (EscapeArgument::OPERATION, EscapeArgument::TYPE),
            (MonitorStartArgument::OPERATION, MonitorStartArgument::TYPE),
            (MonitorStopArgument::OPERATION, MonitorStopArgument::TYPE),
            (
                SnapshotDeviceArgument::OPERATION,
                SnapshotDeviceArgument::TYPE,
            ),
            (
                SystemRegisterArgument::OPERATION,
                SystemRegisterArgument::TYPE,
            ),
            (SystemStatusArg::OPERATION, SystemStatusArg::TYPE),
            (
                GenerateDigitsArgument::OPERATION,
                GenerateDigitsArgument::TYPE,
            ),
            (
                GetAgentStateArgument::OPERATION,
                GetAgentStateArgument::TYPE,
            ),
            (
                SetAgentStateArgument::OPERATION,
                SetAgentStateArgument::TYPE,
            ),
        ];
        for (op, t) in pairs {
            assert_eq!(op.argument_type(), t, "{op}");
        }
        let results: [(Operation, TypeId); 10] = [
            (MakeCallResult::OPERATION, MakeCallResult::TYPE),
            (
                ConsultationCallResult::OPERATION,
                ConsultationCallResult::TYPE,
            ),
            (TransferCallResult::OPERATION, TransferCallResult::TYPE),
            (ConferenceCallResult::OPERATION, ConferenceCallResult::TYPE),
            (
                SingleStepTransResult::OPERATION,
                SingleStepTransResult::TYPE,
            ),
            (MonitorStartResult::OPERATION, MonitorStartResult::TYPE),
            (SnapshotDeviceResult::OPERATION, SnapshotDeviceResult::TYPE),
            (SystemRegisterResult::OPERATION, SystemRegisterResult::TYPE),
            (GetAgentStateResult::OPERATION, GetAgentStateResult::TYPE),
            (SetAgentStateResult::OPERATION, SetAgentStateResult::TYPE),
        ];
        for (op, t) in results {
            assert_eq!(op.result_type(), Some(t), "{op}");
        }
    }

    #[test]
    fn make_call_vectors() {
        let b = vector("make_call_invoke");
        let inv = invoke_of(&b);
        let Argument::MakeCall(a) = Argument::from_invoke(&inv).unwrap() else {
            panic!()
        };
        assert_eq!(a.calling_device.number(), Some("201"));
        assert_eq!(a.called_directory_number.number(), Some("0891234567"));
        assert_eq!(a.invoke(1).encode().unwrap(), b.to_vec());
        let built =
            MakeCallArgument::new(DeviceId::dialing("201"), DeviceId::dialing("0891234567"));
        assert_eq!(built, a);
        assert_eq!(built.invoke(1).encode().unwrap(), b.to_vec());

        let b = vector("make_call_result");
        let Rose::ReturnResult(rr) = decode_rose(&b) else {
            panic!()
        };
        let Some(OperationResult::MakeCall(r)) = OperationResult::from_return_result(&rr).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.calling_device.call_id().unwrap().as_ref(), &[0x00, 0x42]);
        assert_eq!(r.calling_device.device_number(), Some("201"));
        assert_eq!(r.return_result(1).encode().unwrap(), b.to_vec());
        let built = MakeCallResult::new(ConnectionId::dialing([0x00, 0x42], "201"));
        assert_eq!(built.return_result(1).encode().unwrap(), b.to_vec());
        assert_eq!(
            OperationResult::from(built)
                .return_result(1)
                .encode()
                .unwrap(),
            b.to_vec()
        );
    }

    #[test]
    fn monitor_start_vectors() {
        let b = vector("monitor_start_invoke");
        let inv = invoke_of(&b);
        let Argument::MonitorStart(a) = Argument::from_invoke(&inv).unwrap() else {
            panic!()
        };
        assert_eq!(
            a.monitor_object,
            CstaObject::Device(DeviceId::dialing("201"))
        );
        assert_eq!(a.monitor_type, None);
        assert_eq!(a.invoke(2).encode().unwrap(), b.to_vec());
        let built = MonitorStartArgument::new(CstaObject::Device(DeviceId::dialing("201")));
        assert_eq!(built.invoke(2).encode().unwrap(), b.to_vec());

        let b = vector("monitor_start_result");
        let Rose::ReturnResult(rr) = decode_rose(&b) else {
            panic!()
        };
        let Some(OperationResult::MonitorStart(r)) =
            OperationResult::from_return_result(&rr).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.cross_ref_identifier, MonitorCrossRefId::new([0, 0, 0, 1]));
        assert_eq!(r.monitor_existing_calls, None);
        let built = MonitorStartResult::new(MonitorCrossRefId::new([0, 0, 0, 1]));
        assert_eq!(built.return_result(2).encode().unwrap(), b.to_vec());

        let b = vector("monitor_stop_invoke");
        let Argument::MonitorStop(a) = Argument::from_invoke(&invoke_of(&b)).unwrap() else {
            panic!()
        };
        assert_eq!(
            MonitorStopArgument::new(a.cross_ref_identifier.clone())
                .invoke(5)
                .encode()
                .unwrap(),
            b.to_vec()
        );
    }

    #[test]
    fn set_agent_state_and_generate_digits_vectors() {
        let b = vector("set_agent_state_invoke");
        let Argument::SetAgentState(a) = Argument::from_invoke(&invoke_of(&b)).unwrap() else {
            panic!()
        };
        assert_eq!(a.requested_agent_state, ReqAgentState::Ready);
        assert_eq!(a.device.number(), Some("201"));
        let built = SetAgentStateArgument::new(DeviceId::dialing("201"), ReqAgentState::Ready);
        assert_eq!(built.invoke(3).encode().unwrap(), b.to_vec());

        let b = vector("generate_digits_invoke");
        let Argument::GenerateDigits(a) = Argument::from_invoke(&invoke_of(&b)).unwrap() else {
            panic!()
        };
        assert_eq!(a.characters_to_send, "123#");
        assert_eq!(a.connection_to_send_digits.device_number(), Some("201"));
        let built =
            GenerateDigitsArgument::new(ConnectionId::dialing([0x00, 0x42], "201"), "123#".into());
        assert_eq!(built.invoke(4).encode().unwrap(), b.to_vec());
    }

    #[test]
    fn system_status_vectors() {
        let b = vector("system_status_invoke_real");
        let Argument::SystemStatus(a) = Argument::from_invoke(&invoke_of(&b)).unwrap() else {
            panic!()
        };
        assert_eq!(a.system_status, SystemStatus::Normal);
        assert_eq!(
            SystemStatusArg::new(SystemStatus::Normal)
                .invoke(1)
                .encode()
                .unwrap(),
            b.to_vec()
        );
        let b = vector("system_status_result_real");
        assert_eq!(
            no_data_result(Operation::SystemStatus, 1)
                .unwrap()
                .encode()
                .unwrap(),
            b.to_vec()
        );
        let Rose::ReturnResult(rr) = decode_rose(&b) else {
            panic!()
        };
        let r = OperationResult::from_return_result(&rr).unwrap().unwrap();
        assert_eq!(
            r,
            OperationResult::Simple {
                op: Operation::SystemStatus,
                extensions: None
            }
        );
        assert_eq!(r.return_result(1).encode().unwrap(), b.to_vec());
    }

    #[test]
    fn return_error_vector() {
        let b = vector("return_error_invalid_device");
        let Rose::ReturnError(e) = decode_rose(&b) else {
            panic!()
        };
        let u = UniversalFailure::from_value(&e.parameter.unwrap().value).unwrap();
        assert_eq!(
            (u.category, u.value_name()),
            ("operation", Some("invalidDeviceID"))
        );
        assert_eq!(
            UniversalFailure::from_names("operation", "invalidDeviceID")
                .unwrap()
                .return_error(3)
                .encode()
                .unwrap(),
            b.to_vec()
        );
    }

    #[test]
    fn consultation_call_matches_oracle() {
        // python3 shared/spec/oracle.py encode APDU '{"invoke":{"invokeId":7,"opcode":7,
        //  "argument":{"existingCall":{"$choice":"both","$value":{"callID":{"$hex":"0042"},
        //  "deviceID":{"$choice":"staticID","$value":{"deviceIdentifier":{"$choice":
        //  "dialingNumber","$value":"201"}}}}},"consultedDevice":{"deviceIdentifier":
        //  {"$choice":"dialingNumber","$value":"203"}},"correlatorData":{"$hex":"c0ffee"},
        //  "consultOptions":"transferOnly"}}}'
        let oracle = hex(
            "a12a0201070201073022a00f300d80020042a10730058003323031a10730058003323033\
             8503c0ffee8a0102",
        );
        let mut a = ConsultationCallArgument::new(
            ConnectionId::dialing([0x00, 0x42], "201"),
            DeviceId::dialing("203"),
        );
        a.correlator_data = Some(Bytes::from_static(&[0xc0, 0xff, 0xee]));
        a.consult_options = Some(ConsultOptions::TransferOnly);
        assert_eq!(a.invoke(7).encode().unwrap(), oracle.to_vec());
        let Argument::ConsultationCall(back) = Argument::from_invoke(&invoke_of(&oracle)).unwrap()
        else {
            panic!()
        };
        assert_eq!(back, a);
        // result: initiatedCall
        let r = ConsultationCallResult::new(ConnectionId::dialing([0x00, 0x43], "201"));
        let p = codec::encode(ty::ConsultationCallResult, &r.to_value()).unwrap();
        let v = codec::decode(ty::ConsultationCallResult, &Bytes::from(p)).unwrap();
        assert_eq!(ConsultationCallResult::from_value(&v).unwrap(), r);
    }

    /// Encode an argument in an invoke, decode it back and compare.
    fn arg_round_trip(a: Argument) {
        let bytes = a.invoke(9).encode().unwrap();
        let inv = invoke_of(&Bytes::from(bytes.clone()));
        let back = Argument::from_invoke(&inv).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.invoke(9).encode().unwrap(), bytes);
    }

    #[test]
    fn every_argument_round_trips() {
        let c1 = ConnectionId::dialing([1], "201");
        let c2 = ConnectionId::dialing([2], "201");
        let ext = CommonArguments::private(vec![PrivateData::String(Bytes::from_static(b"p"))]);
        let mut alt = AlternateCallArgument::new(c1.clone(), c2.clone());
        alt.connection_reservation = Some(true);
        alt.consult_options = Some(ConsultOptions::ConsultOnly);
        alt.extensions = Some(ext.clone());
        let mut ans = AnswerCallArgument::new(c1.clone());
        ans.correlator_data = Some(Bytes::from_static(b"c"));
        ans.user_data = Some(Bytes::from_static(b"u"));
        let mut cc = ClearCallArgument::new(c1.clone());
        cc.reason = Some(EventCause::NORMAL_CLEARING);
        cc.user_data = Some(Bytes::from_static(b"u"));
        let mut ccn = ClearConnectionArgument::new(c1.clone());
        ccn.reason = Some(EventCause(999));
        ccn.correlator_data = Some(Bytes::from_static(b"c"));
        let mut hold = HoldCallArgument::new(c1.clone());
        hold.connection_reservation = Some(false);
        let mut mk = MakeCallArgument::new(DeviceId::dialing("201"), DeviceId::dialing("202"));
        mk.account_code = Some(Bytes::from_static(b"a"));
        mk.auth_code = Some(Bytes::from_static(b"b"));
        mk.auto_originate = Some(AutoOriginate::DoNotPrompt);
        mk.correlator_data = Some(Bytes::from_static(b"c"));
        mk.user_data = Some(Bytes::from_static(b"u"));
        mk.call_characteristics = Some(Value::bits_from(&[0]));
        mk.subject_of_call = Some(Value::str("hi"));
        mk.language_preferences = Some(Value::str("de"));
        mk.reason = Some(EventCause::MAKE_CALL);
        mk.extensions = Some(ext.clone());
        let mut sst = SingleStepTransArgument::new(c1.clone(), DeviceId::dialing("205"));
        sst.reason = Some(EventCause::SINGLE_STEP_TRANSFER);
        sst.user_data = Some(Bytes::from_static(b"u"));
        sst.correlator_data = Some(Bytes::from_static(b"c"));
        let mut esc = EscapeArgument::new(PrivateData::Vendor(hex("a403020101")));
        esc.escape_register_id = Some(Bytes::from_static(b"r"));
        let mut ms = MonitorStartArgument::new(CstaObject::Call(c1.clone()));
        ms.monitor_type = Some(MonitorType::Call);
        ms.requested_monitor_filter =
            Some(Value::seq([("callControl", Value::bits_from(&[5, 10]))]));
        let mut sr = SystemRegisterArgument::new(Value::bits_from(&[0, 1]));
        sr.requested_status_filter = Some(Value::bits_from(&[3]));
        let mut ss = SystemStatusArg::new(SystemStatus::OverloadReached);
        ss.sys_stat_register_id = Some(Bytes::from_static(b"s"));
        let mut gd = GenerateDigitsArgument::new(c1.clone(), "*99#".into());
        gd.digit_mode = Some(DigitMode::Dtmf);
        gd.tone_duration = Some(100);
        gd.pulse_rate = Some(10);
        gd.pause_duration = Some(50);
        let mut ga = GetAgentStateArgument::new(DeviceId::dialing("201"));
        ga.acd_group = Some(DeviceId::dialing("600"));
        let mut sa = SetAgentStateArgument::new(DeviceId::dialing("201"), ReqAgentState::LoggedOn);
        sa.agent_id = Some(Bytes::from_static(b"4201"));
        sa.password = Some(Bytes::from_static(b"pw"));
        sa.group = Some(DeviceId::dialing("600"));
        let all: Vec<Argument> = vec![
            alt.into(),
            ans.into(),
            cc.into(),
            ccn.into(),
            ConferenceCallArgument::new(c1.clone(), c2.clone()).into(),
            ConsultationCallArgument::new(c1.clone(), DeviceId::dialing("203")).into(),
            hold.into(),
            mk.into(),
            ReconnectCallArgument::new(c1.clone(), c2.clone()).into(),
            RetrieveCallArgument::new(c1.clone()).into(),
            TransferCallArgument::new(c1.clone(), c2.clone()).into(),
            sst.into(),
            esc.into(),
            ms.into(),
            MonitorStopArgument::new(MonitorCrossRefId::new([9])).into(),
            SnapshotDeviceArgument::new(DeviceId::dialing("201")).into(),
            sr.into(),
            ss.into(),
            gd.into(),
            ga.into(),
            sa.into(),
        ];
        assert_eq!(all.len(), 21);
        for a in all {
            arg_round_trip(a);
        }
    }

    #[test]
    fn reconnect_and_transfer_field_order() {
        let active = ConnectionId::call_only([0xaa]);
        let held = ConnectionId::call_only([0xbb]);
        let r = ReconnectCallArgument::new(active.clone(), held.clone());
        let t = TransferCallArgument::new(held.clone(), active.clone());
        // ReconnectCall: activeCall first; TransferCall: heldCall first
        assert_eq!(
            codec::encode(ty::ReconnectCallArgument, &r.to_value()).unwrap(),
            hex("300a 6b03 8001aa 6b03 8001bb").to_vec()
        );
        assert_eq!(
            codec::encode(ty::TransferCallArgument, &t.to_value()).unwrap(),
            hex("300a 6b03 8001bb 6b03 8001aa").to_vec()
        );
    }

    #[test]
    fn every_result_round_trips() {
        let c = ConnectionId::dialing([7], "201");
        let list = vec![
            crate::types::ConnectionListEntry {
                new_connection: Some(ConnectionId::dialing([8], "202")),
                old_connection: Some(ConnectionId::dialing([7], "202")),
                endpoint: Some(Party::dialing("202")),
                ..Default::default()
            },
            crate::types::ConnectionListEntry {
                new_connection: Some(ConnectionId::device_only(LocalDeviceId::Dynamic(
                    Bytes::from_static(&[1]),
                ))),
                endpoint: Some(Party::NotKnown),
                ..Default::default()
            },
        ];
        let mut tr = TransferCallResult::new(c.clone());
        tr.connections = Some(list.clone());
        let mut cr = ConferenceCallResult::new(c.clone());
        cr.connections = Some(list.clone());
        let mut sst = SingleStepTransResult::new(c.clone());
        sst.connections = Some(list);
        let mut ms = MonitorStartResult::new(MonitorCrossRefId::new([1, 2]));
        ms.monitor_existing_calls = Some(true);
        ms.actual_monitor_filter = Some(Value::seq([("private", Value::bits_from(&[0]))]));
        let mut info = SnapshotDeviceResponseInfo::new(
            c.clone(),
            SnapshotDeviceResponseInfo::compound(&[
                LocalConnectionState::Connected,
                LocalConnectionState::Hold,
            ]),
        );
        info.endpoint_device = Some(Party::dialing("202"));
        assert_eq!(
            info.compound_states(),
            Some(vec![
                LocalConnectionState::Connected,
                LocalConnectionState::Hold
            ])
        );
        let snap = SnapshotDeviceResult::new(SnapshotData::Data(vec![info]));
        let snap_x =
            SnapshotDeviceResult::new(SnapshotData::ServiceCrossRefId(Bytes::from_static(b"x")));
        let mut entry = AgentStateEntry::new(true);
        entry.agent_id = Some(Bytes::from_static(b"4201"));
        let mut ai = AgentInfo::new(AgentState::Busy);
        ai.acd_group = Some(DeviceId::dialing("600"));
        ai.pending_agent_state = Some(PendingAgentState::Ready);
        entry.agent_info = Some(vec![ai, AgentInfo::new(AgentState::Ready)]);
        let gas = GetAgentStateResult::new(vec![entry, AgentStateEntry::new(false)]);
        let mut sas = SetAgentStateResult::new();
        sas.pending_agent_state = Some(PendingAgentState::WorkingAfterCall);
        let all: Vec<OperationResult> = vec![
            MakeCallResult::new(c.clone()).into(),
            ConsultationCallResult::new(c.clone()).into(),
            tr.into(),
            cr.into(),
            sst.into(),
            ms.into(),
            snap.into(),
            snap_x.into(),
            SystemRegisterResult::new(Bytes::from_static(b"reg")).into(),
            gas.into(),
            sas.into(),
            SetAgentStateResult::new().into(),
            OperationResult::Simple {
                op: Operation::HoldCall,
                extensions: None,
            },
            OperationResult::Simple {
                op: Operation::Escape,
                extensions: Some(CommonArguments::private(vec![PrivateData::Private])),
            },
        ];
        for r in all {
            let bytes = r.return_result(5).encode().unwrap();
            let Rose::ReturnResult(rr) = decode_rose(&Bytes::from(bytes.clone())) else {
                panic!()
            };
            let back = OperationResult::from_return_result(&rr).unwrap().unwrap();
            assert_eq!(back, r);
            assert_eq!(back.return_result(5).encode().unwrap(), bytes);
        }
        for op in Operation::ALL.into_iter().filter(|o| o.has_simple_result()) {
            let b = no_data_result(op, 1).unwrap().encode().unwrap();
            assert_eq!(&b[b.len() - 2..], &[0x05, 0x00], "{op}");
        }
    }

    #[test]
    fn unknown_elements_in_arguments_are_kept() {
        // MakeCall with an unknown element between the two devices and one at the end
        let b = hex("3017 30058003323031 9f2a0101 300580033230 32 9f2b020102");
        let v = codec::decode(ty::MakeCallArgument, &b).unwrap();
        let a = MakeCallArgument::from_value(&v).unwrap();
        assert_eq!(a.rest.len(), 2);
        assert_eq!(
            codec::encode(ty::MakeCallArgument, &a.to_value()).unwrap(),
            b.to_vec()
        );
    }

    #[test]
    fn argument_errors() {
        let inv = Invoke {
            invoke_id: InvokeId::Present(1),
            linked_id: None,
            opcode: Code::Local(99),
            argument: None,
        };
        assert!(Argument::from_invoke(&inv)
            .unwrap_err()
            .to_string()
            .contains("unknown operation code 99"));
        let e = MakeCallArgument::from_value(&Value::seq([(
            "callingDevice",
            DeviceId::dialing("1").to_value(),
        )]))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "MakeCallArgument: mandatory component `calledDirectoryNumber` is missing"
        );
        let e = Argument::from_value(Operation::HoldCall, &Value::Null).unwrap_err();
        assert!(e.to_string().contains("HoldCallArgument"));
        assert!(OperationResult::from_value(Operation::HoldCall, &Value::Null).is_err());
        assert!(OperationResult::from_value(Operation::CstaEventReport, &Value::Null).is_err());
    }
}
