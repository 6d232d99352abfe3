//! The binary's side of issue 11: `ctigate token`, the safe default (a non-loopback listen
//! without users refuses to start), users from a separate file and from an environment
//! variable, and the audit file of `ctigate run` (every control request, JSON lines),
//! with the token in no output.

use ctigate::sim::{Sim, SimConfig};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ctigate"))
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ctigate-auth-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `ctigate token`: the token on its first line, then the `[[user]]` lines.
fn token(args: &[&str]) -> (String, String) {
    let o = bin().arg("token").args(args).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8(o.stdout).unwrap();
    let t = out
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_string();
    let block = out[out.find("[[user]]").unwrap()..].to_string();
    (t, block)
}

fn check_config(path: &Path) -> (i32, String, String) {
    let o = bin()
        .arg("check-config")
        .arg(path)
        .env_remove("CTIGATE_CRM_SHA")
        .output()
        .unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

#[test]
fn a_reachable_port_needs_users_or_insecure() {
    let d = dir("safe");
    let link = "[[link]]\nname = \"pbx1\"\naddress = \"127.0.0.1:2555\"\n";
    let p = d.join("open.toml");
    std::fs::write(&p, format!("[api]\nlisten = \"0.0.0.0:7700\"\n{link}")).unwrap();
    let (code, _, err) = check_config(&p);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no [[user]]")
            && err.contains("ctigate token")
            && err.contains("insecure = true"),
        "{err}"
    );
    std::fs::write(
        &p,
        format!("[api]\nlisten = \"0.0.0.0:7700\"\ninsecure = true\n{link}"),
    )
    .unwrap();
    assert_eq!(check_config(&p).0, 0);
    // with a user: fine, and check-config shows no hash
    let (t, block) = token(&[
        "--name",
        "crm",
        "--role",
        "control",
        "--devices",
        "201-220,8000",
    ]);
    assert_eq!(t.len(), 43);
    std::fs::write(
        &p,
        format!("[api]\nlisten = \"0.0.0.0:7700\"\n{link}{block}"),
    )
    .unwrap();
    let (code, out, err) = check_config(&p);
    assert_eq!(code, 0, "{err}");
    let hash = ctigate::api::auth::hex(&ctigate::api::auth::token_sha256(&t));
    assert!(!out.contains(&hash) && out.contains("********"), "{out}");
    assert!(out.contains("devices = [\"201-220\", \"8000\"]"), "{out}");
    // a syntax error on the hash line does not echo it
    std::fs::write(
        &p,
        format!("{link}[[user]]\nname = \"x\"\ntoken_sha256 = \"{hash}\" oops\n"),
    )
    .unwrap();
    let (code, _, err) = check_config(&p);
    assert_eq!(code, 1);
    assert!(!err.contains(&hash), "{err}");
    // a variable that is not set
    std::fs::write(
        &p,
        format!("{link}[[user]]\nname = \"x\"\ntoken_sha256_env = \"CTIGATE_CRM_SHA\"\nrole = \"monitor\"\ndevices = [\"*\"]\n"),
    )
    .unwrap();
    let (code, _, err) = check_config(&p);
    assert_eq!(code, 1);
    assert!(err.contains("CTIGATE_CRM_SHA is not set"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

/// A line-reading NDJSON client of the binary's port.
struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
    next: u64,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Conn {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
            next: 1,
        };
        let hello = c.line();
        assert_eq!(hello["type"], "hello", "{hello}");
        c
    }

    fn line(&mut self) -> Value {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l:?}"))
    }

    fn call(&mut self, mut v: Value) -> Value {
        v["id"] = json!(self.next);
        self.next += 1;
        writeln!(self.w, "{v}").unwrap();
        loop {
            let r = self.line();
            if r["type"] == "response" && r["id"] == v["id"] {
                return r;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_writes_every_control_request_to_the_audit_file() {
    let sim = Sim::start(SimConfig::default(), "127.0.0.1:0", None)
        .await
        .unwrap();
    let d = dir("audit");
    let (crm, crm_block) = token(&["--name", "crm", "--role", "control", "--devices", "201-210"]);
    let (wall, wall_block) = token(&["--name", "wallboard", "--devices", "201-205"]);
    // the CRM's hash from an environment variable, the wallboard from a users file
    let crm_hash = crm_block
        .lines()
        .find_map(|l| l.strip_prefix("token_sha256 = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let crm_block = crm_block.replace(
        &format!("token_sha256 = \"{crm_hash}\""),
        "token_sha256_env = \"CTIGATE_TEST_CRM_SHA\"",
    );
    std::fs::write(d.join("users.toml"), &wall_block).unwrap();
    let cfg = d.join("ctigate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\nusers_file = \"users.toml\"\n[audit]\nfile = \"audit.jsonl\"\n[[link]]\nname = \"pbx1\"\naddress = \"{}\"\n{crm_block}",
            sim.csta_addr
        ),
    )
    .unwrap();
    let audit = d.join("audit.jsonl");
    let (crm2, wall2) = (crm.clone(), wall.clone());
    let (stderr, lines) = tokio::task::spawn_blocking(move || {
        let mut child = bin()
            .args(["run", "--config"])
            .arg(&cfg)
            .env("CTIGATE_TEST_CRM_SHA", &crm_hash)
            .env("CTIGATE_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = out.next().unwrap().unwrap();
        let addr = first
            .strip_prefix("ctigate run: NDJSON port ")
            .unwrap()
            .to_string();
        let _ = out.next(); // link pbx1: connecting
        let up = out.next().unwrap().unwrap();
        assert!(up.starts_with("link pbx1: up"), "{up}");
        let mut c = Conn::open(&addr);
        assert_eq!(c.call(json!({"op": "auth", "token": "wrong"}))["ok"], false);
        assert_eq!(c.call(json!({"op": "auth", "token": crm2}))["ok"], true);
        let r = c.call(json!({"op": "call.make", "device": "201", "to": "202"}));
        assert_eq!(r["ok"], true, "{r}");
        let r = c.call(json!({"op": "call.make", "device": "301", "to": "202"}));
        assert_eq!(r["error"]["code"], "forbidden", "{r}");
        let r = c.call(
            json!({"op": "agent.login", "device": "203", "agent": "1003", "password": "nope"}),
        );
        assert_eq!(r["error"]["kind"], "switch", "{r}");
        let mut w = Conn::open(&addr);
        assert_eq!(w.call(json!({"op": "auth", "token": wall2}))["ok"], true);
        let r = w.call(json!({"op": "call.answer", "device": "201"}));
        assert_eq!(r["error"]["code"], "forbidden", "{r}");
        let r = w.call(json!({"op": "monitor.start", "device": "201"}));
        assert_eq!(r["ok"], true, "{r}");
        let lines: Vec<Value> = std::fs::read_to_string(&audit)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(0));
        (err, lines)
    })
    .await
    .unwrap();
    let brief: Vec<(String, String, String, String, String)> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["target"], "audit", "{l}");
            let f = &l["fields"];
            let s = |k: &str| f[k].as_str().unwrap_or("").to_string();
            (s("user"), s("op"), s("device"), s("result"), s("code"))
        })
        .collect();
    let b = |u: &str, o: &str, d: &str, r: &str, c: &str| {
        (u.into(), o.into(), d.into(), r.into(), c.into())
    };
    assert_eq!(
        brief,
        vec![
            b("", "auth", "", "auth", "bad_token"),
            b("crm", "auth", "", "ok", ""),
            b("crm", "call.make", "201", "ok", ""),
            b("crm", "call.make", "301", "auth", "forbidden"),
            b(
                "crm",
                "agent.login",
                "203",
                "switch",
                "invalidAgentPassword"
            ),
            b("wallboard", "auth", "", "ok", ""),
            b("wallboard", "call.answer", "201", "auth", "forbidden"),
        ],
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| l["fields"]["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:"))));
    // the log (at debug) has the records too, and no token anywhere
    assert!(stderr.contains("call.make"), "{stderr}");
    for secret in [crm.as_str(), wall.as_str(), "nope"] {
        assert!(!stderr.contains(secret), "{secret} in {stderr}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// logrotate: the audit file moved aside and SIGHUP sent, the records go on in a new file at
/// the path; a path that cannot be opened keeps them in the file open before, and says so.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_opens_the_audit_file_again_after_a_rotation() {
    let sim = Sim::start(SimConfig::default(), "127.0.0.1:0", None)
        .await
        .unwrap();
    let d = dir("audit-rotate");
    let cfg = d.join("ctigate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n[audit]\nfile = \"audit.jsonl\"\n[[link]]\nname = \"pbx1\"\naddress = \"{}\"\n",
            sim.csta_addr
        ),
    )
    .unwrap();
    let audit = d.join("audit.jsonl");
    let (rotated, kept) = (d.join("audit.jsonl.1"), d.join("audit.jsonl.2"));
    let devices = |f: &Path| -> Vec<String> {
        std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                format!("{} {}", v["fields"]["op"], v["fields"]["device"])
            })
            .collect()
    };
    let (a, r, k) = (audit.clone(), rotated.clone(), kept.clone());
    let said = tokio::task::spawn_blocking(move || {
        let mut child = bin()
            .args(["run", "--config"])
            .arg(&cfg)
            .env_remove("CTIGATE_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let line_with = |what: &str| loop {
            let l = rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("no line with {what:?}: {e}"));
            if l.contains(what) {
                return l;
            }
        };
        let addr = line_with("NDJSON port")
            .strip_prefix("ctigate run: NDJSON port ")
            .unwrap()
            .to_string();
        line_with("link pbx1: up");
        let mut c = Conn::open(&addr);
        let make = |c: &mut Conn, device: &str| {
            let r = c.call(json!({"op": "call.make", "device": device, "to": "209"}));
            assert_eq!(r["ok"], true, "{r}");
        };
        make(&mut c, "201");
        // logrotate: move the file aside, then SIGHUP
        std::fs::rename(&a, &r).unwrap();
        make(&mut c, "202");
        let hup = |pid: &str| {
            assert!(Command::new("kill")
                .args(["-HUP", pid])
                .status()
                .unwrap()
                .success());
        };
        hup(&pid);
        let mut said = vec![line_with("audit")];
        line_with("configuration reloaded");
        make(&mut c, "203");
        // the path cannot be opened (a directory is there): the records stay where they were
        std::fs::rename(&a, &k).unwrap();
        std::fs::create_dir(&a).unwrap();
        hup(&pid);
        said.push(line_with("audit"));
        line_with("configuration reloaded");
        make(&mut c, "204");
        // the path fixed, SIGHUP again: a new file
        std::fs::remove_dir(&a).unwrap();
        hup(&pid);
        said.push(line_with("audit"));
        line_with("configuration reloaded");
        make(&mut c, "205");
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(0));
        said
    })
    .await
    .unwrap();
    let shown = audit.display().to_string();
    assert_eq!(
        said[0],
        format!("ctigate run: audit file opened again: {shown}")
    );
    assert!(
        said[1].starts_with(&format!("ctigate run: audit.file: cannot open {shown}: "))
            && said[1].ends_with("; the audit records go on in the file open before (send SIGHUP again once the path can be opened)"),
        "{}",
        said[1]
    );
    assert_eq!(
        said[2],
        format!("ctigate run: audit file opened again: {shown}")
    );
    // every record once, in the file open when it was written
    let rec = |d: &str| format!("\"call.make\" \"{d}\"");
    assert_eq!(devices(&rotated), [rec("201"), rec("202")]);
    assert_eq!(devices(&kept), [rec("203"), rec("204")]);
    assert_eq!(devices(&audit), [rec("205")]);
    let _ = std::fs::remove_dir_all(&d);
}

/// README's "Securing the gateway" example is a complete, valid configuration.
#[test]
fn the_readme_example_is_a_valid_configuration() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let sec = readme.split("### Securing the gateway").nth(1).unwrap();
    let start = sec.find("```toml\n").unwrap() + 8;
    let block = &sec[start..start + sec[start..].find("```").unwrap()];
    // its TLS files, made here (the gateway reads them when it checks the configuration)
    let dir = std::env::temp_dir().join(format!("ctigate-readme-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    assert!(
        block.contains("tls_cert = \"/etc/ctigate/cert.pem\""),
        "{block}"
    );
    let block = block
        .replace("/etc/ctigate/cert.pem", &cert.to_string_lossy())
        .replace("/etc/ctigate/key.pem", &key.to_string_lossy());
    let block = block.as_str();
    let mut c = ctigate::config::Config::from_toml(block).unwrap();
    assert!(c.api.tls().unwrap().is_some(), "TLS on");
    c.resolve_users(Path::new("."), |v| {
        (v == "CTIGATE_CRM_TOKEN_SHA256").then(|| "ab".repeat(32))
    })
    .unwrap();
    assert_eq!(c.users.len(), 2);
    assert_eq!(c.users[0].role, "monitor");
    assert!(c.audit.file.is_some());
    // without its users it would not start
    let open = block.split("[[user]]").next().unwrap();
    let e = ctigate::config::Config::from_toml(open).unwrap_err().0;
    assert!(e.contains("ctigate token"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
