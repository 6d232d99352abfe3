#[cfg(test)]
mod tests {
    use crate::apdu::Apdu;
    use crate::codec;
    use crate::events::*;
    use crate::ops;
    use crate::rose::{Code, Invoke, Rose};
    use crate::rose_ext::*;
    use crate::schema;
    use crate::schema::ty;
    use crate::types::ConnectionListEntry;
    use crate::types::*;
    use crate::value::{Member, Value, UNKNOWN};
    use bytes::Bytes;

    use crate::test_util::hex;

    /// A row of shared/spec/captures/vectors.tsv (as fixtures/valid/<name>.hex).
    fn vector(name: &str) -> Bytes {
        crate::typed_tests::fixtures::load(name)
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
        for (name, b) in crate::typed_tests::fixtures::all() {
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
                Rose::Invoke(inv)
                    if inv.opcode == Code::Local(crate::opcode::CSTA_EVENT_REPORT) =>
                {
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
