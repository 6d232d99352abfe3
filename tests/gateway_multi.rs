//! Several PBX links in one gateway (a site with two switches): each link has a name, events
//! carry it, requests must name it.

use ctigate::api::server;
use ctigate::config::{ApiConfig, Config, LinkSection};
use ctigate::sim::{control, Sim, SimConfig};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

async fn line(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Value {
    match timeout(T, ctigate::lines::read_line(r, 1 << 20)).await {
        Ok(Ok(ctigate::lines::Line::Text(t))) => serde_json::from_str(&t).unwrap(),
        o => panic!("no line: {o:?}"),
    }
}

#[tokio::test]
async fn two_links_events_carry_the_link_and_requests_name_it() {
    let a = Sim::start(SimConfig::default(), "127.0.0.1:0", Some("127.0.0.1:0"))
        .await
        .unwrap();
    let b = Sim::start(SimConfig::default(), "127.0.0.1:0", Some("127.0.0.1:0"))
        .await
        .unwrap();
    let link = |name: &str, s: &Sim| LinkSection {
        name: name.into(),
        address: s.csta_addr.to_string(),
        ..LinkSection::default()
    };
    let cfg = Config {
        api: ApiConfig {
            listen: "127.0.0.1:0".into(),
            ..ApiConfig::default()
        },
        links: vec![
            LinkSection {
                monitor: vec!["205".into()],
                ..link("east", &a)
            },
            link("west", &b),
        ],
    };
    cfg.validate().unwrap();
    let l = server::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let gw = ctigate::api::start(cfg);
    tokio::spawn(server::serve(gw.clone(), l));
    timeout(T, async {
        while !gw.gateway.links.values().all(|l| l.link.is_up()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("both links up");
    // the configured device is monitored on its own link once it is up, whatever the clients
    let status = control::parse(r#"{"cmd":"status"}"#).unwrap();
    timeout(T, async {
        loop {
            let st = a.command(status.clone()).await;
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
    let st = b.command(status).await;
    assert_eq!(
        st["associations"][0]["monitors"],
        json!([]),
        "not on the other link"
    );
    let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut r = BufReader::new(r);
    let hello = line(&mut r).await;
    assert_eq!(
        hello["links"],
        json!([{"name": "east", "state": "up"}, {"name": "west", "state": "up"}])
    );
    let send = |v: Value| format!("{v}\n");
    // without `link`: the request says which links there are
    w.write_all(send(json!({"id": 1, "op": "monitor.start", "device": "201"})).as_bytes())
        .await
        .unwrap();
    let resp = line(&mut r).await;
    assert_eq!(resp["error"]["code"], "missing_field");
    assert!(resp["error"]["message"]
        .as_str()
        .unwrap()
        .contains("east, west"));
    // the same device number on both switches, each on its own link
    for (id, l) in [(2, "east"), (3, "west")] {
        w.write_all(
            send(json!({"id": id, "op": "monitor.start", "device": "201", "link": l})).as_bytes(),
        )
        .await
        .unwrap();
        let resp = line(&mut r).await;
        assert_eq!(
            (resp["id"].clone(), resp["ok"].clone()),
            (json!(id), json!(true))
        );
    }
    // a call on the west switch only: the event names the west link
    let c = control::parse(r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#).unwrap();
    assert_eq!(b.command(c).await["ok"], true);
    let ev = loop {
        let v = line(&mut r).await;
        if v["type"] == "event" && v["event"] == "call.offering" {
            break v;
        }
    };
    assert_eq!(
        (ev["link"].as_str(), ev["device"].as_str()),
        (Some("west"), Some("201"))
    );
    // answering on the east link finds no call there
    w.write_all(
        send(json!({"id": 4, "op": "call.answer", "device": "201", "link": "east"})).as_bytes(),
    )
    .await
    .unwrap();
    let resp = loop {
        let v = line(&mut r).await;
        if v["type"] == "response" {
            break v;
        }
    };
    assert_eq!(resp["error"]["code"], "no_such_call_state", "{resp}");
    w.write_all(
        send(json!({"id": 5, "op": "call.answer", "device": "201", "link": "west"})).as_bytes(),
    )
    .await
    .unwrap();
    let mut connected = false;
    let mut answered = false;
    while !(connected && answered) {
        let v = line(&mut r).await;
        if v["type"] == "response" && v["id"] == 5 {
            assert_eq!(v["ok"], true, "{v}");
            answered = true;
        }
        if v["event"] == "call.connected" {
            assert_eq!(v["link"], "west");
            connected = true;
        }
    }
    // an unknown link is an invalid field
    w.write_all(
        send(json!({"id": 6, "op": "snapshot", "device": "201", "link": "north"})).as_bytes(),
    )
    .await
    .unwrap();
    let resp = line(&mut r).await;
    assert_eq!(resp["error"]["code"], "invalid_field");
}
