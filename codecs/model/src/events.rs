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
use crate::payload::Payload;
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
}

impl ops::TypedArgument for EventReport {
    fn operation(&self) -> Operation {
        Operation::CstaEventReport
    }
    fn payload(&self) -> Payload {
        EventReport::payload(self)
    }
}
