//! `ctigate sim ctl`: a client for the simulator's control port, so nobody needs `nc`.
//!
//! A command is a JSON object (`{"cmd":"inbound","ani":"0891234567","dnis":"8000"}`) or
//! short words (`inbound 0891234567 8000 case=42`): the command name, then its fields in
//! the order of [`SHORT`], or as `field=value` in any order. A `key=value` word whose key
//! is not a field of the command is a positional value (so `case=42` is inbound's
//! `user_data`). Every command is checked here with the simulator's own parser before it
//! is sent, so a mistake is reported without a round trip.

use super::control::{parse as parse_command, Command};
use serde_json::{Map, Number, Value};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How a short word becomes a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text as it is.
    Text,
    /// A whole number.
    Int,
    /// A number (`calls_per_s`).
    Float,
    /// `on`/`off`, `true`/`false`, `yes`/`no`.
    Bool,
    /// `500-3000` or `500,3000`: `[500, 3000]`.
    Range,
}
use Kind::*;

/// The short form of every control command: its fields in positional order.
pub const SHORT: &[(&str, &[(&str, Kind)])] = &[
    (
        "inbound",
        &[
            ("ani", Text),
            ("dnis", Text),
            ("user_data", Text),
            ("correlator_data", Text),
        ],
    ),
    ("dial", &[("from", Text), ("to", Text)]),
    ("answer", &[("device", Text), ("call", Text)]),
    ("hangup", &[("device", Text), ("call", Text)]),
    ("hold", &[("device", Text), ("call", Text)]),
    ("retrieve", &[("device", Text), ("call", Text)]),
    ("far_end", &[("number", Text), ("behaviour", Text)]),
    ("busy", &[("device", Text), ("on", Bool)]),
    (
        "fault",
        &[
            ("fault", Text),
            ("ms", Int),
            ("assoc", Int),
            ("keep_links", Bool),
            ("status", Text),
            ("device", Text),
            ("side", Int),
        ],
    ),
    (
        "load",
        &[
            ("calls_per_s", Float),
            ("dnis", Text),
            ("max_calls", Int),
            ("ring_ms", Range),
            ("talk_ms", Range),
            ("hold_ms", Range),
            ("hold_percent", Int),
            ("login_agents", Bool),
        ],
    ),
    ("status", &[]),
    ("dialplan", &[]),
    ("sleep", &[("ms", Int)]),
    ("wait_for", &[("device", Text), ("timeout_ms", Int)]),
];

/// `fault side_down N` / `fault side_up N`: the side is their one positional value (not
/// `ms`, as for the other faults).
const SIDE_FAULT: &[(&str, Kind)] = &[("fault", Text), ("side", Int)];

/// The short forms, for `help` and error messages.
pub fn usage() -> String {
    let mut s = String::from("commands (JSON objects work too; field=value in any order):\n");
    for (cmd, fields) in SHORT {
        s.push_str("  ");
        s.push_str(cmd);
        for (f, _) in fields.iter() {
            s.push_str(&format!(" [{f}]"));
        }
        s.push('\n');
    }
    s.push_str("e.g.  inbound 0891234567 8000 case=42   answer 201   busy 202 on   fault close\n");
    s.push_str("      fault side_down 0   fault side_up 0   (a side is a --listen address)\n");
    s
}

fn value(field: &str, kind: Kind, word: &str) -> Result<Value, String> {
    let bad = |what: &str| format!("`{field}` must be {what}, not {word:?}");
    Ok(match kind {
        Text => Value::String(word.to_string()),
        Int => Value::Number(
            word.parse::<u64>()
                .map_err(|_| bad("a whole number"))?
                .into(),
        ),
        Float => Value::Number(
            word.parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .ok_or_else(|| bad("a number"))?,
        ),
        Bool => Value::Bool(match word {
            "on" | "true" | "yes" => true,
            "off" | "false" | "no" => false,
            _ => return Err(bad("on or off")),
        }),
        Range => {
            let (a, b) = word
                .split_once(['-', ','])
                .ok_or_else(|| bad("a range such as 500-3000"))?;
            let n = |x: &str| {
                x.parse::<u64>()
                    .map_err(|_| bad("a range such as 500-3000"))
            };
            Value::Array(vec![n(a)?.into(), n(b)?.into()])
        }
    })
}

/// One command line (JSON or short words) as the JSON object to send; checked with the
/// simulator's parser.
pub fn command_line(line: &str) -> Result<Value, String> {
    checked(line).map(|(v, _)| v)
}

/// The JSON object to send and the command the simulator will read from it.
fn checked(line: &str) -> Result<(Value, Command), String> {
    let line = line.trim();
    let v = if line.starts_with('{') {
        serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?
    } else {
        let mut words = line.split_whitespace();
        let cmd = words.next().ok_or("an empty command")?;
        let (_, mut fields) = SHORT
            .iter()
            .find(|(c, _)| *c == cmd)
            .ok_or_else(|| format!("unknown command {cmd:?}\n{}", usage()))?;
        let first = line.split_whitespace().nth(1);
        if cmd == "fault" && matches!(first, Some("side_down" | "side_up")) {
            fields = SIDE_FAULT;
        }
        let mut m = Map::new();
        m.insert("cmd".into(), Value::String(cmd.into()));
        for w in words {
            let named = w
                .split_once('=')
                .and_then(|(k, v)| fields.iter().find(|(f, _)| *f == k).map(|f| (*f, v)));
            let ((field, kind), word) = match named {
                Some(f) => f,
                None => {
                    // the next field not given yet
                    let f = fields
                        .iter()
                        .find(|(f, _)| !m.contains_key(*f))
                        .ok_or_else(|| format!("{cmd}: too many values at {w:?}\n{}", usage()))?;
                    (*f, w)
                }
            };
            m.insert(field.into(), value(field, kind, word)?);
        }
        Value::Object(m)
    };
    let cmd = parse_command(&v.to_string())?;
    Ok((v, cmd))
}

/// How long to wait for an answer: sleep and wait_for take as long as they say (with the
/// simulator's own defaults), delays up to their `ms`.
fn answer_timeout(cmd: &Command) -> Duration {
    let ms = match cmd {
        Command::Sleep { ms } | Command::Fault { ms, .. } => *ms,
        Command::WaitFor { timeout_ms, .. } => *timeout_ms,
        _ => 0,
    };
    Duration::from_millis(ms) + Duration::from_secs(10)
}

/// A connection to the control port.
pub struct Ctl {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Ctl {
    pub async fn connect(addr: &str) -> Result<Ctl, String> {
        let s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| format!("no answer from the control port {addr} within 5 s"))?
            .map_err(|e| {
                format!("cannot reach the simulator's control port {addr}: {e} (is `ctigate sim` or `ctigate demo` running? the port is its --control / --sim-control)")
            })?;
        let (r, w) = s.into_split();
        Ok(Ctl {
            r: BufReader::new(r),
            w,
        })
    }

    /// Send one command (as [`checked`] gives it) and read its answer line.
    async fn send(&mut self, (cmd, typed): &(Value, Command)) -> Result<Value, String> {
        let line = format!("{cmd}\n");
        self.w
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("control port: {e}"))?;
        let mut answer = String::new();
        let n = tokio::time::timeout(answer_timeout(typed), self.r.read_line(&mut answer))
            .await
            .map_err(|_| "the simulator did not answer in time".to_string())?
            .map_err(|e| format!("control port: {e}"))?;
        if n == 0 {
            return Err("the simulator closed the control connection".into());
        }
        serde_json::from_str(&answer).map_err(|e| format!("not a JSON answer ({e}): {answer}"))
    }
}

/// `ctigate sim ctl`: one command from `words` (exit 0 when the answer is ok, 1 when not),
/// or, with no words, an interactive session over stdin.
pub async fn run(control: &str, words: &[String]) -> Result<i32, String> {
    if !words.is_empty() {
        let cmd = checked(&words.join(" "))?;
        let mut c = Ctl::connect(control).await?;
        let a = c.send(&cmd).await?;
        println!("{a}");
        return Ok(if a["ok"] == true { 0 } else { 1 });
    }
    let mut c = Ctl::connect(control).await?;
    eprintln!("connected to the simulator's control port {control}; `help` lists the commands, Ctrl-D ends");
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut failed = false;
    loop {
        let mut line = String::new();
        if stdin
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?
            == 0
        {
            break;
        }
        match line.trim() {
            "" => continue,
            "help" | "?" => {
                eprint!("{}", usage());
                continue;
            }
            "quit" | "exit" => break,
            _ => {}
        }
        match checked(&line) {
            Ok(cmd) => {
                let a = c.send(&cmd).await?;
                failed |= a["ok"] != true;
                println!("{a}");
            }
            Err(e) => {
                failed = true;
                eprintln!("{e}");
            }
        }
    }
    Ok(i32::from(failed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_words_become_commands() {
        assert_eq!(
            command_line("inbound 0891234567 8000 case=42").unwrap(),
            json!({"cmd":"inbound","ani":"0891234567","dnis":"8000","user_data":"case=42"})
        );
        assert_eq!(
            command_line("inbound dnis=8000 ani=0891234567 correlator_data=ivr7").unwrap(),
            json!({"cmd":"inbound","ani":"0891234567","dnis":"8000","correlator_data":"ivr7"})
        );
        assert_eq!(
            command_line("busy 202 on").unwrap(),
            json!({"cmd":"busy","device":"202","on":true})
        );
        assert_eq!(
            command_line("fault delay ms=300").unwrap(),
            json!({"cmd":"fault","fault":"delay","ms":300})
        );
        assert_eq!(
            command_line("load 2.5 8000 ring_ms=100-200 login_agents=yes").unwrap(),
            json!({"cmd":"load","calls_per_s":2.5,"dnis":"8000","ring_ms":[100,200],"login_agents":true})
        );
        assert_eq!(
            command_line("fault side_down 1").unwrap(),
            json!({"cmd":"fault","fault":"side_down","side":1})
        );
        assert_eq!(
            command_line("fault side_up side=0").unwrap(),
            json!({"cmd":"fault","fault":"side_up","side":0})
        );
        assert_eq!(
            command_line("fault delay 300 side=0").unwrap_err(),
            "bad command: \"side\" is for the faults side_down and side_up, not \"delay\""
        );
        assert_eq!(command_line("status").unwrap(), json!({"cmd":"status"}));
        assert_eq!(
            command_line(r#"{"cmd":"answer","device":"201"}"#).unwrap(),
            json!({"cmd":"answer","device":"201"})
        );
    }

    #[test]
    fn mistakes_are_named_before_sending() {
        assert!(command_line("ring 201")
            .unwrap_err()
            .contains("unknown command"));
        assert!(command_line("busy 202 maybe")
            .unwrap_err()
            .contains("`on` must be on or off"));
        assert!(command_line("answer 201 0003 extra")
            .unwrap_err()
            .contains("too many values"));
        assert!(command_line("sleep ms=soon")
            .unwrap_err()
            .contains("whole number"));
        // the simulator's own parser: a required field is missing
        assert!(command_line("dial 201").unwrap_err().contains("to"));
        assert!(command_line("{nope").unwrap_err().contains("bad JSON"));
    }
}
