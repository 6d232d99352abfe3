//! Typed CSTA event reports (`cSTAEventReport`, op 21): [`EventReport`] with the monitor
//! cross reference and an [`Event`].
//!
//! [`Event`] has a typed variant for every call control, call associated, logical device
//! feature and device maintenance event and for the vendor `privateEvent`; media
//! attachment, physical device and voice unit events (opaque in the schema) and unknown
//! alternatives are [`Event::Other`].
//!
//! Each event struct types the mandatory and commonly used components (connections, the
//! role devices as [`Party`], cause, local connection state, correlator and user data,
//! agent fields, connection lists, …) and keeps every other component, and unknown
//! elements, in `rest`; `to_value` re-emits them in schema order, so
//! `to_value(from_value(v))` encodes to the same octets as `v` (placement rule for unknown
//! elements: [`crate::types::Fields`]).
//!
//! Traps handled by the schema: Originated callingDevice is a SubjectDeviceID; Conferenced
//! extensions are `[5] IMPLICIT`; agentID is `[2] IMPLICIT` in AgentLoggedOn/Off but
//! untagged in AgentReady/NotReady/Busy/WorkingAfterCall; AgentWorkingAfterCall's
//! pendingAgentState is its own enumeration ([`WorkingAfterCallPendingState`]).

use crate::ops::{self, Operation};
use crate::rose::{Code, Invoke, Payload, Rose};
use crate::schema::ty;
use crate::types::{
    open_enum, typed_struct, Build, CommonArguments, ConnectionId, ConnectionList, DeviceId,
    EventCause, Fields, LocalConnectionState, MonitorCrossRefId, Party, PendingAgentState,
    PrivateData, Redirection, TypeError,
};
use crate::value::{Member, Value, UNKNOWN};
use bytes::Bytes;

open_enum! {
    /// The inline `pendingAgentState [2] IMPLICIT ENUMERATED { notReady (0), ready (1),
    /// null (2) }` of AgentWorkingAfterCallEvent (not [`PendingAgentState`]).
    pub enum WorkingAfterCallPendingState = "AgentWorkingAfterCallEvent.pendingAgentState" {
        NotReady = 0 "notReady",
        Ready = 1 "ready",
        Null = 2 "null",
    }
}

// ---- call control events ---------------------------------------------------------------------

typed_struct! {
    /// `BridgedEvent` (callControl 0).
    pub struct BridgedEvent = ty::BridgedEvent;
    required {
        bridged_connection: ConnectionId = "bridgedConnection",
        bridged_appearance: Party = "bridgedAppearance",
        cause: EventCause = "cause",
    }
    optional {
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `CallClearedEvent` (callControl 1).
    pub struct CallClearedEvent = ty::CallClearedEvent;
    required {
        cleared_call: ConnectionId = "clearedCall",
        cause: EventCause = "cause",
    }
    optional {
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `ConferencedEvent` (callControl 2); its extensions are `[5] IMPLICIT`.
    pub struct ConferencedEvent = ty::ConferencedEvent;
    required {
        primary_old_call: ConnectionId = "primaryOldCall",
        conferencing_device: Party = "conferencingDevice",
        added_party: Party = "addedParty",
        conference_connections: ConnectionList = "conferenceConnections",
        cause: EventCause = "cause",
    }
    optional {
        secondary_old_call: ConnectionId = "secondaryOldCall",
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `ConnectionClearedEvent` (callControl 3).
    pub struct ConnectionClearedEvent = ty::ConnectionClearedEvent;
    required {
        dropped_connection: ConnectionId = "droppedConnection",
        releasing_device: Party = "releasingDevice",
        cause: EventCause = "cause",
    }
    optional {
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `DeliveredEvent` (callControl 4).
    pub struct DeliveredEvent = ty::DeliveredEvent;
    required {
        connection: ConnectionId = "connection",
        alerting_device: Party = "alertingDevice",
        calling_device: Party = "callingDevice",
        called_device: Party = "calledDevice",
        last_redirection_device: Redirection = "lastRedirectionDevice",
        cause: EventCause = "cause",
    }
    optional {
        originating_nid_connection: ConnectionId = "originatingNIDConnection",
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        network_calling_device: Party = "networkCallingDevice",
        network_called_device: Party = "networkCalledDevice",
        associated_calling_device: Party = "associatedCallingDevice",
        associated_called_device: Party = "associatedCalledDevice",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `DigitsDialedEvent` (callControl 5).
    pub struct DigitsDialedEvent = ty::DigitsDialedEvent;
    required {
        dialing_connection: ConnectionId = "dialingConnection",
        dialing_device: Party = "dialingDevice",
        dialing_sequence: DeviceId = "dialingSequence",
        cause: EventCause = "cause",
    }
    optional {
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        network_calling_device: Party = "networkCallingDevice",
        network_called_device: Party = "networkCalledDevice",
        associated_calling_device: Party = "associatedCallingDevice",
        associated_called_device: Party = "associatedCalledDevice",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `DivertedEvent` (callControl 6).
    pub struct DivertedEvent = ty::DivertedEvent;
    required {
        connection: ConnectionId = "connection",
        diverting_device: Party = "divertingDevice",
        new_destination: Party = "newDestination",
        last_redirection_device: Redirection = "lastRedirectionDevice",
        cause: EventCause = "cause",
    }
    optional {
        calling_device: Party = "callingDevice",
        called_device: Party = "calledDevice",
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        network_calling_device: Party = "networkCallingDevice",
        network_called_device: Party = "networkCalledDevice",
        associated_calling_device: Party = "associatedCallingDevice",
        associated_called_device: Party = "associatedCalledDevice",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `EstablishedEvent` (callControl 7).
    pub struct EstablishedEvent = ty::EstablishedEvent;
    required {
        established_connection: ConnectionId = "establishedConnection",
        answering_device: Party = "answeringDevice",
        calling_device: Party = "callingDevice",
        called_device: Party = "calledDevice",
        last_redirection_device: Redirection = "lastRedirectionDevice",
        cause: EventCause = "cause",
    }
    optional {
        originating_nid_connection: ConnectionId = "originatingNIDConnection",
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        network_calling_device: Party = "networkCallingDevice",
        network_called_device: Party = "networkCalledDevice",
        associated_calling_device: Party = "associatedCallingDevice",
        associated_called_device: Party = "associatedCalledDevice",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `FailedEvent` (callControl 8).
    pub struct FailedEvent = ty::FailedEvent;
    required {
        failed_connection: ConnectionId = "failedConnection",
        failing_device: Party = "failingDevice",
        calling_device: Party = "callingDevice",
        called_device: Party = "calledDevice",
        last_redirection_device: Redirection = "lastRedirectionDevice",
        cause: EventCause = "cause",
    }
    optional {
        originating_nid_connection: ConnectionId = "originatingNIDConnection",
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        network_calling_device: Party = "networkCallingDevice",
        network_called_device: Party = "networkCalledDevice",
        associated_calling_device: Party = "associatedCallingDevice",
        associated_called_device: Party = "associatedCalledDevice",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `HeldEvent` (callControl 9).
    pub struct HeldEvent = ty::HeldEvent;
    required {
        held_connection: ConnectionId = "heldConnection",
        holding_device: Party = "holdingDevice",
        cause: EventCause = "cause",
    }
    optional {
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `NetworkCapabilitiesChangedEvent` (callControl 10).
    pub struct NetworkCapabilitiesChangedEvent = ty::NetworkCapabilitiesChangedEvent;
    required {
        outbound_connection: ConnectionId = "outboundConnection",
        network_interface_used: Party = "networkInterfaceUsed",
        called_device: Party = "calledDevice",
        progress_indicator: Value = "progressIndicator",
        cause: EventCause = "cause",
    }
    optional {
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        network_capability: Value = "networkCapability",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `NetworkReachedEvent` (callControl 11); the standard spells its field
    /// `originatingNIDConneciton`.
    pub struct NetworkReachedEvent = ty::NetworkReachedEvent;
    required {
        outbound_connection: ConnectionId = "outboundConnection",
        network_interface_used: Party = "networkInterfaceUsed",
        calling_device: Party = "callingDevice",
        called_device: Party = "calledDevice",
        last_redirection_device: Redirection = "lastRedirectionDevice",
        cause: EventCause = "cause",
    }
    optional {
        originating_nid_connection: ConnectionId = "originatingNIDConneciton",
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        network_capability: Value = "networkCapability",
        network_calling_device: Party = "networkCallingDevice",
        network_called_device: Party = "networkCalledDevice",
        associated_calling_device: Party = "associatedCallingDevice",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `OfferedEvent` (callControl 12).
    pub struct OfferedEvent = ty::OfferedEvent;
    required {
        offered_connection: ConnectionId = "offeredConnection",
        offered_device: Party = "offeredDevice",
        calling_device: Party = "callingDevice",
        called_device: Party = "calledDevice",
        last_redirection_device: Redirection = "lastRedirectionDevice",
        cause: EventCause = "cause",
    }
    optional {
        originating_nid_connection: ConnectionId = "originatingNIDConnection",
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        network_calling_device: Party = "networkCallingDevice",
        network_called_device: Party = "networkCalledDevice",
        associated_calling_device: Party = "associatedCallingDevice",
        associated_called_device: Party = "associatedCalledDevice",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `OriginatedEvent` (callControl 13): callingDevice is a **SubjectDeviceID** (`63`).
    pub struct OriginatedEvent = ty::OriginatedEvent;
    required {
        originated_connection: ConnectionId = "originatedConnection",
        calling_device: Party = "callingDevice",
        called_device: Party = "calledDevice",
        cause: EventCause = "cause",
    }
    optional {
        originating_device: DeviceId = "originatingDevice",
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        network_calling_device: Party = "networkCallingDevice",
        network_called_device: Party = "networkCalledDevice",
        associated_calling_device: Party = "associatedCallingDevice",
        associated_called_device: Party = "associatedCalledDevice",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `QueuedEvent` (callControl 14).
    pub struct QueuedEvent = ty::QueuedEvent;
    required {
        queued_connection: ConnectionId = "queuedConnection",
        queue: Party = "queue",
        calling_device: Party = "callingDevice",
        called_device: Party = "calledDevice",
        last_redirection_device: Redirection = "lastRedirectionDevice",
        cause: EventCause = "cause",
    }
    optional {
        number_queued: i64 = "numberQueued",
        calls_in_front: i64 = "callsInFront",
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        network_calling_device: Party = "networkCallingDevice",
        network_called_device: Party = "networkCalledDevice",
        associated_calling_device: Party = "associatedCallingDevice",
        associated_called_device: Party = "associatedCalledDevice",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `RetrievedEvent` (callControl 15).
    pub struct RetrievedEvent = ty::RetrievedEvent;
    required {
        retrieved_connection: ConnectionId = "retrievedConnection",
        retrieving_device: Party = "retrievingDevice",
        cause: EventCause = "cause",
    }
    optional {
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `ServiceInitiatedEvent` (callControl 16).
    pub struct ServiceInitiatedEvent = ty::ServiceInitiatedEvent;
    required {
        initiated_connection: ConnectionId = "initiatedConnection",
        initiating_device: Party = "initiatingDevice",
        cause: EventCause = "cause",
    }
    optional {
        called_device: Party = "calledDevice",
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        network_calling_device: Party = "networkCallingDevice",
        network_called_device: Party = "networkCalledDevice",
        associated_calling_device: Party = "associatedCallingDevice",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `TransferredEvent` (callControl 17).
    pub struct TransferredEvent = ty::TransferredEvent;
    required {
        primary_old_call: ConnectionId = "primaryOldCall",
        transferring_device: Party = "transferringDevice",
        transferred_to_device: Party = "transferredToDevice",
        transferred_connections: ConnectionList = "transferredConnections",
        cause: EventCause = "cause",
    }
    optional {
        secondary_old_call: ConnectionId = "secondaryOldCall",
        local_connection_info: LocalConnectionState = "localConnectionInfo",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        extensions: CommonArguments = "extensions",
    }
}

// ---- call associated events ------------------------------------------------------------------

typed_struct! {
    /// `CallInformationEvent` (callAssociated 0).
    pub struct CallInformationEvent = ty::CallInformationEvent;
    required {
        connection: ConnectionId = "connection",
        device: Party = "device",
    }
    optional {
        calling_device: Party = "callingDevice",
        account_info: Bytes = "accountInfo",
        auth_code: Bytes = "authCode",
        correlator_data: Bytes = "correlatorData",
        user_data: Bytes = "userData",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `ChargingEvent` (callAssociated 1).
    pub struct ChargingEvent = ty::ChargingEvent;
    required {
        connection: ConnectionId = "connection",
        charged_device: DeviceId = "chargedDevice",
        charging_info: Value = "chargingInfo",
    }
    optional {
        cause: EventCause = "cause",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `DigitsGeneratedEvent` (callAssociated 2).
    pub struct DigitsGeneratedEvent = ty::DigitsGeneratedEvent;
    required {
        connection: ConnectionId = "connection",
        digit_generated_list: String = "digitGeneratedList",
    }
    optional {
        digit_duration_list: Vec<i64> = "digitDurationList",
        pause_duration_list: Vec<i64> = "pauseDurationList",
        connection_info: Value = "connectionInfo",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `TelephonyTonesGeneratedEvent` (callAssociated 3).
    pub struct TelephonyTonesGeneratedEvent = ty::TelephonyTonesGeneratedEvent;
    required {
        connection: ConnectionId = "connection",
    }
    optional {
        /// `TelephonyTone` ENUMERATED.
        tone_generated: Value = "toneGenerated",
        tone_frequency: i64 = "toneFrequency",
        tone_duration: i64 = "toneDuration",
        pause_duration: i64 = "pauseDuration",
        connection_info: Value = "connectionInfo",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `ServiceCompletionFailureEvent` (callAssociated 4).
    pub struct ServiceCompletionFailureEvent = ty::ServiceCompletionFailureEvent;
    required {
        primary_call: Value = "primaryCall",
        cause: EventCause = "cause",
    }
    optional {
        secondary_call: Value = "secondaryCall",
        extensions: CommonArguments = "extensions",
    }
}

// ---- logical device feature events ---------------------------------------------------------

typed_struct! {
    /// `AgentBusyEvent` (logicalDeviceFeature 0): agentID untagged, cause `[3]`.
    pub struct AgentBusyEvent = ty::AgentBusyEvent;
    required {
        agent_device: Party = "agentDevice",
    }
    optional {
        agent_id: Bytes = "agentID",
        acd_group: DeviceId = "acdGroup",
        pending_agent_state: PendingAgentState = "pendingAgentState",
        cause: EventCause = "cause",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `AgentLoggedOnEvent` (logicalDeviceFeature 1): agentID `[2] IMPLICIT`.
    pub struct AgentLoggedOnEvent = ty::AgentLoggedOnEvent;
    required {
        agent_device: Party = "agentDevice",
    }
    optional {
        agent_id: Bytes = "agentID",
        acd_group: DeviceId = "acdGroup",
        agent_password: Bytes = "agentPassword",
        cause: EventCause = "cause",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `AgentLoggedOffEvent` (logicalDeviceFeature 2): agentID `[2] IMPLICIT`.
    pub struct AgentLoggedOffEvent = ty::AgentLoggedOffEvent;
    required {
        agent_device: Party = "agentDevice",
    }
    optional {
        agent_id: Bytes = "agentID",
        acd_group: DeviceId = "acdGroup",
        agent_password: Bytes = "agentPassword",
        cause: EventCause = "cause",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `AgentNotReadyEvent` (logicalDeviceFeature 3): agentID untagged.
    pub struct AgentNotReadyEvent = ty::AgentNotReadyEvent;
    required {
        agent_device: Party = "agentDevice",
    }
    optional {
        agent_id: Bytes = "agentID",
        acd_group: DeviceId = "acdGroup",
        cause: EventCause = "cause",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `AgentReadyEvent` (logicalDeviceFeature 4): agentID untagged.
    pub struct AgentReadyEvent = ty::AgentReadyEvent;
    required {
        agent_device: Party = "agentDevice",
    }
    optional {
        agent_id: Bytes = "agentID",
        acd_group: DeviceId = "acdGroup",
        cause: EventCause = "cause",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `AgentWorkingAfterCallEvent` (logicalDeviceFeature 5): agentID untagged, its own
    /// pendingAgentState enumeration, cause `[3]`.
    pub struct AgentWorkingAfterCallEvent = ty::AgentWorkingAfterCallEvent;
    required {
        agent_device: Party = "agentDevice",
    }
    optional {
        agent_id: Bytes = "agentID",
        acd_group: DeviceId = "acdGroup",
        pending_agent_state: WorkingAfterCallPendingState = "pendingAgentState",
        cause: EventCause = "cause",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `AutoAnswerEvent` (logicalDeviceFeature 6).
    pub struct AutoAnswerEvent = ty::AutoAnswerEvent;
    required {
        invoking_device: Party = "invokingDevice",
        auto_answer_on: bool = "autoAnswerOn",
    }
    optional {
        number_of_rings: i64 = "numberOfRings",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `AutoWorkModeEvent` (logicalDeviceFeature 7).
    pub struct AutoWorkModeEvent = ty::AutoWorkModeEvent;
    required {
        invoking_device: Party = "invokingDevice",
        auto_work_on: bool = "autoWorkOn",
        auto_work_interval: i64 = "autoWorkInterval",
    }
    optional {
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `CallBackEvent` (logicalDeviceFeature 8).
    pub struct CallBackEvent = ty::CallBackEvent;
    required {
        originating_device: Party = "originatingDevice",
        target_device: Party = "targetDevice",
        call_back_set_canceled: bool = "callBackSetCanceled",
    }
    optional {
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `CallBackMessageEvent` (logicalDeviceFeature 9).
    pub struct CallBackMessageEvent = ty::CallBackMessageEvent;
    required {
        originating_device: Party = "originatingDevice",
        target_device: Party = "targetDevice",
        call_back_msg_set_canceled: bool = "callBackMsgSetCanceled",
    }
    optional {
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `CallerIDStatusEvent` (logicalDeviceFeature 10).
    pub struct CallerIdStatusEvent = ty::CallerIDStatusEvent;
    required {
        device: DeviceId = "device",
        caller_id_provided: bool = "callerIDProvided",
    }
    optional {
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `DoNotDisturbEvent` (logicalDeviceFeature 11).
    pub struct DoNotDisturbEvent = ty::DoNotDisturbEvent;
    required {
        device: Party = "device",
        do_not_disturb_on: bool = "doNotDisturbOn",
    }
    optional {
        call_origination: Value = "callOrigination",
        calling_device_list: Vec<DeviceId> = "callingDeviceList",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `ForwardingEvent` (logicalDeviceFeature 12).
    pub struct ForwardingEvent = ty::ForwardingEvent;
    required {
        device: Party = "device",
        forward_status: bool = "forwardStatus",
    }
    optional {
        /// `ForwardingType` ENUMERATED.
        forwarding_type: Value = "forwardingType",
        forward_to: DeviceId = "forwardTo",
        /// `ForwardDefault` ENUMERATED.
        forward_default: Value = "forwardDefault",
        ring_count: i64 = "ringCount",
        ring_duration: i64 = "ringDuration",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `PresenceStateEvent` (logicalDeviceFeature 14).
    pub struct PresenceStateEvent = ty::PresenceStateEvent;
    required {
        device: Party = "device",
        /// `PresenceState` BIT STRING.
        presence_state: Value = "presenceState",
    }
    optional {
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `RouteingModeEvent` (logicalDeviceFeature 13).
    pub struct RouteingModeEvent = ty::RouteingModeEvent;
    required {
        device: Party = "device",
        routeing_mode: bool = "routeingMode",
    }
    optional {
        extensions: CommonArguments = "extensions",
    }
}

// ---- device maintenance events --------------------------------------------------------------

typed_struct! {
    /// `BackInServiceEvent` (deviceMaintenance 0).
    pub struct BackInServiceEvent = ty::BackInServiceEvent;
    required {
        device: Party = "device",
    }
    optional {
        cause: EventCause = "cause",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `DeviceCapsChangedEvent` (deviceMaintenance 1, `deviceCapabilityChanged`).
    pub struct DeviceCapsChangedEvent = ty::DeviceCapsChangedEvent;
    required {
        device: Party = "device",
    }
    optional {
        cause: EventCause = "cause",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `OutOfServiceEvent` (deviceMaintenance 2).
    pub struct OutOfServiceEvent = ty::OutOfServiceEvent;
    required {
        device: Party = "device",
    }
    optional {
        cause: EventCause = "cause",
        extensions: CommonArguments = "extensions",
    }
}

typed_struct! {
    /// `PartiallyInServiceEvent` (deviceMaintenance 3).
    pub struct PartiallyInServiceEvent = ty::PartiallyInServiceEvent;
    required {
        device: Party = "device",
    }
    optional {
        cause: EventCause = "cause",
        extensions: CommonArguments = "extensions",
    }
}

// ---- vendor specific --------------------------------------------------------------------

typed_struct! {
    /// `PrivateEvent` (vendorSpec 0).
    pub struct PrivateEvent = ty::PrivateEvent;
    required {
        private_data: PrivateData = "privateData",
    }
    optional {
        security: Value = "security",
    }
}

// ---- the Event enum ---------------------------------------------------------------------

macro_rules! events {
    ($( $family:literal { $( $variant:ident($st:ident) = $name:literal ),* $(,)? } )*) => {
        /// The event of a CSTAEventReport (`eventSpecificInfo`).
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $($( #[doc = concat!("`", $family, "` / `", $name, "`")] $variant($st), )*)*
            /// Any other event, as the codec decoded it: media attachment, physical device
            /// and voice unit events (`value` is [`Value::Opaque`]), an unknown event of a
            /// known family (`name` empty, `value` the raw TLV), or an unknown family
            /// (`family` and `name` empty, `value` the raw TLV). Also what
            /// [`Event::from_value_lenient`] gives for a typed event it cannot read.
            Other {
                family: &'static str,
                name: &'static str,
                value: Value,
            },
        }

        $($(
            impl $st {
                /// The `EventSpecificInfo` alternative (event family).
                pub const FAMILY: &'static str = $family;
                /// The event's alternative name within its family.
                pub const NAME: &'static str = $name;
            }
            impl From<$st> for Event {
                fn from(e: $st) -> Event {
                    Event::$variant(e)
                }
            }
        )*)*

        impl Event {
            /// The event from the `eventSpecificInfo` value.
            pub fn from_value(v: &Value) -> Result<Event, TypeError> {
                let (family, name, inner) = match Event::split(v)? {
                    Ok(parts) => parts,
                    Err(other) => return Ok(other),
                };
                match (family, name) {
                    $($( ($family, $name) => $st::from_value(inner)
                        .map(Event::$variant)
                        .map_err(|e| e.within(name).within(family)), )*)*
                    _ => Ok(Event::Other { family, name, value: inner.clone() }),
                }
            }

            /// The `eventSpecificInfo` value.
            pub fn to_value(&self) -> Value {
                match self {
                    $($( Event::$variant(e) => Value::alt($family, Value::alt($name, e.to_value())), )*)*
                    Event::Other { family, name, value } => {
                        if family.is_empty() {
                            value.clone()
                        } else if name.is_empty() {
                            Value::alt(family, value.clone())
                        } else {
                            Value::alt(family, Value::alt(name, value.clone()))
                        }
                    }
                }
            }

            /// The family (`callControlEvents`, …); empty for an unknown family.
            pub fn family(&self) -> &'static str {
                match self {
                    $($( Event::$variant(_) => $family, )*)*
                    Event::Other { family, .. } => family,
                }
            }

            /// The event name (`delivered`, …); empty for an unknown event.
            pub fn name(&self) -> &'static str {
                match self {
                    $($( Event::$variant(_) => $name, )*)*
                    Event::Other { name, .. } => name,
                }
            }
        }
    };
}

events! {
    "callControlEvents" {
        Bridged(BridgedEvent) = "bridged",
        CallCleared(CallClearedEvent) = "callCleared",
        Conferenced(ConferencedEvent) = "conferenced",
        ConnectionCleared(ConnectionClearedEvent) = "connectionCleared",
        Delivered(DeliveredEvent) = "delivered",
        DigitsDialed(DigitsDialedEvent) = "digitsDialed",
        Diverted(DivertedEvent) = "diverted",
        Established(EstablishedEvent) = "established",
        Failed(FailedEvent) = "failed",
        Held(HeldEvent) = "held",
        NetworkCapabilitiesChanged(NetworkCapabilitiesChangedEvent) = "networkCapabilitiesChanged",
        NetworkReached(NetworkReachedEvent) = "networkReached",
        Offered(OfferedEvent) = "offered",
        Originated(OriginatedEvent) = "originated",
        Queued(QueuedEvent) = "queued",
        Retrieved(RetrievedEvent) = "retrieved",
        ServiceInitiated(ServiceInitiatedEvent) = "serviceInitiated",
        Transferred(TransferredEvent) = "transferred",
    }
    "callAssociatedEvents" {
        CallInformation(CallInformationEvent) = "callInformation",
        Charging(ChargingEvent) = "charging",
        DigitsGenerated(DigitsGeneratedEvent) = "digitsGeneratedEvent",
        TelephonyTonesGenerated(TelephonyTonesGeneratedEvent) = "telephonyTonesGeneratedEvent",
        ServiceCompletionFailure(ServiceCompletionFailureEvent) = "serviceCompletionFailure",
    }
    "logicalDeviceFeatureEvents" {
        AgentBusy(AgentBusyEvent) = "agentBusy",
        AgentLoggedOn(AgentLoggedOnEvent) = "agentLoggedOn",
        AgentLoggedOff(AgentLoggedOffEvent) = "agentLoggedOff",
        AgentNotReady(AgentNotReadyEvent) = "agentNotReady",
        AgentReady(AgentReadyEvent) = "agentReady",
        AgentWorkingAfterCall(AgentWorkingAfterCallEvent) = "agentWorkingAfterCall",
        AutoAnswer(AutoAnswerEvent) = "autoAnswer",
        AutoWorkMode(AutoWorkModeEvent) = "autoWorkMode",
        CallBack(CallBackEvent) = "callBack",
        CallBackMessage(CallBackMessageEvent) = "callBackMessage",
        CallerIdStatus(CallerIdStatusEvent) = "callerIDStatus",
        DoNotDisturb(DoNotDisturbEvent) = "doNotDisturb",
        Forwarding(ForwardingEvent) = "forwarding",
        RouteingMode(RouteingModeEvent) = "routeingMode",
        PresenceState(PresenceStateEvent) = "presenceState",
    }
    "deviceMaintenanceEvents" {
        BackInService(BackInServiceEvent) = "backInService",
        DeviceCapabilityChanged(DeviceCapsChangedEvent) = "deviceCapabilityChanged",
        OutOfService(OutOfServiceEvent) = "outOfService",
        PartiallyInService(PartiallyInServiceEvent) = "partiallyInService",
    }
    "vendorSpecEvents" {
        PrivateEvent(PrivateEvent) = "privateEvent",
    }
}

impl Event {
    /// `Ok((family, name, event value))`, or `Err(other)` for an unknown family / event.
    #[allow(clippy::type_complexity)]
    fn split(v: &Value) -> Result<Result<(&'static str, &'static str, &Value), Event>, TypeError> {
        let (family, inner) = match v {
            Value::Choice(f, inner) => (*f, &**inner),
            Value::Raw(_) => {
                return Ok(Err(Event::Other {
                    family: UNKNOWN,
                    name: UNKNOWN,
                    value: v.clone(),
                }))
            }
            _ => {
                return Err(TypeError::new(
                    "EventSpecificInfo",
                    "expected a CHOICE alternative",
                ))
            }
        };
        match inner {
            Value::Choice(n, ev) => Ok(Ok((family, *n, &**ev))),
            Value::Raw(_) => Ok(Err(Event::Other {
                family,
                name: UNKNOWN,
                value: inner.clone(),
            })),
            _ => Err(
                TypeError::new("EventSpecificInfo", "expected a CHOICE alternative").within(family),
            ),
        }
    }

    /// Like [`Event::from_value`], but an event whose typed view cannot be read (a vendor
    /// alternative inside a ConnectionID, an unknown element inside a DeviceID, …) becomes
    /// [`Event::Other`] with its value instead of an error; still an error when `v` is not
    /// an `eventSpecificInfo` value at all.
    pub fn from_value_lenient(v: &Value) -> Result<Event, TypeError> {
        match Event::from_value(v) {
            Ok(e) => Ok(e),
            Err(err) => match Event::split(v)? {
                Ok((family, name, inner)) => Ok(Event::Other {
                    family,
                    name,
                    value: inner.clone(),
                }),
                Err(_) => Err(err),
            },
        }
    }

    /// Whether this is a typed variant (not [`Event::Other`]).
    pub fn is_typed(&self) -> bool {
        !matches!(self, Event::Other { .. })
    }
}

// ---- the event report ---------------------------------------------------------------------

/// `CSTAEventReportArgument ::= SEQUENCE { crossRefIdentifier MonitorCrossRefID,
/// eventSpecificInfo EventSpecificInfo }`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventReport {
    /// The monitor the event belongs to (MonitorStartResult.crossRefIdentifier).
    pub xref: MonitorCrossRefId,
    pub event: Event,
    /// Unknown elements of the report (placement rule: [`Fields`]).
    pub rest: Vec<Member>,
}

impl EventReport {
    const TYPED: &'static [&'static str] = &["crossRefIdentifier", "eventSpecificInfo"];

    pub fn new(xref: MonitorCrossRefId, event: impl Into<Event>) -> EventReport {
        EventReport {
            xref,
            event: event.into(),
            rest: Vec::new(),
        }
    }

    fn read(
        v: &Value,
        event: fn(&Value) -> Result<Event, TypeError>,
    ) -> Result<EventReport, TypeError> {
        let r = Fields::new(v, ty::CSTAEventReportArgument, Self::TYPED)?;
        let xref = r.req("crossRefIdentifier")?;
        let esi = r.get("eventSpecificInfo").ok_or_else(|| {
            TypeError::new(
                "CSTAEventReportArgument",
                "mandatory component `eventSpecificInfo` is missing",
            )
        })?;
        Ok(EventReport {
            xref,
            event: event(esi).map_err(|e| e.within("eventSpecificInfo"))?,
            rest: r.rest,
        })
    }

    /// The typed report (error when a typed event's value cannot be read).
    pub fn from_value(v: &Value) -> Result<EventReport, TypeError> {
        EventReport::read(v, Event::from_value)
    }

    /// The report with [`Event::from_value_lenient`]: loses nothing; an error only when the
    /// report itself is malformed.
    pub fn from_value_lenient(v: &Value) -> Result<EventReport, TypeError> {
        EventReport::read(v, Event::from_value_lenient)
    }

    /// The report of a cSTAEventReport invoke.
    pub fn from_invoke(inv: &Invoke) -> Result<EventReport, TypeError> {
        EventReport::from_invoke_with(inv, EventReport::from_value)
    }

    /// The report of a cSTAEventReport invoke, read leniently.
    pub fn from_invoke_lenient(inv: &Invoke) -> Result<EventReport, TypeError> {
        EventReport::from_invoke_with(inv, EventReport::from_value_lenient)
    }

    fn from_invoke_with(
        inv: &Invoke,
        read: fn(&Value) -> Result<EventReport, TypeError>,
    ) -> Result<EventReport, TypeError> {
        if inv.opcode != Code::Local(Operation::CstaEventReport.code()) {
            return Err(TypeError::new("Invoke", "not a cSTAEventReport"));
        }
        let arg = inv
            .argument
            .as_ref()
            .ok_or_else(|| TypeError::new("Invoke", "cSTAEventReport without argument"))?;
        read(&arg.value).map_err(|e| e.within("argument"))
    }

    pub fn to_value(&self) -> Value {
        let mut w = Build::new(ty::CSTAEventReportArgument, Self::TYPED);
        w.put("crossRefIdentifier", &self.xref);
        w.put_value("eventSpecificInfo", self.event.to_value());
        w.finish(&self.rest)
    }

    /// The invoke argument.
    pub fn payload(&self) -> Payload {
        Payload::typed(ty::CSTAEventReportArgument, self.to_value())
    }

    /// The cSTAEventReport invoke APDU (never answered).
    pub fn invoke(&self, invoke_id: i64) -> Rose {
        ops::invoke(Operation::CstaEventReport, invoke_id, self.payload())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apdu::Apdu;
    use crate::codec;
    use crate::schema;
    use crate::types::ConnectionListEntry;

    use crate::test_util::hex;

    /// A row of shared/spec/captures/vectors.tsv (as fixtures/valid/<name>.hex).
    fn vector(name: &str) -> Bytes {
        crate::types::fixtures::load(name)
    }

    fn invoke_of(b: &Bytes) -> Invoke {
        match Apdu::decode(b).unwrap() {
            Apdu::Rose(Rose::Invoke(i)) => i,
            a => panic!("not an invoke: {a:?}"),
        }
    }

    /// Decode, read typed, check the typed form re-encodes to the same octets.
    fn report_of(b: &Bytes) -> EventReport {
        let inv = invoke_of(b);
        let r = EventReport::from_invoke(&inv).unwrap();
        let id = match inv.invoke_id {
            crate::rose::InvokeId::Present(i) => i,
            _ => panic!(),
        };
        assert_eq!(r.invoke(id).encode().unwrap(), b.to_vec());
        r
    }

    fn xref1() -> MonitorCrossRefId {
        MonitorCrossRefId::new([0, 0, 0, 1])
    }

    #[test]
    fn delivered_vector() {
        let b = vector("delivered_event");
        let r = report_of(&b);
        assert_eq!(r.xref, xref1());
        let Event::Delivered(d) = &r.event else {
            panic!("{:?}", r.event)
        };
        assert_eq!(d.connection, ConnectionId::dialing([0x00, 0x42], "202"));
        assert_eq!(d.alerting_device.number(), Some("202"));
        assert_eq!(d.calling_device.number(), Some("201"));
        assert_eq!(d.called_device.number(), Some("202"));
        assert_eq!(d.last_redirection_device, Redirection::NotKnown);
        assert_eq!(
            d.local_connection_info,
            Some(LocalConnectionState::Alerting)
        );
        assert_eq!(d.cause, EventCause::NEW_CALL);
        assert_eq!(d.cause.name(), Some("newCall"));
        assert!(d.rest.is_empty());
        // built from scratch
        let mut e = DeliveredEvent::new(
            ConnectionId::dialing([0x00, 0x42], "202"),
            Party::dialing("202"),
            Party::dialing("201"),
            Party::dialing("202"),
            Redirection::NotKnown,
            EventCause::NEW_CALL,
        );
        e.local_connection_info = Some(LocalConnectionState::Alerting);
        assert_eq!(&e, d);
        assert_eq!(
            EventReport::new(xref1(), e).invoke(9).encode().unwrap(),
            b.to_vec()
        );
    }

    #[test]
    fn established_and_cleared_vectors() {
        let b = vector("established_event");
        let r = report_of(&b);
        let Event::Established(e) = &r.event else {
            panic!()
        };
        assert_eq!(e.answering_device.number(), Some("202"));
        assert_eq!(
            e.local_connection_info,
            Some(LocalConnectionState::Connected)
        );
        assert_eq!(e.cause.name(), Some("normal"));
        let mut built = EstablishedEvent::new(
            ConnectionId::dialing([0x00, 0x42], "202"),
            Party::dialing("202"),
            Party::dialing("201"),
            Party::dialing("202"),
            Redirection::NotKnown,
            EventCause::NORMAL,
        );
        built.local_connection_info = Some(LocalConnectionState::Connected);
        assert_eq!(
            EventReport::new(xref1(), built)
                .invoke(10)
                .encode()
                .unwrap(),
            b.to_vec()
        );

        let b = vector("connection_cleared_event");
        let r = report_of(&b);
        let Event::ConnectionCleared(c) = &r.event else {
            panic!()
        };
        assert_eq!(c.releasing_device.number(), Some("202"));
        assert_eq!(c.cause.name(), Some("normalClearing"));
        let mut built = ConnectionClearedEvent::new(
            ConnectionId::dialing([0x00, 0x42], "202"),
            Party::dialing("202"),
            EventCause::NORMAL_CLEARING,
        );
        built.local_connection_info = Some(LocalConnectionState::Null);
        assert_eq!(
            EventReport::new(xref1(), built)
                .invoke(11)
                .encode()
                .unwrap(),
            b.to_vec()
        );
    }

    #[test]
    fn agent_ready_vector() {
        let b = vector("agent_ready_event");
        let r = report_of(&b);
        assert_eq!(r.xref, MonitorCrossRefId::new([0, 0, 0, 2]));
        let Event::AgentReady(a) = &r.event else {
            panic!()
        };
        assert_eq!(a.agent_device.number(), Some("201"));
        assert_eq!(a.agent_id.as_deref(), Some(&b"4201"[..]));
        let mut built = AgentReadyEvent::new(Party::dialing("201"));
        built.agent_id = Some(Bytes::from_static(b"4201"));
        assert_eq!(
            EventReport::new(MonitorCrossRefId::new([0, 0, 0, 2]), built)
                .invoke(12)
                .encode()
                .unwrap(),
            b.to_vec()
        );
    }

    fn both(call: u8, number: &str) -> ConnectionId {
        ConnectionId::dialing([0x00, call], number)
    }

    fn entry(
        new: Option<ConnectionId>,
        old: Option<ConnectionId>,
        ep: &str,
    ) -> ConnectionListEntry {
        ConnectionListEntry {
            new_connection: new,
            old_connection: old,
            endpoint: Some(Party::Device(DeviceId::dialing(ep))),
            ..Default::default()
        }
    }

    #[test]
    fn transferred_matches_oracle() {
        // oracle.py encode APDU: transferred {primaryOldCall both(0042,201), secondaryOldCall
        // both(0043,201), transferringDevice 201, transferredToDevice 203,
        // transferredConnections [{new both(0043,202), old both(0042,202), endpoint 202},
        // {new both(0043,203), endpoint 203}], localConnectionInfo null, cause transfer}
        let oracle = hex(
            "a181a0020114020115308197550400000001a0818eb1818b6b0f300d80020042a107300580033230\
             31a00f300d80020043a10730058003323031630730058003323031630730058003323033a14f302f\
             a0116b0f300d80020043a10730058003323032a1116b0f300d80020042a107300580033230 32a2\
             0730058003323032301ca0116b0f300d80020043a10730058003323033a20730058003323033 4e\
             01000a0120",
        );
        let mut t = TransferredEvent::new(
            both(0x42, "201"),
            Party::dialing("201"),
            Party::dialing("203"),
            vec![
                entry(Some(both(0x43, "202")), Some(both(0x42, "202")), "202"),
                entry(Some(both(0x43, "203")), None, "203"),
            ],
            EventCause::TRANSFER,
        );
        t.secondary_old_call = Some(both(0x43, "201"));
        t.local_connection_info = Some(LocalConnectionState::Null);
        assert_eq!(
            EventReport::new(xref1(), t.clone())
                .invoke(20)
                .encode()
                .unwrap(),
            oracle.to_vec()
        );
        let r = report_of(&oracle);
        assert_eq!(r.event, Event::Transferred(t));
    }

    #[test]
    fn conferenced_matches_oracle() {
        // conferenced {primaryOldCall both(0042,201), secondaryOldCall both(0043,201),
        // conferencingDevice 201, addedParty 203, conferenceConnections [{new both(0042,202),
        // endpoint 202}, {new both(0042,203), old both(0043,203), endpoint 203}],
        // localConnectionInfo connected, cause conference, extensions {privateData
        // [string 0102]}}: extensions [5] IMPLICIT = a5 06 a1 04 04 02 0102
        let oracle = hex(
            "a181a802011502011530819f550400000001a08196a281936b0f300d80020042a107300580033230\
             316b0f300d80020043a10730058003323031630730058003323031630730058003323033304f301c\
             a0116b0f300d80020042a10730058003323032a20730058003323032302fa0116b0f300d80020042\
             a10730058003323033a1116b0f300d80020043a10730058003323033a20730058003323033 4e0103\
             0a013f a506a10404020102",
        );
        let mut c = ConferencedEvent::new(
            both(0x42, "201"),
            Party::dialing("201"),
            Party::dialing("203"),
            vec![
                entry(Some(both(0x42, "202")), None, "202"),
                entry(Some(both(0x42, "203")), Some(both(0x43, "203")), "203"),
            ],
            EventCause::CONFERENCE,
        );
        c.secondary_old_call = Some(both(0x43, "201"));
        c.local_connection_info = Some(LocalConnectionState::Connected);
        c.extensions = Some(CommonArguments::private(vec![PrivateData::String(
            Bytes::from_static(&[1, 2]),
        )]));
        assert_eq!(
            EventReport::new(xref1(), c.clone())
                .invoke(21)
                .encode()
                .unwrap(),
            oracle.to_vec()
        );
        let r = report_of(&oracle);
        assert_eq!(r.event, Event::Conferenced(c));
    }

    #[test]
    fn queued_matches_oracle() {
        // queued {queuedConnection both(0044,600), queue 600, callingDevice 0891234567,
        // calledDevice 600, lastRedirectionDevice notKnown, numberQueued 3, callsInFront 2,
        // localConnectionInfo queued, cause enteringDistribution}
        let oracle = hex(
            "a155020116020115304d550400000001a045ae436b0f300d80020044a10730058003363030630730\
             058003363030610e300c800a30383931323334353637620730058003363030640287008001038101\
             024e01050a012a",
        );
        let mut q = QueuedEvent::new(
            both(0x44, "600"),
            Party::dialing("600"),
            Party::dialing("0891234567"),
            Party::dialing("600"),
            Redirection::NotKnown,
            EventCause::from_name("enteringDistribution").unwrap(),
        );
        q.number_queued = Some(3);
        q.calls_in_front = Some(2);
        q.local_connection_info = Some(LocalConnectionState::Queued);
        assert_eq!(
            EventReport::new(xref1(), q.clone())
                .invoke(22)
                .encode()
                .unwrap(),
            oracle.to_vec()
        );
        assert_eq!(report_of(&oracle).event, Event::Queued(q));
    }

    #[test]
    fn agent_logged_on_matches_oracle() {
        // agentLoggedOn {agentDevice 201, agentID '34323031'H ([2] IMPLICIT: 82 04),
        // acdGroup 600, cause normal}
        let oracle = hex(
            "a12b0201170201153023550400000001a41ba119630730058003323031820434323031300580033630\
             300a014e",
        );
        let mut a = AgentLoggedOnEvent::new(Party::dialing("201"));
        a.agent_id = Some(Bytes::from_static(b"4201"));
        a.acd_group = Some(DeviceId::dialing("600"));
        a.cause = Some(EventCause::NORMAL);
        assert_eq!(
            EventReport::new(xref1(), a.clone())
                .invoke(23)
                .encode()
                .unwrap(),
            oracle.to_vec()
        );
        assert_eq!(report_of(&oracle).event, Event::AgentLoggedOn(a));
    }

    /// One instance of every typed event, with some optional components set.
    fn samples() -> Vec<Event> {
        let c = || both(0x42, "201");
        let p = |n: &str| Party::dialing(n);
        let ext = || Some(CommonArguments::private(vec![PrivateData::Private]));
        let ud = || Some(Bytes::from_static(b"user"));
        let cd = || Some(Bytes::from_static(b"corr"));
        let mut v: Vec<Event> = Vec::new();

        let mut e = BridgedEvent::new(c(), p("201"), EventCause::NORMAL);
        e.correlator_data = cd();
        e.user_data = ud();
        e.local_connection_info = Some(LocalConnectionState::Connected);
        v.push(e.into());
        let mut e = CallClearedEvent::new(c(), EventCause::NORMAL_CLEARING);
        e.correlator_data = cd();
        e.user_data = ud();
        e.extensions = ext();
        v.push(e.into());
        let mut e = ConferencedEvent::new(
            c(),
            p("201"),
            Party::Restricted,
            vec![ConnectionListEntry {
                new_connection: Some(c()),
                endpoint: Some(Party::Restricted),
                associated_nid: Some(Party::NotKnown),
                ..Default::default()
            }],
            EventCause::CONFERENCE,
        );
        e.extensions = ext();
        e.user_data = ud();
        v.push(e.into());
        let mut e = ConnectionClearedEvent::new(c(), Party::NotKnown, EventCause(999));
        e.user_data = ud();
        v.push(e.into());
        let mut e = DeliveredEvent::new(
            c(),
            p("202"),
            Party::Restricted,
            p("202"),
            Redirection::NumberDialed(DeviceId::dialing("299")),
            EventCause::NEW_CALL,
        );
        e.originating_nid_connection = Some(ConnectionId::call_only([9]));
        e.correlator_data = cd();
        e.user_data = ud();
        e.network_calling_device = Some(p("0891234567"));
        e.network_called_device = Some(Party::NotKnown);
        e.associated_calling_device = Some(p("7"));
        e.associated_called_device = Some(Party::Restricted);
        e.extensions = ext();
        v.push(e.into());
        let mut e = DigitsDialedEvent::new(c(), p("201"), DeviceId::dialing("12"), EventCause(17));
        e.correlator_data = cd();
        e.associated_called_device = Some(p("9"));
        v.push(e.into());
        let mut e = DivertedEvent::new(
            c(),
            p("202"),
            p("203"),
            Redirection::NotRequired,
            EventCause(28),
        );
        e.calling_device = Some(p("201"));
        e.called_device = Some(p("202"));
        e.user_data = ud();
        v.push(e.into());
        let mut e = EstablishedEvent::new(
            c(),
            p("202"),
            p("201"),
            p("202"),
            Redirection::NotSpecified,
            EventCause::NORMAL,
        );
        e.correlator_data = cd();
        e.network_calling_device = Some(p("1"));
        v.push(e.into());
        let mut e = FailedEvent::new(
            c(),
            p("202"),
            p("201"),
            p("202"),
            Redirection::Restricted,
            EventCause::BUSY,
        );
        e.originating_nid_connection = Some(c());
        e.correlator_data = cd();
        v.push(e.into());
        let mut e = HeldEvent::new(c(), p("201"), EventCause(2));
        e.local_connection_info = Some(LocalConnectionState::Hold);
        e.correlator_data = cd();
        v.push(e.into());
        let mut e = NetworkCapabilitiesChangedEvent::new(
            c(),
            p("900"),
            p("0891234567"),
            Value::seq([
                ("progressLocation", Value::Enumerated(0)),
                ("progressDescription", Value::Enumerated(2)),
            ]),
            EventCause(46),
        );
        e.user_data = ud();
        v.push(e.into());
        let mut e = NetworkReachedEvent::new(
            c(),
            p("900"),
            p("201"),
            p("0891234567"),
            Redirection::NotKnown,
            EventCause(76),
        );
        e.originating_nid_connection = Some(c());
        e.correlator_data = cd();
        e.associated_calling_device = Some(p("5"));
        v.push(e.into());
        let mut e = OfferedEvent::new(
            c(),
            p("202"),
            p("201"),
            p("202"),
            Redirection::NotKnown,
            EventCause::NEW_CALL,
        );
        e.correlator_data = cd();
        e.user_data = ud();
        v.push(e.into());
        let mut e = OriginatedEvent::new(c(), p("201"), p("202"), EventCause::MAKE_CALL);
        e.originating_device = Some(DeviceId::dialing("201"));
        e.correlator_data = cd();
        e.local_connection_info = Some(LocalConnectionState::Initiated);
        v.push(e.into());
        let mut e = QueuedEvent::new(
            c(),
            p("600"),
            p("201"),
            p("600"),
            Redirection::NotKnown,
            EventCause(42),
        );
        e.number_queued = Some(1);
        e.calls_in_front = Some(0);
        e.extensions = ext();
        v.push(e.into());
        let mut e = RetrievedEvent::new(c(), p("201"), EventCause(2));
        e.correlator_data = cd();
        v.push(e.into());
        let mut e = ServiceInitiatedEvent::new(c(), p("201"), EventCause::MAKE_CALL);
        e.called_device = Some(p("202"));
        e.correlator_data = cd();
        e.associated_calling_device = Some(p("3"));
        v.push(e.into());
        let mut e = TransferredEvent::new(c(), p("201"), p("203"), vec![], EventCause::TRANSFER);
        e.secondary_old_call = Some(both(0x43, "201"));
        e.correlator_data = cd();
        e.user_data = ud();
        v.push(e.into());

        let mut e = CallInformationEvent::new(c(), p("201"));
        e.calling_device = Some(p("202"));
        e.account_info = Some(Bytes::from_static(b"acc"));
        e.auth_code = Some(Bytes::from_static(b"auth"));
        e.correlator_data = cd();
        e.user_data = ud();
        v.push(e.into());
        let mut e = ChargingEvent::new(
            c(),
            DeviceId::dialing("201"),
            Value::seq([
                (
                    "numberUnits",
                    Value::alt(
                        "numberOfChargeUnits",
                        Value::List(vec![Value::seq([("chargingUnits", Value::Integer(3))])]),
                    ),
                ),
                ("typeOfChargingInfo", Value::Enumerated(1)),
            ]),
        );
        e.cause = Some(EventCause::NORMAL);
        v.push(e.into());
        let mut e = DigitsGeneratedEvent::new(c(), "123#".into());
        e.digit_duration_list = Some(vec![100, 100, 100, 100]);
        e.pause_duration_list = Some(vec![50]);
        v.push(e.into());
        let mut e = TelephonyTonesGeneratedEvent::new(c());
        e.tone_generated = Some(Value::Enumerated(2));
        e.tone_frequency = Some(425);
        e.tone_duration = Some(1000);
        e.pause_duration = Some(4000);
        v.push(e.into());
        let mut e = ServiceCompletionFailureEvent::new(
            Value::seq([
                ("deviceID", DeviceId::dialing("201").to_value()),
                ("connectionID", ConnectionId::call_only([0x42]).to_value()),
                ("localConnectionState", Value::Enumerated(3)),
            ]),
            EventCause(30),
        );
        e.extensions = ext();
        v.push(e.into());

        let mut e = AgentBusyEvent::new(p("201"));
        e.agent_id = Some(Bytes::from_static(b"4201"));
        e.acd_group = Some(DeviceId::dialing("600"));
        e.pending_agent_state = Some(PendingAgentState::NotReady);
        e.cause = Some(EventCause(57));
        v.push(e.into());
        let mut e = AgentLoggedOnEvent::new(p("201"));
        e.agent_id = Some(Bytes::from_static(b"4201"));
        e.agent_password = Some(Bytes::from_static(b"pw"));
        v.push(e.into());
        let mut e = AgentLoggedOffEvent::new(p("201"));
        e.agent_id = Some(Bytes::from_static(b"4201"));
        e.acd_group = Some(DeviceId::dialing("600"));
        e.agent_password = Some(Bytes::from_static(b"pw"));
        e.cause = Some(EventCause::NORMAL);
        e.extensions = ext();
        v.push(e.into());
        let mut e = AgentNotReadyEvent::new(p("201"));
        e.agent_id = Some(Bytes::from_static(b"4201"));
        e.cause = Some(EventCause(43));
        v.push(e.into());
        let mut e = AgentReadyEvent::new(Party::NotKnown);
        e.acd_group = Some(DeviceId::dialing("600"));
        v.push(e.into());
        let mut e = AgentWorkingAfterCallEvent::new(p("201"));
        e.agent_id = Some(Bytes::from_static(b"4201"));
        e.pending_agent_state = Some(WorkingAfterCallPendingState::Ready);
        e.cause = Some(EventCause(61));
        v.push(e.into());
        let mut e = AutoAnswerEvent::new(p("201"), true);
        e.number_of_rings = Some(2);
        v.push(e.into());
        v.push(AutoWorkModeEvent::new(p("201"), true, 30).into());
        v.push(CallBackEvent::new(p("201"), p("202"), false).into());
        v.push(CallBackMessageEvent::new(p("201"), p("202"), true).into());
        v.push(CallerIdStatusEvent::new(DeviceId::dialing("201"), true).into());
        let mut e = DoNotDisturbEvent::new(p("201"), true);
        e.call_origination = Some(Value::bits_from(&[0]));
        e.calling_device_list = Some(vec![DeviceId::dialing("1"), DeviceId::dialing("2")]);
        v.push(e.into());
        let mut e = ForwardingEvent::new(p("201"), true);
        e.forwarding_type = Some(Value::Enumerated(0));
        e.forward_to = Some(DeviceId::dialing("0891234567"));
        e.forward_default = Some(Value::Enumerated(1));
        e.ring_count = Some(3);
        e.ring_duration = Some(20);
        v.push(e.into());
        v.push(RouteingModeEvent::new(p("201"), false).into());
        v.push(PresenceStateEvent::new(p("201"), Value::bits_from(&[1])).into());

        let mut e = BackInServiceEvent::new(p("201"));
        e.cause = Some(EventCause(19));
        v.push(e.into());
        v.push(DeviceCapsChangedEvent::new(p("201")).into());
        let mut e = OutOfServiceEvent::new(p("201"));
        e.extensions = ext();
        v.push(e.into());
        v.push(PartiallyInServiceEvent::new(Party::Restricted).into());

        let mut e = PrivateEvent::new(PrivateData::Vendor(hex("a403020101")));
        e.security = Some(Value::seq([("messageSequenceNumber", Value::Integer(1))]));
        v.push(e.into());
        v
    }

    #[test]
    fn every_event_round_trips() {
        let all = samples();
        assert_eq!(all.len(), 43);
        let mut names: Vec<(&str, &str)> = all.iter().map(|e| (e.family(), e.name())).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 43, "one sample per event");
        for (i, ev) in all.into_iter().enumerate() {
            assert!(ev.is_typed());
            let report = EventReport::new(MonitorCrossRefId::new([i as u8]), ev);
            // typed -> value -> bytes -> value -> typed
            let bytes = codec::encode(ty::CSTAEventReportArgument, &report.to_value())
                .unwrap_or_else(|e| panic!("{}: {e}", report.event.name()));
            let v =
                codec::decode(ty::CSTAEventReportArgument, &Bytes::from(bytes.clone())).unwrap();
            let back = EventReport::from_value(&v).unwrap();
            assert_eq!(back, report, "{}", report.event.name());
            assert_eq!(
                codec::encode(ty::CSTAEventReportArgument, &back.to_value()).unwrap(),
                bytes
            );
            // and as an APDU
            let apdu = report.invoke(i as i64).encode().unwrap();
            let inv = invoke_of(&Bytes::from(apdu.clone()));
            assert_eq!(EventReport::from_invoke(&inv).unwrap(), report);
            let (f, n) = Apdu::decode(&Bytes::from(apdu))
                .unwrap()
                .event_name()
                .unwrap();
            assert_eq!((f, n), (report.event.family(), report.event.name()));
        }
    }

    #[test]
    fn typed_names_exist_in_the_schema() {
        macro_rules! check {
            ($($t:ty),*) => {$(
                let fields = schema::fields(<$t>::TYPE);
                for n in <$t>::TYPED {
                    assert!(fields.iter().any(|f| f.name == *n), "{} {}", stringify!($t), n);
                }
            )*};
        }
        check!(
            BridgedEvent,
            CallClearedEvent,
            ConferencedEvent,
            ConnectionClearedEvent,
            DeliveredEvent,
            DigitsDialedEvent,
            DivertedEvent,
            EstablishedEvent,
            FailedEvent,
            HeldEvent,
            NetworkCapabilitiesChangedEvent,
            NetworkReachedEvent,
            OfferedEvent,
            OriginatedEvent,
            QueuedEvent,
            RetrievedEvent,
            ServiceInitiatedEvent,
            TransferredEvent,
            CallInformationEvent,
            ChargingEvent,
            DigitsGeneratedEvent,
            TelephonyTonesGeneratedEvent,
            ServiceCompletionFailureEvent,
            AgentBusyEvent,
            AgentLoggedOnEvent,
            AgentLoggedOffEvent,
            AgentNotReadyEvent,
            AgentReadyEvent,
            AgentWorkingAfterCallEvent,
            AutoAnswerEvent,
            AutoWorkModeEvent,
            CallBackEvent,
            CallBackMessageEvent,
            CallerIdStatusEvent,
            DoNotDisturbEvent,
            ForwardingEvent,
            PresenceStateEvent,
            RouteingModeEvent,
            BackInServiceEvent,
            DeviceCapsChangedEvent,
            OutOfServiceEvent,
            PartiallyInServiceEvent,
            PrivateEvent
        );
        // the family / event names are the schema's alternatives
        for ev in samples() {
            let fam = schema::alternatives(ty::EventSpecificInfo)
                .iter()
                .find(|a| a.name == ev.family())
                .unwrap();
            assert!(
                schema::alternatives(fam.ty)
                    .iter()
                    .any(|a| a.name == ev.name()),
                "{}",
                ev.name()
            );
        }
    }

    #[test]
    fn traps() {
        // Originated callingDevice is a SubjectDeviceID (63), not a CallingDeviceID (61)
        let o = OriginatedEvent::new(
            ConnectionId::call_only([1]),
            Party::Restricted,
            Party::Restricted,
            EventCause::MAKE_CALL,
        );
        let b = codec::encode(ty::OriginatedEvent, &o.to_value()).unwrap();
        assert_eq!(b, hex("3010 6b03800101 63028800 62028800 0a012c").to_vec());
        // agentID [2] IMPLICIT in LoggedOff, untagged in NotReady / Busy / WorkingAfterCall
        let mut off = AgentLoggedOffEvent::new(Party::NotKnown);
        off.agent_id = Some(Bytes::from_static(b"7"));
        assert_eq!(
            codec::encode(ty::AgentLoggedOffEvent, &off.to_value()).unwrap(),
            hex("3007 63028700 820137").to_vec()
        );
        let mut nr = AgentNotReadyEvent::new(Party::NotKnown);
        nr.agent_id = Some(Bytes::from_static(b"7"));
        assert_eq!(
            codec::encode(ty::AgentNotReadyEvent, &nr.to_value()).unwrap(),
            hex("3007 63028700 040137").to_vec()
        );
        // AgentWorkingAfterCall pendingAgentState: own enumeration, [2] IMPLICIT; cause [3]
        let mut w = AgentWorkingAfterCallEvent::new(Party::NotKnown);
        w.pending_agent_state = Some(WorkingAfterCallPendingState::Null);
        w.cause = Some(EventCause(61));
        assert_eq!(
            codec::encode(ty::AgentWorkingAfterCallEvent, &w.to_value()).unwrap(),
            hex("300a 63028700 820102 83013d").to_vec()
        );
        assert_eq!(
            WorkingAfterCallPendingState::from_i64(1).name(),
            Some("ready")
        );
        for (name, n) in
            crate::types::enum_table(schema::fields(ty::AgentWorkingAfterCallEvent)[3].ty)
        {
            assert_eq!(
                WorkingAfterCallPendingState::from_i64(*n).name(),
                Some(*name)
            );
        }
    }

    #[test]
    fn untyped_components_and_unknown_elements_are_kept_in_place() {
        // Delivered with: an unknown element before the first component, one between two
        // typed components, servicesPermitted (untyped, kept in rest) with an unknown element
        // before it, and unknown elements after the typed extensions.
        let conn = "6b0480020042";
        let dev = "630730058003323032";
        let calling = "610730058003323031";
        let called = "620730058003323032";
        let redir = "64028700";
        let u1 = "9f500101";
        let u2 = "9f510102";
        let u3 = "9f520103";
        let u4 = "9f530104";
        let u5 = "df540105";
        let cause = "0a0116";
        // servicesPermitted [1] IMPLICIT ServicesPermitted: five empty BIT STRINGs
        let services = "a10f030100030100030100030100030100";
        let ext = "7e00";
        let body = [
            u1, conn, dev, u2, calling, called, redir, cause, u3, services, ext, u4, u5,
        ]
        .concat();
        let esi = format!("a0{:02x}a4{:02x}{body}", body.len() / 2 + 2, body.len() / 2);
        let arg = format!("550400000001{esi}");
        let full = format!("30{:02x}{arg}", arg.len() / 2);
        let b = hex(&full);
        let v = codec::decode(ty::CSTAEventReportArgument, &b).unwrap();
        let r = EventReport::from_value(&v).unwrap();
        let Event::Delivered(d) = &r.event else {
            panic!()
        };
        assert_eq!(d.cause, EventCause::NEW_CALL);
        assert_eq!(d.extensions, Some(CommonArguments::default()));
        let rest: Vec<&str> = d.rest.iter().map(|m| m.name).collect();
        assert_eq!(
            rest,
            [
                "connection",
                "callingDevice",
                UNKNOWN,
                "servicesPermitted",
                UNKNOWN,
                UNKNOWN
            ]
        );
        assert_eq!(
            codec::encode(ty::CSTAEventReportArgument, &r.to_value()).unwrap(),
            b.to_vec()
        );
        // editing a typed field keeps the others in place
        let mut d2 = d.clone();
        d2.cause = EventCause::NORMAL;
        let out = codec::encode(ty::DeliveredEvent, &d2.to_value()).unwrap();
        let want = hex(&[
            u1, conn, dev, u2, calling, called, redir, "0a014e", u3, services, ext, u4, u5,
        ]
        .concat());
        assert_eq!(&out[2..], &want[..]);
    }

    #[test]
    fn unknown_events_and_families_are_other() {
        // a voice unit event (opaque) and an unknown event in the call control family
        for (b, fam, name) in [
            ("3009 550101 a604 a0020500", "voiceUnitEvents", "play"),
            ("3008 550101 a003 bf3f00", "callControlEvents", ""),
            ("3008 550101 a903 800100", "", ""),
            (
                "3009 550101 a204 a1020101",
                "mediaAttachmentEvents",
                "mediaDetached",
            ),
        ] {
            let b = hex(b);
            let v = codec::decode(ty::CSTAEventReportArgument, &b).unwrap();
            let r = EventReport::from_value(&v).unwrap();
            assert!(!r.event.is_typed());
            assert_eq!((r.event.family(), r.event.name()), (fam, name));
            assert_eq!(
                codec::encode(ty::CSTAEventReportArgument, &r.to_value()).unwrap(),
                b.to_vec()
            );
        }
    }

    #[test]
    fn lenient_keeps_what_strict_rejects() {
        // delivered whose connection is a vendor ConnectionID alternative (9f 1f): the
        // codec keeps it raw, the typed view cannot read it
        let inner = "6b039f1f00 630730058003323032 610730058003323031 620730058003323032 \
                     64028700 0a0116";
        let inner: String = inner.split_whitespace().collect();
        let esi = format!(
            "a0{:02x}a4{:02x}{inner}",
            inner.len() / 2 + 2,
            inner.len() / 2
        );
        let arg = format!("550400000001{esi}");
        let b = hex(&format!("30{:02x}{arg}", arg.len() / 2));
        let v = codec::decode(ty::CSTAEventReportArgument, &b).unwrap();
        let e = EventReport::from_value(&v).unwrap_err();
        assert_eq!(
            e.path(),
            "eventSpecificInfo.callControlEvents.delivered.connection"
        );
        assert_eq!(e.ty, "ConnectionID");
        let r = EventReport::from_value_lenient(&v).unwrap();
        assert_eq!(
            (r.event.family(), r.event.name()),
            ("callControlEvents", "delivered")
        );
        assert!(!r.event.is_typed());
        assert_eq!(
            codec::encode(ty::CSTAEventReportArgument, &r.to_value()).unwrap(),
            b.to_vec()
        );
        assert!(EventReport::from_value(&Value::Null).is_err());
        assert!(EventReport::from_value_lenient(&Value::seq([])).is_err());
        assert!(Event::from_value(&Value::Integer(1)).is_err());
    }

    /// Every single-octet change of the vectors and samples that still decodes must give a
    /// typed view (or an error, never a panic) that re-encodes like the decoded value.
    #[test]
    fn mutated_inputs_never_panic_and_round_trip() {
        let mut inputs: Vec<Vec<u8>> = [
            "delivered_event",
            "established_event",
            "connection_cleared_event",
            "agent_ready_event",
            "make_call_invoke",
            "make_call_result",
            "monitor_start_invoke",
            "monitor_start_result",
            "set_agent_state_invoke",
            "generate_digits_invoke",
            "return_error_invalid_device",
        ]
        .iter()
        .map(|n| vector(n).to_vec())
        .collect();
        for (i, ev) in samples().into_iter().enumerate() {
            inputs.push(
                EventReport::new(xref1(), ev)
                    .invoke(i as i64)
                    .encode()
                    .unwrap(),
            );
        }
        let mut typed = 0usize;
        for input in inputs {
            for pos in 0..input.len() {
                for delta in [0x01u8, 0x20, 0x80, 0xff] {
                    let mut m = input.clone();
                    m[pos] ^= delta;
                    let m = Bytes::from(m);
                    let Ok(Apdu::Rose(rose)) = Apdu::decode(&m) else {
                        continue;
                    };
                    if rose.encode().is_err() {
                        continue;
                    }
                    match &rose {
                        Rose::Invoke(inv) => {
                            if let Ok(r) = EventReport::from_invoke_lenient(inv) {
                                let v = &inv.argument.as_ref().unwrap().value;
                                assert_eq!(
                                    codec::encode(ty::CSTAEventReportArgument, &r.to_value())
                                        .unwrap(),
                                    codec::encode(ty::CSTAEventReportArgument, v).unwrap()
                                );
                                if EventReport::from_invoke(inv).is_ok() {
                                    typed += 1;
                                }
                            } else if let Ok(a) = ops::Argument::from_invoke(inv) {
                                let p = inv.argument.as_ref().unwrap();
                                let t = p.ty.unwrap();
                                assert_eq!(
                                    codec::encode(t, &a.to_value()).unwrap(),
                                    codec::encode(t, &p.value).unwrap()
                                );
                                typed += 1;
                            }
                        }
                        Rose::ReturnResult(rr) => {
                            if let Ok(Some(r)) = ops::OperationResult::from_return_result(rr) {
                                let p = &rr.result.as_ref().unwrap().1;
                                let t = p.ty.unwrap();
                                assert_eq!(
                                    codec::encode(t, &r.to_value()).unwrap(),
                                    codec::encode(t, &p.value).unwrap()
                                );
                                typed += 1;
                            }
                        }
                        Rose::ReturnError(e) => {
                            if let Some(p) = &e.parameter {
                                if let Ok(u) = crate::types::UniversalFailure::from_value(&p.value)
                                {
                                    assert_eq!(u.to_value(), p.value);
                                    typed += 1;
                                }
                            }
                        }
                        Rose::Reject(_) => {}
                    }
                }
            }
        }
        assert!(typed > 1000, "{typed}");
    }

    /// Every valid fixture (fixtures/valid) that is a ROSE APDU reads strictly into its
    /// typed view, which encodes exactly like the decoded value.
    #[test]
    fn every_valid_fixture_has_a_lossless_typed_view() {
        let mut events = 0;
        let mut arguments = 0;
        let mut results = 0;
        let mut errors = 0;
        let mut untyped: Vec<&str> = Vec::new();
        for (name, b) in crate::types::fixtures::all() {
            let Ok(Apdu::Rose(rose)) = Apdu::decode(&b) else {
                continue;
            };
            let same = |t: Option<crate::schema::TypeId>, typed: Value, v: &Value| {
                let t = t.unwrap_or_else(|| panic!("{name}: untyped payload"));
                assert_eq!(
                    codec::encode(t, &typed).unwrap_or_else(|e| panic!("{name}: {e}")),
                    codec::encode(t, v).unwrap(),
                    "{name}"
                );
            };
            match &rose {
                Rose::Invoke(inv) if inv.opcode == Code::Local(21) => {
                    let r = EventReport::from_invoke(inv).unwrap_or_else(|e| panic!("{name}: {e}"));
                    let p = inv.argument.as_ref().unwrap();
                    same(p.ty, r.to_value(), &p.value);
                    if r.event.is_typed() {
                        events += 1;
                    } else {
                        untyped.push(r.event.name());
                    }
                }
                Rose::Invoke(inv) => {
                    let a =
                        ops::Argument::from_invoke(inv).unwrap_or_else(|e| panic!("{name}: {e}"));
                    let p = inv.argument.as_ref().unwrap();
                    same(p.ty, a.to_value(), &p.value);
                    arguments += 1;
                }
                Rose::ReturnResult(rr) => {
                    if let Some(r) = ops::OperationResult::from_return_result(rr)
                        .unwrap_or_else(|e| panic!("{name}: {e}"))
                    {
                        let p = &rr.result.as_ref().unwrap().1;
                        same(p.ty, r.to_value(), &p.value);
                        results += 1;
                    }
                }
                Rose::ReturnError(e) => {
                    let p = e.parameter.as_ref().unwrap();
                    let u = crate::types::UniversalFailure::from_value(&p.value)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    same(p.ty, u.to_value(), &p.value);
                    errors += 1;
                }
                Rose::Reject(_) => {}
            }
        }
        untyped.sort();
        // opaque in the schema: physical device, media attachment, voice unit events
        assert_eq!(untyped, ["hookswitch", "mediaAttached", "play"]);
        assert!(events >= 43, "{events}");
        assert!(arguments >= 21, "{arguments}");
        assert!(results >= 18, "{results}");
        assert!(errors >= 8, "{errors}");
    }

    #[test]
    fn report_level_unknown_element_is_kept() {
        let b = vector("agent_ready_event");
        let inv = invoke_of(&b);
        let mut v = inv.argument.unwrap().value;
        if let Value::Seq(m) = &mut v {
            m.push(Member {
                name: UNKNOWN,
                value: Value::Raw(hex("9f600100")),
            });
        }
        let bytes = codec::encode(ty::CSTAEventReportArgument, &v).unwrap();
        let v = codec::decode(ty::CSTAEventReportArgument, &Bytes::from(bytes.clone())).unwrap();
        let r = EventReport::from_value(&v).unwrap();
        assert_eq!(r.rest.len(), 1);
        assert_eq!(
            codec::encode(ty::CSTAEventReportArgument, &r.to_value()).unwrap(),
            bytes
        );
    }
}
