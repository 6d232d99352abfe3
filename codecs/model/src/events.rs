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

// The typed_struct! invocations, generated from the ASN.1 by codecs/csta/gen/gen_typed.py
// (selection of components and docs: codecs/csta/gen/gen_typed_table.py).
mod generated;
pub use generated::*;

open_enum! {
    /// The inline `pendingAgentState [2] IMPLICIT ENUMERATED { notReady (0), ready (1),
    /// null (2) }` of AgentWorkingAfterCallEvent (not [`PendingAgentState`]).
    pub enum WorkingAfterCallPendingState = "AgentWorkingAfterCallEvent.pendingAgentState" {
        NotReady = 0 "notReady",
        Ready = 1 "ready",
        Null = 2 "null",
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

            /// The name of every typed event, in declaration order, and `other` last: the
            /// event kinds [`Event::kind_index`] indexes (for counters kept per kind in an
            /// array, without a lookup per event).
            pub const KINDS: &'static [&'static str] = &[$($($name,)*)* "other"];

            /// This event's index in [`Event::KINDS`] (`Other`: the last).
            pub fn kind_index(&self) -> usize {
                #[allow(dead_code)]
                enum Ix { $($($variant,)*)* Other }
                match self {
                    $($( Event::$variant(_) => Ix::$variant as usize, )*)*
                    Event::Other { .. } => Ix::Other as usize,
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
