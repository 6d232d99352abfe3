//! Issue 9 "Nothing lost", gateway against the simulator over real TCP: whatever the switch
//! says or does to the link (systemStatus messagesLost, disabled, overload; a monitor it
//! forgot or renumbered; ABRT, RLRQ, silence), a call that changed state meanwhile ends up
//! in the client-facing view as the switch has it. Each test first proves the change was
//! really missed (a barrier, then no event), so that only the recovery can bring it.

mod support;

use ctigate::config::{ApiConfig, LinkSection};
use serde_json::{json, Value};
use support::{env, env_with, Client, Env};

fn id_of(e: &Value) -> String {
    e["call"]["id"]
        .as_str()
        .expect("interaction id")
        .to_string()
}

/// A client watching 201 with an inbound call offered there; the interaction id.
async fn offered(e: &Env) -> (Client, String) {
    let mut c = e.client().await;
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    e.sim(r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#)
        .await;
    let x = id_of(&c.until("201", "call.offering").await);
    e.barrier(&mut c).await;
    c.take("201");
    (c, x)
}

/// The gateway's view of the call is the switch's again: `call.connected` for the same
/// interaction, and the snapshot agrees with the PBX's; one PBX monitor on 201.
async fn connected_again(e: &Env, c: &mut Client, x: &str) {
    let ev = c.until("201", "call.connected").await;
    assert_eq!(id_of(&ev), x, "{ev}");
    let s = c.ok(json!({"op": "snapshot", "device": "201"})).await;
    assert_eq!(s["calls"].as_array().map(Vec::len), Some(1), "{s}");
    assert_eq!(s["calls"][0]["id"], x, "{s}");
    assert_eq!(s["calls"][0]["state"], "connected", "{s}");
    assert_eq!(s["pbx_calls"][0]["state"], "connected", "{s}");
    assert_eq!(e.pbx_monitors("201").await, 1, "one PBX monitor on 201");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_lost_resyncs_the_monitored_devices() {
    let e = env().await;
    let (mut c, x) = offered(&e).await;
    e.sim(r#"{"cmd":"fault","fault":"lose_events"}"#).await;
    e.sim(r#"{"cmd":"answer","device":"201"}"#).await;
    e.sim(r#"{"cmd":"fault","fault":"resume"}"#).await;
    e.barrier(&mut c).await;
    assert_eq!(c.take("201"), Vec::<Value>::new(), "the answer was lost");
    e.sim(r#"{"cmd":"fault","fault":"status","status":"messagesLost"}"#)
        .await;
    connected_again(&e, &mut c, &x).await;
    // the link stayed up throughout
    assert!(
        !c.events.iter().any(|v| v["event"] == "link.down"),
        "{:#?}",
        c.events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_then_normal_resyncs_the_monitored_devices() {
    let e = env().await;
    let (mut c, x) = offered(&e).await;
    e.sim(r#"{"cmd":"fault","fault":"status","status":"overloadImminent"}"#)
        .await;
    e.sim(r#"{"cmd":"fault","fault":"lose_events"}"#).await;
    e.sim(r#"{"cmd":"answer","device":"201"}"#).await;
    e.sim(r#"{"cmd":"fault","fault":"resume"}"#).await;
    e.barrier(&mut c).await;
    assert_eq!(c.take("201"), Vec::<Value>::new(), "the answer was lost");
    e.sim(r#"{"cmd":"fault","fault":"status","status":"normal"}"#)
        .await;
    connected_again(&e, &mut c, &x).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_then_enabled_monitors_again_and_resyncs() {
    let e = env().await;
    let (mut c, x) = offered(&e).await;
    // disabled: the switch's monitors are gone
    e.sim(r#"{"cmd":"fault","fault":"status","status":"disabled"}"#)
        .await;
    assert_eq!(e.pbx_monitors("201").await, 0);
    e.sim(r#"{"cmd":"answer","device":"201"}"#).await;
    e.sim(r#"{"cmd":"fault","fault":"status","status":"enabled"}"#)
        .await;
    connected_again(&e, &mut c, &x).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renumbered_monitor_is_monitored_again_and_resynced() {
    let e = env().await;
    let (mut c, x) = offered(&e).await;
    // the switch reports 201 under a cross reference the link never got: the answer's
    // events cannot be the device's until it is monitored again
    e.sim(r#"{"cmd":"fault","fault":"renumber_monitor","device":"201"}"#)
        .await;
    e.sim(r#"{"cmd":"answer","device":"201"}"#).await;
    connected_again(&e, &mut c, &x).await;
    // events come once, under the new monitor (the foreign one was stopped: one PBX
    // monitor on 201, checked above)
    e.sim(r#"{"cmd":"hangup","device":"201"}"#).await;
    let all = e.settled(&mut c, "201").await;
    let names: Vec<&str> = all
        .iter()
        .map(|v| v["event"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(names, ["call.connected", "call.released"], "{all:#?}");
    assert!(all.iter().all(|v| id_of(v) == x), "{all:#?}");
}

/// A link that reconnects after 1.5 s (time to change the call while it is down).
async fn slow_reconnect(keepalive_s: u64) -> Env {
    env_with(
        ApiConfig {
            requests_per_s: 0,
            ..ApiConfig::default()
        },
        LinkSection {
            request_timeout_ms: 2000,
            reconnect_min_ms: 1500,
            reconnect_max_ms: 3000,
            keepalive_idle_s: keepalive_s,
            keepalive_misses: 1,
            ..LinkSection::default()
        },
    )
    .await
}

/// `fault` takes the link down with `reason`; the call is answered while it is down; the
/// link comes back, monitors 201 again and the view is the switch's.
async fn down_answered_up(e: &Env, fault: &str, reason: &str) {
    let (mut c, x) = offered(e).await;
    e.sim(&format!(r#"{{"cmd":"fault","fault":"{fault}"}}"#))
        .await;
    let down = c.until_link("link.down").await;
    assert_eq!(down["reason"], reason, "{down}");
    e.sim(r#"{"cmd":"answer","device":"201"}"#).await;
    let up = c.until_link("link.up").await;
    assert!(up["seq"].as_u64() > down["seq"].as_u64());
    connected_again(e, &mut c, &x).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abrt_from_the_switch_link_down_reconnect_resync() {
    let e = slow_reconnect(20).await;
    down_answered_up(
        &e,
        "abort",
        "the switch aborted the association (ABRT, service-user)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rlrq_from_the_switch_link_down_reconnect_resync() {
    let e = slow_reconnect(20).await;
    down_answered_up(&e, "release", "the switch released the association (RLRQ)").await;
    // the switch got its RLRE: the old association ended as released
    let st = e.sim(r#"{"cmd":"status"}"#).await;
    assert_eq!(
        st["associations"].as_array().map(Vec::len),
        Some(1),
        "only the new association: {st}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_silence_link_down_reconnect_resync() {
    let e = slow_reconnect(1).await;
    down_answered_up(
        &e,
        "stop_keepalive",
        "keep-alive: 1 systemStatus unanswered (1s apart); the link is dead",
    )
    .await;
}
