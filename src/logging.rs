//! Log output: `tracing` to stderr, as text (coloured only on a terminal, never with
//! `NO_COLOR` set) or as one JSON object per line for collectors (`--log-format json`).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, spans).
    Json,
}

/// Colour codes are written only to a terminal, and never when `NO_COLOR` is set to a
/// non-empty value (no-color.org).
pub fn use_colour(is_terminal: bool, no_color: Option<OsString>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

/// Install the global subscriber. A bad filter falls back to `info`, saying so.
pub fn init(filter: &str, format: LogFormat) {
    let _ = init_with_audit(filter, format, None);
}

/// Changes the filter of the installed subscriber's stderr output while it runs (a
/// configuration reload's `log.level`).
#[derive(Clone)]
pub struct LogFilter {
    handle: tracing_subscriber::reload::Handle<EnvFilter, Registry>,
    now: std::sync::Arc<Mutex<String>>,
    audit: Option<AuditFile>,
}

impl LogFilter {
    /// The filter in effect.
    pub fn current(&self) -> String {
        self.now.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Filter with `filter` from now on; an error (nothing changed) when it does not parse.
    pub fn set(&self, filter: &str) -> Result<(), String> {
        let f = EnvFilter::try_new(filter).map_err(|e| format!("`{filter}`: {e}"))?;
        self.handle
            .reload(f)
            .map_err(|e| format!("the log filter cannot be changed: {e}"))?;
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = filter.to_string();
        Ok(())
    }

    /// The audit file the records go to (`[audit] file`), when there is one.
    pub fn audit_file(&self) -> Option<AuditFile> {
        self.audit.clone()
    }
}

/// The `[audit] file`: appended to, one JSON line per record, and opened again by its path
/// on [`AuditFile::reopen`] (SIGHUP), so that logrotate can move it aside and the records
/// go on in a new file at the same path.
#[derive(Clone)]
pub struct AuditFile(Arc<AuditInner>);

struct AuditInner {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

fn open_audit(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("audit.file: cannot open {}: {e}", path.display()))
}

impl AuditFile {
    /// Open (create, append) the file at `path`.
    pub fn open(path: &Path) -> Result<AuditFile, String> {
        let file = open_audit(path)?;
        Ok(AuditFile(Arc::new(AuditInner {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })))
    }

    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// Open the path again and append there from now on (the records after a rotation go
    /// to the new file, none is lost or split: a record is one write under the lock). On an
    /// error the file open before stays in use.
    pub fn reopen(&self) -> Result<(), String> {
        let file = open_audit(&self.0.path)?;
        *self.0.file.lock().unwrap_or_else(|p| p.into_inner()) = file;
        Ok(())
    }
}

/// A record is written under the file's lock (`tracing_subscriber`'s writer for a `Mutex`).
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for AuditFile {
    type Writer = tracing_subscriber::fmt::writer::MutexGuardWriter<'a, std::fs::File>;

    fn make_writer(&'a self) -> Self::Writer {
        self.0.file.make_writer()
    }
}

/// [`init`], and with `audit` the records of the target `audit` (`[audit] file`) appended
/// to that file as one JSON object per line, whatever the filter says (it applies to
/// stderr only). An error when the file cannot be opened (nothing is installed then).
/// The [`LogFilter`] changes the stderr filter later.
pub fn init_with_audit(
    filter: &str,
    format: LogFormat,
    audit: Option<&Path>,
) -> Result<LogFilter, String> {
    let audit = audit.map(AuditFile::open).transpose()?;
    let audit_layer: Option<Boxed> = audit.clone().map(|a| Box::new(audit_layer(a)) as Boxed);
    let (f, now) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, filter),
        Err(_) => {
            eprintln!("ctigate: bad --log filter {filter:?}, using `info`");
            (EnvFilter::new("info"), "info")
        }
    };
    let (f, handle) = tracing_subscriber::reload::Layer::new(f);
    let b = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let stderr: Boxed = match format {
        LogFormat::Text => Box::new(
            b.with_ansi(use_colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR"),
            ))
            .with_filter(f),
        ),
        LogFormat::Json => Box::new(b.json().with_ansi(false).with_filter(f)),
    };
    let mut layers: Vec<Boxed> = vec![stderr];
    layers.extend(audit_layer);
    let _ = tracing_subscriber::registry().with(layers).try_init();
    Ok(LogFilter {
        handle,
        now: std::sync::Arc::new(Mutex::new(now.to_string())),
        audit,
    })
}

/// A layer writing the records of the target `audit` as JSON lines to `w`.
pub fn audit_layer<W>(w: W) -> impl Layer<Registry> + Send + Sync
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_ansi(false)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(w)
        .with_filter(Targets::new().with_target("audit", tracing::Level::INFO))
}

/// Log lines about one kind of event (a refusal, a full queue) at most once a second; the next one says how many
/// were left out (a flood of refused connections is one line a second, not one each).
pub struct LogLimit {
    /// Milliseconds since `start` of the last line written.
    last: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
    start: std::time::Instant,
}

impl Default for LogLimit {
    fn default() -> Self {
        LogLimit::new()
    }
}

impl LogLimit {
    pub const fn new_at(start: std::time::Instant) -> LogLimit {
        LogLimit {
            last: std::sync::atomic::AtomicU64::new(u64::MAX),
            suppressed: std::sync::atomic::AtomicU64::new(0),
            start,
        }
    }

    pub fn new() -> LogLimit {
        LogLimit::new_at(std::time::Instant::now())
    }

    /// `Some(n)`: write the line now, saying that `n` like it were left out since the last;
    /// `None`: leave this one out (counted).
    pub fn allow(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.last.load(std::sync::atomic::Ordering::Acquire);
        if last != u64::MAX && now.saturating_sub(last) < 1000 {
            self.suppressed
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            return None;
        }
        if self
            .last
            .compare_exchange(
                last,
                now,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
            )
            .is_err()
        {
            self.suppressed
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            return None;
        }
        Some(self.suppressed.swap(0, std::sync::atomic::Ordering::AcqRel))
    }

    /// When [`LogLimit::allow`] lets the next line through (`None`: now, none was written).
    pub fn next_at(&self) -> Option<std::time::Instant> {
        let last = self.last.load(std::sync::atomic::Ordering::Acquire);
        (last != u64::MAX).then(|| self.start + std::time::Duration::from_millis(last + 1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(!use_colour(false, None));
        assert!(!use_colour(true, Some("1".into())));
        assert!(
            use_colour(true, Some("".into())),
            "an empty NO_COLOR is unset"
        );
    }
}

#[cfg(test)]
mod log_limit_tests {
    use super::LogLimit;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    #[test]
    fn log_limit_one_line_a_second() {
        let l = LogLimit::new_at(std::time::Instant::now());
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        l.last.store(0, Ordering::Release); // as if a second had passed
        std::thread::sleep(Duration::from_millis(1001));
        assert_eq!(l.allow(), Some(2));
    }
}
