//! Several PBX links in one gateway (a site with two switches): each link has a name, events
//! carry it, requests must name it.

mod support;

use ctigate::config::{ApiConfig, Config, LinkSection};
use ctigate::sim::{Sim, SimConfig};
use serde_json::json;
use std::time::Duration;
use support::{sim_cmd, start_sim, Gw, T};
use tokio::time::timeout;

#[tokio::test]
async fn two_links_events_carry_the_link_and_requests_name_it() {
    let a = start_sim(SimConfig::default()).await;
    let b = start_sim(SimConfig::default()).await;
    let link = |name: &str, s: &Sim| LinkSection {
        name: name.into(),
        address: s.csta_addr.to_string(),
        ..LinkSection::default()
    };
    let cfg = Config {
        users: Vec::new(),
        audit: Default::default(),
        log: Default::default(),
        api: ApiConfig::default(),
        metrics: Default::default(),
        links: vec![
            LinkSection {
                monitor: vec!["205".into()],
                ..link("east", &a)
            },
            link("west", &b),
        ],
    };
    let gw = Gw::start(cfg).await;
    // the configured device is monitored on its own link once it is up, whatever the clients
    timeout(T, async {
        loop {
            let st = sim_cmd(&a, r#"{"cmd":"status"}"#).await;
            let watched = st["associations"][0]["monitors"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x["watches"]["device"] == "205"));
            if watched {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the configured monitor is started");
    let st = sim_cmd(&b, r#"{"cmd":"status"}"#).await;
    assert_eq!(
        st["associations"][0]["monitors"],
        json!([]),
        "not on the other link"
    );
    let mut c = gw.client().await;
    assert_eq!(
        c.hello["links"],
        json!([
            {"name": "east", "state": "up", "side": 0, "address": a.csta_addr.to_string(),
                "malformed_frames": 0, "rejects_sent": 0, "events_shed": 0, "behind": false, "behind_periods": 0},
            {"name": "west", "state": "up", "side": 0, "address": b.csta_addr.to_string(),
                "malformed_frames": 0, "rejects_sent": 0, "events_shed": 0, "behind": false, "behind_periods": 0}
        ])
    );
    // without `link`: the request says which links there are
    let resp = c
        .err(
            json!({"op": "monitor.start", "device": "201"}),
            "request",
            "missing_field",
        )
        .await;
    assert!(resp["error"]["message"]
        .as_str()
        .unwrap()
        .contains("east, west"));
    // the same device number on both switches, each on its own link
    for l in ["east", "west"] {
        c.ok(json!({"op": "monitor.start", "device": "201", "link": l}))
            .await;
    }
    // a call on the west switch only: the event names the west link
    sim_cmd(&b, r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#).await;
    let ev = c.until("201", "call.offering").await;
    assert_eq!(
        (ev["link"].as_str(), ev["device"].as_str()),
        (Some("west"), Some("201"))
    );
    // answering on the east link finds no call there
    c.err(
        json!({"op": "call.answer", "device": "201", "link": "east"}),
        "request",
        "no_such_call_state",
    )
    .await;
    c.ok(json!({"op": "call.answer", "device": "201", "link": "west"}))
        .await;
    let ev = c.until("201", "call.connected").await;
    assert_eq!(ev["link"], "west");
    // every event so far came from the west link
    assert!(
        c.events.iter().all(|e| e["link"] == "west"),
        "{:#?}",
        c.events
    );
    // an unknown link is an invalid field
    c.err(
        json!({"op": "snapshot", "device": "201", "link": "north"}),
        "request",
        "invalid_field",
    )
    .await;
}
