//! The `systemd` primitive family: unit files installed from templates, `daemon-reload` once
//! per batch of unit changes, enable and disable, start, stop, restart and reload, state
//! queries, the journal, and waiting for a state.
//!
//! Everything goes through `systemctl` and `journalctl` run by [`Transport::exec`] as argument
//! vectors, so it works the same on the local connection and over SSH. A step that changes a
//! unit file marks the host's units as changed. The next step that talks to systemd runs
//! `daemon-reload` first, so a run reloads once per batch of unit changes.
//!
//! [`Transport::exec`]: crate::transport::Transport::exec

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::file::{AttrOptions, write_content};
use super::{IdSpec, ModeSpec, Outcome, PrimitiveError, Result, Seconds, template};
use crate::run::host::HostContext;
use crate::transport::{ExecOutput, ExecRequest};

/// How often a wait polls the unit's state.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Journal lines quoted in the message of a unit that failed.
const FAILURE_JOURNAL_LINES: usize = 20;

/// The properties of a unit that the steps read, from one `systemctl show`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitState {
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub unit_file_state: String,
    pub main_pid: u32,
    pub restarts: u64,
    pub result: String,
}

impl UnitState {
    fn is_loaded(&self) -> bool {
        self.load_state != "not-found"
    }

    pub fn is_active(&self) -> bool {
        matches!(self.active_state.as_str(), "active" | "reloading")
    }

    /// Failed, or waiting to be restarted after a failure (`Restart=` with `RestartSec=`).
    fn has_failed(&self) -> bool {
        self.active_state == "failed" || self.sub_state == "auto-restart"
    }

    pub fn is_enabled(&self) -> bool {
        matches!(self.unit_file_state.as_str(), "enabled" | "enabled-runtime")
    }

    pub fn to_value(&self) -> Value {
        json!({
            "load_state": self.load_state,
            "active_state": self.active_state,
            "sub_state": self.sub_state,
            "unit_file_state": self.unit_file_state,
            "main_pid": self.main_pid,
            "restarts": self.restarts,
            "result": self.result,
            "is_active": self.is_active(),
            "is_enabled": self.is_enabled(),
            "exists": self.is_loaded(),
        })
    }

    fn summary(&self) -> String {
        format!(
            "{} ({}), result {}",
            self.active_state, self.sub_state, self.result
        )
    }
}

/// Rejects names that `systemctl` would read as an option or a path.
fn check_unit_name(unit: &str) -> Result<()> {
    let valid = !unit.is_empty()
        && !unit.starts_with('-')
        && !unit.contains('/')
        && !unit.chars().any(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(PrimitiveError::InvalidOption(format!(
            "invalid unit name {unit:?}; expected a name such as matrix-authentication-service.service"
        )))
    }
}

fn exec(ctx: &HostContext, argv: &[&str]) -> Result<ExecOutput> {
    let request = ExecRequest {
        argv: argv.iter().map(|a| a.to_string()).collect(),
        ..ExecRequest::default()
    };
    Ok(ctx.block_on(ctx.transport.exec(&request))?)
}

/// Returns the command's error output, or its standard output when stderr is empty.
fn output_message(output: &ExecOutput) -> String {
    let stderr = output.stderr_text();
    if stderr.trim().is_empty() {
        output.stdout_text().trim().to_string()
    } else {
        stderr.trim().to_string()
    }
}

/// Runs `systemctl ARGS` and fails with its own message when it exits non-zero.
fn systemctl(ctx: &HostContext, args: &[&str]) -> Result<ExecOutput> {
    let mut argv = vec!["systemctl"];
    argv.extend_from_slice(args);
    let output = exec(ctx, &argv)?;
    if output.success() {
        Ok(output)
    } else {
        Err(PrimitiveError::Failed(format!(
            "systemctl {} failed on {}: {}",
            args.join(" "),
            ctx.name,
            output_message(&output)
        )))
    }
}

/// Reads the unit's state with one `systemctl show`. A unit that systemd does not know has
/// `load_state` "not-found".
pub fn query_state(ctx: &HostContext, unit: &str) -> Result<UnitState> {
    check_unit_name(unit)?;
    let output = systemctl(
        ctx,
        &[
            "show",
            "--property=LoadState,ActiveState,SubState,UnitFileState,MainPID,NRestarts,Result",
            "--",
            unit,
        ],
    )?;
    let mut state = UnitState::default();
    for line in output.stdout_text().lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.to_string();
        match key {
            "LoadState" => state.load_state = value,
            "ActiveState" => state.active_state = value,
            "SubState" => state.sub_state = value,
            "UnitFileState" => state.unit_file_state = value,
            "MainPID" => state.main_pid = value.parse().unwrap_or(0),
            "NRestarts" => state.restarts = value.parse().unwrap_or(0),
            "Result" => state.result = value,
            _ => {}
        }
    }
    Ok(state)
}

/// Returns the unit's last `lines` journal lines, oldest first.
pub fn journal(ctx: &HostContext, unit: &str, lines: usize) -> Result<Vec<String>> {
    check_unit_name(unit)?;
    let count = lines.to_string();
    let output = exec(
        ctx,
        &[
            "journalctl",
            "--no-pager",
            "--quiet",
            "--output=short-iso",
            "--lines",
            &count,
            "--unit",
            unit,
        ],
    )?;
    if !output.success() {
        return Err(PrimitiveError::Failed(format!(
            "journalctl --unit {unit} failed on {}: {}",
            ctx.name,
            output_message(&output)
        )));
    }
    Ok(output.stdout_text().lines().map(str::to_string).collect())
}

/// Builds the failure of a unit from what happened, its state and its last journal lines.
fn unit_failure(ctx: &HostContext, unit: &str, what: &str) -> PrimitiveError {
    // journald receives a service's output through a stream; --sync makes sure the lines the
    // unit wrote before it failed are readable before they are quoted.
    let _ = exec(ctx, &["journalctl", "--sync"]);
    let state = query_state(ctx, unit)
        .map(|state| state.summary())
        .unwrap_or_else(|error| format!("unknown ({error})"));
    let journal = match journal(ctx, unit, FAILURE_JOURNAL_LINES) {
        Ok(lines) if lines.is_empty() => "  (no journal lines)".to_string(),
        Ok(lines) => lines
            .iter()
            .map(|line| format!("  {line}"))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(error) => format!("  (cannot read the journal: {error})"),
    };
    PrimitiveError::Failed(format!(
        "{unit} {what} on {}; state: {state}; last journal lines (journalctl --unit {unit}):\n{journal}",
        ctx.name
    ))
}

/// Runs `daemon-reload` when a unit file changed since the last reload. Returns whether it
/// did (in check mode: whether it would have).
fn reload_units_if_changed(ctx: &HostContext) -> Result<bool> {
    if !ctx.take_units_changed() {
        return Ok(false);
    }
    if !ctx.check_mode()
        && let Err(error) = systemctl(ctx, &["daemon-reload"])
    {
        ctx.mark_units_changed();
        return Err(error);
    }
    Ok(true)
}

/// Builds an outcome whose message starts with "daemon-reload" when the step reloaded units.
fn outcome(changed: bool, reloaded: bool, message: &str) -> Outcome {
    let base = if changed || reloaded {
        Outcome::changed()
    } else {
        Outcome::unchanged()
    };
    let message = match (reloaded, message.is_empty()) {
        (true, true) => "daemon-reload".to_string(),
        (true, false) => format!("daemon-reload, {message}"),
        (false, _) => message.to_string(),
    };
    if message.is_empty() {
        base
    } else {
        base.with_message(message)
    }
}

/// Builds the error for a unit that systemd does not know, outside check mode.
fn not_found(ctx: &HostContext, unit: &str) -> PrimitiveError {
    PrimitiveError::Failed(format!(
        "unit {unit} not found on {}; install its unit file first (systemd::unit)",
        ctx.name
    ))
}

/// Watches a unit that was just started for `settle`, and fails if it fails or is restarted
/// by systemd in that time, since a service that crashes right after starting counts as
/// started for `systemctl start`.
fn settle(ctx: &HostContext, unit: &str, settle: Duration) -> Result<UnitState> {
    let first = query_state(ctx, unit)?;
    if first.has_failed() {
        return Err(unit_failure(ctx, unit, "failed right after it started"));
    }
    let deadline = Instant::now() + settle;
    let mut state = first.clone();
    while Instant::now() < deadline {
        std::thread::sleep(POLL_INTERVAL.min(deadline - Instant::now()));
        state = query_state(ctx, unit)?;
        if state.has_failed() || state.restarts > first.restarts {
            return Err(unit_failure(ctx, unit, "failed right after it started"));
        }
    }
    Ok(state)
}

fn default_settle() -> Seconds {
    Seconds::Whole(2)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitOptions {
    /// The unit file on the host, such as `/etc/systemd/system/matrix-authentication-service.service`.
    pub path: PathBuf,
    /// A template to render, relative to `stdlib/templates/`.
    #[serde(default)]
    pub src: Option<String>,
    /// The unit file's text, instead of a template.
    #[serde(default)]
    pub content: Option<String>,
    /// Extra variables for the template only.
    #[serde(default)]
    pub vars: Option<Value>,
    #[serde(default)]
    pub mode: Option<ModeSpec>,
    #[serde(default)]
    pub name: Option<String>,
}

impl UnitOptions {
    pub fn unit(&self) -> String {
        self.path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Installs a unit file, atomically and owned by root, from a template or a text. A change
/// marks the host's units as changed, so the next systemd step reloads them.
pub fn unit(ctx: &HostContext, options: &UnitOptions) -> Result<Outcome> {
    check_unit_name(&options.unit())?;
    let text = match (&options.src, &options.content) {
        (Some(src), None) => template::render(ctx, src, options.vars.as_ref())?,
        (None, Some(content)) => content.clone(),
        _ => {
            return Err(PrimitiveError::InvalidOption(
                "systemd::unit takes exactly one of src (a template) and content".into(),
            ));
        }
    };
    let attrs = AttrOptions {
        mode: Some(
            options
                .mode
                .clone()
                .unwrap_or(ModeSpec::Text("0644".into())),
        ),
        owner: Some(IdSpec::Id(0)),
        group: Some(IdSpec::Id(0)),
    };
    let outcome = write_content(ctx, &options.path, text.as_bytes(), &attrs)?;
    if outcome.changed {
        ctx.mark_units_changed();
    }
    Ok(outcome.with_data("unit", options.unit()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveUnitOptions {
    pub path: PathBuf,
    #[serde(default)]
    pub name: Option<String>,
}

impl RemoveUnitOptions {
    pub fn unit(&self) -> String {
        self.path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Stops and disables a unit, then removes its unit file. Nothing happens when the file is
/// already gone.
pub fn remove_unit(ctx: &HostContext, options: &RemoveUnitOptions) -> Result<Outcome> {
    let unit = options.unit();
    check_unit_name(&unit)?;
    let exists = ctx
        .block_on(ctx.transport.stat(std::slice::from_ref(&options.path)))?
        .remove(0)
        .is_some();
    if !exists {
        return Ok(Outcome::unchanged());
    }
    if ctx.check_mode() {
        ctx.mark_units_changed();
        return Ok(Outcome::changed().with_message("would stop, disable and remove the unit"));
    }

    let reloaded = reload_units_if_changed(ctx)?;
    let state = query_state(ctx, &unit)?;
    if state.is_loaded() {
        systemctl(ctx, &["disable", "--now", "--", &unit])?;
    }
    ctx.block_on(ctx.transport.remove(&options.path, false))?;
    ctx.mark_units_changed();
    Ok(outcome(true, reloaded, "stopped, disabled and removed"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonReloadOptions {
    /// Reload only when a unit file changed in this run (the default), or always.
    #[serde(default = "default_true")]
    pub only_if_changed: bool,
    #[serde(default)]
    pub name: Option<String>,
}

fn default_true() -> bool {
    true
}

/// Runs `systemctl daemon-reload`: when a unit file changed in this run, or always with
/// `only_if_changed: false`.
pub fn daemon_reload(ctx: &HostContext, options: &DaemonReloadOptions) -> Result<Outcome> {
    if options.only_if_changed {
        let reloaded = reload_units_if_changed(ctx)?;
        return Ok(outcome(false, reloaded, ""));
    }
    ctx.take_units_changed();
    if !ctx.check_mode() {
        systemctl(ctx, &["daemon-reload"])?;
    }
    Ok(outcome(false, true, ""))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnableOptions {
    pub unit: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// Enables a unit so it starts at boot. Static, generated and alias units have no
/// `[Install]` section to act on and are left as they are.
pub fn enable(ctx: &HostContext, options: &EnableOptions) -> Result<Outcome> {
    let unit = options.unit.as_str();
    let reloaded = reload_units_if_changed(ctx)?;
    let state = query_state(ctx, unit)?;
    if !state.is_loaded() {
        if ctx.check_mode() {
            return Ok(outcome(true, reloaded, "would enable"));
        }
        return Err(not_found(ctx, unit));
    }
    match state.unit_file_state.as_str() {
        "enabled" => Ok(outcome(false, reloaded, "")),
        "masked" | "masked-runtime" => Err(PrimitiveError::Failed(format!(
            "{unit} is masked on {}; unmask it first (systemctl unmask {unit})",
            ctx.name
        ))),
        "static" | "generated" | "alias" | "indirect" | "transient" => Ok(outcome(
            false,
            reloaded,
            &format!("{} unit, nothing to enable", state.unit_file_state.as_str()),
        )),
        _ => {
            if !ctx.check_mode() {
                systemctl(ctx, &["enable", "--", unit])?;
            }
            Ok(outcome(true, reloaded, "enabled"))
        }
    }
}

/// Disables a unit. A unit that is unknown, disabled or static is left as it is.
pub fn disable(ctx: &HostContext, options: &EnableOptions) -> Result<Outcome> {
    let unit = options.unit.as_str();
    let reloaded = reload_units_if_changed(ctx)?;
    let state = query_state(ctx, unit)?;
    let is_enabled = matches!(
        state.unit_file_state.as_str(),
        "enabled" | "enabled-runtime" | "linked" | "linked-runtime"
    );
    if !state.is_loaded() || !is_enabled {
        return Ok(outcome(false, reloaded, ""));
    }
    if !ctx.check_mode() {
        systemctl(ctx, &["disable", "--", unit])?;
    }
    Ok(outcome(true, reloaded, "disabled"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartOptions {
    pub unit: String,
    /// Seconds to watch the unit after it started; it fails the step if it fails meanwhile.
    #[serde(default = "default_settle")]
    pub settle: Seconds,
    #[serde(default)]
    pub name: Option<String>,
}

/// Starts a unit unless it is active, and fails with its journal lines if it does not stay up.
pub fn start(ctx: &HostContext, options: &StartOptions) -> Result<Outcome> {
    let unit = options.unit.as_str();
    let settle_for = options.settle.to_duration("settle")?;
    let reloaded = reload_units_if_changed(ctx)?;
    let state = query_state(ctx, unit)?;
    if state.is_active() {
        return Ok(outcome(false, reloaded, "").with_data("main_pid", state.main_pid));
    }
    start_inactive(ctx, unit, &state, settle_for, reloaded)
}

fn start_inactive(
    ctx: &HostContext,
    unit: &str,
    state: &UnitState,
    settle_for: Duration,
    reloaded: bool,
) -> Result<Outcome> {
    if ctx.check_mode() {
        return Ok(outcome(true, reloaded, "would start"));
    }
    if !state.is_loaded() {
        return Err(not_found(ctx, unit));
    }
    let output = exec(ctx, &["systemctl", "start", "--", unit])?;
    if !output.success() {
        return Err(unit_failure(ctx, unit, "failed to start"));
    }
    let state = settle(ctx, unit, settle_for)?;
    Ok(outcome(true, reloaded, "started").with_data("main_pid", state.main_pid))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopOptions {
    pub unit: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// Stops a unit if it is active. An unknown unit counts as stopped.
pub fn stop(ctx: &HostContext, options: &StopOptions) -> Result<Outcome> {
    let unit = options.unit.as_str();
    let reloaded = reload_units_if_changed(ctx)?;
    let state = query_state(ctx, unit)?;
    // A unit waiting to be restarted (auto-restart) counts as running: stopping it cancels
    // the restart.
    let running =
        state.is_loaded() && !matches!(state.active_state.as_str(), "inactive" | "failed");
    if !running {
        return Ok(outcome(false, reloaded, "").with_data("was_active", false));
    }
    if !ctx.check_mode() {
        systemctl(ctx, &["stop", "--", unit])?;
    }
    let message = if ctx.check_mode() {
        "would stop"
    } else {
        "stopped"
    };
    Ok(outcome(true, reloaded, message).with_data("was_active", true))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartOptions {
    pub unit: String,
    /// Step results (or booleans, or arrays of them) the unit depends on. When given, an
    /// active unit restarts only if one of them changed.
    #[serde(default)]
    pub if_changed: Option<Value>,
    #[serde(default = "default_settle")]
    pub settle: Seconds,
    #[serde(default)]
    pub name: Option<String>,
}

/// Returns whether a value passed as `if_changed` reports a change: `true`, a result map
/// whose `changed` is true, or an array that contains one.
pub fn any_changed(value: &Value) -> bool {
    match value {
        Value::Bool(changed) => *changed,
        Value::Array(items) => items.iter().any(any_changed),
        Value::Object(map) => map.get("changed").is_some_and(any_changed),
        _ => false,
    }
}

/// Restarts a unit (the playbook's `restart_necessary`): with `if_changed`, only when one of
/// those results changed; an inactive unit is started either way.
pub fn restart(ctx: &HostContext, options: &RestartOptions) -> Result<Outcome> {
    let unit = options.unit.as_str();
    let settle_for = options.settle.to_duration("settle")?;
    let reloaded = reload_units_if_changed(ctx)?;
    let state = query_state(ctx, unit)?;
    if !state.is_active() {
        return start_inactive(ctx, unit, &state, settle_for, reloaded);
    }
    let necessary = options.if_changed.as_ref().is_none_or(any_changed);
    if !necessary {
        return Ok(
            outcome(false, reloaded, "no restart necessary").with_data("main_pid", state.main_pid)
        );
    }
    if ctx.check_mode() {
        return Ok(outcome(true, reloaded, "would restart"));
    }
    let output = exec(ctx, &["systemctl", "restart", "--", unit])?;
    if !output.success() {
        return Err(unit_failure(ctx, unit, "failed to restart"));
    }
    let state = settle(ctx, unit, settle_for)?;
    Ok(outcome(true, reloaded, "restarted").with_data("main_pid", state.main_pid))
}

/// Reloads an active unit's configuration (`ExecReload=`), or starts an inactive one.
pub fn reload(ctx: &HostContext, options: &StopOptions) -> Result<Outcome> {
    let unit = options.unit.as_str();
    let reloaded = reload_units_if_changed(ctx)?;
    let state = query_state(ctx, unit)?;
    if !state.is_active() {
        return start_inactive(ctx, unit, &state, Duration::ZERO, reloaded);
    }
    if ctx.check_mode() {
        return Ok(outcome(true, reloaded, "would reload"));
    }
    let output = exec(ctx, &["systemctl", "reload", "--", unit])?;
    if !output.success() {
        return Err(unit_failure(ctx, unit, "failed to reload"));
    }
    Ok(outcome(true, reloaded, "reloaded"))
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WantedState {
    Active,
    Inactive,
    Failed,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitOptions {
    pub unit: String,
    /// `active` (the default), `inactive` or `failed`.
    #[serde(default = "default_wanted")]
    pub state: WantedState,
    /// Seconds to wait before the step fails.
    #[serde(default = "default_timeout")]
    pub timeout: Seconds,
    #[serde(default)]
    pub name: Option<String>,
}

fn default_wanted() -> WantedState {
    WantedState::Active
}

fn default_timeout() -> Seconds {
    Seconds::Whole(30)
}

/// Waits until a unit reaches a state. Waiting for `active` fails early, with the journal
/// lines, when the unit fails instead. In check mode it only reads the state once.
pub fn wait(ctx: &HostContext, options: &WaitOptions) -> Result<Outcome> {
    let unit = options.unit.as_str();
    let timeout = options.timeout.to_duration("timeout")?;
    let reloaded = reload_units_if_changed(ctx)?;
    let deadline = Instant::now() + timeout;
    loop {
        let state = query_state(ctx, unit)?;
        let reached = match options.state {
            WantedState::Active => state.is_active(),
            WantedState::Inactive => matches!(state.active_state.as_str(), "inactive" | "failed"),
            WantedState::Failed => state.active_state == "failed",
        };
        if reached {
            return Ok(outcome(false, reloaded, "").with_data("state", state.to_value()));
        }
        if ctx.check_mode() {
            return Ok(outcome(false, reloaded, &format!("is {}", state.summary()))
                .with_data("state", state.to_value()));
        }
        if options.state == WantedState::Active && state.has_failed() {
            return Err(unit_failure(ctx, unit, "failed instead of becoming active"));
        }
        if Instant::now() >= deadline {
            let wanted = match options.state {
                WantedState::Active => "active",
                WantedState::Inactive => "inactive",
                WantedState::Failed => "failed",
            };
            return Err(unit_failure(
                ctx,
                unit,
                &format!(
                    "did not become {wanted} within {} seconds",
                    timeout.as_secs_f64()
                ),
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_changed_reads_nested_results() {
        assert!(!any_changed(&json!([])));
        assert!(!any_changed(
            &json!([{"changed": false}, [{"changed": false}]])
        ));
        assert!(any_changed(
            &json!([{"changed": false}, [{"changed": true}]])
        ));
        assert!(any_changed(&json!(true)));
        assert!(!any_changed(&json!({"skipped": true})));
    }

    #[test]
    fn unit_names_reject_options_and_paths() {
        assert!(check_unit_name("matrix-authentication-service.service").is_ok());
        assert!(check_unit_name("--now").is_err());
        assert!(check_unit_name("../x.service").is_err());
        assert!(check_unit_name("").is_err());
    }

    #[test]
    fn failed_state_includes_auto_restart() {
        let waiting = UnitState {
            active_state: "activating".into(),
            sub_state: "auto-restart".into(),
            ..UnitState::default()
        };
        assert!(waiting.has_failed());
        assert!(!waiting.is_active());
    }
}
