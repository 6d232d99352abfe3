//! Resync after a link outage against the simulator answering SnapshotDevice in each form
//! the standard allows: calls that survived keep their interaction, calls that ended are
//! released (cause `resync`), calls that appeared are offered once with their parties.

mod support;

use ctigate::config::{ApiConfig, LinkSection};
use ctigate::sim::config::{SimConfig, SnapshotForm};
use serde_json::{json, Value};
use support::*;

fn names(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["event"].as_str().unwrap(),
                e["cause"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

async fn outage_with(form: SnapshotForm) {
    let mut sim = SimConfig::default();
    sim.link.snapshot_form = form;
    let e = env_sim(
        sim,
        ApiConfig {
            requests_per_s: 0,
            ..ApiConfig::default()
        },
        LinkSection {
            request_timeout_ms: 2000,
            reconnect_min_ms: 300,
            reconnect_max_ms: 600,
            ..LinkSection::default()
        },
    )
    .await;
    let mut c = e.client().await;
    for d in ["201", "202", "204"] {
        c.ok(json!({"op": "monitor.start", "device": d})).await;
    }
    // A: 201 -> 202, up across the outage; D: 204 -> 205, ends during it
    e.sim(r#"{"cmd":"dial","from":"201","to":"202"}"#).await;
    e.sim(r#"{"cmd":"answer","device":"202"}"#).await;
    e.sim(r#"{"cmd":"dial","from":"204","to":"205"}"#).await;
    e.sim(r#"{"cmd":"answer","device":"205"}"#).await;
    e.barrier(&mut c).await;
    let a = c.take("201").last().unwrap()["call"].clone();
    assert_eq!(a["state"], "connected");
    let d = c.take("204").last().unwrap()["call"].clone();
    c.take("202");

    let slot = e.gw.gw.gateway.links()["pbx1"].clone();
    let done = slot.resyncs();
    e.sim(r#"{"cmd":"fault","fault":"close"}"#).await;
    c.until_link("link.down").await;
    // while nobody watches: D ends, B (206 -> 204) rings
    e.sim(r#"{"cmd":"hangup","device":"205"}"#).await;
    e.sim(r#"{"cmd":"dial","from":"206","to":"204"}"#).await;
    c.until_link("link.up").await;
    // every monitored device (the barrier's marker too) monitored again and resynced
    let end = std::time::Instant::now() + T;
    while slot.resyncs() < done + 4 {
        assert!(
            std::time::Instant::now() < end,
            "{form:?}: resyncs after link.up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(slot.resync_failures(), 0);
    e.barrier(&mut c).await;

    assert_eq!(
        names(&c.take("201")),
        Vec::<String>::new(),
        "{form:?}: A untouched"
    );
    assert_eq!(
        names(&c.take("202")),
        Vec::<String>::new(),
        "{form:?}: A untouched"
    );
    let at = c.take("204");
    assert_eq!(
        names(&at),
        ["call.released/resync", "call.offering/resync"],
        "{form:?}: {at:#?}"
    );
    assert_eq!(at[0]["call"]["id"], d["id"], "{form:?}");
    let b = &at[1]["call"];
    assert_eq!(
        (
            &b["state"],
            &b["ani"],
            &b["dnis"],
            &b["other"],
            &b["parties"]
        ),
        (
            &json!("offering"),
            &json!("206"),
            &json!("204"),
            &json!("206"),
            &json!(["204", "206"])
        ),
        "{form:?}: SnapshotCall completes the new call"
    );
    let st = c.ok(json!({"op": "snapshot", "device": "201"})).await;
    assert_eq!(st["calls"][0]["id"], a["id"], "{form:?}: A keeps its id");
    assert_eq!(st["calls"][0]["state"], "connected");
    // the new call goes on with live events under the same interaction
    c.ok(json!({"op": "call.answer", "device": "204"})).await;
    let conn = c.until("204", "call.connected").await;
    assert_eq!(conn["call"]["id"], b["id"], "{form:?}");
    e.sim(r#"{"cmd":"hangup","device":"201"}"#).await;
    let r = c.until("202", "call.released").await;
    assert_eq!(r["call"]["id"], a["id"], "{form:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_resync_with_compound_states() {
    outage_with(SnapshotForm::Compound).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_resync_with_simple_states() {
    outage_with(SnapshotForm::Simple).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_resync_with_unknown_states() {
    outage_with(SnapshotForm::Unknown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_resync_with_the_answer_by_reference() {
    outage_with(SnapshotForm::CrossRef).await;
}
