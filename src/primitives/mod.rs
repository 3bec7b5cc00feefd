//! Host primitives: one file per family. Each primitive queries the host's current state,
//! computes the difference, and only then acts, or in check mode only reports what it would
//! change. Each call is one step in the report and returns an [`Outcome`].

pub mod command;
pub mod container;
pub mod file;
pub mod http;
pub mod postgres;
pub mod systemd;
pub mod template;
pub mod user;
pub mod yaml_edit;

use serde::Deserialize;
use serde_json::{Map, Value};
use similar::ChangeTag;

use crate::report::secret_lines::mask_secret_values;
use crate::report::{Status, Step};
use crate::run::host::HostContext;
use crate::transport::{ExecRequest, TransportError};

/// The result of one primitive call.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub changed: bool,
    pub skipped: bool,
    /// A unified diff of the change, when the change has a textual form.
    pub diff: Option<String>,
    pub message: Option<String>,
    /// Primitive-specific results (a command's output, a file's stat).
    pub data: Map<String, Value>,
}

impl Outcome {
    pub fn unchanged() -> Outcome {
        Outcome::default()
    }

    pub fn changed() -> Outcome {
        Outcome {
            changed: true,
            ..Outcome::default()
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Outcome {
        self.message = Some(message.into());
        self
    }

    pub fn with_data(mut self, key: &str, value: impl Into<Value>) -> Outcome {
        self.data.insert(key.to_string(), value.into());
        self
    }

    pub fn status(&self) -> Status {
        if self.skipped {
            Status::Skipped
        } else if self.changed {
            Status::Changed
        } else {
            Status::Ok
        }
    }

    /// The map a task file receives: `changed`, `skipped`, `diff`, `msg` and the data fields.
    pub fn into_value(self) -> Value {
        let mut map = Map::new();
        map.insert("changed".into(), Value::Bool(self.changed));
        map.insert("skipped".into(), Value::Bool(self.skipped));
        map.insert("failed".into(), Value::Bool(false));
        if let Some(diff) = self.diff {
            map.insert("diff".into(), Value::String(diff));
        }
        if let Some(message) = self.message {
            map.insert("msg".into(), Value::String(message));
        }
        map.extend(self.data);
        Value::Object(map)
    }
}

/// A primitive that could not do its work. The step is reported as failed.
#[derive(Debug, thiserror::Error)]
pub enum PrimitiveError {
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error("{0}")]
    Failed(String),
}

impl PrimitiveError {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, PrimitiveError::Transport(error) if error.is_unreachable())
    }

    /// Names the step that was running in an unreachable error, which the run reports once
    /// for the host instead of as a failed step.
    fn during_step(self, step: &str) -> PrimitiveError {
        match self {
            PrimitiveError::Transport(TransportError::Unreachable(message)) => {
                PrimitiveError::Transport(TransportError::Unreachable(format!(
                    "{message} (during step {step})"
                )))
            }
            other => other,
        }
    }
}

pub type Result<T> = std::result::Result<T, PrimitiveError>;

/// Runs one primitive as a step: shows it as the host's current activity, reports its outcome
/// (or failure), and counts changes.
pub fn run_step(
    ctx: &HostContext,
    name: &str,
    action: impl FnOnce() -> Result<Outcome>,
) -> Result<Outcome> {
    ctx.reporter.host_activity(&ctx.name, name);
    if ctx.interrupt().is_raised() {
        return Err(PrimitiveError::Failed(format!(
            "interrupted (Ctrl-C) before step {name}"
        )));
    }
    let round_trips_before = ctx.transport.round_trips();
    let result = action();
    tracing::debug!(
        host = %ctx.name,
        step = name,
        round_trips = ctx.transport.round_trips() - round_trips_before,
        "step finished"
    );
    match result {
        Ok(outcome) => {
            if outcome.changed {
                ctx.record_change();
            }
            ctx.reporter.step(&Step {
                host: &ctx.name,
                name,
                status: outcome.status(),
                diff: outcome.diff.as_deref(),
                message: outcome.message.as_deref(),
            });
            Ok(outcome)
        }
        Err(error) if error.is_unreachable() => Err(error.during_step(name)),
        Err(error) => {
            let message = error.to_string();
            ctx.reporter.step(&Step {
                host: &ctx.name,
                name,
                status: Status::Failed,
                diff: None,
                message: Some(&message),
            });
            Err(error)
        }
    }
}

/// A file mode as task files write it: `"0750"`, `"750"` (octal strings) or an integer
/// (`0o750` in Rhai, or a YAML 1.1 octal such as `0750`, which reads as 488).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ModeSpec {
    Int(i64),
    Text(String),
}

impl ModeSpec {
    pub fn to_bits(&self) -> Result<u32> {
        let bits = match self {
            ModeSpec::Int(value) => u32::try_from(*value).ok(),
            ModeSpec::Text(text) => {
                let digits = text.trim().trim_start_matches("0o");
                u32::from_str_radix(digits, 8).ok()
            }
        };
        match bits {
            Some(bits) if bits <= 0o7777 => Ok(bits),
            _ => Err(PrimitiveError::InvalidOption(format!(
                "mode {self:?} is not an octal file mode such as \"0750\""
            ))),
        }
    }
}

/// A number of seconds as task files write it: an integer (`30`) or a decimal (`0.5`). Rhai
/// keeps the two apart, so an option typed as `f64` alone would reject `30`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(untagged)]
pub enum Seconds {
    Whole(i64),
    Decimal(f64),
}

impl Seconds {
    pub fn to_duration(self, option: &str) -> Result<std::time::Duration> {
        let value = match self {
            Seconds::Whole(value) => value as f64,
            Seconds::Decimal(value) => value,
        };
        std::time::Duration::try_from_secs_f64(value).map_err(|_| {
            PrimitiveError::InvalidOption(format!(
                "{option} must be a number of seconds of 0 or more (got {value})"
            ))
        })
    }
}

/// A user or group as task files write it: a name or a numeric id.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum IdSpec {
    Id(i64),
    Name(String),
}

/// Resolves a user (`database` = "passwd") or group ("group") to its numeric id on the host,
/// with `getent`. Returns `None` when the name does not exist there yet, which is fine in
/// check mode when an earlier step would have created it.
pub fn resolve_id(ctx: &HostContext, database: &'static str, spec: &IdSpec) -> Result<Option<u32>> {
    let name = match spec {
        IdSpec::Id(id) => {
            return u32::try_from(*id)
                .map(Some)
                .map_err(|_| PrimitiveError::InvalidOption(format!("invalid id {id}")));
        }
        IdSpec::Name(name) => name,
    };
    if let Ok(id) = name.parse::<u32>() {
        return Ok(Some(id));
    }
    if let Some(id) = ctx.cached_id(database, name) {
        return Ok(Some(id));
    }
    match ctx.cached_lookup(database, name) {
        Some(None) => return Ok(None),
        Some(Some(entry)) => {
            if let Some(id) = entry_id(&entry) {
                ctx.cache_id(database, name, id);
                return Ok(Some(id));
            }
        }
        None => {}
    }
    let output = ctx.exec_lookup(&ExecRequest {
        argv: vec!["getent".into(), database.into(), name.clone()],
        ..ExecRequest::default()
    })?;
    match output.status {
        Some(0) => {
            let line = output.stdout_text();
            let id = line
                .split(':')
                .nth(2)
                .and_then(|field| field.trim().parse::<u32>().ok())
                .ok_or_else(|| {
                    PrimitiveError::Failed(format!("getent {database} {name}: unexpected output"))
                })?;
            ctx.cache_id(database, name, id);
            Ok(Some(id))
        }
        // getent exits 2 when the key is not found.
        Some(2) => Ok(None),
        _ => Err(PrimitiveError::Failed(format!(
            "getent {database} {name} failed: {}",
            output.stderr_text().trim()
        ))),
    }
}

/// Runs `getent DATABASE KEY` for each pair of arguments, and prints each exit status on a
/// line of its own after that lookup's output.
const GETENT_EACH: &str =
    r#"while [ "$#" -ge 2 ]; do getent "$1" "$2"; echo "status $?"; shift 2; done"#;

/// Returns the id (third field) of a `getent passwd` or `getent group` entry.
fn entry_id(entry: &str) -> Option<u32> {
    entry
        .split(':')
        .nth(2)
        .and_then(|id| id.trim().parse().ok())
}

/// Looks up the names in `lookups` that are not cached yet with one command on the host and
/// caches the ids found, so a step that names an owner and a group waits for one command, not
/// two. A name this does not resolve is left to [`resolve_id`], which reports why.
pub fn prefetch_ids(ctx: &HostContext, lookups: &[(&'static str, &IdSpec)]) -> Result<()> {
    let pending: Vec<(&'static str, &str)> = lookups
        .iter()
        .filter_map(|(database, spec)| match spec {
            IdSpec::Name(name)
                if name.parse::<u32>().is_err()
                    && ctx.cached_id(database, name).is_none()
                    && ctx.cached_lookup(database, name).is_none() =>
            {
                Some((*database, name.as_str()))
            }
            _ => None,
        })
        .collect();
    if pending.len() < 2 {
        return Ok(());
    }
    lookup_entries(ctx, &pending)
}

/// Runs `getent` for every `(database, key)` pair in one command on the host and keeps each
/// result (the entry, or that the key was not found) for the steps that follow. A key whose
/// lookup failed otherwise is not kept, so the step that needs it runs `getent` itself and
/// reports the error.
pub fn lookup_entries(ctx: &HostContext, pending: &[(&'static str, &str)]) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut argv: Vec<String> = vec!["sh".into(), "-c".into(), GETENT_EACH.into(), "sh".into()];
    for (database, name) in pending {
        argv.push(database.to_string());
        argv.push(name.to_string());
    }
    let output = ctx.exec_lookup(&ExecRequest {
        argv,
        ..ExecRequest::default()
    })?;

    // Entries contain ':' and status lines do not, so the two cannot be confused.
    let mut entries: Vec<String> = Vec::new();
    let mut lookups = pending.iter();
    for line in output.stdout_text().lines() {
        let status = line
            .strip_prefix("status ")
            .filter(|_| !line.contains(':'))
            .and_then(|code| code.parse::<i32>().ok());
        let Some(status) = status else {
            entries.push(line.to_string());
            continue;
        };
        let Some((database, name)) = lookups.next() else {
            break;
        };
        match (status, entries.as_slice()) {
            (0, [entry]) => {
                if let Some(id) = entry_id(entry) {
                    ctx.cache_id(database, name, id);
                }
                ctx.keep_lookup(database, name, Some(entry.clone()));
            }
            // getent exits 2 when the key is not found.
            (2, []) => ctx.keep_lookup(database, name, None),
            _ => {}
        }
        entries.clear();
    }
    Ok(())
}

/// Formats permission bits the way operators write them.
pub fn format_mode(bits: u32) -> String {
    format!("{bits:04o}")
}

/// A unified diff between two texts, labelled with the path. Binary content is summarised.
///
/// Values at secret keys are masked on both sides by position
/// ([`mask_secret_values`]), since the old side shows what is on the host, which may be a
/// secret that this run's variables no longer contain. A changed secret therefore shows as a
/// changed line with both values masked.
pub fn text_diff(path: &str, old: Option<&[u8]>, new: &[u8]) -> String {
    let old_text = old.map(String::from_utf8_lossy).unwrap_or_default();
    let new_text = String::from_utf8_lossy(new);
    let is_binary =
        old.is_some_and(|o| std::str::from_utf8(o).is_err()) || std::str::from_utf8(new).is_err();
    if is_binary {
        return format!("binary file {path} changed");
    }
    let old_label = if old.is_some() {
        format!("a{path}")
    } else {
        "/dev/null".to_string()
    };

    let diff = similar::TextDiff::from_lines(old_text.as_ref(), new_text.as_ref());
    let old_lines = mask_secret_values(diff.old_slices());
    let new_lines = mask_secret_values(diff.new_slices());
    let mut text = String::new();
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        if text.is_empty() {
            text.push_str(&format!("--- {old_label}\n+++ b{path}\n"));
        }
        text.push_str(&format!("{}\n", hunk.header()));
        for change in hunk.iter_changes() {
            let line = match (change.tag(), change.old_index(), change.new_index()) {
                (ChangeTag::Delete, Some(index), _) => &old_lines[index],
                (_, _, Some(index)) => &new_lines[index],
                _ => continue,
            };
            text.push_str(&format!("{}{line}", change.tag()));
            if !line.ends_with('\n') {
                text.push_str("\n\\ No newline at end of file\n");
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_diff_masks_secret_values_on_both_sides() {
        let old = "database:\n  host: db\n  password: old-password\n  port: 5432\n";
        let new = "database:\n  host: db\n  password: new-password\n  port: 5432\n";
        let diff = text_diff("/c.yaml", Some(old.as_bytes()), new.as_bytes());
        assert_eq!(
            diff,
            "--- a/c.yaml\n+++ b/c.yaml\n@@ -1,4 +1,4 @@\n database:\n   host: db\n-  password: ********\n+  password: ********\n   port: 5432\n"
        );
    }

    #[test]
    fn text_diff_of_new_file_without_final_newline() {
        let diff = text_diff("/env", None, b"TOKEN=abc\nA=1");
        assert_eq!(
            diff,
            "--- /dev/null\n+++ b/env\n@@ -0,0 +1,2 @@\n+TOKEN=********\n+A=1\n\\ No newline at end of file\n"
        );
    }
}
