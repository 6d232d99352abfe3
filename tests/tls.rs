//! TLS on the client port, with a test CA made at test time (rcgen): a TLS client gets the
//! hello, monitors and sees a call; a plain-TCP client, garbage and a stalled handshake each
//! cost their own connection only; mutual TLS admits a certificate of the configured CA and
//! refuses none or another CA's, and the session knows the certificate's subject.

mod support;

use ctigate::api::server;
use ctigate::config::{ApiConfig, Config, LinkSection};
use ctigate::sim::SimConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::{sim_cmd, start_sim, T};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// A CA, and certificates it issues.
struct Ca {
    cert: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, as DER.
struct Issued {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca {
            cert,
            issuer: Issuer::new(p, key),
        }
    }

    fn issue(&self, cn: &str, names: &[&str]) -> Issued {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }
}

/// The files of a gateway's TLS: its certificate, key and (mutual) the client CA.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

struct TlsGw {
    api: Arc<ctigate::api::Api>,
    cfg: Config,
    addr: SocketAddr,
    sim: ctigate::sim::Sim,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn gateway(
    ca: &Ca,
    client_ca: Option<&Ca>,
    handshake_ms: u64,
    users: Vec<ctigate::config::UserSection>,
) -> TlsGw {
    let dir = std::env::temp_dir().join(format!(
        "ctigate-tls-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let srv = ca.issue("ctigate", &["localhost", "127.0.0.1"]);
    let api = ApiConfig {
        listen: "127.0.0.1:0".into(),
        requests_per_s: 0,
        tls_cert: Some(write(&dir, "cert.pem", &srv.cert_pem)),
        tls_key: Some(write(&dir, "key.pem", &srv.key_pem)),
        tls_client_ca: client_ca.map(|c| write(&dir, "client-ca.pem", &c.pem())),
        tls_handshake_timeout_ms: handshake_ms,
        ..ApiConfig::default()
    };
    let sim = start_sim(SimConfig::default()).await;
    let cfg = Config {
        api,
        links: vec![LinkSection {
            name: "pbx1".into(),
            address: sim.csta_addr.to_string(),
            ..LinkSection::default()
        }],
        metrics: Default::default(),
        users,
        audit: Default::default(),
        log: Default::default(),
    };
    cfg.validate().expect("valid");
    let tls = cfg.api.tls().expect("the TLS files load").expect("TLS on");
    let l = server::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let api = ctigate::api::start(cfg.clone());
    tokio::spawn(server::serve_tls(api.clone(), l, tls));
    let up = async {
        while !api.gateway.links().values().all(|l| l.link.is_up()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(T, up).await.expect("the link comes up");
    TlsGw {
        api,
        cfg,
        addr,
        sim,
        _dir: TempDir(dir),
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS client trusting `ca`, optionally with a client certificate.
async fn connect(addr: SocketAddr, ca: &Ca, me: Option<&Issued>) -> std::io::Result<Tls> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let provider = ctigate::tls::provider();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match me {
        Some(i) => b
            .with_client_auth_cert(vec![i.cert.clone()], i.key.clone_key())
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).await?;
    let c = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    c.connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// Lines over TLS.
struct Lines {
    r: BufReader<tokio::io::ReadHalf<Tls>>,
    w: tokio::io::WriteHalf<Tls>,
}

impl Lines {
    fn new(s: Tls) -> Lines {
        let (r, w) = tokio::io::split(s);
        Lines {
            r: BufReader::new(r),
            w,
        }
    }

    /// The next line, or `None` at the end (or a TLS error: the server closed).
    async fn line(&mut self) -> Option<Value> {
        let mut l = String::new();
        match timeout(T, self.r.read_line(&mut l))
            .await
            .expect("a line in time")
        {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&l).expect("JSON")),
        }
    }

    async fn send(&mut self, v: Value) {
        self.w.write_all(format!("{v}\n").as_bytes()).await.unwrap();
        self.w.flush().await.unwrap();
    }

    /// The answer to `v` (events before it are kept in `seen`).
    async fn ask(&mut self, v: Value, seen: &mut Vec<Value>) -> Value {
        self.send(v).await;
        loop {
            let l = self.line().await.expect("an answer");
            if l["type"] == "response" {
                return l;
            }
            seen.push(l);
        }
    }
}

/// The connection is closed by the server within `within` (EOF or reset), whatever was sent.
async fn closed_within(s: &mut TcpStream, within: Duration) {
    let mut buf = [0u8; 256];
    let end = Instant::now() + within;
    loop {
        match timeout(
            end.saturating_duration_since(Instant::now()),
            s.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue, // a TLS alert
            Err(_) => panic!("the connection is still open after {within:?}"),
        }
    }
}

#[tokio::test]
async fn a_tls_client_is_served_and_bad_clients_cost_only_their_connection() {
    let ca = Ca::new("ctigate test CA");
    let g = gateway(&ca, None, 500, Vec::new()).await;

    // a plain-TCP client speaking NDJSON to the TLS port: closed, nothing else happens
    let mut plain = TcpStream::connect(g.addr).await.unwrap();
    plain
        .write_all(b"{\"id\":1,\"op\":\"ping\"}\n")
        .await
        .unwrap();
    closed_within(&mut plain, Duration::from_secs(5)).await;
    // garbage that looks like a TLS record header: closed
    let mut junk = TcpStream::connect(g.addr).await.unwrap();
    junk.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .await
        .unwrap();
    closed_within(&mut junk, Duration::from_secs(5)).await;
    // a client that connects and says nothing: closed after the handshake timeout (500 ms)
    let t = Instant::now();
    let mut silent = TcpStream::connect(g.addr).await.unwrap();
    closed_within(&mut silent, Duration::from_secs(5)).await;
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // a client that does not trust the gateway's CA gives up; the gateway goes on
    let other = Ca::new("another CA");
    assert!(connect(g.addr, &other, None).await.is_err());

    // a real client: hello, monitor, a call's events
    let mut c = Lines::new(connect(g.addr, &ca, None).await.expect("TLS handshake"));
    let hello = c.line().await.expect("hello");
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["links"][0]["state"], "up");
    let mut seen = Vec::new();
    let r = c
        .ask(
            json!({"id": 1, "op": "monitor.start", "device": "201"}),
            &mut seen,
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    sim_cmd(
        &g.sim,
        r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#,
    )
    .await;
    loop {
        let e = c.line().await.expect("events");
        if e["event"] == "call.offering" {
            assert_eq!(e["device"], "201");
            assert_eq!(e["call"]["ani"], "0891234567");
            break;
        }
    }
    assert_eq!(
        g.api.hub.clients(),
        1,
        "the bad clients never became sessions"
    );
}

#[tokio::test]
async fn mutual_tls_admits_the_ca_s_certificates_only() {
    let ca = Ca::new("ctigate test CA");
    let clients = Ca::new("client CA");
    // one user, `crm`: its certificate stands for it (no token needed)
    let user = ctigate::config::UserSection {
        name: "crm".into(),
        // the SHA-256 of "test"
        token_sha256: Some(
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        ),
        role: "monitor".into(),
        devices: vec!["201".into()],
        ..Default::default()
    };
    let g = gateway(&ca, Some(&clients), 2000, vec![user]).await;
    let crm = clients.issue("crm", &[]);
    let stranger = Ca::new("stranger CA").issue("crm", &[]);

    // no certificate, or one of another CA: the handshake fails (TLS 1.3 reports the
    // refusal at the first read)
    for me in [None, Some(&stranger)] {
        match connect(g.addr, &ca, me).await {
            Err(_) => {}
            Ok(s) => {
                let mut l = Lines::new(s);
                assert!(l.line().await.is_none(), "refused");
            }
        }
    }
    // the CA's certificate: served, as the user its subject names, without `auth`
    let mut c = Lines::new(connect(g.addr, &ca, Some(&crm)).await.expect("handshake"));
    let hello = c.line().await.expect("hello");
    assert_eq!(
        (&hello["type"], &hello["auth"], &hello["user"]),
        (&json!("hello"), &json!("required"), &json!("crm"))
    );
    assert_eq!(ctigate::tls::subject(&crm.cert).as_deref(), Some("crm"));
    let mut seen = Vec::new();
    let r = c
        .ask(
            json!({"id": 2, "op": "monitor.start", "device": "201"}),
            &mut seen,
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    // and with that user's rights only
    let r = c
        .ask(
            json!({"id": 3, "op": "monitor.start", "device": "202"}),
            &mut seen,
        )
        .await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    // a certificate of the CA whose subject is no user: authenticates with a token
    let other = clients.issue("wallboard", &[]);
    let mut w = Lines::new(connect(g.addr, &ca, Some(&other)).await.expect("handshake"));
    let hello = w.line().await.expect("hello");
    assert_eq!(hello["user"], Value::Null);
    let r = w.ask(json!({"id": 4, "op": "status"}), &mut seen).await;
    assert_eq!(r["error"]["code"], "unauthenticated", "{r}");
}

#[test]
fn configuration_errors_name_the_key() {
    let dir = std::env::temp_dir().join(format!("ctigate-tls-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _d = TempDir(dir.clone());
    let cert = write(&dir, "c.pem", "not a certificate");
    let api = |cert: &str, key: &str| ApiConfig {
        tls_cert: Some(cert.into()),
        tls_key: Some(key.into()),
        ..ApiConfig::default()
    };
    let e = api("/nonexistent/cert.pem", "/nonexistent/key.pem")
        .tls()
        .unwrap_err()
        .0;
    assert!(
        e.starts_with("api.tls_cert: cannot read /nonexistent/cert.pem"),
        "{e}"
    );
    let e = api(&cert, &cert).tls().unwrap_err().0;
    assert!(e.starts_with("api.tls_cert: "), "{e}");
    assert!(e.contains("no certificate"), "{e}");
    let ca = Ca::new("x");
    let good = ca.issue("ctigate", &["localhost"]);
    let cert = write(&dir, "good.pem", &good.cert_pem);
    let e = api(&cert, &cert).tls().unwrap_err().0;
    assert!(e.starts_with("api.tls_key: "), "{e}");
    // a key of another certificate
    let other = write(
        &dir,
        "other-key.pem",
        &ca.issue("y", &["localhost"]).key_pem,
    );
    let e = api(&cert, &other).tls().unwrap_err().0;
    assert!(e.contains("does not go with the certificate"), "{e}");
    // only one of the pair
    let cfg =
        Config::from_toml("[api]\ntls_cert = \"c.pem\"\n[[link]]\nname = \"p\"\naddress = \"h:1\"");
    let e = cfg.unwrap_err().0;
    assert!(e.contains("api.tls_cert and api.tls_key"), "{e}");
}

/// A TLS front for the simulator's CSTA port (as a switch offering CSTA over TLS would
/// be): accepts TLS with `cert`, and relays to `to`.
async fn tls_front(srv: &Issued, to: SocketAddr) -> SocketAddr {
    let provider = ctigate::tls::provider();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![srv.cert.clone()], srv.key.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut sw = TcpStream::connect(to).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut sw).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_link_over_tls_to_the_switch() {
    use ctigate::link::{LinkConfig, LinkEvent, LinkTls};
    let ca = Ca::new("switch CA");
    let sim = start_sim(SimConfig::default()).await;
    let front = tls_front(&ca.issue("pbx", &["localhost"]), sim.csta_addr).await;
    let dir = std::env::temp_dir().join(format!("ctigate-tls-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _d = TempDir(dir.clone());
    let ca_file = write(&dir, "ca.pem", &ca.pem());
    let cfg = LinkConfig {
        // by address; the certificate names localhost
        tls: Some(LinkTls {
            ca: ca_file.clone(),
            server_name: Some("localhost".into()),
        }),
        ..support::link_cfg(&sim)
    };
    let cfg = LinkConfig {
        addresses: vec![front.to_string()],
        ..cfg
    };
    let (link, mut rx) = support::start_link(cfg.clone());
    let up = async {
        loop {
            match rx.recv().await.unwrap() {
                LinkEvent::Up { .. } => return,
                LinkEvent::Down { reason, .. } => panic!("down: {reason}"),
                _ => {}
            }
        }
    };
    timeout(T, up).await.expect("up over TLS");
    assert_eq!(timeout(T, link.monitor("201")).await.unwrap(), Ok(Ok(())));
    sim_cmd(&sim, r#"{"cmd":"inbound","ani":"0891234567","dnis":"201"}"#).await;
    let ev = async {
        loop {
            if let LinkEvent::Report { device, report } = rx.recv().await.unwrap() {
                return (device, report.event.name().to_string());
            }
        }
    };
    assert_eq!(
        timeout(T, ev).await.unwrap(),
        (Some("201".to_string()), "delivered".to_string())
    );
    timeout(T, link.shutdown()).await.unwrap();

    // a switch whose certificate another CA issued: the link is down, and says why
    let other = Ca::new("other CA");
    let bad = tls_front(&other.issue("pbx", &["localhost"]), sim.csta_addr).await;
    let (link, mut rx) = support::start_link(LinkConfig {
        addresses: vec![bad.to_string()],
        ..cfg
    });
    let reason = async {
        loop {
            match rx.recv().await.unwrap() {
                LinkEvent::Up { .. } => panic!("up with an untrusted certificate"),
                LinkEvent::Down { reason, .. } => return reason,
                _ => {}
            }
        }
    };
    let reason = timeout(T, reason).await.unwrap();
    assert!(reason.contains("TLS handshake"), "{reason}");
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
    timeout(T, link.shutdown()).await.unwrap();
    // the configuration names the key of a CA file that does not load
    let e = Config::from_toml(&format!(
        "[[link]]\nname = \"p\"\naddress = \"h:1\"\ntls = true\ntls_ca = \"{}\"",
        dir.join("missing.pem").display()
    ))
    .unwrap_err()
    .0;
    assert!(e.starts_with("link[0].tls_ca: cannot read"), "{e}");
    let e = Config::from_toml("[[link]]\nname = \"p\"\naddress = \"h:1\"\ntls = true")
        .unwrap_err()
        .0;
    assert!(
        e.starts_with("link[0].tls_ca: needed with tls = true"),
        "{e}"
    );
}

/// A renewed certificate written over the old files is taken by a reload (SIGHUP): new
/// connections get it, a connection made before goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reads_a_renewed_certificate() {
    let old_ca = Ca::new("old CA");
    let gw = gateway(&old_ca, None, 5000, Vec::new()).await;
    let mut before = Lines::new(connect(gw.addr, &old_ca, None).await.expect("handshake"));
    assert_eq!(before.line().await.expect("hello")["type"], "hello");
    let new_ca = Ca::new("new CA");
    let renewed = new_ca.issue("ctigate", &["localhost", "127.0.0.1"]);
    std::fs::write(gw.cfg.api.tls_cert.as_ref().unwrap(), &renewed.cert_pem).unwrap();
    std::fs::write(gw.cfg.api.tls_key.as_ref().unwrap(), &renewed.key_pem).unwrap();
    // not yet: the files are read at start and on a reload only
    assert!(connect(gw.addr, &new_ca, None).await.is_err());
    let setup = ctigate::reload::Setup {
        path: "/nonexistent/ctigate.toml".into(),
        log: None,
        log_from_flag: false,
    };
    let mut r = ctigate::reload::Reloader::new(setup, gw.api.clone(), gw.cfg.clone());
    let report = r.apply(gw.cfg.clone()).await;
    assert_eq!(
        report.applied,
        vec!["api.tls_cert, api.tls_key, api.tls_client_ca: files read again (new connections use them)"]
    );
    assert!(report.restart.is_empty(), "{report:?}");
    let mut after = Lines::new(
        connect(gw.addr, &new_ca, None)
            .await
            .expect("the renewed certificate"),
    );
    assert_eq!(after.line().await.expect("hello")["type"], "hello");
    assert!(
        connect(gw.addr, &old_ca, None).await.is_err(),
        "the old certificate is no longer served"
    );
    let mut seen = Vec::new();
    let pong = before.ask(json!({"id": 1, "op": "ping"}), &mut seen).await;
    assert_eq!(
        pong["ok"], true,
        "the connection made before the reload goes on"
    );
}
