//! End to end: the switch simulator and the gateway in-process on loopback, NDJSON clients
//! over TCP, exact event sequences per device (PROTOCOL.md). "Nothing else came" is proved
//! with a barrier (`Env::barrier`: a marker call through the same switch association, link
//! and event pump), never with a wall-clock window.

mod support;

use ctigate::config::{ApiConfig, LinkSection};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;
use support::{env, env_with, Client, T};
use tokio::time::Instant;

fn names(evs: &[Value]) -> Vec<&str> {
    evs.iter()
        .map(|e| e["event"].as_str().unwrap_or("?"))
        .collect()
}

async fn agent_ready(c: &mut Client, device: &str, agent: &str) {
    c.ok(json!({"op": "agent.login", "device": device, "agent": agent, "password": agent, "group": "8000"}))
        .await;
    c.ok(json!({"op": "agent.ready", "device": device})).await;
}

/// The call view of an event.
fn view(e: &Value) -> &Value {
    &e["call"]
}

fn id_of(e: &Value) -> String {
    view(e)["id"].as_str().expect("interaction id").to_string()
}

/// Every event is about the interaction `id`.
fn all_on(evs: &[Value], id: &str) {
    for e in evs {
        assert_eq!(view(e)["id"], id, "{e}");
    }
}

fn vars(uui: &str, corr: Option<&str>) -> Value {
    let mut v = json!({"uui": uui});
    if let Some(c) = corr {
        v["correlator"] = json!(c);
    }
    v
}

// ---- hello, requests, ids ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_first_and_every_request_answered_once() {
    let e = env().await;
    let mut c = e.client().await;
    let h = &c.hello;
    assert_eq!(h["type"], "hello");
    assert_eq!(h["protocol"], "ctigate/1");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    let side0 = e.sim.csta_addr.to_string();
    assert_eq!(
        h["links"],
        json!([{"name": "pbx1", "state": "up", "side": 0, "address": side0,
            "malformed_frames": 0, "rejects_sent": 0, "events_shed": 0, "behind": false, "behind_periods": 0}])
    );
    assert_eq!(h["seq"].as_u64(), Some(e.gw.last_seq()));

    // pipelined, numeric and string ids, successes and failures of every layer
    let lines = [
        json!({"id": 101, "op": "ping"}),
        json!({"id": "a-1", "op": "status"}),
        json!({"id": 102, "op": "monitor.start", "device": "201"}),
        json!({"id": "x", "op": "nope"}),
        json!({"id": 3.5, "op": "call.answer", "device": "201"}),
        json!({"id": 104, "op": "call.make", "device": "201", "to": "999"}),
        json!({"id": 105, "op": "agent.state", "device": "201"}),
        json!({"id": 106, "op": "call.answer"}),
        json!({"id": "", "op": "ping"}),
        json!({"id": 107, "op": "snapshot", "device": "201"}),
    ];
    let mut out = String::new();
    for l in &lines {
        out.push_str(&format!("{l}\n"));
    }
    c.send_raw(&out).await;
    for l in &lines {
        let r = c.response(&l["id"]).await;
        assert_eq!(r["type"], "response", "{r}");
        assert!(r["ok"].is_boolean(), "{r}");
    }
    let ids: HashSet<String> = lines.iter().map(|l| l["id"].to_string()).collect();
    assert_eq!(c.answered, ids);
    let st = c.ok(json!({"op": "status"})).await;
    assert_eq!(
        st["links"],
        json!([{"name": "pbx1", "state": "up", "side": 0, "address": side0,
            "malformed_frames": 0, "rejects_sent": 0, "events_shed": 0, "behind": false, "behind_periods": 0}])
    );
    assert_eq!(st["clients"], 1);
    assert_eq!(
        st["monitors"],
        json!([{"link": "pbx1", "device": "201", "clients": 1}])
    );
    // a second monitor.start of the same device is answered, not doubled
    let r = c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    assert_eq!(r["already"], true, "{r}");
    assert_eq!(e.pbx_monitors("201").await, 1);
    // nothing answered twice or unasked: the writer puts every response queued before the
    // marker's events on the wire first, and `Client` checks each id comes once
    e.barrier(&mut c).await;
    assert!(c.responses.is_empty(), "extra responses: {:?}", c.responses);
    assert_eq!(c.answered.len(), lines.len() + 3, "{:?}", c.answered);
}

// ---- call flows -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acd_screen_pop_answer_hold_consult_transfer() {
    let e = env().await;
    let mut c = e.client().await;
    for d in ["201", "202", "8000"] {
        let r = c.ok(json!({"op": "monitor.start", "device": d})).await;
        assert_eq!(r["device"], d);
        assert_eq!(r["calls"], json!([]));
        assert!(r["seq"].is_u64(), "{r}");
    }
    agent_ready(&mut c, "201", "1001").await;
    e.sim(r#"{"cmd":"inbound","ani":"0891234567","dnis":"0800100200","user_data":"case=42","correlator_data":"ivr-7"}"#).await;
    let pop = c.until("201", "call.offering").await;
    let x = id_of(&pop);
    let v = view(&pop);
    assert_eq!(pop["cause"], "distributed");
    assert_eq!(v["state"], "offering");
    assert_eq!(v["type"], "inbound");
    assert_eq!(v["ani"], "0891234567");
    assert_eq!(v["dnis"], "0800100200");
    assert_eq!(v["other"], "0891234567");
    assert_eq!(v["parties"], json!(["201", "0891234567"]));
    assert_eq!(v["related"], Value::Null);
    assert_eq!(v["variables"], vars("case=42", Some("ivr-7")));
    assert_eq!(v["answered"], Value::Null);

    c.ok(json!({"op": "call.answer", "device": "201"})).await;
    let conn = c.until("201", "call.connected").await;
    assert_eq!(view(&conn)["state"], "connected");
    assert!(view(&conn)["answered"].is_string());
    c.ok(json!({"op": "call.hold", "device": "201"})).await;
    assert_eq!(view(&c.until("201", "call.held").await)["state"], "held");
    c.ok(json!({"op": "call.retrieve", "device": "201"})).await;
    assert_eq!(
        view(&c.until("201", "call.retrieved").await)["state"],
        "connected"
    );

    let r = c
        .ok(json!({"op": "call.consult", "device": "201", "to": "202"}))
        .await;
    assert!(r["pbx_call_id"].is_string(), "{r}");
    let ring = c.until("202", "call.offering").await;
    let y = id_of(&ring);
    assert_ne!(x, y);
    let rv = view(&ring);
    assert_eq!(rv["type"], "consult");
    assert_eq!(rv["related"], x);
    assert_eq!(rv["other"], "201");
    assert_eq!(rv["variables"], vars("case=42", Some("ivr-7")));
    c.ok(json!({"op": "call.answer", "device": "202"})).await;
    c.until("202", "call.connected").await;
    c.until("201", "call.connected").await;
    c.ok(json!({"op": "call.transfer", "device": "201"})).await;
    let t = c.until("202", "call.transferred").await;
    c.until("201", "call.released").await;
    c.until("201", "call.released").await;

    // the group: queued, handed to the agent, gone
    let g = e.settled(&mut c, "8000").await;
    let g_calls: Vec<Value> = g
        .iter()
        .filter(|e| e["event"] != "agent.state")
        .cloned()
        .collect();
    assert_eq!(
        names(&g_calls),
        ["call.queued", "call.diverted", "call.released"],
        "{g:#?}"
    );
    all_on(&g_calls, &x);
    assert_eq!(g_calls[0]["cause"], "enteringDistribution");
    assert_eq!(
        (g_calls[1]["from"].as_str(), g_calls[1]["to"].as_str()),
        (Some("8000"), Some("201"))
    );
    assert_eq!(g_calls[2]["cause"], "distributed");

    // the agent's station: exactly one screen pop, one interaction through hold and
    // consultation, both views released by the transfer
    let a = c.take("201");
    assert_eq!(
        names(&a),
        [
            "agent.state",
            "agent.state",
            "call.offering",
            "call.connected",
            "agent.state",
            "call.held",
            "call.retrieved",
            "call.held",
            "call.dialing",
            "call.updated",
            "call.ringback",
            "call.connected",
            "call.transferred",
            "call.released",
            "call.released",
            "agent.state",
        ],
        "{a:#?}"
    );
    let states: Vec<&str> = a
        .iter()
        .filter(|e| e["event"] == "agent.state")
        .map(|e| e["state"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(states, ["not_ready", "ready", "busy", "ready"]);
    for e in a.iter().filter(|e| e["event"] == "agent.state") {
        assert_eq!(
            (e["agent"].as_str(), e["group"].as_str()),
            (Some("1001"), Some("8000")),
            "{e}"
        );
    }
    let on_x: Vec<Value> = a[2..8]
        .iter()
        .filter(|e| e["event"] != "agent.state")
        .cloned()
        .collect();
    all_on(&on_x, &x);
    assert_eq!(a[7]["cause"], "consultation");
    all_on(&a[8..12], &y);
    for e in &a[8..12] {
        assert_eq!(view(e)["type"], "consult", "{e}");
        assert_eq!(view(e)["related"], x, "{e}");
    }
    assert_eq!(view(&a[10])["other"], "202");
    assert_eq!(a[12]["cause"], "transfer");
    assert_eq!(id_of(&a[12]), x);
    assert_eq!(view(&a[12])["state"], "released");
    assert_eq!(
        (a[12]["from"].as_str(), a[12]["to"].as_str()),
        (Some("201"), Some("202"))
    );
    let released: HashSet<String> = a[13..15].iter().map(id_of).collect();
    assert_eq!(released, HashSet::from([x.clone(), y.clone()]));
    for e in &a[13..15] {
        assert_eq!(e["cause"], "transfer");
        assert!(e["duration_ms"].is_u64(), "{e}");
        assert!(view(e)["ended"].is_string(), "{e}");
    }
    assert_eq!(
        a.iter().filter(|e| e["event"] == "call.offering").count(),
        1
    );

    // the transfer target: the consultation leg becomes the customer's interaction
    let tv = view(&t);
    assert_eq!(tv["id"], x);
    assert_eq!(t["replaces"], y);
    assert_eq!(t["cause"], "transfer");
    assert_eq!(tv["state"], "connected");
    assert_eq!(tv["type"], "inbound");
    assert_eq!(tv["ani"], "0891234567");
    assert_eq!(tv["dnis"], "0800100200");
    assert_eq!(tv["other"], "0891234567");
    assert_eq!(tv["parties"], json!(["202", "0891234567"]));
    assert_eq!(tv["related"], Value::Null);
    assert_eq!(tv["variables"], vars("case=42", Some("ivr-7")));

    e.sim(r#"{"cmd":"hangup","device":"0891234567"}"#).await;
    let end = c.until("202", "call.released").await;
    assert_eq!(id_of(&end), x);
    assert_eq!(end["cause"], "normalClearing");
    let b = e.settled(&mut c, "202").await;
    assert_eq!(
        names(&b),
        [
            "call.offering",
            "call.connected",
            "call.transferred",
            "call.released"
        ],
        "{b:#?}"
    );
    all_on(&b[..2], &y);
    all_on(&b[2..], &x);
    assert!(c.take("201").is_empty());
    assert!(c.take("8000").iter().all(|e| e["event"] == "agent.state"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conference_then_a_party_leaves() {
    let e = env().await;
    let mut c = e.client().await;
    for d in ["201", "202"] {
        c.ok(json!({"op": "monitor.start", "device": d})).await;
    }
    e.sim(r#"{"cmd":"inbound","ani":"0891234567","dnis":"201","user_data":"case=7"}"#)
        .await;
    let x = id_of(&c.until("201", "call.offering").await);
    c.ok(json!({"op": "call.answer", "device": "201"})).await;
    c.until("201", "call.connected").await;
    c.ok(json!({"op": "call.consult", "device": "201", "to": "202", "variables": {"uui": "ignored"}}))
        .await;
    let y = id_of(&c.until("202", "call.offering").await);
    c.ok(json!({"op": "call.answer", "device": "202"})).await;
    c.until("201", "call.connected").await;
    c.ok(json!({"op": "call.conference", "device": "201"}))
        .await;
    let c1 = c.until("201", "call.conferenced").await;
    let c2 = c.until("202", "call.conferenced").await;
    for ev in [&c1, &c2] {
        assert_eq!(id_of(ev), x, "{ev}");
        assert_eq!(ev["replaces"], y, "{ev}");
        assert_eq!(ev["cause"], "conference");
        assert_eq!(
            (ev["conferencing"].as_str(), ev["added"].as_str()),
            (Some("201"), Some("202"))
        );
        assert_eq!(view(ev)["state"], "connected");
        assert_eq!(view(ev)["type"], "inbound");
        assert_eq!(view(ev)["variables"]["uui"], "case=7");
        let mut p: Vec<String> = serde_json::from_value(view(ev)["parties"].clone()).unwrap();
        p.sort();
        assert_eq!(p, ["0891234567", "201", "202"], "{ev}");
    }
    assert_eq!(view(&c1)["parties"][0], "201");
    assert_eq!(view(&c2)["parties"][0], "202");

    // 202 leaves: it is released, 201 sees the party leave and the call go on
    c.ok(json!({"op": "call.hangup", "device": "202"})).await;
    let left = c.until("201", "call.party_left").await;
    assert_eq!(left["party"], "202");
    assert_eq!(id_of(&left), x);
    assert_eq!(view(&left)["state"], "connected");
    assert_eq!(view(&left)["parties"], json!(["201", "0891234567"]));
    assert_eq!(view(&left)["other"], "0891234567");
    let a = e.settled(&mut c, "201").await;
    assert_eq!(
        names(&a),
        [
            "call.offering",
            "call.connected",
            "call.held",
            "call.dialing",
            "call.updated",
            "call.ringback",
            "call.connected",
            "call.conferenced",
            "call.party_left"
        ],
        "{a:#?}"
    );
    let b = c.take("202");
    assert_eq!(
        names(&b),
        [
            "call.offering",
            "call.connected",
            "call.conferenced",
            "call.released"
        ],
        "{b:#?}"
    );
    all_on(&b[2..], &x);
    assert_eq!(b[3]["cause"], "normalClearing");

    e.sim(r#"{"cmd":"hangup","device":"0891234567"}"#).await;
    let end = c.until("201", "call.released").await;
    assert_eq!(id_of(&end), x);
    let a = e.settled(&mut c, "201").await;
    assert_eq!(names(&a), ["call.released"], "{a:#?}");
    assert!(c.take("202").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_transfer_then_dtmf() {
    let e = env().await;
    let mut c = e.client().await;
    for d in ["201", "203"] {
        c.ok(json!({"op": "monitor.start", "device": d})).await;
    }
    e.sim(r#"{"cmd":"inbound","ani":"0891234567","dnis":"201","user_data":"case=9","correlator_data":"c9"}"#)
        .await;
    let x = id_of(&c.until("201", "call.offering").await);
    c.ok(json!({"op": "call.answer", "device": "201"})).await;
    c.until("201", "call.connected").await;
    c.ok(json!({"op": "call.blind_transfer", "device": "201", "to": "203"}))
        .await;
    let pop = c.until("203", "call.offering").await;
    assert_eq!(id_of(&pop), x);
    assert_eq!(pop["cause"], "singleStepTransfer");
    let v = view(&pop);
    assert_eq!(v["type"], "inbound");
    assert_eq!(v["ani"], "0891234567");
    assert_eq!(v["other"], "0891234567");
    assert_eq!(v["variables"], vars("case=9", Some("c9")));
    c.until("201", "call.released").await;
    let a = e.settled(&mut c, "201").await;
    assert_eq!(
        names(&a),
        [
            "call.offering",
            "call.connected",
            "call.transferred",
            "call.released"
        ],
        "{a:#?}"
    );
    all_on(&a, &x);
    assert_eq!(a[2]["cause"], "singleStepTransfer");
    assert_eq!(
        (a[2]["from"].as_str(), a[2]["to"].as_str()),
        (Some("201"), Some("203"))
    );
    assert_eq!(a[3]["cause"], "singleStepTransfer");

    c.ok(json!({"op": "call.answer", "device": "203"})).await;
    c.until("203", "call.connected").await;
    c.ok(json!({"op": "call.dtmf", "device": "203", "digits": "12*#"}))
        .await;
    let d = c.until("203", "call.dtmf").await;
    assert_eq!(d["digits"], "12*#");
    assert_eq!(id_of(&d), x);
    c.ok(json!({"op": "call.hangup", "device": "203"})).await;
    let r = c.until("203", "call.released").await;
    assert_eq!(r["cause"], "normalClearing");
    let b = e.settled(&mut c, "203").await;
    assert_eq!(
        names(&b),
        [
            "call.offering",
            "call.connected",
            "call.dtmf",
            "call.released"
        ],
        "{b:#?}"
    );
    all_on(&b, &x);
    assert!(c.take("201").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_call_far_end_answers() {
    let e = env().await;
    let mut c = e.client().await;
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    e.sim(r#"{"cmd":"far_end","number":"0891234567","behaviour":"answer"}"#)
        .await;
    let t0 = Instant::now();
    let r = c
        .ok(json!({"op": "call.make", "device": "201", "to": "0891234567", "variables": {"uui": "crm=1"}}))
        .await;
    let pbx = r["pbx_call_id"].as_str().expect("pbx_call_id").to_string();
    let conn = c.until("201", "call.connected").await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "the far end answers after about 2 s, not {waited:?}"
    );
    c.ok(json!({"op": "call.hangup", "device": "201"})).await;
    c.until("201", "call.released").await;
    let a = e.settled(&mut c, "201").await;
    assert_eq!(
        names(&a),
        [
            "call.dialing",
            "call.updated",
            "call.ringback",
            "call.connected",
            "call.released"
        ],
        "{a:#?}"
    );
    let x = id_of(&a[0]);
    all_on(&a, &x);
    assert_eq!(a[0]["cause"], "makeCall");
    assert_eq!(view(&a[0])["state"], "dialing");
    assert_eq!(view(&a[0])["pbx_call_id"], pbx);
    // once the called number is known the call is outbound
    for e in &a[1..] {
        let v = view(e);
        assert_eq!(v["type"], "outbound", "{e}");
        assert_eq!(v["ani"], "201", "{e}");
        assert_eq!(v["dnis"], "0891234567", "{e}");
        assert_eq!(v["other"], "0891234567", "{e}");
        assert_eq!(v["parties"], json!(["201", "0891234567"]), "{e}");
    }
    assert_eq!(view(&a[2])["state"], "ringback");
    assert_eq!(view(&a[2])["variables"], vars("crm=1", None));
    assert_eq!(view(&conn)["state"], "connected");
    assert!(view(&conn)["answered"].is_string());
    assert_eq!(a[4]["cause"], "normalClearing");

    // a far end that rings until the simulator's `answer`
    e.sim(r#"{"cmd":"far_end","number":"0891234567","behaviour":"ring"}"#)
        .await;
    c.ok(json!({"op": "call.make", "device": "201", "to": "0891234567"}))
        .await;
    c.until("201", "call.ringback").await;
    // not answered by the time the switch reported the marker call (that it never answers
    // by itself is shown in virtual time: model tests, a_far_end_that_rings_...)
    e.barrier(&mut c).await;
    assert!(!c.events.iter().any(|e| e["event"] == "call.connected"));
    e.sim(r#"{"cmd":"answer","device":"0891234567"}"#).await;
    c.until("201", "call.connected").await;
    e.sim(r#"{"cmd":"hangup","device":"0891234567"}"#).await;
    let end = c.until("201", "call.released").await;
    assert_eq!(end["cause"], "normalClearing");
    let a = e.settled(&mut c, "201").await;
    assert_eq!(
        names(&a),
        [
            "call.dialing",
            "call.updated",
            "call.ringback",
            "call.connected",
            "call.released"
        ],
        "{a:#?}"
    );
    all_on(&a, &id_of(&a[0]));
    assert_ne!(id_of(&a[0]), x, "a new call is a new interaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_destination_fails_with_cause_busy() {
    let e = env().await;
    let mut c = e.client().await;
    for d in ["201", "202"] {
        c.ok(json!({"op": "monitor.start", "device": d})).await;
    }
    e.sim(r#"{"cmd":"far_end","number":"0891234568","behaviour":"busy"}"#)
        .await;
    e.sim(r#"{"cmd":"busy","device":"202","on":true}"#).await;
    for to in ["0891234568", "202"] {
        c.ok(json!({"op": "call.make", "device": "201", "to": to}))
            .await;
        let f = c.until("201", "call.failed").await;
        assert_eq!(f["cause"], "busy", "{f}");
        let v = view(&f);
        assert_eq!(v["state"], "failed");
        assert_eq!(v["other"], to);
        assert_eq!(v["dnis"], to);
        assert_eq!(v["type"], if to == "202" { "internal" } else { "outbound" });
        c.ok(json!({"op": "call.hangup", "device": "201"})).await;
        c.until("201", "call.released").await;
        let a = e.settled(&mut c, "201").await;
        assert_eq!(
            names(&a),
            [
                "call.dialing",
                "call.updated",
                "call.failed",
                "call.released"
            ],
            "{a:#?}"
        );
        all_on(&a, &id_of(&f));
    }
    // the busy station saw nothing
    assert!(c.take("202").is_empty());
}

// ---- agents -----------------------------------------------------------------------------

fn agent_states(evs: &[Value]) -> Vec<(String, Option<String>)> {
    evs.iter()
        .map(|e| {
            assert_eq!(e["event"], "agent.state", "{e}");
            (
                e["state"].as_str().unwrap_or("?").to_string(),
                e["reason"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn st(s: &str, r: Option<&str>) -> (String, Option<String>) {
    (s.to_string(), r.map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_login_ready_not_ready_acw_logout() {
    let e = env().await;
    let mut c = e.client().await;
    c.ok(json!({"op": "monitor.start", "device": "203"})).await;
    let r = c
        .ok(json!({"op": "agent.login", "device": "203", "agent": "1003", "password": "1003", "group": "8000"}))
        .await;
    assert_eq!(r["pending"], Value::Null);
    let ev = c.until("203", "agent.state").await;
    assert_eq!(
        (
            ev["agent"].as_str(),
            ev["state"].as_str(),
            ev["group"].as_str()
        ),
        (Some("1003"), Some("not_ready"), Some("8000")),
        "{ev}"
    );
    assert_eq!(ev["reason"], Value::Null);
    c.ok(json!({"op": "agent.ready", "device": "203"})).await;
    c.ok(json!({"op": "agent.not_ready", "device": "203", "reason": "lunch"}))
        .await;
    let q = c.ok(json!({"op": "agent.state", "device": "203"})).await;
    assert_eq!(
        q,
        json!({"agent": "1003", "state": "not_ready", "reason": "lunch", "group": "8000"})
    );
    c.ok(json!({"op": "agent.after_call_work", "device": "203"}))
        .await;
    let q = c.ok(json!({"op": "agent.state", "device": "203"})).await;
    assert_eq!(
        q,
        json!({"agent": "1003", "state": "after_call_work", "reason": null, "group": "8000"})
    );
    c.ok(json!({"op": "agent.ready", "device": "203", "reason": "back"}))
        .await;
    c.ok(json!({"op": "agent.logout", "device": "203", "reason": "eod"}))
        .await;
    // asking changes nothing: no event, the known agent and group stay
    let q = c.ok(json!({"op": "agent.state", "device": "203"})).await;
    assert_eq!(
        q,
        json!({"agent": "1003", "state": "logged_out", "reason": "eod", "group": "8000"})
    );
    let a = e.settled(&mut c, "203").await;
    assert_eq!(
        agent_states(&a),
        [
            st("not_ready", None),
            st("ready", None),
            st("not_ready", Some("lunch")),
            st("after_call_work", None),
            st("ready", Some("back")),
            st("logged_out", Some("eod")),
        ],
        "{a:#?}"
    );
    for ev in &a {
        assert_eq!(
            (ev["agent"].as_str(), ev["group"].as_str()),
            (Some("1003"), Some("8000")),
            "{ev}"
        );
    }

    // a station without an agent: logged out, the device number as agent
    c.ok(json!({"op": "monitor.start", "device": "204"})).await;
    let q = c.ok(json!({"op": "agent.state", "device": "204"})).await;
    assert_eq!(
        q,
        json!({"agent": "204", "state": "logged_out", "reason": null, "group": null})
    );
    // the switch refuses a wrong password; nothing changes
    c.err(
        json!({"op": "agent.login", "device": "204", "agent": "1004", "password": "x", "group": "8000"}),
        "switch",
        "invalidAgentPassword",
    )
    .await;
    let b = e.settled(&mut c, "204").await;
    assert_eq!(agent_states(&b), [st("logged_out", None)], "{b:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_change_pending_during_an_acd_call_keeps_its_reason() {
    let e = env().await;
    let mut c = e.client().await;
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    agent_ready(&mut c, "201", "1001").await;
    e.sim(r#"{"cmd":"inbound","ani":"0891234567","dnis":"8000"}"#)
        .await;
    c.until("201", "call.offering").await;
    c.ok(json!({"op": "call.answer", "device": "201"})).await;
    c.until("201", "call.connected").await;
    let r = c
        .ok(json!({"op": "agent.not_ready", "device": "201", "reason": "break"}))
        .await;
    assert_eq!(r["pending"], "agentNotReady");
    e.sim(r#"{"cmd":"hangup","device":"0891234567"}"#).await;
    c.until("201", "call.released").await;
    let a = e.settled(&mut c, "201").await;
    let agents: Vec<Value> = a
        .iter()
        .filter(|e| e["event"] == "agent.state")
        .cloned()
        .collect();
    assert_eq!(
        agent_states(&agents),
        [
            st("not_ready", None),
            st("ready", None),
            st("busy", None),
            st("not_ready", Some("break")),
        ],
        "{a:#?}"
    );
    let q = c.ok(json!({"op": "agent.state", "device": "201"})).await;
    assert_eq!(q["reason"], "break");
    assert!(e.settled(&mut c, "201").await.is_empty());
}

// ---- errors -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors() {
    let e = env_with(
        ApiConfig {
            requests_per_s: 0,
            max_line: 4096,
            ..ApiConfig::default()
        },
        LinkSection::default(),
    )
    .await;
    let mut c = e.client().await;
    // lines that cannot be requests: answered with id null
    for (line, code) in [
        ("{nope\n", "bad_json"),
        ("[1,2]\n", "bad_json"),
        ("{\"op\":\"ping\"}\n", "missing_field"),
    ] {
        c.send_raw(line).await;
        let r = c.response(&Value::Null).await;
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(
            (r["error"]["kind"].as_str(), r["error"]["code"].as_str()),
            (Some("request"), Some(code)),
            "{line}: {r}"
        );
    }
    c.err(
        json!({"op": "call.teleport", "device": "201"}),
        "request",
        "unknown_op",
    )
    .await;
    c.err(json!({"op": 7}), "request", "invalid_field").await;
    c.err(json!({"op": "call.answer"}), "request", "missing_field")
        .await;
    c.err(
        json!({"op": "call.make", "device": "201"}),
        "request",
        "missing_field",
    )
    .await;
    c.err(
        json!({"op": "call.answer", "device": 201}),
        "request",
        "invalid_field",
    )
    .await;
    c.err(
        json!({"op": "call.make", "device": "201", "to": "202", "variables": "case=1"}),
        "request",
        "invalid_field",
    )
    .await;
    c.err(
        json!({"op": "monitor.start", "device": "201", "after": -1}),
        "request",
        "invalid_field",
    )
    .await;
    c.err(
        json!({"op": "call.answer", "device": "201", "link": "pbx9"}),
        "request",
        "invalid_field",
    )
    .await;

    // a line over the limit: an error, and the connection goes on
    let long = format!(
        "{{\"id\":99,\"op\":\"ping\",\"pad\":\"{}\"}}\n",
        "x".repeat(10_000)
    );
    c.send_raw(&long).await;
    let r = c.response(&Value::Null).await;
    assert_eq!(
        (r["error"]["kind"].as_str(), r["error"]["code"].as_str()),
        (Some("request"), Some("line_too_long")),
        "{r}"
    );
    c.ok(json!({"op": "ping"})).await;
    assert!(!c.answered.contains("99"), "the long line was not run");

    // devices and calls
    c.err(
        json!({"op": "call.answer", "device": "205"}),
        "request",
        "not_monitored",
    )
    .await;
    c.err(
        json!({"op": "monitor.stop", "device": "205"}),
        "request",
        "not_monitored",
    )
    .await;
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    for op in [
        "call.answer",
        "call.hold",
        "call.retrieve",
        "call.hangup",
        "call.transfer",
    ] {
        c.err(
            json!({"op": op, "device": "201"}),
            "request",
            "no_such_call_state",
        )
        .await;
    }
    c.err(
        json!({"op": "call.dtmf", "device": "201", "digits": "12x"}),
        "request",
        "invalid_field",
    )
    .await;
    c.err(
        json!({"op": "call.hold", "device": "201", "call": "0000000000000000"}),
        "request",
        "unknown_call",
    )
    .await;
    // an alerting call cannot be held
    e.sim(r#"{"cmd":"dial","from":"202","to":"201"}"#).await;
    let x = id_of(&c.until("201", "call.offering").await);
    c.err(
        json!({"op": "call.hold", "device": "201"}),
        "request",
        "no_such_call_state",
    )
    .await;
    // two calls the operation could mean: the client must name one
    c.ok(json!({"op": "call.answer", "device": "201"})).await;
    c.until("201", "call.connected").await;
    c.ok(json!({"op": "call.consult", "device": "201", "to": "203"}))
        .await;
    let y = id_of(&c.until("201", "call.ringback").await);
    let r = c
        .err(
            json!({"op": "call.hangup", "device": "201"}),
            "request",
            "no_such_call_state",
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("name the `call`"),
        "{r}"
    );
    c.err(
        json!({"op": "call.clear", "device": "201"}),
        "request",
        "missing_field",
    )
    .await;
    for id in [&y, &x] {
        c.ok(json!({"op": "call.clear", "device": "201", "call": id}))
            .await;
        let r = c.until("201", "call.released").await;
        assert_eq!(&id_of(&r), id);
    }
    e.barrier(&mut c).await;
    let a = c.take("201");
    let released: Vec<String> = a
        .iter()
        .filter(|e| e["event"] == "call.released")
        .map(id_of)
        .collect();
    assert_eq!(released, [y, x], "one release each: {a:#?}");
    assert!(c.responses.is_empty(), "{:?}", c.responses);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_errors() {
    let e = env().await;
    let mut c = e.client().await;
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    c.err(
        json!({"op": "call.make", "device": "201", "to": "999"}),
        "switch",
        "invalidCalledDeviceID",
    )
    .await;
    c.err(
        json!({"op": "call.make", "device": "999", "to": "201"}),
        "switch",
        "invalidCallingDeviceID",
    )
    .await;
    c.err(
        json!({"op": "monitor.start", "device": "999"}),
        "switch",
        "invalidDeviceID",
    )
    .await;
    // nothing alerts: the gateway answers; naming a connected call: the switch refuses
    e.sim(r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#)
        .await;
    let x = id_of(&c.until("201", "call.offering").await);
    c.ok(json!({"op": "call.answer", "device": "201", "call": x}))
        .await;
    c.until("201", "call.connected").await;
    c.err(
        json!({"op": "call.answer", "device": "201"}),
        "request",
        "no_such_call_state",
    )
    .await;
    c.err(
        json!({"op": "call.answer", "device": "201", "call": x}),
        "switch",
        "noCallToAnswer",
    )
    .await;
    c.err(
        json!({"op": "call.retrieve", "device": "201", "call": x}),
        "switch",
        "noHeldCall",
    )
    .await;
    c.err(
        json!({"op": "agent.ready", "device": "201"}),
        "switch",
        "invalidAgentIdentifier",
    )
    .await;
    c.ok(json!({"op": "call.hangup", "device": "201"})).await;
    c.until("201", "call.released").await;
    let a = e.settled(&mut c, "201").await;
    assert_eq!(
        names(&a),
        ["call.offering", "call.connected", "call.released"],
        "{a:#?}"
    );
}

/// The simulator's `garble` fault mid-call: the frame is rejected (X.880
/// badlyStructuredPDU, `link_session` unit tests show the bytes), counted in `status`, the
/// link stays up (no link event) and the call's later events still come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_frame_is_rejected_counted_and_the_call_goes_on() {
    let e = env().await;
    let mut c = e.client().await;
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    e.sim(r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#)
        .await;
    let x = id_of(&c.until("201", "call.offering").await);
    let r = e.sim(r#"{"cmd":"fault","fault":"garble"}"#).await;
    assert_eq!(r["ok"], true, "{r}");
    // the answer's result and events come on the same association after the garbled frame
    c.ok(json!({"op": "call.answer", "device": "201"})).await;
    c.until("201", "call.connected").await;
    e.sim(r#"{"cmd":"hangup","device":"0891234567"}"#).await;
    c.until("201", "call.released").await;
    let a = e.settled(&mut c, "201").await;
    assert_eq!(
        names(&a),
        ["call.offering", "call.connected", "call.released"],
        "{a:#?}"
    );
    all_on(&a, &x);
    let st = c.ok(json!({"op": "status"})).await;
    assert_eq!(
        st["links"],
        json!([{"name": "pbx1", "state": "up", "side": 0, "address": e.sim.csta_addr.to_string(),
            "malformed_frames": 1, "rejects_sent": 1, "events_shed": 0, "behind": false, "behind_periods": 0}])
    );
    assert!(
        !c.events.iter().any(|e| e.get("device").is_none()),
        "no link event: {:#?}",
        c.events
    );
    // and once more: the counters count
    e.sim(r#"{"cmd":"fault","fault":"garble"}"#).await;
    e.barrier(&mut c).await;
    let st = c.ok(json!({"op": "status"})).await;
    assert_eq!(st["links"][0]["malformed_frames"], 2);
    assert_eq!(st["links"][0]["rejects_sent"], 2);
    assert_eq!(st["links"][0]["state"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_timeout_when_the_switch_hangs() {
    let e = env_with(
        ApiConfig {
            requests_per_s: 0,
            ..ApiConfig::default()
        },
        LinkSection {
            request_timeout_ms: 300,
            ..LinkSection::default()
        },
    )
    .await;
    let mut c = e.client().await;
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    e.sim(r#"{"cmd":"fault","fault":"hang"}"#).await;
    let t0 = Instant::now();
    let ids = [
        c.send(json!({"op": "agent.state", "device": "201"})).await,
        c.send(json!({"op": "call.make", "device": "201", "to": "202"}))
            .await,
        c.send(json!({"op": "ping"})).await,
    ];
    for id in &ids[..2] {
        let r = c.response(id).await;
        assert_eq!(
            (r["error"]["kind"].as_str(), r["error"]["code"].as_str()),
            (Some("link"), Some("timeout")),
            "{r}"
        );
    }
    assert_eq!(c.response(&ids[2]).await["ok"], true);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    e.sim(r#"{"cmd":"fault","fault":"resume"}"#).await;
    // the link is usable again (it may have been renewed meanwhile)
    let end = Instant::now() + T;
    loop {
        let r = c.call(json!({"op": "agent.state", "device": "201"})).await;
        if r["ok"] == true {
            break;
        }
        assert_eq!(r["error"]["kind"], "link", "{r}");
        assert!(Instant::now() < end, "the link did not recover: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_down_then_up_resyncs_and_events_flow_again() {
    let e = env_with(
        ApiConfig {
            requests_per_s: 0,
            ..ApiConfig::default()
        },
        LinkSection {
            request_timeout_ms: 2000,
            reconnect_min_ms: 1500,
            reconnect_max_ms: 3000,
            ..LinkSection::default()
        },
    )
    .await;
    let mut c = e.client().await;
    for d in ["201", "202"] {
        c.ok(json!({"op": "monitor.start", "device": d})).await;
    }
    e.sim(r#"{"cmd":"dial","from":"201","to":"202"}"#).await;
    let x = id_of(&c.until("202", "call.offering").await);
    c.ok(json!({"op": "call.answer", "device": "202"})).await;
    c.until("201", "call.connected").await;
    c.until("202", "call.connected").await;
    e.barrier(&mut c).await;
    c.take("201");
    c.take("202");

    e.sim(r#"{"cmd":"fault","fault":"close"}"#).await;
    let down = c.until_link("link.down").await;
    assert_eq!(down["link"], "pbx1");
    assert!(down["reason"].is_string(), "{down}");
    let side0 = e.sim.csta_addr.to_string();
    assert_eq!(
        (&down["side"], &down["address"]),
        (&json!(0), &json!(side0))
    );
    c.err(
        json!({"op": "call.hold", "device": "201"}),
        "link",
        "link_down",
    )
    .await;
    let st = c.ok(json!({"op": "status"})).await;
    assert_eq!(
        st["links"],
        json!([{"name": "pbx1", "state": "down", "reason": down["reason"], "side": 0, "address": side0,
            "malformed_frames": 0, "rejects_sent": 0, "events_shed": 0, "behind": false, "behind_periods": 0}])
    );
    // the call ends while nobody watches
    e.sim(r#"{"cmd":"hangup","device":"201"}"#).await;

    let up = c.until_link("link.up").await;
    assert!(up["seq"].as_u64() > down["seq"].as_u64());
    assert_eq!((&up["side"], &up["address"]), (&json!(0), &json!(side0)));
    for d in ["201", "202"] {
        let r = c.until(d, "call.released").await;
        assert_eq!(id_of(&r), x, "{r}");
        assert_eq!(r["cause"], "resync", "{r}");
        assert!(
            r["seq"].as_u64() > up["seq"].as_u64(),
            "released after link.up"
        );
    }
    for d in ["201", "202"] {
        assert_eq!(e.pbx_monitors(d).await, 1, "{d} monitored again");
    }
    let h = e.client().await;
    assert_eq!(
        h.hello["links"],
        json!([{"name": "pbx1", "state": "up", "side": 0, "address": side0,
            "malformed_frames": 0, "rejects_sent": 0, "events_shed": 0, "behind": false, "behind_periods": 0}])
    );

    // events flow again
    e.sim(r#"{"cmd":"dial","from":"201","to":"203"}"#).await;
    let d = c.until("201", "call.ringback").await;
    assert_ne!(id_of(&d), x);
    c.ok(json!({"op": "call.hangup", "device": "201"})).await;
    c.until("201", "call.released").await;
    let a = e.settled(&mut c, "201").await;
    assert_eq!(
        names(&a),
        [
            "call.released",
            "call.dialing",
            "call.updated",
            "call.ringback",
            "call.released"
        ],
        "{a:#?}"
    );
    assert_eq!(
        names(&c.take("202")),
        ["call.released"],
        "202 saw only the resync"
    );
    let links: Vec<&str> = c
        .events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(links, ["link.down", "link.up"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_beyond_requests_per_s() {
    let e = env_with(
        ApiConfig {
            requests_per_s: 3,
            ..ApiConfig::default()
        },
        LinkSection::default(),
    )
    .await;
    let mut c = e.client().await;
    let mut batch = String::new();
    for i in 0..6 {
        batch.push_str(&format!("{}\n", json!({"id": 100 + i, "op": "ping"})));
    }
    c.send_raw(&batch).await;
    let mut ok = 0;
    for i in 0..6 {
        let r = c.response(&json!(100 + i)).await;
        if r["ok"] == true {
            ok += 1;
            assert!(i < 3, "{r}");
        } else {
            assert_eq!(
                (r["error"]["kind"].as_str(), r["error"]["code"].as_str()),
                (Some("busy"), Some("rate_limited")),
                "{r}"
            );
        }
    }
    assert_eq!(ok, 3);
    // another client has its own budget
    let mut d = e.client().await;
    d.ok(json!({"op": "ping"})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.ok(json!({"op": "ping"})).await;
    e.barrier(&mut c).await;
    assert!(c.responses.is_empty());
}

// ---- monitors ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_share_one_pbx_monitor() {
    let e = env().await;
    let mut a = e.client().await;
    let mut b = e.client().await;
    a.ok(json!({"op": "monitor.start", "device": "202"})).await;
    b.ok(json!({"op": "monitor.start", "device": "202"})).await;
    assert_eq!(e.pbx_monitors("202").await, 1);
    let st = a.ok(json!({"op": "status"})).await;
    assert_eq!(
        st["monitors"],
        json!([{"link": "pbx1", "device": "202", "clients": 2}])
    );

    // both get the same events, same seq
    e.sim(r#"{"cmd":"dial","from":"201","to":"202"}"#).await;
    let ea = a.until("202", "call.offering").await;
    let eb = b.until("202", "call.offering").await;
    assert_eq!(ea, eb);

    // a client acts only on the devices it monitors, whoever else watches them
    let mut other = e.client().await;
    other
        .err(
            json!({"op": "call.answer", "device": "202"}),
            "request",
            "not_monitored",
        )
        .await;
    other
        .err(
            json!({"op": "call.hangup", "device": "202", "call": id_of(&ea)}),
            "request",
            "not_monitored",
        )
        .await;
    drop(other);

    // one stops: the PBX monitor stays, the other still gets events
    let r = a.ok(json!({"op": "monitor.stop", "device": "202"})).await;
    assert_eq!(r["device"], "202");
    assert_eq!(e.pbx_monitors("202").await, 1);
    a.err(
        json!({"op": "monitor.stop", "device": "202"}),
        "request",
        "not_monitored",
    )
    .await;
    e.sim(r#"{"cmd":"hangup","device":"201"}"#).await;
    let rb = b.until("202", "call.released").await;
    assert_eq!(id_of(&rb), id_of(&eb));
    e.barrier(&mut a).await;
    assert_eq!(
        names(&a.take("202")),
        ["call.offering"],
        "a gets nothing after monitor.stop"
    );
    assert_eq!(names(&b.take("202")), ["call.offering", "call.released"]);

    // both stop: the PBX monitor goes
    b.ok(json!({"op": "monitor.stop", "device": "202"})).await;
    assert_eq!(e.pbx_monitors("202").await, 0);

    // a client that goes away releases its share too
    a.ok(json!({"op": "monitor.start", "device": "203"})).await;
    b.ok(json!({"op": "monitor.start", "device": "203"})).await;
    assert_eq!(e.pbx_monitors("203").await, 1);
    drop(a);
    b.ok(json!({"op": "ping"})).await;
    // a's share is released (the gateway counts one client on 203; a's marker monitor, its
    // only other device, is gone from the PBX), and the PBX monitor of 203 stayed
    let end = Instant::now() + T;
    while e.gw.monitor_refs("pbx1", "203").await != 1 || e.pbx_monitors(support::MARKER).await != 0
    {
        assert!(Instant::now() < end, "a's monitors were not released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(e.pbx_monitors("203").await, 1);
    drop(b);
    let end = Instant::now() + T;
    while e.pbx_monitors("203").await != 0 {
        assert!(Instant::now() < end, "the monitor outlived its clients");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_start_snapshot_and_replay_after() {
    let e = env().await;
    let mut a = e.client().await;
    a.ok(json!({"op": "monitor.start", "device": "201"})).await;
    let before = a.hello["seq"].as_u64().unwrap();
    e.sim(r#"{"cmd":"dial","from":"201","to":"202"}"#).await;
    let ring = a.until("201", "call.ringback").await;
    let x = id_of(&ring);

    // a late client gets the call in the result, and the events since `after`
    let mut b = e.client().await;
    b.last_seq = before;
    let r = b
        .ok(json!({"op": "monitor.start", "device": "201", "after": before}))
        .await;
    assert_eq!(r["device"], "201");
    let calls = r["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 1, "{r}");
    assert_eq!(calls[0]["id"], x);
    assert_eq!(calls[0]["state"], "ringback");
    assert_eq!(r["gap"], false);
    assert_eq!(r["replayed"], 3, "{r}");
    assert_eq!(r["seq"].as_u64(), Some(e.gw.last_seq()));
    e.barrier(&mut b).await;
    let replay = b.take("201");
    assert_eq!(
        names(&replay),
        ["call.dialing", "call.updated", "call.ringback"]
    );
    assert_eq!(replay[2], ring);

    // a monitor without a call: empty snapshot; one without `after`: no replay fields
    let r = b.ok(json!({"op": "monitor.start", "device": "204"})).await;
    assert_eq!(r["calls"], json!([]));
    assert!(r.get("replayed").is_none() && r.get("gap").is_none(), "{r}");
    e.sim(r#"{"cmd":"hangup","device":"201"}"#).await;
    let ea = a.until("201", "call.released").await;
    let eb = b.until("201", "call.released").await;
    assert_eq!(ea, eb);
}

#[tokio::test]
async fn monitor_start_shows_an_agent_logged_on_before_anyone_watched() {
    let e = env().await;
    let mut c = e.client().await;
    // the agent logs on and gets ready while a client watches 205, which then lets go:
    // the gateway forgets the device
    c.ok(json!({"op": "monitor.start", "device": "205"})).await;
    agent_ready(&mut c, "205", "1005").await;
    c.ok(json!({"op": "monitor.stop", "device": "205"})).await;
    // another client starts watching: the snapshot has the agent, asked of the switch
    let mut d = e.client().await;
    let r = d.ok(json!({"op": "monitor.start", "device": "205"})).await;
    assert_eq!(
        (
            r["agent"]["agent"].as_str(),
            r["agent"]["state"].as_str(),
            r["agent"]["group"].as_str()
        ),
        (Some("1005"), Some("ready"), Some("8000")),
        "{r}"
    );
    // a station without an agent: still null
    let r = d.ok(json!({"op": "monitor.start", "device": "206"})).await;
    assert_eq!(r["agent"], Value::Null, "{r}");
    assert_eq!(
        d.ok(json!({"op": "agent.state", "device": "205"})).await["state"],
        "ready"
    );
}
