#[cfg(test)]
mod tests {
    use crate::apdu::Apdu;
    use crate::codec;
    use crate::ops::*;
    use crate::rose::{Code, Invoke, InvokeId, Rose};
    use crate::rose_ext::*;
    use crate::schema::{self, ty, TypeId};
    use crate::types::*;
    use crate::types::{LocalDeviceId, UniversalFailure};
    use crate::value::Value;
    use bytes::Bytes;

    use crate::test_util::hex;

    /// A row of shared/spec/captures/vectors.tsv (as fixtures/valid/<name>.hex).
    fn vector(name: &str) -> Bytes {
        crate::typed_tests::fixtures::load(name)
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
