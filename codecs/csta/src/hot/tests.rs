use super::{event_report, general_event_report};
use crate::events::{
    ConnectionClearedEvent, DeliveredEvent, EstablishedEvent, Event, EventReport, HeldEvent,
    RetrievedEvent, ServiceInitiatedEvent, TransferredEvent,
};
use crate::rose_ext::ToInvoke;
use crate::test_util::hex;
use crate::types::{
    CallId, ConnectionId, DeviceId, DeviceIdentifier, EventCause, LocalConnectionState,
    LocalDeviceId, MonitorCrossRefId, Party, Redirection,
};
use crate::value::{Member, Value, UNKNOWN};
use bytes::Bytes;

/// What the general path makes of `pdu`: the typed report of a cSTAEventReport invoke.
fn general(pdu: &Bytes) -> Option<EventReport> {
    general_event_report(pdu).and_then(Result::ok)
}

fn pdu(r: &EventReport) -> Bytes {
    Bytes::from(r.invoke(300).encode().expect("encode"))
}

/// The hot path answers, and agrees with the general path.
fn hot(pdu: &Bytes) -> EventReport {
    let h = event_report(pdu).unwrap_or_else(|| panic!("hot path refused {pdu:02x?}"));
    assert_eq!(Some(&h), general(pdu).as_ref(), "{pdu:02x?}");
    h
}

#[test]
fn the_delivered_vector_reads_the_same_both_ways() {
    // ../shared/spec/captures/vectors.tsv row delivered_event (invokeId 9, 74 octets)
    let b = hex(
        "a1480201090201153040550400000001a038a4366b0f300d80020042a10730058003323032630730058003
         323032610730058003323031620730058003323032640287004e01020a0116",
    );
    let r = hot(&b);
    let Event::Delivered(d) = &r.event else {
        panic!("{r:?}")
    };
    assert_eq!(r.xref, MonitorCrossRefId::new([0, 0, 0, 1]));
    assert_eq!(d.connection, ConnectionId::dialing([0x00, 0x42], "202"));
    assert_eq!(d.alerting_device, Party::dialing("202"));
    assert_eq!(d.calling_device, Party::dialing("201"));
    assert_eq!(d.called_device, Party::dialing("202"));
    assert_eq!(d.last_redirection_device, Redirection::NotKnown);
    assert_eq!(
        d.local_connection_info,
        Some(LocalConnectionState::Alerting)
    );
    assert_eq!(d.cause, EventCause::NEW_CALL);
}

fn devices() -> Vec<DeviceId> {
    vec![
        DeviceId::dialing("201"),
        DeviceId::dialing(""),
        DeviceId::dialing("+49 (89) 1234-5678 x9"),
        DeviceId::from(DeviceIdentifier::DeviceNumber(0)),
        DeviceId::from(DeviceIdentifier::DeviceNumber(-1)),
        DeviceId::from(DeviceIdentifier::DeviceNumber(1 << 40)),
    ]
}

fn parties() -> Vec<Party> {
    let mut p: Vec<Party> = devices().into_iter().map(Party::Device).collect();
    p.extend([Party::NotKnown, Party::Restricted]);
    p
}

fn redirections() -> Vec<Redirection> {
    let mut r: Vec<Redirection> = devices()
        .into_iter()
        .map(Redirection::NumberDialed)
        .collect();
    r.extend([
        Redirection::NotKnown,
        Redirection::NotRequired,
        Redirection::NotSpecified,
        Redirection::Restricted,
    ]);
    r
}

fn connections() -> Vec<ConnectionId> {
    let mut c: Vec<ConnectionId> = devices()
        .into_iter()
        .map(|d| ConnectionId::new([0x10, 0, 0, 7], d))
        .collect();
    c.push(ConnectionId::call_only([0x42]));
    c.push(ConnectionId::call_only([]));
    c.push(ConnectionId {
        call: Some(CallId::new([1, 2])),
        device: Some(LocalDeviceId::Dynamic(Bytes::from_static(b"\x07\x08"))),
    });
    c
}

/// Every form the hot path reads, in each of the six events, at each position.
fn reports() -> Vec<EventReport> {
    let states = [
        None,
        Some(LocalConnectionState::Connected),
        Some(LocalConnectionState::Other(99)),
    ];
    let causes = [EventCause::NEW_CALL, EventCause(-5), EventCause(300)];
    let xrefs = [&[0u8, 0, 0, 1][..], &[], &[0xff; 9]];
    let mut out = Vec::new();
    let (cs, ps, rs) = (connections(), parties(), redirections());
    for (i, c) in cs.iter().enumerate() {
        for (j, p) in ps.iter().enumerate() {
            let q = &ps[(i + j + 1) % ps.len()];
            let r = &rs[(i * 3 + j) % rs.len()];
            let st = states[(i + j) % states.len()];
            let cause = causes[j % causes.len()];
            let x = MonitorCrossRefId::new(xrefs[i % xrefs.len()]);
            let mut d =
                DeliveredEvent::new(c.clone(), p.clone(), q.clone(), p.clone(), r.clone(), cause);
            d.local_connection_info = st;
            let mut e =
                EstablishedEvent::new(c.clone(), q.clone(), p.clone(), q.clone(), r.clone(), cause);
            e.local_connection_info = st;
            let mut x2 = ConnectionClearedEvent::new(c.clone(), p.clone(), cause);
            x2.local_connection_info = st;
            let mut h = HeldEvent::new(c.clone(), q.clone(), cause);
            h.local_connection_info = st;
            let mut r2 = RetrievedEvent::new(c.clone(), p.clone(), cause);
            r2.local_connection_info = st;
            let mut si = ServiceInitiatedEvent::new(c.clone(), q.clone(), cause);
            si.local_connection_info = st;
            out.push(EventReport::new(x.clone(), d));
            out.push(EventReport::new(x.clone(), e));
            out.push(EventReport::new(x.clone(), x2));
            out.push(EventReport::new(x.clone(), h));
            out.push(EventReport::new(x.clone(), r2));
            out.push(EventReport::new(x, si));
        }
    }
    out
}

#[test]
fn every_form_it_reads_comes_back_as_it_was_encoded() {
    let all = reports();
    assert!(all.len() > 400, "{}", all.len());
    for r in &all {
        assert_eq!(&hot(&pdu(r)), r);
    }
}

/// `(name, PDU)` that the hot path leaves to the general path, each still a valid report.
fn refused() -> Vec<(&'static str, Bytes)> {
    let base = || {
        DeliveredEvent::new(
            ConnectionId::dialing([0x42], "202"),
            Party::dialing("202"),
            Party::dialing("201"),
            Party::dialing("202"),
            Redirection::NotKnown,
            EventCause::NEW_CALL,
        )
    };
    let mut v = Vec::new();
    let mut d = base();
    d.correlator_data = Some(Bytes::from_static(b"abc"));
    v.push((
        "correlatorData",
        EventReport::new(MonitorCrossRefId::new([1]), d),
    ));
    let mut d = base();
    d.originating_nid_connection = Some(ConnectionId::call_only([9]));
    v.push((
        "originatingNIDConnection",
        EventReport::new(MonitorCrossRefId::new([1]), d),
    ));
    let mut d = base();
    d.network_calling_device = Some(Party::dialing("0891"));
    v.push((
        "networkCallingDevice",
        EventReport::new(MonitorCrossRefId::new([1]), d),
    ));
    let mut d = base();
    d.alerting_device = Party::Device(DeviceId {
        private_name: Some("Ann".into()),
        ..DeviceId::dialing("202")
    });
    v.push((
        "privateName",
        EventReport::new(MonitorCrossRefId::new([1]), d),
    ));
    let mut d = base();
    d.connection = ConnectionId::new(
        [0x42],
        DeviceId::from(DeviceIdentifier::ImplicitPublic("202".into())),
    );
    v.push((
        "implicitPublic",
        EventReport::new(MonitorCrossRefId::new([1]), d),
    ));
    let mut d = base();
    d.connection = ConnectionId::device_only(LocalDeviceId::Static(DeviceId::dialing("202")));
    v.push((
        "deviceID only",
        EventReport::new(MonitorCrossRefId::new([1]), d),
    ));
    let mut d = base();
    d.rest.push(Member {
        name: UNKNOWN,
        value: Value::Raw(hex("9f3f0101")),
    });
    v.push((
        "an unknown element",
        EventReport::new(MonitorCrossRefId::new([1]), d),
    ));
    let mut si = ServiceInitiatedEvent::new(
        ConnectionId::dialing([0x42], "202"),
        Party::dialing("202"),
        EventCause::NEW_CALL,
    );
    si.called_device = Some(Party::dialing("203"));
    v.push((
        "serviceInitiated with calledDevice",
        EventReport::new(MonitorCrossRefId::new([1]), si),
    ));
    let mut h = HeldEvent::new(
        ConnectionId::dialing([0x42], "202"),
        Party::dialing("202"),
        EventCause::NEW_CALL,
    );
    h.correlator_data = Some(Bytes::from_static(b"x"));
    v.push((
        "held with correlatorData",
        EventReport::new(MonitorCrossRefId::new([1]), h),
    ));
    let tr = TransferredEvent::new(
        ConnectionId::dialing([0x42], "202"),
        Party::dialing("202"),
        Party::dialing("203"),
        Vec::new(),
        EventCause::TRANSFER,
    );
    v.push((
        "transferred",
        EventReport::new(MonitorCrossRefId::new([1]), tr),
    ));
    let mut out: Vec<(&'static str, Bytes)> = v.into_iter().map(|(n, r)| (n, pdu(&r))).collect();
    // an indefinite length on the invoke (a1 80 ... 00 00)
    let p = pdu(&reports()[0]);
    let mut indef = vec![0xa1, 0x80];
    let skip = if p[1] < 0x80 {
        2
    } else {
        2 + usize::from(p[1] & 0x7f)
    };
    indef.extend_from_slice(&p[skip..]);
    indef.extend_from_slice(&[0, 0]);
    out.push(("indefinite length", Bytes::from(indef)));
    out
}

#[test]
fn what_it_does_not_read_goes_to_the_general_path_which_reads_it() {
    for (name, p) in refused() {
        assert_eq!(event_report(&p), None, "{name}");
        assert!(
            general(&p).is_some(),
            "{name}: the general path refuses it too"
        );
    }
    // not event reports at all
    let make_call = hex("a11d02010102010a301530058003323031300c800a30383931323334353637");
    assert_eq!(event_report(&make_call), None);
    assert_eq!(event_report(&Bytes::new()), None);
}

#[test]
fn non_minimal_lengths_read_the_same_both_ways() {
    // the vector with its 6b (ConnectionID) length written in two and then three octets
    let short = hex(
        "a1480201090201153040550400000001a038a4366b0f300d80020042a10730058003323032630730058003
         323032610730058003323031620730058003323032640287004e01020a0116",
    );
    let long1 = hex(
        "a1490201090201153041550400000001a039a4376b810f300d80020042a107300580033230326307300580
         03323032610730058003323031620730058003323032640287004e01020a0116",
    );
    let long2 = hex(
        "a14a0201090201153042550400000001a03aa4386b82000f300d80020042a1073005800332303263073005
         8003323032610730058003323031620730058003323032640287004e01020a0116",
    );
    assert_eq!(hot(&long1), hot(&short));
    assert_eq!(hot(&long2), hot(&short));
}

/// A small deterministic generator (xorshift64*), so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One random edit of `p`: an octet changed (often to a tag or length octet the hot path
/// knows), removed, inserted or duplicated.
fn mutate(rng: &mut Rng, p: &[u8]) -> Vec<u8> {
    const INTERESTING: [u8; 24] = [
        0x00, 0x01, 0x02, 0x7f, 0x80, 0x81, 0x82, 0x83, 0xff, 0x30, 0x0a, 0x4e, 0x55, 0x61, 0x62,
        0x63, 0x64, 0x6b, 0x87, 0x8a, 0xa0, 0xa1, 0xa4, 0xc8,
    ];
    let mut v = p.to_vec();
    for _ in 0..1 + rng.below(3) {
        if v.is_empty() {
            v.push(0xa1);
        }
        let i = rng.below(v.len());
        match rng.below(6) {
            0 => v[i] = rng.next() as u8,
            1 | 2 => v[i] = INTERESTING[rng.below(INTERESTING.len())],
            3 => {
                v.remove(i);
            }
            4 => v.insert(i, INTERESTING[rng.below(INTERESTING.len())]),
            _ => v[i] = v[i].wrapping_add(1 + rng.below(2) as u8).wrapping_sub(1),
        }
    }
    v
}

#[test]
fn on_mutated_reports_it_agrees_with_the_general_path_or_leaves_them_to_it() {
    let seeds: Vec<Bytes> = reports()
        .iter()
        .step_by(7)
        .map(pdu)
        .chain(refused().into_iter().map(|(_, p)| p))
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut read, mut tried) = (0u32, 0u32);
    for round in 0..300_000u32 {
        let seed = &seeds[round as usize % seeds.len()];
        let m = Bytes::from(mutate(&mut rng, seed));
        tried += 1;
        if let Some(h) = event_report(&m) {
            read += 1;
            assert_eq!(Some(h), general(&m), "round {round}: {m:02x?}");
        }
    }
    eprintln!("{read} of {tried} mutations read by the hot path");
    // the mutations must reach the hot path often enough to mean something
    assert!(
        read > tried / 20,
        "only {read} of {tried} read by the hot path"
    );
}
