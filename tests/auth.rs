//! Users, tokens, roles and device rights over real TCP (issue 11): a gateway with
//! `[[user]]` entries on 127.0.0.1:0 and the simulator as the switch (`tests/support`).

mod support;

use ctigate::config::{ApiConfig, Config, LinkSection, UserSection};
use ctigate::sim::SimConfig;
use serde_json::{json, Value};
use std::time::Duration;
use support::{start_sim, user, Client, Env, Gw, MARKER, T};
use tokio::time::{timeout, Instant};

const WALLBOARD: &str = "wallboard-token-0123456789";
const CRM: &str = "crm-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

/// Three users: a wallboard (monitor, 201-205 and the barrier's marker station), a CRM
/// (control, 201-210 and the marker) and an admin (all).
fn users() -> Vec<UserSection> {
    vec![
        user("wallboard", WALLBOARD, "monitor", &["201-205", MARKER]),
        user("crm", CRM, "control", &["201-210", MARKER]),
        user("admin", ADMIN, "admin", &["*"]),
    ]
}

async fn env_users(api: ApiConfig, users: Vec<UserSection>) -> Env {
    let sim = start_sim(SimConfig::default()).await;
    let cfg = Config {
        users,
        audit: Default::default(),
        log: Default::default(),
        api,
        links: vec![LinkSection {
            name: "pbx1".into(),
            address: sim.csta_addr.to_string(),
            request_timeout_ms: 3000,
            ..LinkSection::default()
        }],
        metrics: Default::default(),
    };
    let gw = Gw::start(cfg).await;
    let up = async {
        while gw.last_seq() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(T, up).await.expect("link.up is published");
    Env { sim, gw }
}

fn api() -> ApiConfig {
    ApiConfig {
        requests_per_s: 0,
        ..ApiConfig::default()
    }
}

/// A client logged in with `token`.
async fn login(e: &Env, token: &str) -> Client {
    let mut c = e.client().await;
    c.ok(json!({"op": "auth", "token": token})).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_but_ping_and_auth_before_auth() {
    let e = env_users(api(), users()).await;
    let mut c = e.client().await;
    assert_eq!(c.hello["auth"], "required", "{}", c.hello);
    // the links' names and states, not the PBX's address
    assert_eq!(c.hello["links"], json!([{"name": "pbx1", "state": "up"}]));
    c.ok(json!({"op": "ping"})).await;
    for op in [
        json!({"op": "monitor.start", "device": "201"}),
        json!({"op": "status"}),
        json!({"op": "snapshot", "device": "201"}),
        json!({"op": "call.make", "device": "201", "to": "202"}),
    ] {
        c.err(op, "auth", "unauthenticated").await;
    }
    let r = c.ok(json!({"op": "auth", "token": CRM})).await;
    assert_eq!(
        (r["user"].as_str(), r["role"].as_str()),
        (Some("crm"), Some("control"))
    );
    // below admin: the links' names and states, not the PBX's address
    assert_eq!(r["links"], json!([{"name": "pbx1", "state": "up"}]), "{r}");
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    c.err(
        json!({"op": "auth", "token": CRM}),
        "auth",
        "already_authenticated",
    )
    .await;
    // no user: no auth needed, hello says so
    let open = support::env().await;
    let mut o = open.client().await;
    assert_eq!(o.hello["auth"], "none");
    let r = o.ok(json!({"op": "auth", "token": "anything"})).await;
    assert_eq!(r["auth"], "none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_devices_are_enforced() {
    let e = env_users(api(), users()).await;
    let mut wall = login(&e, WALLBOARD).await;
    // a device outside the rights: no monitor, no replay, no snapshot
    for op in [
        json!({"op": "monitor.start", "device": "210"}),
        json!({"op": "monitor.start", "device": "210", "after": 0}),
        json!({"op": "snapshot", "device": "210"}),
        json!({"op": "agent.state", "device": "0201"}),
    ] {
        let r = wall.err(op, "auth", "forbidden").await;
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not among"),
            "{r}"
        );
    }
    assert_eq!(e.pbx_monitors("210").await, 0);
    wall.ok(json!({"op": "monitor.start", "device": "203"}))
        .await;
    wall.ok(json!({"op": "snapshot", "device": "203"})).await;
    // an operation above the role, even on its own device
    for op in [
        json!({"op": "call.make", "device": "203", "to": "204"}),
        json!({"op": "call.answer", "device": "203"}),
        json!({"op": "agent.login", "device": "203", "agent": "1003", "password": "1003"}),
    ] {
        let r = wall.err(op, "auth", "forbidden").await;
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("role control"),
            "{r}"
        );
    }
    // status below admin: its own devices' monitors, no clients or other devices
    let mut crm = login(&e, CRM).await;
    crm.ok(json!({"op": "monitor.start", "device": "208"}))
        .await;
    let st = wall.ok(json!({"op": "status"})).await;
    assert!(st.get("clients").is_none(), "{st}");
    assert_eq!(st["monitors"].as_array().unwrap().len(), 1, "{st}");
    assert_eq!(st["monitors"][0]["device"], "203", "{st}");
    assert_eq!(st["role"], "monitor");
    assert_eq!(
        st["links"],
        json!([{"name": "pbx1", "state": "up"}]),
        "{st}"
    );
    let mut adm = login(&e, ADMIN).await;
    let st = adm.ok(json!({"op": "status"})).await;
    assert_eq!(
        st["links"][0]["address"],
        e.sim.csta_addr.to_string(),
        "{st}"
    );
    assert_eq!(st["clients"], 3, "{st}");
    assert_eq!(st["monitors"].as_array().unwrap().len(), 2, "{st}");
    // control may act on its devices, not on others
    crm.ok(json!({"op": "call.make", "device": "208", "to": "209"}))
        .await;
    crm.err(
        json!({"op": "call.make", "device": "211", "to": "208"}),
        "auth",
        "forbidden",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_outside_the_rights_never_come() {
    let e = env_users(api(), users()).await;
    let mut adm = login(&e, ADMIN).await;
    adm.ok(json!({"op": "monitor.start", "device": "210"}))
        .await;
    let mut wall = login(&e, WALLBOARD).await;
    wall.ok(json!({"op": "monitor.start", "device": "201"}))
        .await;
    // a call between a device of the wallboard and one outside its rights, and one
    // entirely outside
    e.sim(r#"{"cmd":"dial","from":"210","to":"201"}"#).await;
    e.sim(r#"{"cmd":"dial","from":"209","to":"208"}"#).await;
    e.sim(r#"{"cmd":"hangup","device":"210"}"#).await;
    e.sim(r#"{"cmd":"hangup","device":"209"}"#).await;
    e.barrier(&mut wall).await;
    let seen: Vec<&Value> = wall.events.iter().collect();
    assert!(
        seen.iter().any(|v| v["device"] == "201"),
        "the wallboard sees its device: {seen:#?}"
    );
    assert!(
        seen.iter()
            .all(|v| v.get("device").is_none() || v["device"] == "201"),
        "events of other devices: {seen:#?}"
    );
    // the admin watching 210 saw its side
    adm.until("210", "call.released").await;
    // a replay asked for with `after` replays only the rights' devices
    let mut late = login(&e, WALLBOARD).await;
    late.last_seq = 0; // the replay starts before the hello's seq
    let r = late
        .ok(json!({"op": "monitor.start", "device": "201", "after": 0}))
        .await;
    assert!(r["replayed"].as_u64().unwrap() > 0, "{r}");
    e.barrier(&mut late).await;
    assert!(
        late.events
            .iter()
            .all(|v| v.get("device").is_none() || v["device"] == "201"),
        "{:#?}",
        late.events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_failed_logins_close_the_connection() {
    let e = env_users(api(), users()).await;
    let mut c = e.client().await;
    let r = c
        .err(
            json!({"op": "auth", "token": "guess-1"}),
            "auth",
            "bad_token",
        )
        .await;
    assert!(!r.to_string().contains("guess-1"), "{r}");
    c.err(
        json!({"op": "auth", "token": "guess-2"}),
        "auth",
        "bad_token",
    )
    .await;
    let r = c
        .err(
            json!({"op": "auth", "token": "guess-3"}),
            "auth",
            "bad_token",
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disconnected"),
        "{r}"
    );
    assert!(c.until_closed().await.is_empty());
    // a bad field is not a login attempt and echoes nothing
    let mut c = e.client().await;
    let r = c.call(json!({"op": "auth", "token": 12345})).await;
    assert_eq!(r["error"]["code"], "invalid_field", "{r}");
    login(&e, CRM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auth_in_time_closes_the_connection() {
    let e = env_users(
        ApiConfig {
            auth_timeout_s: 1,
            ..api()
        },
        users(),
    )
    .await;
    let started = Instant::now();
    let mut c = e.client().await;
    // a ping is not a login: the clock runs on
    c.ok(json!({"op": "ping"})).await;
    let lines = c.until_closed().await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["error"]["code"], "auth_timeout", "{lines:?}");
    assert_eq!(lines[0]["error"]["kind"], "auth");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // one that logs in stays
    let mut c = login(&e, WALLBOARD).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.ok(json!({"op": "ping"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_requests_per_user() {
    let mut us = users();
    us[0].max_clients = Some(2);
    us[1].requests_per_s = Some(4);
    let e = env_users(api(), us).await;
    let a = login(&e, WALLBOARD).await;
    let _b = login(&e, WALLBOARD).await;
    let mut c = e.client().await;
    let r = c
        .err(
            json!({"op": "auth", "token": WALLBOARD}),
            "busy",
            "user_max_clients",
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_clients"),
        "{r}"
    );
    assert!(c.until_closed().await.is_empty());
    // another user is not affected; a freed connection can be used again
    login(&e, CRM).await;
    drop(a);
    let end = Instant::now() + T;
    loop {
        let mut c = e.client().await;
        let r = c.call(json!({"op": "auth", "token": WALLBOARD})).await;
        if r["ok"] == true {
            break;
        }
        assert!(
            Instant::now() < end,
            "the connection was not given back: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 4 requests a second for all of crm's connections together
    let mut x = login(&e, CRM).await;
    let mut y = login(&e, CRM).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut oks = 0;
    let mut refused = None;
    for i in 0..6 {
        let c = if i % 2 == 0 { &mut x } else { &mut y };
        let r = c.call(json!({"op": "status"})).await;
        if r["ok"] == true {
            oks += 1;
        } else {
            refused = Some(r);
        }
    }
    assert_eq!(oks, 4);
    let r = refused.unwrap();
    assert_eq!(r["error"]["code"], "rate_limited", "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("user crm"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_agent_logins_are_slowed_down() {
    let e = env_users(
        ApiConfig {
            agent_login_backoff_ms: 400,
            ..api()
        },
        users(),
    )
    .await;
    let mut c = login(&e, CRM).await;
    let guess = |p: &str| json!({"op": "agent.login", "device": "204", "agent": "1004", "password": p, "group": "8000"});
    c.err(guess("1"), "switch", "invalidAgentPassword").await;
    // at once: refused without asking the switch, on that device from any connection...
    let r = c.err(guess("2"), "busy", "login_backoff").await;
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("agent_login_backoff_ms"));
    let mut d = login(&e, CRM).await;
    d.err(guess("3"), "busy", "login_backoff").await;
    // ...and from that connection on any device
    c.err(
        json!({"op": "agent.login", "device": "205", "agent": "1005", "password": "1005"}),
        "busy",
        "login_backoff",
    )
    .await;
    // after the block: one more try; its failure doubles the block
    tokio::time::sleep(Duration::from_millis(450)).await;
    d.err(guess("4"), "switch", "invalidAgentPassword").await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    let mut f = login(&e, CRM).await;
    f.err(guess("1004"), "busy", "login_backoff").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    f.ok(guess("1004")).await;
}
