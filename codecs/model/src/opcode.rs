//! ECMA-285 operation values (the `CODE local: n` of each X.880 `OPERATION` object of the
//! ECMA-285 modules, listed in WIRE.md §6), as named constants: the one place the numbers
//! are written. [`crate::ops::Operation`] is built on them, and code that matches a raw
//! opcode before (or instead of) reading the typed operation uses them.

/// `alternateCall OPERATION ::= { ... CODE local: 1 }` (alternate-call.asn1).
pub const ALTERNATE_CALL: i64 = 1;
/// `answerCall ... CODE local: 2` (answer-call.asn1).
pub const ANSWER_CALL: i64 = 2;
/// `clearCall ... CODE local: 4` (clear-call.asn1).
pub const CLEAR_CALL: i64 = 4;
/// `clearConnection ... CODE local: 5` (clear-connection.asn1).
pub const CLEAR_CONNECTION: i64 = 5;
/// `conferenceCall ... CODE local: 6` (conference-call.asn1).
pub const CONFERENCE_CALL: i64 = 6;
/// `consultationCall ... CODE local: 7` (consultation-call.asn1).
pub const CONSULTATION_CALL: i64 = 7;
/// `holdCall ... CODE local: 9` (hold-call.asn1).
pub const HOLD_CALL: i64 = 9;
/// `makeCall ... CODE local: 10` (make-call.asn1).
pub const MAKE_CALL: i64 = 10;
/// `reconnectCall ... CODE local: 13` (reconnect-call.asn1).
pub const RECONNECT_CALL: i64 = 13;
/// `retrieveCall ... CODE local: 14` (retrieve-call.asn1).
pub const RETRIEVE_CALL: i64 = 14;
/// `transferCall ... CODE local: 16` (transfer-call.asn1).
pub const TRANSFER_CALL: i64 = 16;
/// `cSTAEventReport ... CODE local: 21` (event-report-definitions.asn1): never answered.
pub const CSTA_EVENT_REPORT: i64 = 21;
/// `singleStepTrans ... CODE local: 50` (single-step-transfer.asn1).
pub const SINGLE_STEP_TRANSFER: i64 = 50;
/// `escape ... CODE local: 51` (escape-service.asn1).
pub const ESCAPE: i64 = 51;
/// `monitorStart ... CODE local: 71` (monitor-start.asn1).
pub const MONITOR_START: i64 = 71;
/// `monitorStop ... CODE local: 73` (monitor-stop.asn1).
pub const MONITOR_STOP: i64 = 73;
/// `snapshotDevice ... CODE local: 74` (snapshot-device.asn1).
pub const SNAPSHOT_DEVICE: i64 = 74;
/// `snapshotCall ... CODE local: 75` (snapshot-call.asn1).
pub const SNAPSHOT_CALL: i64 = 75;
/// `snapshotDeviceData ... CODE local: 77` (snapshot-device-data.asn1): the switch sends the
/// calls of a Snapshot Device answer that gave a `serviceCrossRefID`; never answered.
pub const SNAPSHOT_DEVICE_DATA: i64 = 77;
/// `systemRegister ... CODE local: 207` (system-register.asn1).
pub const SYSTEM_REGISTER: i64 = 207;
/// `systemStatus ... CODE local: 211` (system-status.asn1): either side sends it; the link's
/// keep-alive (WIRE.md §9).
pub const SYSTEM_STATUS: i64 = 211;
/// `generateDigits ... CODE local: 232` (generate-digits.asn1).
pub const GENERATE_DIGITS: i64 = 232;
/// `getAgentState ... CODE local: 304` (get-agent-state.asn1).
pub const GET_AGENT_STATE: i64 = 304;
/// `setAgentState ... CODE local: 312` (set-agent-state.asn1).
pub const SET_AGENT_STATE: i64 = 312;

/// `universalFailure ERROR ::= { PARAMETER UniversalFailure CODE local: 1 }`
/// (error-definition.asn1): the one ECMA-285 error.
pub const UNIVERSAL_FAILURE: i64 = 1;

#[cfg(test)]
mod tests {
    use crate::ops::Operation;
    use crate::schema;

    #[test]
    fn constants_match_the_table() {
        let named = [
            (super::ALTERNATE_CALL, Operation::AlternateCall),
            (super::ANSWER_CALL, Operation::AnswerCall),
            (super::CLEAR_CALL, Operation::ClearCall),
            (super::CLEAR_CONNECTION, Operation::ClearConnection),
            (super::CONFERENCE_CALL, Operation::ConferenceCall),
            (super::CONSULTATION_CALL, Operation::ConsultationCall),
            (super::HOLD_CALL, Operation::HoldCall),
            (super::MAKE_CALL, Operation::MakeCall),
            (super::RECONNECT_CALL, Operation::ReconnectCall),
            (super::RETRIEVE_CALL, Operation::RetrieveCall),
            (super::TRANSFER_CALL, Operation::TransferCall),
            (super::CSTA_EVENT_REPORT, Operation::CstaEventReport),
            (super::SINGLE_STEP_TRANSFER, Operation::SingleStepTransfer),
            (super::ESCAPE, Operation::Escape),
            (super::MONITOR_START, Operation::MonitorStart),
            (super::MONITOR_STOP, Operation::MonitorStop),
            (super::SNAPSHOT_DEVICE, Operation::SnapshotDevice),
            (super::SNAPSHOT_CALL, Operation::SnapshotCall),
            (super::SNAPSHOT_DEVICE_DATA, Operation::SnapshotDeviceData),
            (super::SYSTEM_REGISTER, Operation::SystemRegister),
            (super::SYSTEM_STATUS, Operation::SystemStatus),
            (super::GENERATE_DIGITS, Operation::GenerateDigits),
            (super::GET_AGENT_STATE, Operation::GetAgentState),
            (super::SET_AGENT_STATE, Operation::SetAgentState),
        ];
        assert_eq!(named.len(), Operation::ALL.len());
        for (code, op) in named {
            assert_eq!(op.code(), code, "{op}");
            assert_eq!(schema::operation(code).unwrap().name, op.name());
        }
        assert_eq!(
            schema::error(super::UNIVERSAL_FAILURE).unwrap().name,
            "universalFailure"
        );
    }
}
