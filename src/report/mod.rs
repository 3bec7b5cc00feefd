//! User-facing output of a run: a progress line per host, a line per step, warnings, and the
//! recap, as human text or as JSON lines. Diagnostics go through `tracing` instead; this module
//! owns only what the operator reads, and passes all of it through the [`Redactor`].

pub mod redact;
pub mod secret_lines;

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

pub use redact::Redactor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Human,
    Json,
}

/// The outcome of one step (one primitive call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Changed,
    Failed,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// Per-host counters for the recap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    pub ok: u64,
    pub changed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub unreachable: u64,
    pub round_trips: u64,
}

/// One step as the report shows it.
#[derive(Clone, Debug)]
pub struct Step<'a> {
    pub host: &'a str,
    pub name: &'a str,
    pub status: Status,
    pub diff: Option<&'a str>,
    pub message: Option<&'a str>,
}

#[derive(Clone)]
pub struct Reporter {
    inner: Arc<Inner>,
}

struct Inner {
    format: OutputFormat,
    show_diff: bool,
    verbosity: u8,
    color: bool,
    redactor: Arc<Redactor>,
    progress: Option<MultiProgress>,
    /// Lines go to stderr instead of stdout.
    to_stderr: bool,
    bars: Mutex<IndexMap<String, ProgressBar>>,
    stats: Mutex<IndexMap<String, HostStats>>,
    started: Instant,
}

impl Reporter {
    pub fn new(
        format: OutputFormat,
        show_diff: bool,
        verbosity: u8,
        redactor: Arc<Redactor>,
    ) -> Reporter {
        let terminal = std::io::stdout().is_terminal();
        let progress = (terminal && format == OutputFormat::Human)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Reporter {
            inner: Arc::new(Inner {
                format,
                show_diff,
                verbosity,
                color: terminal && std::env::var_os("NO_COLOR").is_none(),
                redactor,
                progress,
                to_stderr: false,
                bars: Mutex::new(IndexMap::new()),
                stats: Mutex::new(IndexMap::new()),
                started: Instant::now(),
            }),
        }
    }

    /// Creates a reporter that writes to stderr without progress lines, for the REPL and
    /// `masrun eval`, whose stdout carries only the results of entries.
    pub fn on_stderr(
        format: OutputFormat,
        show_diff: bool,
        verbosity: u8,
        redactor: Arc<Redactor>,
    ) -> Reporter {
        let terminal = std::io::stderr().is_terminal();
        Reporter {
            inner: Arc::new(Inner {
                format,
                show_diff,
                verbosity,
                color: terminal && std::env::var_os("NO_COLOR").is_none(),
                redactor,
                progress: None,
                to_stderr: true,
                bars: Mutex::new(IndexMap::new()),
                stats: Mutex::new(IndexMap::new()),
                started: Instant::now(),
            }),
        }
    }

    /// Registers a host so the recap lists it even if it never runs a step.
    pub fn host_started(&self, host: &str) {
        self.inner
            .stats
            .lock()
            .unwrap()
            .entry(host.to_string())
            .or_default();
        if let Some(progress) = &self.inner.progress {
            let bar = progress.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(host.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            self.inner
                .bars
                .lock()
                .unwrap()
                .insert(host.to_string(), bar);
        }
    }

    /// Shows what a host is doing now, on its progress line (terminal only).
    pub fn host_activity(&self, host: &str, activity: &str) {
        if let Some(bar) = self.inner.bars.lock().unwrap().get(host) {
            bar.set_message(self.inner.redactor.redact(activity));
        }
    }

    pub fn host_finished(&self, host: &str) {
        if let Some(bar) = self.inner.bars.lock().unwrap().shift_remove(host) {
            bar.finish_and_clear();
        }
    }

    pub fn step(&self, step: &Step<'_>) {
        {
            let mut stats = self.inner.stats.lock().unwrap();
            let counters = stats.entry(step.host.to_string()).or_default();
            match step.status {
                Status::Ok => counters.ok += 1,
                Status::Changed => counters.changed += 1,
                Status::Failed => counters.failed += 1,
                Status::Skipped => counters.skipped += 1,
            }
        }
        let diff = step
            .diff
            .filter(|_| self.inner.show_diff)
            .map(|diff| self.inner.redactor.redact_diff(diff));
        let diff = diff.as_deref();

        match self.inner.format {
            OutputFormat::Json => self.print_json(&json!({
                "host": step.host,
                "step": step.name,
                "status": step.status.as_str(),
                "diff": diff,
                "message": step.message,
            })),
            OutputFormat::Human => {
                if step.status == Status::Ok && self.inner.verbosity == 0 && diff.is_none() {
                    self.host_activity(step.host, step.name);
                    return;
                }
                let status = self.paint(step.status.as_str(), status_color(step.status));
                let mut text = format!("{status:<8} {} | {}", step.host, step.name);
                if let Some(message) = step.message {
                    text.push_str(&format!(": {message}"));
                }
                if let Some(diff) = diff {
                    text.push('\n');
                    text.push_str(&self.paint_diff(diff));
                }
                self.print_line(&text);
            }
        }
    }

    pub fn warning(&self, host: Option<&str>, message: &str) {
        match self.inner.format {
            OutputFormat::Json => self.print_json(&json!({"host": host, "warning": message})),
            OutputFormat::Human => {
                let label = self.paint("warning:", "33");
                match host {
                    Some(host) => self.print_line(&format!("{label} {host} | {message}")),
                    None => self.print_line(&format!("{label} {message}")),
                }
            }
        }
    }

    /// Prints one validation error; the run then stops before any change.
    pub fn validation_error(&self, host: &str, message: &str) {
        match self.inner.format {
            OutputFormat::Json => {
                self.print_json(&json!({"host": host, "validation_error": message}))
            }
            OutputFormat::Human => {
                let label = self.paint("error:", "31;1");
                self.print_line(&format!("{label} {host} | {message}"));
            }
        }
    }

    /// Prints a message from a task file (`print` in Rhai, or a primitive's notice).
    pub fn message(&self, host: &str, message: &str) {
        match self.inner.format {
            OutputFormat::Json => self.print_json(&json!({"host": host, "message": message})),
            OutputFormat::Human => self.print_line(&format!("{host} | {message}")),
        }
    }

    /// Records a failure that ended a host's run outside any step (a script error).
    pub fn host_failed(&self, host: &str, error: &str) {
        self.inner
            .stats
            .lock()
            .unwrap()
            .entry(host.to_string())
            .or_default()
            .failed += 1;
        match self.inner.format {
            OutputFormat::Json => {
                self.print_json(&json!({"host": host, "status": "failed", "error": error}))
            }
            OutputFormat::Human => {
                let label = self.paint("failed", "31");
                self.print_line(&format!("{label:<8} {host} | {error}"));
            }
        }
    }

    pub fn host_unreachable(&self, host: &str, error: &str) {
        self.inner
            .stats
            .lock()
            .unwrap()
            .entry(host.to_string())
            .or_default()
            .unreachable += 1;
        match self.inner.format {
            OutputFormat::Json => {
                self.print_json(&json!({"host": host, "status": "unreachable", "error": error}))
            }
            OutputFormat::Human => {
                let label = self.paint("unreachable", "31");
                self.print_line(&format!("{label} {host} | {error}"));
            }
        }
    }

    /// Adds a secret that a primitive received at run time (a password option), so every
    /// later line masks it.
    pub fn add_secret(&self, secret: &str) {
        self.inner.redactor.add(secret);
    }

    pub fn set_round_trips(&self, host: &str, round_trips: u64) {
        self.inner
            .stats
            .lock()
            .unwrap()
            .entry(host.to_string())
            .or_default()
            .round_trips = round_trips;
    }

    pub fn stats(&self) -> IndexMap<String, HostStats> {
        self.inner.stats.lock().unwrap().clone()
    }

    /// Prints the per-host recap with the elapsed time, as Ansible's "PLAY RECAP" does.
    pub fn recap(&self) {
        let stats = self.stats();
        let elapsed = self.inner.started.elapsed();
        match self.inner.format {
            OutputFormat::Json => {
                let hosts: serde_json::Map<String, serde_json::Value> = stats
                    .iter()
                    .map(|(host, s)| {
                        (
                            host.clone(),
                            json!({
                                "ok": s.ok,
                                "changed": s.changed,
                                "failed": s.failed,
                                "skipped": s.skipped,
                                "unreachable": s.unreachable,
                                "round_trips": s.round_trips,
                            }),
                        )
                    })
                    .collect();
                self.print_json(&json!({
                    "recap": hosts,
                    "elapsed_seconds": elapsed.as_secs_f64(),
                }));
            }
            OutputFormat::Human => {
                let width = stats.keys().map(|h| h.len()).max().unwrap_or(0);
                let mut text = format!("\nRECAP ({:.2}s)", elapsed.as_secs_f64());
                for (host, s) in &stats {
                    text.push_str(&format!(
                        "\n{host:<width$}  ok={} changed={} failed={} skipped={} unreachable={}",
                        s.ok, s.changed, s.failed, s.skipped, s.unreachable
                    ));
                    if self.inner.verbosity >= 2 {
                        text.push_str(&format!(" round_trips={}", s.round_trips));
                    }
                }
                self.print_line(&text);
            }
        }
    }

    /// Prints an error that stops the whole run before any host starts (bad input).
    pub fn fatal(&self, message: &str) {
        let message = self.inner.redactor.redact(message);
        match self.inner.format {
            OutputFormat::Json => self.print_json(&json!({"error": message})),
            OutputFormat::Human => {
                let label = self.paint("error:", "31;1");
                eprintln!("{label} {message}");
            }
        }
    }

    fn print_json(&self, value: &serde_json::Value) {
        // Masking the values first keeps a masked number valid JSON. Masking the text after
        // that catches a secret that spans several values.
        let value = self.inner.redactor.redact_json(value);
        let line = self.inner.redactor.redact(&value.to_string());
        self.write_line(&line);
    }

    fn write_line(&self, line: &str) {
        if self.inner.to_stderr {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        } else {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    }

    fn print_line(&self, text: &str) {
        let text = self.inner.redactor.redact(text);
        match &self.inner.progress {
            Some(progress) => {
                let _ = progress.println(text);
            }
            None => self.write_line(&text),
        }
    }

    fn paint(&self, text: &str, code: &str) -> String {
        if self.inner.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn paint_diff(&self, diff: &str) -> String {
        diff.lines()
            .map(|line| {
                let code = match line.as_bytes().first() {
                    Some(b'+') if !line.starts_with("+++") => Some("32"),
                    Some(b'-') if !line.starts_with("---") => Some("31"),
                    Some(b'@') => Some("36"),
                    _ => None,
                };
                match code {
                    Some(code) => format!("    {}", self.paint(line, code)),
                    None => format!("    {line}"),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn status_color(status: Status) -> &'static str {
    match status {
        Status::Ok => "32",
        Status::Changed => "33",
        Status::Failed => "31",
        Status::Skipped => "36",
    }
}
