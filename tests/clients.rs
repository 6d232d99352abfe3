//! The client side of "nothing lost" (issue 9): exact request ids, device numbers checked at
//! the protocol edge, monitor reference counts under pipelining and abrupt disconnects,
//! replay with `after`, slow and idle clients. Real TCP on 127.0.0.1:0 with the simulator on
//! the other side (`tests/support`).

mod support;

use ctigate::config::{ApiConfig, LinkSection};
use serde_json::json;
use serde_json::Value;
use std::time::Duration;
use support::{env, env_with, Env, T};
use tokio::time::Instant;

/// Once every client has gone (the gateway counts a client until it has given back its
/// monitors), the switch has no monitor on `device`, the gateway counts no holder of it, and
/// `status` (from a fresh client) lists no monitor.
async fn nothing_monitored(e: &Env, device: &str) {
    let end = Instant::now() + T;
    while e.gw.gw.hub.clients() != 0 {
        assert!(Instant::now() < end, "a client session did not end");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        e.pbx_monitors(device).await,
        0,
        "the switch monitors {device}"
    );
    assert_eq!(e.gw.monitor_refs("pbx1", device).await, 0);
    let mut c = e.client().await;
    let st = c.ok(json!({"op": "status"})).await;
    assert_eq!(st["monitors"], json!([]), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_come_back_byte_for_byte() {
    let e = env().await;
    let mut c = e.client().await;
    for id in [
        "123456789012345678901234567890",
        "-7",
        "1.50",
        "\"x\\u0041\"",
    ] {
        c.send_raw(&format!("{{\"id\": {id}, \"op\": \"ping\"}}\n"))
            .await;
        assert_eq!(
            c.read_text().await.unwrap(),
            format!(r#"{{"type":"response","id":{id},"ok":true,"result":{{}}}}"#)
        );
    }
    for line in [r#"{"op":"ping"}"#, r#"{"id":null,"op":"ping"}"#] {
        c.send_raw(&format!("{line}\n")).await;
        assert_eq!(
            c.read_text().await.unwrap(),
            r#"{"type":"response","id":null,"ok":false,"error":{"kind":"request","code":"missing_field","message":"`id` (a number or a string) is required"}}"#
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_start_start_stop_leaves_no_monitor() {
    let e = env().await;
    let mut c = e.client().await;
    c.send_raw(concat!(
        r#"{"id":1,"op":"monitor.start","device":"217"}"#,
        "\n",
        r#"{"id":2,"op":"monitor.start","device":"217"}"#,
        "\n",
        r#"{"id":3,"op":"monitor.stop","device":"217"}"#,
        "\n",
    ))
    .await;
    for id in 1..=3 {
        let r = c.response(&json!(id)).await;
        assert_eq!(r["ok"], true, "{r}");
    }
    drop(c);
    nothing_monitored(&e, "217").await;
    // and a later pair starts and ends the switch's monitor again
    let mut c = e.client().await;
    c.ok(json!({"op": "monitor.start", "device": "217"})).await;
    assert_eq!(e.pbx_monitors("217").await, 1);
    c.ok(json!({"op": "monitor.stop", "device": "217"})).await;
    assert_eq!(e.pbx_monitors("217").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_monitor_start_gives_its_count_back() {
    let e = env().await;
    for _ in 0..5 {
        let mut c = e.client().await;
        c.send_raw(concat!(
            r#"{"id":1,"op":"monitor.start","device":"218"}"#,
            "\n"
        ))
        .await;
        drop(c); // closed at once: the request may be anywhere
        nothing_monitored(&e, "218").await;
    }
    let mut c = e.client().await;
    c.ok(json!({"op": "monitor.start", "device": "218"})).await;
    assert_eq!(e.pbx_monitors("218").await, 1);
    c.ok(json!({"op": "monitor.stop", "device": "218"})).await;
    assert_eq!(e.pbx_monitors("218").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_start_cut_off_by_its_deadline_keeps_the_counts_exact() {
    // link timeout 4 s, so every request is answered within 9 s; each switch answer takes
    // 3.3 s: monitor.start (MonitorStart, SnapshotDevice, GetAgentState: 9.9 s) runs out
    // of time after the monitor started
    let e = env_with(
        ApiConfig {
            requests_per_s: 0,
            ..ApiConfig::default()
        },
        LinkSection {
            request_timeout_ms: 4000,
            ..LinkSection::default()
        },
    )
    .await;
    let mut a = e.client().await;
    let mut b = e.client().await;
    e.sim(r#"{"cmd":"fault","fault":"delay","ms":3300}"#).await;
    let (ra, rb) = tokio::join!(
        a.err(
            json!({"op": "monitor.start", "device": "216"}),
            "link",
            "timeout"
        ),
        b.err(
            json!({"op": "monitor.start", "device": "215"}),
            "link",
            "timeout"
        ),
    );
    assert_eq!(ra["error"]["message"], "the request took too long", "{ra}");
    assert_eq!(rb["error"]["message"], "the request took too long", "{rb}");
    e.sim(r#"{"cmd":"fault","fault":"delay","ms":0}"#).await;
    // the switch monitors both, and the gateway says so: each held by its client
    assert_eq!(e.pbx_monitors("216").await, 1);
    assert_eq!(e.pbx_monitors("215").await, 1);
    let st = a.ok(json!({"op": "status"})).await;
    assert_eq!(
        st["monitors"],
        json!([{"link": "pbx1", "device": "215", "clients": 1},
               {"link": "pbx1", "device": "216", "clients": 1}]),
        "{st}"
    );
    // a's stop gives its count back; b's goes with b
    a.ok(json!({"op": "monitor.stop", "device": "216"})).await;
    assert_eq!(e.pbx_monitors("216").await, 0);
    drop(a);
    drop(b);
    nothing_monitored(&e, "215").await;
    // and a later pair starts and ends the switch's monitor again
    let mut c = e.client().await;
    for d in ["215", "216"] {
        c.ok(json!({"op": "monitor.start", "device": d})).await;
        assert_eq!(e.pbx_monitors(d).await, 1);
        c.ok(json!({"op": "monitor.stop", "device": d})).await;
        assert_eq!(e.pbx_monitors(d).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_numbers_outside_the_switch_alphabet_are_refused_at_the_edge() {
    let e = env().await;
    let mut c = e.client().await;
    let msg = |f: &str| {
        format!("`{f}` must be a device number: 1 to 64 of the dialing characters 0-9 * # A-D + and the dial-string controls ! P T W , @ $ ;")
    };
    for (i, bad) in ["😀", "２１９", "é"].into_iter().enumerate() {
        for (req, field) in [
            (
                json!({"id": 100 + 10 * i, "op": "monitor.start", "device": bad}),
                "device",
            ),
            (
                json!({"id": 101 + 10 * i, "op": "call.make", "device": "201", "to": bad}),
                "to",
            ),
        ] {
            c.send_raw(&format!("{req}\n")).await;
            assert_eq!(
                c.read_text().await.unwrap(),
                json!({"type": "response", "id": req["id"], "ok": false,
                       "error": {"kind": "request", "code": "invalid_field", "message": msg(field)}})
                .to_string()
            );
        }
    }
    // nothing reached the switch: it monitors nothing, and 201 never dialled
    assert_eq!(support::sim_monitors(&e.sim).await, Vec::<String>::new());
    let r = c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    assert_eq!(r["calls"], json!([]), "{r}");
}

fn names(evs: &[Value]) -> Vec<&str> {
    evs.iter()
        .map(|e| e["event"].as_str().unwrap_or("?"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_back_with_after_gets_exactly_what_it_missed() {
    let e = env().await;
    // the witness watches 201 all along
    let mut w = e.client().await;
    w.ok(json!({"op": "monitor.start", "device": "201"})).await;
    let mut a = e.client().await;
    a.ok(json!({"op": "monitor.start", "device": "201"})).await;
    e.sim(r#"{"cmd":"dial","from":"201","to":"202"}"#).await;
    let ring = a.until("201", "call.ringback").await;
    let seen = ring["seq"].as_u64().unwrap();
    drop(a); // gone mid-call
    e.sim(r#"{"cmd":"answer","device":"202"}"#).await;
    e.sim(r#"{"cmd":"hangup","device":"201"}"#).await;
    let all = e.settled(&mut w, "201").await;
    let missed: Vec<Value> = all
        .iter()
        .filter(|v| v["seq"].as_u64().unwrap() > seen)
        .cloned()
        .collect();
    assert_eq!(names(&missed), ["call.connected", "call.released"]);
    // back: exactly the missed events, in seq order, no gap
    let mut b = e.client().await;
    b.last_seq = seen;
    let r = b
        .ok(json!({"op": "monitor.start", "device": "201", "after": seen}))
        .await;
    assert_eq!(
        (r["replayed"].clone(), r["gap"].clone()),
        (json!(2), json!(false)),
        "{r}"
    );
    assert_eq!(r["calls"], json!([]), "the call is over: {r}");
    e.barrier(&mut b).await;
    assert_eq!(b.take("201"), missed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_back_after_the_buffer_moved_on_gets_gap_and_a_snapshot() {
    // the buffer keeps 4 events: a call's worth at two devices overflows it
    let e = env_with(
        ApiConfig {
            requests_per_s: 0,
            replay_buffer: 4,
            ..ApiConfig::default()
        },
        LinkSection {
            request_timeout_ms: 3000,
            ..LinkSection::default()
        },
    )
    .await;
    let mut w = e.client().await;
    w.ok(json!({"op": "monitor.start", "device": "201"})).await;
    w.ok(json!({"op": "monitor.start", "device": "203"})).await;
    let mut a = e.client().await;
    a.ok(json!({"op": "monitor.start", "device": "201"})).await;
    e.barrier(&mut a).await;
    let seen = a.last_seq;
    drop(a);
    e.sim(r#"{"cmd":"dial","from":"201","to":"203"}"#).await;
    e.sim(r#"{"cmd":"answer","device":"203"}"#).await;
    let evs = e.settled(&mut w, "201").await;
    assert_eq!(
        names(&evs),
        [
            "call.dialing",
            "call.updated",
            "call.ringback",
            "call.connected"
        ]
    );
    let x = evs[3]["call"].clone();
    assert!(w.take("203").len() >= 2);
    let mut b = e.client().await;
    b.last_seq = e.gw.last_seq();
    let r = b
        .ok(json!({"op": "monitor.start", "device": "201", "after": seen}))
        .await;
    assert_eq!(
        (r["replayed"].clone(), r["gap"].clone()),
        (json!(0), json!(true)),
        "{r}"
    );
    // the snapshot in its place: the call as it is now
    assert_eq!(r["calls"], json!([x]), "{r}");
    e.barrier(&mut b).await;
    assert_eq!(b.take("201"), Vec::<Value>::new(), "nothing replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_and_nobody_else_waits() {
    let e = env_with(
        ApiConfig {
            requests_per_s: 0,
            client_queue: 16,
            ..ApiConfig::default()
        },
        LinkSection {
            request_timeout_ms: 3000,
            ..LinkSection::default()
        },
    )
    .await;
    // slow reads nothing from now on. Calls with 10 KB of user data fill its socket, then
    // its queue of 16 events; every call, the fast client reads everything in time.
    let (mut fast, mut slow, inbound, mut calls) = e.cut_a_slow_client().await;
    // one more call after the cut: the fast client still gets it
    e.sim(&inbound).await;
    e.sim(r#"{"cmd":"hangup","device":"0891234567"}"#).await;
    calls += 1;
    let seen = e.settled(&mut fast, "201").await;
    let released = seen
        .iter()
        .filter(|v| v["event"] == "call.released")
        .count();
    assert_eq!(
        released, calls,
        "every call, in seq order, to the fast client"
    );
    // the slow client, reading again: every event before the cut, in order, then `lagged`
    // naming the limit, then the end of the connection
    let mut got = Vec::new();
    while let Some(v) = slow.read_line().await {
        got.push(v);
    }
    let last = got.pop().expect("lines");
    assert_eq!(
        (last["event"].clone(), last["limit"].clone()),
        (json!("lagged"), json!("api.client_queue")),
        "{last}"
    );
    let from = last["seq"].as_u64().unwrap();
    let before: Vec<Value> = seen
        .iter()
        .filter(|v| v["seq"].as_u64().unwrap() < from)
        .cloned()
        .collect();
    assert_eq!(got, before, "exactly the events before the cut");
    assert!(
        seen.iter().any(|v| v["seq"].as_u64().unwrap() > from),
        "the fast client got events after the cut"
    );
    let st = fast.ok(json!({"op": "status"})).await;
    assert_eq!(
        (
            st["clients"].clone(),
            st["events_dropped_for_slow_clients"].clone()
        ),
        (json!(1), json!(1)),
        "{st}"
    );
    eprintln!("the slow client was cut after {calls} calls, at seq {from}");
}

#[tokio::test]
async fn a_connection_monitors_at_most_max_monitors_per_client_devices() {
    let e = env_with(
        ApiConfig {
            requests_per_s: 0,
            max_monitors_per_client: 2,
            ..ApiConfig::default()
        },
        LinkSection::default(),
    )
    .await;
    let mut c = e.client().await;
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    c.ok(json!({"op": "monitor.start", "device": "202"})).await;
    // again the same one: no new subscription, no limit
    c.ok(json!({"op": "monitor.start", "device": "202"})).await;
    let r = c
        .err(
            json!({"op": "monitor.start", "device": "203"}),
            "busy",
            "client_monitor_limit",
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("api.max_monitors_per_client = 2"),
        "{r}"
    );
    assert_eq!(
        e.pbx_monitors("203").await,
        0,
        "no PBX monitor for the refused one"
    );
    assert_eq!(e.gw.monitor_refs("pbx1", "203").await, 0);
    // another connection has its own room; after a stop this one has room again
    let mut d = e.client().await;
    d.ok(json!({"op": "monitor.start", "device": "203"})).await;
    c.ok(json!({"op": "monitor.stop", "device": "201"})).await;
    c.ok(json!({"op": "monitor.start", "device": "204"})).await;
}
