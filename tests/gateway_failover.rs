//! Side A/B failover end to end (issue 9 "Nothing lost"): a gateway whose link lists both
//! sides of one simulator (`addresses = [A, B]`, one call model behind both), a client
//! watching a connected call, and a side taken away under it. Exact event sequences; "nothing
//! else happened" through the harness barrier.

mod support;

use ctigate::config::LinkSection;
use serde_json::{json, Value};
use support::{env_sides, Client, Env, MARKER, T};
use tokio::time::timeout;

fn id_of(e: &Value) -> String {
    e["call"]["id"]
        .as_str()
        .expect("interaction id")
        .to_string()
}

fn names(evs: &[Value]) -> Vec<&str> {
    evs.iter()
        .map(|e| e["event"].as_str().unwrap_or("?"))
        .collect()
}

/// Short timers: reconnect after 100-200 ms.
fn link() -> LinkSection {
    LinkSection {
        request_timeout_ms: 3000,
        reconnect_min_ms: 200,
        reconnect_max_ms: 1000,
        ..LinkSection::default()
    }
}

/// The simulator's one open association (the gateway's), as `status` shows it.
async fn the_association(e: &Env) -> Value {
    let st = e.sim(r#"{"cmd":"status"}"#).await;
    let open: Vec<&Value> = st["associations"]
        .as_array()
        .expect("associations")
        .iter()
        .filter(|a| a["phase"] != "closed")
        .collect();
    assert_eq!(open.len(), 1, "one association: {st:#}");
    open[0].clone()
}

/// Wait (bounded) until the gateway's association on `side` monitors `devices` again and
/// has asked for their snapshots (the resync): a MonitorStart and a SnapshotDevice each.
async fn resynced_on(e: &Env, side: usize, devices: &[&str]) {
    let done = async {
        loop {
            let a = the_association(e).await;
            let watched: Vec<&str> = a["monitors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["watches"]["device"].as_str())
                .collect();
            if a["side"] == side
                && a["phase"] == "associated"
                && devices.iter().all(|d| watched.contains(d))
                && a["requests"].as_u64() >= Some(2 * devices.len() as u64)
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    timeout(T, done)
        .await
        .expect("the gateway monitors again and resyncs on the new side");
}

/// A call 201 -> 202, connected; the client watches 201 (and the barrier's marker). Its
/// interaction id at 201.
async fn connected_call(e: &Env, c: &mut Client) -> String {
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    e.barrier(c).await; // the marker is watched from here on
    e.sim(r#"{"cmd":"dial","from":"201","to":"202"}"#).await;
    e.sim(r#"{"cmd":"answer","device":"202"}"#).await;
    let conn = c.until("201", "call.connected").await;
    let a = e.settled(c, "201").await;
    assert_eq!(
        names(&a),
        [
            "call.dialing",
            "call.updated",
            "call.ringback",
            "call.connected"
        ],
        "{a:#?}"
    );
    id_of(&conn)
}

/// Take side `from` away: the gateway tells link.down naming it, moves to side `to`
/// (link.up naming it), monitors again and resyncs; the client's view of the call `x` at
/// 201 is unchanged, and the two link events are all it got.
async fn fail_over(e: &Env, c: &mut Client, from: usize, to: usize, x: &str) {
    let addr = |s: usize| json!(e.sim.sides[s].to_string());
    let r = e
        .sim(&format!(
            r#"{{"cmd":"fault","fault":"side_down","side":{from}}}"#
        ))
        .await;
    assert_eq!(
        r["associations"], 1,
        "the gateway's association was on side {from}"
    );
    let down = c.until_link("link.down").await;
    assert_eq!(
        (&down["link"], &down["side"], &down["address"]),
        (&json!("pbx1"), &json!(from), &addr(from)),
        "{down}"
    );
    let up = c.until_link("link.up").await;
    assert_eq!(
        (&up["link"], &up["side"], &up["address"]),
        (&json!("pbx1"), &json!(to), &addr(to)),
        "{up}"
    );
    resynced_on(e, to, &["201", MARKER]).await;
    // status names the side
    let st = c.ok(json!({"op": "status"})).await;
    assert_eq!(
        st["links"],
        json!([{"name": "pbx1", "state": "up", "side": to, "address": addr(to),
            "malformed_frames": 0, "rejects_sent": 0, "events_shed": 0, "behind": false, "behind_periods": 0}])
    );
    // the view: the same interaction, connected
    let snap = c.ok(json!({"op": "snapshot", "device": "201"})).await;
    let calls = snap["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 1, "{snap}");
    assert_eq!(
        (&calls[0]["id"], &calls[0]["state"]),
        (&json!(x), &json!("connected"))
    );
    // nothing else: no call event at 201 (no call.released), only the two link events
    e.barrier(c).await;
    assert_eq!(c.take("201"), Vec::<Value>::new());
    let rest = std::mem::take(&mut c.events);
    assert_eq!(rest, [down, up], "everything else the client got");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn side_a_down_the_gateway_moves_to_b_and_the_call_goes_on() {
    let e = env_sides(link()).await;
    let mut c = e.client().await;
    let side_a = e.sim.sides[0].to_string();
    assert_eq!(
        c.hello["links"],
        json!([{"name": "pbx1", "state": "up", "side": 0, "address": side_a,
            "malformed_frames": 0, "rejects_sent": 0, "events_shed": 0, "behind": false, "behind_periods": 0}])
    );
    assert_eq!(the_association(&e).await["side"], 0);
    let x = connected_call(&e, &mut c).await;

    fail_over(&e, &mut c, 0, 1, &x).await;

    // requests go through side B, and so do the events: the hangup
    e.sim(r#"{"cmd":"hangup","device":"202"}"#).await;
    let end = c.until("201", "call.released").await;
    let a = e.settled(&mut c, "201").await;
    assert_eq!(names(&a), ["call.released"], "{a:#?}");
    assert_eq!(a[0], end);
    assert_eq!(id_of(&end), x);
    assert_eq!(end["cause"], "normalClearing");
    assert_eq!(c.events, Vec::<Value>::new());
    assert_eq!(the_association(&e).await["side"], 1, "the only association");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn side_a_back_is_used_when_b_fails() {
    let e = env_sides(link()).await;
    let mut c = e.client().await;
    let x = connected_call(&e, &mut c).await;
    fail_over(&e, &mut c, 0, 1, &x).await;
    // A comes back; the gateway stays on B while B is fine
    e.sim(r#"{"cmd":"fault","fault":"side_up","side":0}"#).await;
    e.barrier(&mut c).await;
    assert_eq!(c.events, Vec::<Value>::new());
    assert_eq!(the_association(&e).await["side"], 1);
    // B fails: back to A, the call still the same
    fail_over(&e, &mut c, 1, 0, &x).await;
    e.sim(r#"{"cmd":"hangup","device":"201"}"#).await;
    let end = c.until("201", "call.released").await;
    let a = e.settled(&mut c, "201").await;
    assert_eq!(names(&a), ["call.released"], "{a:#?}");
    assert_eq!((id_of(&end), &end["cause"]), (x, &json!("normalClearing")));
    assert_eq!(the_association(&e).await["side"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_down_requests_fail_fast_and_the_first_side_back_is_used() {
    let e = env_sides(link()).await;
    let mut c = e.client().await;
    let x = connected_call(&e, &mut c).await;
    let addr = |s: usize| json!(e.sim.sides[s].to_string());
    // B first (idle), then A (the gateway's)
    e.sim(r#"{"cmd":"fault","fault":"side_down","side":1}"#)
        .await;
    e.sim(r#"{"cmd":"fault","fault":"side_down","side":0}"#)
        .await;
    // A lost, B refused, A refused (each side's reason once; the same again is not told)
    let mut downs = Vec::new();
    for _ in 0..3 {
        downs.push(c.until_link("link.down").await);
    }
    let sides: Vec<&Value> = downs.iter().map(|d| &d["side"]).collect();
    assert_eq!(sides, [&json!(0), &json!(1), &json!(0)], "{downs:#?}");
    for (d, s) in downs.iter().zip([0, 1, 0]) {
        assert_eq!(d["address"], addr(s), "{d}");
    }
    let refused = downs[2]["reason"].as_str().unwrap_or_default();
    assert!(
        refused.starts_with(&format!("cannot connect to {}", e.sim.sides[0])),
        "{refused}"
    );
    // requests fail at once, the link named down with the side and reason of the last failure
    let t = std::time::Instant::now();
    c.err(
        json!({"op": "call.hold", "device": "201"}),
        "link",
        "link_down",
    )
    .await;
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
    let st = c.ok(json!({"op": "status"})).await;
    assert_eq!(st["links"][0]["state"], "down", "{st}");
    assert_eq!(st["links"][0]["side"], json!(0), "{st}");
    assert_eq!(st["links"][0]["reason"], json!(refused), "{st}");
    // B back: the link comes up there (the backoff is at most reconnect_max_ms)
    e.sim(r#"{"cmd":"fault","fault":"side_up","side":1}"#).await;
    let up = c.until_link("link.up").await;
    assert_eq!((&up["side"], &up["address"]), (&json!(1), &addr(1)), "{up}");
    resynced_on(&e, 1, &["201", MARKER]).await;
    let snap = c.ok(json!({"op": "snapshot", "device": "201"})).await;
    assert_eq!(
        (&snap["calls"][0]["id"], &snap["calls"][0]["state"]),
        (&json!(x), &json!("connected")),
        "{snap}"
    );
    e.barrier(&mut c).await;
    assert_eq!(c.take("201"), Vec::<Value>::new(), "no call event at 201");
    let rest = std::mem::take(&mut c.events);
    let mut want = downs.clone();
    want.push(up);
    assert_eq!(rest, want, "the link events and nothing else");
}
