//! The `command` primitive: runs an argument vector on the host, without a shell unless the
//! task file asks for one, and reports its exit status and separate stdout and stderr.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Outcome, PrimitiveError, Result};
use crate::run::host::HostContext;
use crate::transport::ExecRequest;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandOptions {
    pub argv: Vec<String>,
    /// Skip the command when this path exists on the host (it is what the command creates).
    #[serde(default)]
    pub creates: Option<PathBuf>,
    /// Skip the command when this path does not exist.
    #[serde(default)]
    pub removes: Option<PathBuf>,
    /// Text for the command's standard input. Put secrets here, never in `argv`.
    #[serde(default)]
    pub stdin: Option<String>,
    #[serde(default)]
    pub become_user: Option<String>,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub env: Option<std::collections::BTreeMap<String, String>>,
    /// The command only reads state, so it runs in check mode too and never counts as a change.
    #[serde(default)]
    pub read_only: bool,
    /// Return a non-zero exit status to the task file instead of failing the step.
    #[serde(default)]
    pub ignore_errors: bool,
    #[serde(default)]
    pub name: Option<String>,
}

pub fn run(ctx: &HostContext, options: &CommandOptions) -> Result<Outcome> {
    if options.argv.is_empty() {
        return Err(PrimitiveError::InvalidOption(
            "argv must not be empty".into(),
        ));
    }

    let guards: Vec<PathBuf> = options
        .creates
        .iter()
        .chain(options.removes.iter())
        .cloned()
        .collect();
    if !guards.is_empty() {
        let stats = ctx.block_on(ctx.transport.stat(&guards))?;
        let mut stats = stats.into_iter();
        if let Some(creates) = &options.creates
            && stats.next().flatten().is_some()
        {
            return Ok(Outcome::unchanged().with_message(format!("{} exists", creates.display())));
        }
        if let Some(removes) = &options.removes
            && stats.next().flatten().is_none()
        {
            return Ok(
                Outcome::unchanged().with_message(format!("{} does not exist", removes.display()))
            );
        }
    }

    if ctx.check_mode() && !options.read_only {
        return Ok(Outcome::changed().with_message("would run (check mode)"));
    }

    let request = ExecRequest {
        argv: options.argv.clone(),
        stdin: options.stdin.as_ref().map(|s| s.clone().into_bytes()),
        env: options
            .env
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        cwd: options.cwd.clone(),
        become_user: options.become_user.clone(),
    };
    let output = ctx.block_on(ctx.transport.exec(&request))?;
    let status = output.status.map(i64::from).unwrap_or(-1);

    if !output.success() && !options.ignore_errors {
        let stderr = output.stderr_text();
        let detail = if stderr.trim().is_empty() {
            output.stdout_text()
        } else {
            stderr
        };
        return Err(PrimitiveError::Failed(format!(
            "{} exited with status {status}: {}",
            options.argv[0],
            detail.trim()
        )));
    }

    let outcome = if options.read_only {
        Outcome::unchanged()
    } else {
        Outcome::changed()
    };
    Ok(outcome
        .with_data("rc", status)
        .with_data("stdout", output.stdout_text())
        .with_data("stderr", output.stderr_text()))
}
