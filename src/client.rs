//! `ctigate client ADDR`: a small interactive client for people exploring the protocol.
//! Lines typed are sent as JSON when they start with `{`, else read as short commands
//! (`answer 201`); what the gateway sends is printed readably. The demo uses the same
//! printing.

use serde_json::{json, Map, Value};

/// The short commands: (name, parameter names, op).
const SHORT: &[(&str, &[&str], &str)] = &[
    ("ping", &[], "ping"),
    ("status", &[], "status"),
    ("monitor", &["device"], "monitor.start"),
    ("unmonitor", &["device"], "monitor.stop"),
    ("snapshot", &["device"], "snapshot"),
    ("make", &["device", "to"], "call.make"),
    ("answer", &["device", "call?"], "call.answer"),
    ("hold", &["device", "call?"], "call.hold"),
    ("retrieve", &["device", "call?"], "call.retrieve"),
    ("hangup", &["device", "call?"], "call.hangup"),
    ("clear", &["device", "call"], "call.clear"),
    ("consult", &["device", "to"], "call.consult"),
    ("transfer", &["device"], "call.transfer"),
    ("conference", &["device"], "call.conference"),
    ("alternate", &["device"], "call.alternate"),
    ("reconnect", &["device"], "call.reconnect"),
    ("blind", &["device", "to"], "call.blind_transfer"),
    ("drop", &["device", "call", "party"], "call.drop_party"),
    ("dtmf", &["device", "digits"], "call.dtmf"),
    (
        "login",
        &["device", "agent", "password?", "group?"],
        "agent.login",
    ),
    ("ready", &["device"], "agent.ready"),
    ("notready", &["device", "reason?"], "agent.not_ready"),
    ("acw", &["device"], "agent.after_call_work"),
    ("logout", &["device", "reason?"], "agent.logout"),
    ("agent", &["device"], "agent.state"),
];

/// Help text for the short commands.
pub fn help() -> String {
    let mut s = String::from("commands (or a JSON request line):\n");
    for (n, p, op) in SHORT {
        s += &format!("  {n} {}  -> {op}\n", p.join(" "));
    }
    s
}

/// A request from a typed line; `id` numbers them.
pub fn request(line: &str, id: u64) -> Result<Value, String> {
    let line = line.trim();
    if line.starts_with('{') {
        return serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"));
    }
    let mut words = line.split_whitespace();
    let Some(cmd) = words.next() else {
        return Err("empty line".into());
    };
    let Some((_, params, op)) = SHORT.iter().find(|(n, _, _)| *n == cmd) else {
        return Err(format!("unknown command `{cmd}`; type `help`"));
    };
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("op".into(), json!(op));
    let args: Vec<&str> = words.collect();
    for (i, p) in params.iter().enumerate() {
        let (name, optional) = match p.strip_suffix('?') {
            Some(n) => (n, true),
            None => (*p, false),
        };
        match args.get(i) {
            Some(a) => {
                m.insert(name.into(), json!(a));
            }
            None if optional => {}
            None => return Err(format!("usage: {cmd} {}", params.join(" "))),
        }
    }
    if args.len() > params.len() {
        return Err(format!("usage: {cmd} {}", params.join(" ")));
    }
    Ok(Value::Object(m))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The answer to the gateway's idle `ping` line (docs/PROTOCOL.md "Idle clients").
pub const PONG: &str = "{\"id\":\"pong\",\"op\":\"ping\"}\n";

/// Whether a line from the gateway is its idle `ping` (to answer with [`PONG`]).
pub fn is_ping(line: &str) -> bool {
    serde_json::from_str::<Value>(line).is_ok_and(|v| v["type"] == "ping")
}

/// Whether a line is the response to [`PONG`].
pub fn is_pong(line: &str) -> bool {
    serde_json::from_str::<Value>(line)
        .is_ok_and(|v| v["type"] == "response" && v["id"] == "pong" && v["ok"] == true)
}

/// One readable line for a line from the gateway.
pub fn pretty(line: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return format!("? {line}");
    };
    match s(&v["type"]) {
        "hello" => format!(
            "connected: {} {} links {}",
            s(&v["protocol"]),
            s(&v["version"]),
            v["links"]
        ),
        "response" if v["ok"] == true => format!("#{} ok {}", v["id"], v["result"]),
        "response" => format!(
            "#{} error {}/{}: {}",
            v["id"],
            s(&v["error"]["kind"]),
            s(&v["error"]["code"]),
            s(&v["error"]["message"])
        ),
        "event" => {
            let ev = s(&v["event"]);
            let head = format!("[{}] {:<4} {:<16}", v["seq"], s(&v["device"]), ev);
            if ev.starts_with("call.") {
                let c = &v["call"];
                let mut t = format!(
                    "{head} {} {} id={} pbx={} ani={} dnis={} other={}",
                    s(&c["state"]),
                    s(&c["type"]),
                    s(&c["id"]),
                    s(&c["pbx_call_id"]),
                    s(&c["ani"]),
                    s(&c["dnis"]),
                    s(&c["other"])
                );
                if let Some(r) = c["related"].as_str() {
                    t += &format!(" related={r}");
                }
                if c["variables"].as_object().is_some_and(|m| !m.is_empty()) {
                    t += &format!(" vars={}", c["variables"]);
                }
                if let Some(cause) = v["cause"].as_str() {
                    t += &format!(" cause={cause}");
                }
                for k in ["digits", "party", "duration_ms"] {
                    if !v[k].is_null() {
                        t += &format!(" {k}={}", v[k]);
                    }
                }
                t
            } else if ev == "agent.state" {
                format!(
                    "{head} agent {} {} group={} reason={}",
                    s(&v["agent"]),
                    s(&v["state"]),
                    s(&v["group"]),
                    s(&v["reason"])
                )
            } else {
                let mut m = v.as_object().cloned().unwrap_or_default();
                for k in ["type", "event", "seq", "time", "device"] {
                    m.remove(k);
                }
                format!("{head} {}", Value::Object(m))
            }
        }
        _ => line.to_string(),
    }
}

/// `ctigate ping`: a health check for service managers and container runtimes. Connects,
/// reads `hello`, sends `ping` and waits for its answer, all within `limit`. With
/// `require_links`, every PBX link must be up too. The one-line report, or why not.
pub async fn ping(
    addr: &str,
    limit: std::time::Duration,
    require_links: bool,
) -> Result<String, String> {
    use crate::lines::{read_line, Line};
    use tokio::io::AsyncWriteExt;
    let started = std::time::Instant::now();
    let check = async {
        let st = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let (r, mut w) = st.into_split();
        let mut r = tokio::io::BufReader::new(r);
        async fn next(
            r: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
            addr: &str,
        ) -> Result<Value, String> {
            match read_line(r, 1 << 20).await {
                Ok(Line::Text(t)) => serde_json::from_str::<Value>(&t)
                    .map_err(|e| format!("not a ctigate port ({e}): {t}")),
                _ => Err(format!("{addr} closed the connection")),
            }
        }
        let hello = next(&mut r, addr).await?;
        if hello["type"] != "hello" {
            return Err(format!("{addr} did not say hello: {hello}"));
        }
        w.write_all(b"{\"id\":\"ping\",\"op\":\"ping\"}\n")
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let v = next(&mut r, addr).await?;
            if v["type"] == "response" && v["id"] == "ping" {
                if v["ok"] != true {
                    return Err(format!("ping refused: {}", v["error"]));
                }
                return Ok(hello);
            }
        }
    };
    let hello = tokio::time::timeout(limit, check)
        .await
        .map_err(|_| format!("no answer from {addr} within {limit:?}"))??;
    let links = hello["links"].as_array().cloned().unwrap_or_default();
    let down: Vec<String> = links
        .iter()
        .filter(|l| l["state"] != "up")
        .map(|l| format!("{} {}", s(&l["name"]), s(&l["state"])))
        .collect();
    let report = format!(
        "ok {addr}: {} {}, links up {}/{}, {} ms",
        s(&hello["protocol"]),
        s(&hello["version"]),
        links.len() - down.len(),
        links.len(),
        started.elapsed().as_millis()
    );
    if require_links && !down.is_empty() {
        return Err(format!("{report}; but not up: {}", down.join(", ")));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_commands() {
        assert_eq!(
            request("answer 201", 3).unwrap(),
            json!({"id": 3, "op": "call.answer", "device": "201"})
        );
        assert_eq!(
            request("login 201 1001 1001 8000", 4).unwrap(),
            json!({"id": 4, "op": "agent.login", "device": "201", "agent": "1001", "password": "1001", "group": "8000"})
        );
        assert!(request("make 201", 1)
            .unwrap_err()
            .starts_with("usage: make"));
        assert!(request("fly 1", 1).unwrap_err().contains("unknown command"));
        assert_eq!(
            request(r#"{"id":"x","op":"ping"}"#, 1).unwrap(),
            json!({"id": "x", "op": "ping"})
        );
    }

    #[test]
    fn idle_pings_are_recognised() {
        assert!(is_ping(r#"{"type":"ping","message":"are you there?"}"#));
        assert!(!is_ping(
            r#"{"type":"response","id":"ping","ok":true,"result":{}}"#
        ));
        assert!(is_pong(
            r#"{"type":"response","id":"pong","ok":true,"result":{}}"#
        ));
        assert!(!is_pong(
            r#"{"type":"response","id":1,"ok":true,"result":{}}"#
        ));
        let pong: Value = serde_json::from_str(PONG.trim_end()).unwrap();
        assert_eq!(pong, json!({"id": "pong", "op": "ping"}));
    }

    #[test]
    fn pretty_lines() {
        let l = r#"{"type":"event","event":"call.offering","seq":5,"device":"201","call":{"id":"ab12","pbx_call_id":"0001","state":"offering","type":"inbound","ani":"0891234567","dnis":"8000","other":"0891234567","variables":{"uui":"case=42"}},"cause":"distributed"}"#;
        assert_eq!(
            pretty(l),
            r#"[5] 201  call.offering    offering inbound id=ab12 pbx=0001 ani=0891234567 dnis=8000 other=0891234567 vars={"uui":"case=42"} cause=distributed"#
        );
        assert_eq!(
            pretty(
                r#"{"type":"response","id":2,"ok":false,"error":{"kind":"switch","code":"noCallToAnswer","message":"m"}}"#
            ),
            "#2 error switch/noCallToAnswer: m"
        );
    }
}
