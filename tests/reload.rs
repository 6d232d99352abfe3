//! Configuration reload (issue 12, item 12): a running gateway on 127.0.0.1:0 with the
//! simulator as the switch takes a changed configuration ([`Reloader::apply`], what SIGHUP
//! runs) and applies what can change live, says what needs a restart, and leaves the links
//! and clients the change does not concern alone. The last test sends a real SIGHUP to
//! `ctigate run`.

mod support;

use ctigate::config::{ApiConfig, Config, LinkSection, UserSection};
use ctigate::reload::{Reloader, Setup};
use ctigate::sim::{Sim, SimConfig};
use serde_json::{json, Value};
use std::time::Duration;
use support::{pbx_monitors, start_sim, user, Client, Gw, T};
use tokio::time::{sleep, timeout, Instant};

fn link(name: &str, sim: &Sim, monitor: &[&str]) -> LinkSection {
    LinkSection {
        name: name.into(),
        address: sim.csta_addr.to_string(),
        request_timeout_ms: 3000,
        monitor: monitor.iter().map(|d| d.to_string()).collect(),
        ..LinkSection::default()
    }
}

fn config(links: Vec<LinkSection>, users: Vec<UserSection>) -> Config {
    Config {
        api: ApiConfig {
            listen: "127.0.0.1:0".into(),
            requests_per_s: 0,
            ..ApiConfig::default()
        },
        metrics: Default::default(),
        links,
        users,
        audit: Default::default(),
        log: Default::default(),
    }
}

/// A gateway for `cfg` and its reloader (no log filter to change, no file: `apply`).
async fn start(cfg: Config) -> (Gw, Reloader) {
    let gw = Gw::start(cfg.clone()).await;
    let setup = Setup {
        path: "/nonexistent/ctigate.toml".into(),
        log: None,
        log_from_flag: false,
    };
    let r = Reloader::new(setup, gw.gw.clone(), cfg);
    (gw, r)
}

/// Wait until `f` holds (polled), or fail with `what`.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let end = Instant::now() + T;
    while !f().await {
        assert!(Instant::now() < end, "not within {T:?}: {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_monitor_list_and_the_limits_and_nothing_else() {
    let sim = start_sim(SimConfig::default()).await;
    let cfg = config(vec![link("pbx1", &sim, &["201"])], Vec::new());
    let (gw, mut reloader) = start(cfg.clone()).await;
    eventually("201 monitored from the configuration", || async {
        pbx_monitors(&sim, "201").await == 1
    })
    .await;
    // a client watching 202 before the reload
    let mut c = gw.client().await;
    c.ok(json!({"op": "monitor.start", "device": "202"})).await;
    let next = reloader_config(&cfg, "203");
    let rule = || {
        let r = gw.gw.gateway.behind_rule();
        (r.lag.as_millis(), r.hold.as_secs(), r.warn.as_secs())
    };
    assert_eq!(rule(), (5, 10, 60));
    let r = reloader.apply(next).await;
    assert_eq!(
        r.applied,
        vec![
            "api.behind_lag_ms: 5 -> 20",
            "api.behind_warn_s: 60 -> 300",
            "api.requests_per_s: 0 -> 3",
            "link pbx1.monitor: 1 added, 1 removed",
            "link pbx1.requests_per_s: 0 -> 100",
        ],
        "{r:?}"
    );
    assert!(r.restart.is_empty(), "{r:?}");
    // the gateway's behind rule is the new one
    assert_eq!(rule(), (20, 10, 300));
    eventually("203 monitored, 201 no longer", || async {
        pbx_monitors(&sim, "203").await == 1 && pbx_monitors(&sim, "201").await == 0
    })
    .await;
    assert_eq!(
        pbx_monitors(&sim, "202").await,
        1,
        "the client's monitor stays"
    );
    // the client is still connected, still gets its device's events...
    support::sim_cmd(&sim, r#"{"cmd":"inbound","ani":"0891234567","dnis":"202"}"#).await;
    let ev = c.until("202", "call.offering").await;
    assert_eq!(ev["link"], "pbx1");
    // ... and is held to the new request rate: 3 a second
    for _ in 0..3 {
        c.ok(json!({"op": "ping"})).await;
    }
    c.err(json!({"op": "ping"}), "busy", "rate_limited").await;
    // the link's list is the new one
    let st = gw.gw.gateway.link("pbx1").unwrap();
    assert_eq!(
        st.pinned().iter().cloned().collect::<Vec<_>>(),
        vec!["203".to_string()]
    );
    // a reload of the same file changes nothing
    let same = reloader.apply(reloader_config(&cfg, "203")).await;
    assert!(
        same.applied.is_empty() && same.restart.is_empty(),
        "{same:?}"
    );
    assert_eq!(reconnects(&gw), 0, "the link was never re-established");
}

/// Associations of link `pbx1` after its first.
fn reconnects(gw: &Gw) -> u64 {
    gw.gw
        .gateway
        .link("pbx1")
        .unwrap()
        .link
        .counters()
        .reconnects
}

/// `cfg` with the limits and list of the first test's reload.
fn reloader_config(cfg: &Config, monitor: &str) -> Config {
    let mut c = cfg.clone();
    c.links[0].monitor = vec![monitor.into()];
    c.links[0].requests_per_s = 100;
    c.api.requests_per_s = 3;
    c.api.behind_lag_ms = 20;
    c.api.behind_warn_s = 300;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_ends_the_connections_of_changed_and_removed_users_only() {
    let sim = start_sim(SimConfig::default()).await;
    let users = vec![
        user(
            "wallboard",
            "wallboard-token-0123456789",
            "monitor",
            &["201-205"],
        ),
        user("crm", "crm-token-0123456789", "control", &["201-210"]),
        user("old", "old-token-0123456789", "monitor", &["*"]),
    ];
    let cfg = config(vec![link("pbx1", &sim, &[])], users);
    let (gw, mut reloader) = start(cfg.clone()).await;
    let login = |token: &'static str| {
        let addr = gw.api;
        async move {
            let mut c = Client::connect(addr).await;
            c.ok(json!({"op": "auth", "token": token})).await;
            c
        }
    };
    let mut wallboard = login("wallboard-token-0123456789").await;
    let mut crm = login("crm-token-0123456789").await;
    let mut old = login("old-token-0123456789").await;
    crm.ok(json!({"op": "monitor.start", "device": "205"}))
        .await;
    let mut next = cfg.clone();
    // wallboard: fewer devices; crm: a rate of its own only; old: gone; ops: new
    next.users[0].devices = vec!["201-203".into()];
    next.users[1].requests_per_s = Some(2);
    next.users.remove(2);
    next.users
        .push(user("ops", "ops-token-0123456789", "admin", &["*"]));
    let r = reloader.apply(next).await;
    assert_eq!(
        r.applied,
        vec![
            "users added: ops",
            "users removed (their connections end): old",
            "users changed in token, role or devices (their connections end): wallboard",
            "user limits (max_clients, requests_per_s) changed, connections kept: crm",
        ],
        "{r:?}"
    );
    for (c, msg) in [
        (
            &mut wallboard,
            "user wallboard was changed by a configuration reload",
        ),
        (&mut old, "user old was removed by a configuration reload"),
    ] {
        let lines = c.until_closed().await;
        let last = lines.last().expect("an error line before the close");
        assert_eq!(last["ok"], false, "{lines:?}");
        assert_eq!(last["id"], Value::Null);
        assert_eq!(last["error"]["kind"], "auth");
        assert_eq!(last["error"]["code"], "credentials_changed");
        assert!(
            last["error"]["message"].as_str().unwrap().starts_with(msg),
            "{last}"
        );
    }
    // crm keeps its connection and its monitor, now at 2 requests a second
    support::sim_cmd(&sim, r#"{"cmd":"inbound","ani":"0891234567","dnis":"205"}"#).await;
    crm.until("205", "call.offering").await;
    crm.ok(json!({"op": "ping"})).await;
    crm.ok(json!({"op": "ping"})).await;
    let e = crm.err(json!({"op": "ping"}), "busy", "rate_limited").await;
    assert!(
        e["error"]["message"].as_str().unwrap().contains("crm"),
        "{e}"
    );
    // the new user logs in; the old token no longer does
    login("ops-token-0123456789").await;
    let mut c = Client::connect(gw.api).await;
    c.err(
        json!({"op": "auth", "token": "old-token-0123456789"}),
        "auth",
        "bad_token",
    )
    .await;
    // the wallboard's new rights
    let mut w = login("wallboard-token-0123456789").await;
    w.err(
        json!({"op": "monitor.start", "device": "205"}),
        "auth",
        "forbidden",
    )
    .await;
    w.ok(json!({"op": "monitor.start", "device": "203"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_starts_new_links_and_releases_removed_ones() {
    let sim1 = start_sim(SimConfig::default()).await;
    let sim2 = start_sim(SimConfig::default()).await;
    let cfg = config(vec![link("pbx1", &sim1, &[])], Vec::new());
    let (gw, mut reloader) = start(cfg.clone()).await;
    let mut c = gw.client().await;
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    let mut next = cfg.clone();
    next.links.push(LinkSection {
        request_timeout_ms: 20_000,
        ..link("pbx2", &sim2, &["211"])
    });
    assert_eq!(gw.gw.deadline(), Duration::from_secs(7), "2 x 3 s + 1 s");
    let r = reloader.apply(next.clone()).await;
    assert_eq!(
        gw.gw.deadline(),
        Duration::from_secs(41),
        "a request to pbx2 may take 2 x 20 s + 1 s"
    );
    assert_eq!(
        r.applied,
        vec![format!(
            "link pbx2: added, connecting to {}",
            sim2.csta_addr
        )],
        "{r:?}"
    );
    // (pbx1's own link.up may come too: the client connected as soon as pbx1's handle
    // said up, and the pump publishes the event a moment later)
    let up = c
        .until_where("link.up of pbx2", |e| {
            e.get("device").is_none() && e["event"] == "link.up" && e["link"] == "pbx2"
        })
        .await;
    assert_eq!(up["link"], "pbx2");
    eventually("pbx2 monitors its configured device", || async {
        pbx_monitors(&sim2, "211").await == 1
    })
    .await;
    c.ok(json!({"op": "monitor.start", "link": "pbx2", "device": "212"}))
        .await;
    // pbx1 goes: released, its clients told; pbx2 and the connection stay
    next.links.remove(0);
    let r = reloader.apply(next).await;
    assert_eq!(
        r.applied,
        vec!["link pbx1: removed, released (1 client subscriptions ended)"],
        "{r:?}"
    );
    let down = c.until_link("link.down").await;
    assert_eq!(down["link"], "pbx1");
    assert_eq!(down["reason"], "removed from the configuration (reload)");
    eventually("pbx1's association released", || async {
        support::sim_monitors(&sim1).await.is_empty()
    })
    .await;
    // requests now need no link name (one link left)
    c.ok(json!({"op": "monitor.start", "device": "213"})).await;
    let e = c
        .err(
            json!({"op": "monitor.start", "link": "pbx1", "device": "201"}),
            "request",
            "invalid_field",
        )
        .await;
    assert!(
        e["error"]["message"].as_str().unwrap().contains("pbx2"),
        "{e}"
    );
    assert_eq!(pbx_monitors(&sim2, "212").await, 1);
    // a link of the same name again, monitoring 201 from its configuration: the client's
    // subscription to the old pbx1's 201 ended with it, so 201's calls do not reach it
    let mut again = cfg.clone();
    again.links[0].monitor = vec!["201".into()];
    again.links.push(LinkSection {
        request_timeout_ms: 20_000,
        ..link("pbx2", &sim2, &["211"])
    });
    let r = reloader.apply(again).await;
    assert_eq!(
        r.applied,
        vec![format!(
            "link pbx1: added, connecting to {}",
            sim1.csta_addr
        )],
        "{r:?}"
    );
    c.until_link("link.up").await;
    eventually("the new pbx1 monitors 201", || async {
        pbx_monitors(&sim1, "201").await == 1
    })
    .await;
    c.ok(json!({"op": "monitor.start", "link": "pbx1", "device": "202"}))
        .await;
    support::sim_cmd(
        &sim1,
        r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#,
    )
    .await;
    support::sim_cmd(
        &sim1,
        r#"{"cmd":"inbound","ani":"0891234568","dnis":"202"}"#,
    )
    .await;
    c.until("202", "call.offering").await;
    assert!(
        !c.events
            .iter()
            .any(|e| e["device"] == "201" && e["link"] == "pbx1" && e["event"] == "call.offering"),
        "no event of 201 for a subscription that ended with the old link: {:#?}",
        c.events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_reload_cannot_change_is_reported_until_a_restart_and_left_as_it_is() {
    let sim = start_sim(SimConfig::default()).await;
    let cfg = config(vec![link("pbx1", &sim, &[])], Vec::new());
    let (gw, mut reloader) = start(cfg.clone()).await;
    let mut c = gw.client().await;
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
    let mut next = cfg.clone();
    next.api.listen = "127.0.0.1:7799".into();
    next.api.client_queue = 77;
    next.links[0].address = "127.0.0.1:1".into();
    next.links[0].password = Some("s3cret".into());
    next.metrics.listen = "127.0.0.1:9799".into();
    next.api.idle_ping_s = 30;
    for round in 0..2 {
        let r = reloader.apply(next.clone()).await;
        assert_eq!(
            r.restart,
            vec![
                "api.client_queue: 1024 -> 77".to_string(),
                "api.listen: \"127.0.0.1:0\" -> \"127.0.0.1:7799\"".to_string(),
                "link pbx1.address: \"127.0.0.1:".to_string()
                    + &sim.csta_addr.port().to_string()
                    + "\" -> \"127.0.0.1:1\"",
                "link pbx1.password: (unset) -> ********".to_string(),
                "metrics.listen: \"\" -> \"127.0.0.1:9799\"".to_string(),
            ],
            "round {round}: {r:?}"
        );
        let applied: &[&str] = if round == 0 {
            &["api.idle_ping_s: 60 -> 30"]
        } else {
            &[]
        };
        assert_eq!(r.applied, applied, "round {round}");
    }
    let (applied, refused, waiting) = gw.gw.metrics.reloads();
    assert_eq!((applied, refused, waiting), (2, 0, 5));
    // the link was not touched, the client neither
    assert_eq!(reconnects(&gw), 0);
    c.ok(json!({"op": "ping"})).await;
    assert_eq!(pbx_monitors(&sim, "201").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_a_mistake_changes_nothing() {
    let sim = start_sim(SimConfig::default()).await;
    let cfg = config(vec![link("pbx1", &sim, &["201"])], Vec::new());
    let gw = Gw::start(cfg.clone()).await;
    let (dir, path) = scratch("reload");
    std::fs::write(
        &path,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\nrequests_per_s = -1\n[[link]]\nname = \"pbx1\"\naddress = \"{}\"\nmonitor = []\n",
            sim.csta_addr
        ),
    )
    .unwrap();
    let setup = Setup {
        path: path.clone(),
        log: None,
        log_from_flag: false,
    };
    let mut r = Reloader::new(setup, gw.gw.clone(), cfg);
    let e = r.reload().await.unwrap_err();
    assert!(e.contains("requests_per_s"), "{e}");
    assert_eq!(gw.gw.metrics.reloads(), (0, 1, 0));
    assert_eq!(gw.gw.cfg().requests_per_s, 0);
    eventually("201 still monitored", || async {
        pbx_monitors(&sim, "201").await == 1
    })
    .await;
    assert!(gw.gw.gateway.link("pbx1").unwrap().is_pinned("201"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A directory of its own for a test (`ctigate-NAME-PID` in the temporary directory) and
/// the path of its `ctigate.toml`.
fn scratch(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("ctigate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ctigate.toml");
    (dir, path)
}

/// The lines of `ctigate run`'s stdout, read on a thread of their own.
fn stdout_lines(child: &mut std::process::Child) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use std::io::{BufRead, BufReader};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let out = child.stdout.take().expect("stdout piped");
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line of `ctigate run`'s stdout with `what` in it (others skipped), within [`T`].
async fn line_with(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, what: &str) -> String {
    loop {
        let l = timeout(T, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no line with {what:?}"))
            .expect("ctigate run's stdout");
        if l.contains(what) {
            return l;
        }
    }
}

/// `ctigate run` with a real SIGHUP: the file's new log level and monitor list apply, the
/// client stays connected, stdout says what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_running_gateway() {
    use std::process::{Command, Stdio};
    let sim = start_sim(SimConfig::default()).await;
    let (dir, path) = scratch("sighup");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let file = |level: &str, monitor: &str| {
        format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\n[log]\nlevel = \"{level}\"\n[[link]]\nname = \"pbx1\"\naddress = \"{}\"\nmonitor = [{monitor}]\n",
            sim.csta_addr
        )
    };
    std::fs::write(&path, file("info", "")).unwrap();
    let log = dir.join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ctigate"))
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("CTIGATE_LOG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("run ctigate run");
    let pid = child.id().to_string();
    let mut rx = stdout_lines(&mut child);
    line_with(&mut rx, "link pbx1: up").await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Client::connect(addr).await;
    c.ok(json!({"op": "monitor.start", "device": "202"})).await;
    let debug_before = std::fs::read_to_string(&log).unwrap().contains("DEBUG");
    assert!(!debug_before, "at info level, no debug lines");
    std::fs::write(&path, file("debug", "\"204\"")).unwrap();
    let hup = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(hup.success());
    let l = line_with(&mut rx, "configuration reloaded").await;
    assert_eq!(
        l,
        "ctigate run: configuration reloaded: 2 applied, 0 waiting for a restart"
    );
    eventually("204 monitored", || async {
        pbx_monitors(&sim, "204").await == 1
    })
    .await;
    c.ok(json!({"op": "ping"})).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("reload: log.level: \"info\" -> \"debug\""),
        "{text}"
    );
    assert!(text.contains("DEBUG"), "debug lines after the reload");
    // a mistake: refused, said on stdout, the gateway runs on
    std::fs::write(&path, "[api\n").unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let l = line_with(&mut rx, "reload refused").await;
    assert!(l.contains("nothing changed"), "{l}");
    c.ok(json!({"op": "ping"})).await;
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A SIGHUP sent while `ctigate run` is still starting (here: waiting for its configuration
/// from a FIFO nobody writes to yet) does not end it (the signal's default action): the
/// reload runs once the gateway is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_while_starting_waits_for_the_reload() {
    use std::process::{Command, Stdio};
    let sim = start_sim(SimConfig::default()).await;
    let (dir, path) = scratch("early-hup");
    let _ = std::fs::remove_file(&path);
    assert!(Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap()
        .success());
    let text = format!(
        "[api]\nlisten = \"127.0.0.1:0\"\n[[link]]\nname = \"pbx1\"\naddress = \"{}\"\n",
        sim.csta_addr
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_ctigate"))
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("CTIGATE_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ctigate run");
    let pid = child.id().to_string();
    let mut rx = stdout_lines(&mut child);
    // the FIFO written on a thread of its own (the write waits for the reader); done when
    // the gateway has read it
    let feed = |path: std::path::PathBuf, text: String| {
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(std::fs::write(&path, text));
        });
        wait
    };
    // the gateway waits for its configuration: SIGHUP now
    sleep(Duration::from_millis(300)).await;
    assert!(child.try_wait().unwrap().is_none(), "ctigate run started");
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    sleep(Duration::from_millis(200)).await;
    assert_eq!(
        child.try_wait().unwrap(),
        None,
        "a SIGHUP while starting ended ctigate run"
    );
    let first = feed(path.clone(), text.clone());
    first
        .recv_timeout(T)
        .expect("the configuration read")
        .unwrap();
    line_with(&mut rx, "NDJSON port").await;
    // the signal kept: the reload reads the file again
    let again = feed(path.clone(), text);
    again
        .recv_timeout(T)
        .expect("read again by the reload")
        .unwrap();
    assert_eq!(
        line_with(&mut rx, "configuration reloaded").await,
        "ctigate run: configuration reloaded: 0 applied, 0 waiting for a restart"
    );
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_user_added_by_a_reload_makes_everyone_authenticate() {
    let sim = start_sim(SimConfig::default()).await;
    let cfg = config(vec![link("pbx1", &sim, &[])], Vec::new());
    let (gw, mut reloader) = start(cfg.clone()).await;
    let mut open = gw.client().await;
    open.ok(json!({"op": "monitor.start", "device": "201"}))
        .await;
    let mut next = cfg.clone();
    next.users = vec![user("crm", "crm-token-0123456789", "control", &["*"])];
    let r = reloader.apply(next).await;
    assert_eq!(r.applied, vec!["users added: crm"], "{r:?}");
    let lines = open.until_closed().await;
    let last = lines.last().expect("an error line before the close");
    assert_eq!(last["error"]["code"], "credentials_changed", "{lines:?}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the gateway requires authentication since a configuration reload"),
        "{last}"
    );
    eventually("the monitor of the closed connection ended", || async {
        pbx_monitors(&sim, "201").await == 0
    })
    .await;
    let mut c = gw.client().await;
    c.err(
        json!({"op": "monitor.start", "device": "201"}),
        "auth",
        "unauthenticated",
    )
    .await;
    c.ok(json!({"op": "auth", "token": "crm-token-0123456789"}))
        .await;
    c.ok(json!({"op": "monitor.start", "device": "201"})).await;
}
