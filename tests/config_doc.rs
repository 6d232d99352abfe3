//! docs/CONFIG.md cannot drift from the code: its "every key" block parses, holds exactly
//! the defaults, and names every key the configuration has.

use ctigate::config::{ApiConfig, Config, LinkSection};
use std::collections::BTreeSet;

fn doc_block() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONFIG.md"))
        .expect("docs/CONFIG.md");
    let rest = doc
        .split("## Every key, with its default")
        .nth(1)
        .expect("the section");
    let start = rest.find("```toml\n").expect("a toml block") + 8;
    rest[start..start + rest[start..].find("```").unwrap()].to_string()
}

/// Dotted key paths of a TOML value (array-of-tables items under `name[]`).
fn keys(v: &toml::Value, at: &str, out: &mut BTreeSet<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let p = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                out.insert(p.clone());
                keys(v, &p, out);
            }
        }
        toml::Value::Array(a) if a.iter().all(toml::Value::is_table) && !a.is_empty() => {
            for v in a {
                keys(v, &format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_documented_block_is_the_defaults_and_every_key() {
    let block = doc_block();
    let parsed = Config::from_toml(&block).expect("the documented block parses");
    let defaults = Config {
        users: Vec::new(),
        audit: Default::default(),
        log: Default::default(),
        api: ApiConfig::default(),
        metrics: Default::default(),
        links: vec![LinkSection {
            name: "pbx1".into(),
            address: "127.0.0.1:2555".into(),
            ..LinkSection::default()
        }],
    };
    assert_eq!(
        parsed, defaults,
        "docs/CONFIG.md shows other values than the code's defaults"
    );
    // every key the code has is documented (commented-out optional keys count)
    let uncommented = block
        .lines()
        .map(|l| l.trim_start().strip_prefix("# ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let mut documented = BTreeSet::new();
    keys(&toml::from_str(&uncommented).unwrap(), "", &mut documented);
    let mut full = defaults.clone();
    full.links[0].password = Some("x".into()); // optional keys, to be listed too
    full.api.tls_cert = Some("c".into());
    full.api.tls_key = Some("k".into());
    full.api.tls_client_ca = Some("ca".into());
    full.links[0].tls_ca = Some("ca".into());
    full.links[0].tls_server_name = Some("pbx".into());
    full.links[0].addresses = vec!["pbx-a:2555".into(), "pbx-b:2555".into()];
    full.api.users_file = Some("users.toml".into());
    full.audit.file = Some("audit.jsonl".into());
    full.users = vec![ctigate::config::UserSection {
        name: "crm".into(),
        token_sha256: Some("0".repeat(64)),
        token_sha256_env: Some("X".into()),
        role: "control".into(),
        devices: vec!["*".into()],
        max_clients: Some(1),
        requests_per_s: Some(1),
    }];
    let mut code = BTreeSet::new();
    keys(
        &toml::Value::try_from(&full).expect("serializable"),
        "",
        &mut code,
    );
    assert_eq!(
        documented, code,
        "docs/CONFIG.md and the code name different keys"
    );
}

fn check_config(args: &[&str], env: Option<&std::path::Path>) -> (Option<i32>, String, String) {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ctigate"));
    c.arg("check-config")
        .args(args)
        .env_remove("CTIGATE_CONFIG");
    if let Some(p) = env {
        c.env("CTIGATE_CONFIG", p);
    }
    let o = c.output().expect("run ctigate check-config");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_config_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("ctigate-check-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[[link]]\nname = \"pbx1\"\naddress = \"10.0.0.5:2555\"\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let (code, out, _) = check_config(&[good.to_str().unwrap()], None);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        !out.contains("hunter2") && out.contains("********"),
        "{out}"
    );
    // the printed configuration is complete: it reads back as the same configuration
    let back: Config = toml::from_str(&out.replace("\"********\"", "\"hunter2\"")).unwrap();
    assert_eq!(back, ctigate::config::load(&good).unwrap());
    assert!(
        out.contains("keepalive_idle_s = 20"),
        "defaults filled in: {out}"
    );
    // CTIGATE_CONFIG when no file is named
    assert_eq!(check_config(&[], Some(&good)).0, Some(0));
    // a mistake: exit 1, the key named, the secret not echoed
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[link]]\nname = \"pbx1\"\naddress = \"nohost\"\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let (code, _, err) = check_config(&[bad.to_str().unwrap()], None);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("link[0].address") && !err.contains("hunter2"),
        "{err}"
    );
    std::fs::write(
        &bad,
        "[[link]]\nname = \"pbx1\"\npassword = \"hunter2\" oops\n",
    )
    .unwrap();
    let (code, _, err) = check_config(&[bad.to_str().unwrap()], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("line 3") && !err.contains("hunter2"), "{err}");
    // address and addresses both given: named, with the fix
    std::fs::write(
        &bad,
        "[[link]]\nname = \"pbx1\"\naddress = \"a:1\"\naddresses = [\"a:1\", \"b:1\"]\n",
    )
    .unwrap();
    let (code, _, err) = check_config(&[bad.to_str().unwrap()], None);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("link[0]: give either address or addresses, not both"),
        "{err}"
    );
    // two sides: printed back as given
    let sides = dir.join("sides.toml");
    std::fs::write(
        &sides,
        "[[link]]\nname = \"pbx1\"\naddresses = [\"pbx-a:2555\", \"pbx-b:2555\"]\n",
    )
    .unwrap();
    let (code, out, _) = check_config(&[sides.to_str().unwrap()], None);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("addresses = [\"pbx-a:2555\", \"pbx-b:2555\"]")
            && out.contains("reconnect_jitter_percent = 50")
            && out.contains("reconnect_reset_s = 30"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// docs/CONFIG.md's reload table names every key a reload applies (`ctigate::reload`'s
/// lists), so the page cannot claim less or more than the code does.
#[test]
fn the_reload_table_names_every_live_key() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONFIG.md"))
        .expect("docs/CONFIG.md");
    let section = doc
        .split("## Reloading the configuration (SIGHUP)")
        .nth(1)
        .expect("the reload section");
    let live_rows: Vec<&str> = section
        .lines()
        .filter(|l| {
            l.starts_with("| ")
                && l.split('|')
                    .nth(2)
                    .is_some_and(|what| !what.trim().starts_with("need"))
        })
        .collect();
    for k in ctigate::reload::API_LIVE
        .iter()
        .chain(ctigate::reload::LINK_LIVE)
    {
        assert!(
            live_rows.iter().any(|r| r.contains(&format!("`{k}`"))),
            "docs/CONFIG.md's reload table does not list `{k}` as applied live"
        );
    }
    // and a key it lists as live in the [api] rows is live in the code
    for r in live_rows.iter().filter(|r| r.starts_with("| `[api]`")) {
        let keys = r.split('|').nth(1).unwrap_or_default();
        for k in keys.split('`').skip(3).step_by(2) {
            assert!(
                ctigate::reload::API_LIVE.contains(&k),
                "docs/CONFIG.md says api.{k} changes live; the code does not"
            );
        }
    }
}
