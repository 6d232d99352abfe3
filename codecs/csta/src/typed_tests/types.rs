/// The annotated hex fixtures of `fixtures/valid` (see `fixtures/README.md`), for tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use bytes::Bytes;
    use std::path::PathBuf;

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/valid")
    }

    /// The PDU of an annotated hex file: every hex digit outside `#` comments.
    pub fn parse(text: &str) -> Bytes {
        let digits: Vec<u8> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.bytes().filter(u8::is_ascii_hexdigit))
            .collect();
        let nib = |c: u8| (c as char).to_digit(16).unwrap() as u8;
        Bytes::from(
            digits
                .chunks(2)
                .map(|p| nib(p[0]) << 4 | nib(p[1]))
                .collect::<Vec<u8>>(),
        )
    }

    /// `fixtures/valid/<name>.hex` (the rows of shared/spec/captures/vectors.tsv have the
    /// same names).
    pub fn load(name: &str) -> Bytes {
        let path = dir().join(format!("{name}.hex"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        parse(&text)
    }

    /// Every valid fixture: (file stem, PDU).
    pub fn all() -> Vec<(String, Bytes)> {
        let mut out: Vec<(String, Bytes)> = std::fs::read_dir(dir())
            .unwrap()
            .filter_map(|e| {
                let p = e.ok()?.path();
                (p.extension()? == "hex").then(|| {
                    let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                    (name, parse(&std::fs::read_to_string(&p).unwrap()))
                })
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::codec;
    use crate::rose_ext::*;
    use crate::schema::{ty, TypeId};
    use crate::types::*;
    use crate::value::Value;
    use bytes::Bytes;
    use std::fmt;

    use crate::test_util::hex;

    fn round_trip<T: Typed + PartialEq + fmt::Debug>(id: TypeId, t: &T) -> Vec<u8> {
        let bytes = codec::encode(id, &t.to_value()).unwrap();
        let v = codec::decode(id, &Bytes::from(bytes.clone())).unwrap();
        assert_eq!(&T::from_value(&v).unwrap(), t);
        assert_eq!(codec::encode(id, &v).unwrap(), bytes);
        bytes
    }

    #[test]
    fn device_id_every_form() {
        let forms = [
            DeviceIdentifier::DialingNumber("201".into()),
            DeviceIdentifier::DeviceNumber(4711),
            DeviceIdentifier::ImplicitPublic("0891234567".into()),
            DeviceIdentifier::ExplicitPublic {
                ton: PublicTon::International,
                number: "4989123".into(),
            },
            DeviceIdentifier::ImplicitPrivate("7201".into()),
            DeviceIdentifier::ExplicitPrivate {
                ton: PrivateTon::LocalNumber,
                number: "201".into(),
            },
            DeviceIdentifier::Other(Bytes::from_static(b"\x01\x02")),
        ];
        for f in forms {
            let mut d = DeviceId::from(f);
            round_trip(ty::DeviceID, &d);
            d.private_number = Some("99".into());
            d.private_name = Some("Reception".into());
            round_trip(ty::DeviceID, &d);
        }
        assert_eq!(
            round_trip(ty::DeviceID, &DeviceId::dialing("201")),
            hex("3005800332 3031").to_vec()
        );
        // explicitPublic international: a3 L 81 L digits
        assert_eq!(
            round_trip(
                ty::DeviceID,
                &DeviceId::from(DeviceIdentifier::ExplicitPublic {
                    ton: PublicTon::International,
                    number: "49".into()
                })
            ),
            hex("3006 a304 8102 3439").to_vec()
        );
        assert_eq!(DeviceId::dialing("201").number(), Some("201"));
        assert_eq!(
            DeviceId::from(DeviceIdentifier::DeviceNumber(1)).number(),
            None
        );
        // a vendor alternative is kept as its TLV
        let v = codec::decode(ty::DeviceID, &hex("3004 9f1f0101")).unwrap();
        let d = DeviceId::from_value(&v).unwrap();
        assert!(matches!(d.id, DeviceIdentifier::Unknown(_)));
        assert_eq!(
            codec::encode(ty::DeviceID, &d.to_value()).unwrap(),
            hex("3004 9f1f0101").to_vec()
        );
    }

    #[test]
    fn parties_and_redirection() {
        for p in [Party::dialing("202"), Party::NotKnown, Party::Restricted] {
            for id in [
                ty::CallingDeviceID,
                ty::CalledDeviceID,
                ty::SubjectDeviceID,
                ty::AssociatedCallingDeviceID,
                ty::AssociatedCalledDeviceID,
                ty::NetworkCallingDeviceID,
                ty::NetworkCalledDeviceID,
            ] {
                round_trip(id, &p);
            }
        }
        assert_eq!(
            round_trip(ty::CallingDeviceID, &Party::Restricted),
            hex("61028800").to_vec()
        );
        for r in [
            Redirection::NumberDialed(DeviceId::dialing("203")),
            Redirection::NotKnown,
            Redirection::NotRequired,
            Redirection::NotSpecified,
            Redirection::Restricted,
        ] {
            round_trip(ty::RedirectionDeviceID, &r);
        }
        assert_eq!(
            round_trip(ty::RedirectionDeviceID, &Redirection::NotKnown),
            hex("64028700").to_vec()
        );
    }

    #[test]
    fn connection_id_forms() {
        let both = ConnectionId::dialing([0x00, 0x42], "201");
        assert_eq!(
            round_trip(ty::ConnectionID, &both),
            hex("6b0f300d80020042a10730058003323031").to_vec()
        );
        assert_eq!(
            round_trip(ty::ConnectionID, &ConnectionId::call_only([0x00, 0x42])),
            hex("6b0480020042").to_vec()
        );
        let dynamic =
            ConnectionId::device_only(LocalDeviceId::Dynamic(Bytes::from_static(&[1, 2, 3, 4])));
        assert_eq!(
            round_trip(ty::ConnectionID, &dynamic),
            hex("6b08a106830401020304").to_vec()
        );
        assert_eq!(both.call_id().unwrap().as_ref(), &[0x00, 0x42]);
        assert_eq!(both.device_number(), Some("201"));
        let none = ConnectionId {
            call: None,
            device: None,
        };
        let e = none.try_to_value().unwrap_err();
        assert_eq!(e.to_string(), "ConnectionID: neither callID nor deviceID");
        assert!(codec::encode(ty::ConnectionID, &none.to_value()).is_err());
        let e = ConnectionId::from_value(&Value::alt("both", Value::Seq(vec![]))).unwrap_err();
        assert_eq!(e.to_string(), "ConnectionID: neither callID nor deviceID");
        let e = ConnectionId::from_value(&Value::Null).unwrap_err();
        assert_eq!(e.ty, "ConnectionID");
    }

    #[test]
    fn connection_list_and_object() {
        let list: ConnectionList = vec![
            ConnectionListEntry {
                new_connection: Some(ConnectionId::dialing([1], "201")),
                old_connection: Some(ConnectionId::dialing([2], "201")),
                endpoint: Some(Party::dialing("201")),
                associated_nid: Some(Party::NotKnown),
                ..Default::default()
            },
            ConnectionListEntry {
                endpoint: Some(Party::Restricted),
                resulting_connection_info: Some(Value::seq([(
                    "flowDirection",
                    Value::Enumerated(2),
                )])),
                ..Default::default()
            },
        ];
        round_trip(ty::ConnectionList, &list);
        for o in [
            CstaObject::Device(DeviceId::dialing("201")),
            CstaObject::Call(ConnectionId::call_only([7])),
        ] {
            round_trip(ty::CSTAObject, &o);
        }
        round_trip(ty::MonitorCrossRefID, &MonitorCrossRefId::new([0, 0, 0, 1]));
    }

    #[test]
    fn enums_and_causes() {
        assert_eq!(EventCause(22).name(), Some("newCall"));
        assert_eq!(EventCause(78).name(), Some("normal"));
        assert_eq!(EventCause(48).name(), Some("normalClearing"));
        assert_eq!(EventCause(34).name(), None);
        assert_eq!(EventCause(999).name(), None);
        assert_eq!(EventCause::from_name("newCall"), Some(EventCause::NEW_CALL));
        assert_eq!(EventCause::from_name("nope"), None);
        for c in [
            EventCause::CALL_CANCELLED,
            EventCause::CONSULTATION,
            EventCause::CONFERENCE,
            EventCause::MAKE_CALL,
            EventCause::NORMAL,
            EventCause::TRANSFER,
            EventCause::SINGLE_STEP_TRANSFER,
            EventCause::BUSY,
            EventCause::DEST_NOT_OBTAINABLE,
        ] {
            assert!(c.name().is_some(), "{c:?}");
        }
        assert_eq!(
            LocalConnectionState::from_i64(2),
            LocalConnectionState::Alerting
        );
        assert_eq!(LocalConnectionState::Fail.name(), Some("fail"));
        assert_eq!(LocalConnectionState::from_i64(9).to_i64(), 9);
        round_trip(ty::LocalConnectionState, &LocalConnectionState::Hold);
        round_trip(ty::LocalConnectionState, &LocalConnectionState::Other(9));
        // the Rust tables agree with the schema's
        for (name, n) in enum_table(ty::LocalConnectionState) {
            assert_eq!(LocalConnectionState::from_i64(*n).name(), Some(*name));
        }
        for (name, n) in enum_table(ty::AgentState) {
            assert_eq!(AgentState::from_i64(*n).name(), Some(*name));
        }
        for (name, n) in enum_table(ty::ReqAgentState) {
            assert_eq!(ReqAgentState::from_i64(*n).name(), Some(*name));
        }
        for (name, n) in enum_table(ty::PendingAgentState) {
            assert_eq!(PendingAgentState::from_i64(*n).name(), Some(*name));
        }
        assert_eq!(
            ReqAgentState::from_name("ready"),
            Some(ReqAgentState::Ready)
        );
        assert!(AgentState::from_value(&Value::Integer(1)).is_err());
    }

    #[test]
    fn common_arguments() {
        let c = CommonArguments {
            security: Some(Value::seq([("messageSequenceNumber", Value::Integer(5))])),
            private_data: vec![
                PrivateData::String(Bytes::from_static(b"abc")),
                PrivateData::Private,
                PrivateData::Vendor(hex("a403020101")),
            ],
            rest: vec![],
        };
        round_trip(ty::CSTACommonArguments, &c);
        assert_eq!(
            round_trip(
                ty::CSTACommonArguments,
                &CommonArguments::private(vec![PrivateData::String(Bytes::from_static(b"x"))])
            ),
            hex("7e05 a103 040178").to_vec()
        );
        // present-but-empty privateData and an unknown element survive
        let b = hex("7e07 a100 9f2a020101");
        let v = codec::decode(ty::CSTACommonArguments, &b).unwrap();
        let c = CommonArguments::from_value(&v).unwrap();
        assert!(c.private_data.is_empty());
        assert_eq!(c.rest.len(), 2);
        assert_eq!(
            codec::encode(ty::CSTACommonArguments, &c.to_value()).unwrap(),
            b.to_vec()
        );
    }

    #[test]
    fn universal_failure() {
        let u = UniversalFailure::from_names("operation", "invalidDeviceID").unwrap();
        assert_eq!(u.value, 12);
        assert_eq!(u.value_name(), Some("invalidDeviceID"));
        assert_eq!(u.to_string(), "operation/invalidDeviceID");
        assert_eq!(
            round_trip(ty::UniversalFailure, &u),
            hex("a0030a010c").to_vec()
        );
        let s = UniversalFailure::from_names("stateIncompatibility", "noActiveCall").unwrap();
        assert_eq!(s.value, 4);
        round_trip(ty::UniversalFailure, &s);
        let n = UniversalFailure::from_names("unspecified", "").unwrap();
        assert_eq!(
            round_trip(ty::UniversalFailure, &n),
            hex("a7020500").to_vec()
        );
        assert!(UniversalFailure::from_names("operation", "nope").is_none());
        assert!(UniversalFailure::from_names("nope", "generic").is_none());
        assert_eq!(
            UniversalFailure {
                category: "operation",
                value: 9999
            }
            .value_name(),
            None
        );
        assert_eq!(
            u.return_error(3).encode().unwrap(),
            hex("a30b020103020101a0030a010c").to_vec()
        );
    }

    #[test]
    fn errors_name_the_place() {
        let v = Value::seq([(
            "deviceIdentifier",
            Value::alt("dialingNumber", Value::Integer(1)),
        )]);
        let e = DeviceId::from_value(&v).unwrap_err();
        assert_eq!(e.path(), "deviceIdentifier.dialingNumber");
        assert_eq!(
            e.to_string(),
            "deviceIdentifier.dialingNumber: DeviceID.deviceIdentifier: expected a character string, found INTEGER"
        );
        let e = DeviceId::from_value(&Value::Seq(vec![])).unwrap_err();
        assert!(e.to_string().contains("deviceIdentifier"));
        let e = Party::from_value(&Value::alt("bogus", Value::Null)).unwrap_err();
        assert!(e.message.contains("bogus"));
    }
}
