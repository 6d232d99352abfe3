//! A gateway started in a test stops cleanly: the simulator as the PBX, a TCP client; on
//! shutdown the client gets its queued lines and `shutdown`, the port closes, the link is
//! released (the simulator has no association left).

use ctigate::config::{ApiConfig, Config, LinkSection};
use ctigate::sim::{control, Sim, SimConfig};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

const T: Duration = Duration::from_secs(10);

async fn line(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Value> {
    match timeout(T, ctigate::lines::read_line(r, 1 << 20))
        .await
        .expect("a line in time")
        .expect("read")
    {
        ctigate::lines::Line::Text(t) => Some(serde_json::from_str(&t).expect("json")),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_stops_cleanly() {
    let sim = Sim::start(SimConfig::default(), "127.0.0.1:0", Some("127.0.0.1:0"))
        .await
        .expect("sim");
    let cfg = Config {
        users: Vec::new(),
        audit: Default::default(),
        log: Default::default(),
        api: ApiConfig {
            listen: "127.0.0.1:0".into(),
            ..ApiConfig::default()
        },
        metrics: Default::default(),
        links: vec![LinkSection {
            name: "pbx1".into(),
            address: sim.csta_addr.to_string(),
            ..LinkSection::default()
        }],
    };
    let l = ctigate::api::server::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().unwrap();
    let api = ctigate::api::start(cfg);
    let serving = tokio::spawn(ctigate::api::server::serve(api.clone(), l));
    let end = Instant::now() + T;
    while !api.gateway.links().values().all(|l| l.link.is_up()) {
        assert!(Instant::now() < end, "the link comes up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut r = BufReader::new(r);
    assert_eq!(line(&mut r).await.unwrap()["type"], "hello");
    w.write_all(b"{\"id\":1,\"op\":\"monitor.start\",\"device\":\"201\"}\n")
        .await
        .unwrap();
    let m = line(&mut r).await.unwrap();
    assert_eq!(
        (m["id"].clone(), m["ok"].clone()),
        (json!(1), json!(true)),
        "{m}"
    );

    timeout(Duration::from_secs(30), api.shutdown())
        .await
        .expect("shutdown is bounded");
    let mut last = None;
    while let Some(l) = line(&mut r).await {
        last = Some(l);
    }
    let last = last.expect("the shutdown line");
    assert_eq!(
        (last["type"].clone(), last["event"].clone()),
        (json!("event"), json!("shutdown")),
        "{last}"
    );
    assert!(last["seq"].as_u64().unwrap() > m["result"]["seq"].as_u64().unwrap());
    timeout(T, serving)
        .await
        .expect("the listener stops")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is closed"
    );
    assert!(!api.gateway.links().values().any(|l| l.link.is_up()));
    let end = Instant::now() + T;
    loop {
        let st = sim
            .command(control::parse(r#"{"cmd":"status"}"#).unwrap())
            .await;
        if st["associations"].as_array().is_some_and(|a| a.is_empty()) {
            break;
        }
        assert!(Instant::now() < end, "the association is released: {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
