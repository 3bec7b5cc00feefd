//! The `container` primitive family: images present or pulled, networks, container state,
//! `exec` into a running container, one-off `run --rm` containers with bind mounts, and logs.
//!
//! The container engine is docker or podman, as the host's `masrun_container_runtime`
//! variable selects; both take the same command lines for everything here. Commands run through
//! [`Transport::exec`] as argument vectors, and secrets travel on standard input or in the
//! engine client's environment, never as arguments. Errors quote the engine's own message.
//!
//! [`Transport::exec`]: crate::transport::Transport::exec

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Outcome, PrimitiveError, Result, Seconds};
use crate::run::host::HostContext;
use crate::transport::{ExecOutput, ExecRequest};

/// Images under this registry name are built or imported on the host and never pulled.
const LOCAL_IMAGE_PREFIX: &str = "localhost/";

/// The container engine of a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Docker,
    Podman,
}

impl Runtime {
    pub fn command(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
        }
    }
}

/// Reads `masrun_container_runtime` (docker when unset).
pub fn runtime(ctx: &HostContext) -> Result<Runtime> {
    let value = ctx
        .vars
        .try_get("masrun_container_runtime")
        .map_err(|error| PrimitiveError::InvalidOption(error.to_string()))?;
    match value.as_ref().and_then(Value::as_str) {
        None | Some("docker") => Ok(Runtime::Docker),
        Some("podman") => Ok(Runtime::Podman),
        Some(other) => Err(PrimitiveError::InvalidOption(format!(
            "masrun_container_runtime must be docker or podman (got {other:?})"
        ))),
    }
}

/// A command of the engine, built up argument by argument.
struct EngineCommand {
    runtime: Runtime,
    request: ExecRequest,
}

impl EngineCommand {
    fn new(ctx: &HostContext, args: &[&str]) -> Result<EngineCommand> {
        let runtime = runtime(ctx)?;
        let mut argv = vec![runtime.command().to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        Ok(EngineCommand {
            runtime,
            request: ExecRequest {
                argv,
                ..ExecRequest::default()
            },
        })
    }

    fn arg(&mut self, arg: impl Into<String>) -> &mut EngineCommand {
        self.request.argv.push(arg.into());
        self
    }

    fn run(&self, ctx: &HostContext) -> Result<ExecOutput> {
        Ok(ctx.block_on(ctx.transport.exec(&self.request))?)
    }

    /// Returns the first `words` words of the command line, to name it in messages.
    fn label(&self, words: usize) -> String {
        self.request.argv[..words.min(self.request.argv.len())].join(" ")
    }

    fn failure(&self, ctx: &HostContext, words: usize, output: &ExecOutput) -> PrimitiveError {
        PrimitiveError::Failed(format!(
            "{} failed on {} (exit status {}): {}",
            self.label(words),
            ctx.name,
            exit_status(output),
            engine_message(output)
        ))
    }
}

fn exit_status(output: &ExecOutput) -> String {
    output
        .status
        .map(|status| status.to_string())
        .unwrap_or_else(|| "none, killed by a signal".into())
}

/// Returns the engine's own message: its error output, or its standard output when that is
/// empty.
fn engine_message(output: &ExecOutput) -> String {
    let stderr = output.stderr_text();
    let text = if stderr.trim().is_empty() {
        output.stdout_text()
    } else {
        stderr
    };
    text.trim().to_string()
}

/// Returns whether a failed `inspect` or `rm` means the object does not exist. Docker,
/// podman and podman's Docker-compatible API word this differently. The phrases name the
/// object, so an unrelated error ("no such file or directory") is not taken for a missing one.
fn is_not_found(output: &ExecOutput) -> bool {
    let message = engine_message(output).to_lowercase();
    [
        "no such image",
        "no such container",
        "no such network",
        "no such object",
        "image not known",
        "network not found",
        "failed to find image",
        "no container with name or id",
    ]
    .iter()
    .any(|phrase| message.contains(phrase))
}

/// Returns the id of a local image, or `None` when the host does not have it.
pub fn image_id(ctx: &HostContext, image: &str) -> Result<Option<String>> {
    check_reference(image, "image")?;
    let mut command = EngineCommand::new(ctx, &["image", "inspect", "--format", "{{.Id}}"])?;
    command.arg("--").arg(image);
    let output = command.run(ctx)?;
    if output.success() {
        return Ok(Some(output.stdout_text().trim().to_string()));
    }
    if is_not_found(&output) {
        return Ok(None);
    }
    Err(command.failure(ctx, 3, &output))
}

/// Rejects names that the engine would read as an option.
fn check_reference(value: &str, what: &str) -> Result<()> {
    if value.is_empty() || value.starts_with('-') || value.chars().any(char::is_whitespace) {
        return Err(PrimitiveError::InvalidOption(format!(
            "invalid {what} name {value:?}"
        )));
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull every time, so a moved tag is picked up (what the playbook does).
    #[default]
    Always,
    /// Pull only when the image is missing.
    Missing,
    /// Never pull; a missing image is an error.
    Never,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageOptions {
    pub image: String,
    #[serde(default)]
    pub pull: PullPolicy,
    /// Pull attempts in all; `devture_playbook_help_container_retries_count` when unset.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Seconds between attempts; `devture_playbook_help_container_retries_delay` when unset.
    #[serde(default)]
    pub delay: Option<Seconds>,
    #[serde(default)]
    pub name: Option<String>,
}

fn number_variable(ctx: &HostContext, name: &str, default: f64) -> Result<f64> {
    let value = ctx
        .vars
        .try_get(name)
        .map_err(|error| PrimitiveError::InvalidOption(error.to_string()))?;
    match value {
        None => Ok(default),
        Some(Value::Number(number)) => Ok(number.as_f64().unwrap_or(default)),
        Some(Value::String(text)) => text.trim().parse().map_err(|_| {
            PrimitiveError::InvalidOption(format!("{name} must be a number (got {text:?})"))
        }),
        Some(other) => Err(PrimitiveError::InvalidOption(format!(
            "{name} must be a number (got {other})"
        ))),
    }
}

/// Ensures an image is on the host, pulled with retries as the `pull` policy sets, and
/// reports a change when its id changed. `localhost/` images are never pulled, because they
/// come from a local build or import, so a missing one is an error that names its origin.
pub fn image(ctx: &HostContext, options: &ImageOptions) -> Result<Outcome> {
    let image = options.image.as_str();
    let before = image_id(ctx, image)?;
    let is_local = image.starts_with(LOCAL_IMAGE_PREFIX);

    let must_pull = match (options.pull, &before) {
        (_, _) if is_local => false,
        (PullPolicy::Never, _) => false,
        (PullPolicy::Missing, Some(_)) => false,
        _ => true,
    };
    if !must_pull {
        return match before {
            Some(id) => Ok(Outcome::unchanged().with_data("image_id", id)),
            None if ctx.check_mode() && is_local => Ok(Outcome::changed().with_message(format!(
                "{image} is missing; it must be built or imported on the host"
            ))),
            None if is_local => Err(PrimitiveError::Failed(format!(
                "image {image} is not on {}; {LOCAL_IMAGE_PREFIX} images are built or imported \
                 on the host (docker build, docker load, podman import) and never pulled",
                ctx.name
            ))),
            None => Err(PrimitiveError::Failed(format!(
                "image {image} is not on {} and pull is \"never\"",
                ctx.name
            ))),
        };
    }

    if ctx.check_mode() {
        return Ok(match before {
            Some(id) => Outcome::unchanged()
                .with_message("present; check mode does not pull a newer one")
                .with_data("image_id", id),
            None => Outcome::changed().with_message("would pull"),
        });
    }

    pull(ctx, options)?;
    let after = image_id(ctx, image)?.ok_or_else(|| {
        PrimitiveError::Failed(format!(
            "pulling {image} on {} succeeded, but the image is not there afterwards",
            ctx.name
        ))
    })?;
    let outcome = match &before {
        Some(id) if *id == after => Outcome::unchanged(),
        Some(_) => Outcome::changed().with_message("pulled a newer image"),
        None => Outcome::changed().with_message("pulled"),
    };
    Ok(outcome.with_data("image_id", after))
}

/// Pulls with retries; the error quotes the engine's message of the last attempt.
fn pull(ctx: &HostContext, options: &ImageOptions) -> Result<()> {
    let attempts = match options.retries {
        Some(retries) => f64::from(retries),
        None => number_variable(ctx, "devture_playbook_help_container_retries_count", 10.0)?,
    }
    .max(1.0) as u32;
    let delay = match options.delay {
        Some(delay) => delay,
        None => Seconds::Decimal(number_variable(
            ctx,
            "devture_playbook_help_container_retries_delay",
            10.0,
        )?),
    }
    .to_duration("delay")?;

    let mut command = EngineCommand::new(ctx, &["pull"])?;
    if command.runtime == Runtime::Podman {
        command.arg("--quiet");
    }
    command.arg("--").arg(options.image.as_str());
    let mut last = None;
    for attempt in 1..=attempts {
        let output = command.run(ctx)?;
        if output.success() {
            return Ok(());
        }
        tracing::warn!(
            host = %ctx.name,
            image = %options.image,
            attempt,
            attempts,
            error = %engine_message(&output),
            "image pull failed"
        );
        last = Some(output);
        if attempt < attempts {
            std::thread::sleep(delay);
        }
    }
    let output = last.expect("at least one attempt ran");
    Err(PrimitiveError::Failed(format!(
        "pulling image {} failed on {} after {attempts} attempt(s); {} pull output: {}",
        options.image,
        ctx.name,
        command.runtime.command(),
        engine_message(&output)
    )))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkOptions {
    pub network: String,
    #[serde(default = "default_driver")]
    pub driver: String,
    #[serde(default)]
    pub ipv6: bool,
    #[serde(default)]
    pub name: Option<String>,
}

fn default_driver() -> String {
    "bridge".into()
}

/// How many times a read-only engine query is repeated after it lost a race with a container
/// or image being removed.
const STORE_RACE_RETRIES: usize = 4;

/// Returns whether podman failed because a container or layer vanished while it read its
/// store.
fn is_store_race(output: &ExecOutput) -> bool {
    let stderr = output.stderr_text();
    stderr.contains("container not known") || stderr.contains("layer not known")
}

/// Ensures a container network exists, creating it with `driver` (and IPv6) when missing.
/// An existing network is left as it is.
pub fn network(ctx: &HostContext, options: &NetworkOptions) -> Result<Outcome> {
    let network = options.network.as_str();
    check_reference(network, "network")?;
    let list = EngineCommand::new(ctx, &["network", "ls", "--format", "{{.Name}}"])?;
    let mut output = list.run(ctx)?;
    // podman 4.3's Docker-compatible API lists each network's containers, and fails the whole
    // listing when one of them is removed meanwhile (a `--rm` container stopping, say). The
    // listing reads only, so it is repeated a few times before the error counts.
    for _ in 0..STORE_RACE_RETRIES {
        if output.success() || !is_store_race(&output) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        output = list.run(ctx)?;
    }
    if !output.success() {
        return Err(list.failure(ctx, 3, &output));
    }
    if output
        .stdout_text()
        .lines()
        .any(|name| name.trim() == network)
    {
        return Ok(Outcome::unchanged());
    }
    if ctx.check_mode() {
        return Ok(Outcome::changed().with_message("would create"));
    }

    let mut create = EngineCommand::new(ctx, &["network", "create", "--driver"])?;
    create.arg(options.driver.as_str());
    if options.ipv6 {
        create.arg("--ipv6");
    }
    create.arg("--").arg(network);
    let output = create.run(ctx)?;
    if !output.success() {
        return Err(create.failure(ctx, 3, &output));
    }
    Ok(Outcome::changed().with_message(format!("created ({} driver)", options.driver)))
}

/// Returns `#{exists, running, status, id, image, image_id}` for a container; `exists` is
/// false when there is none of that name.
pub fn state(ctx: &HostContext, container: &str) -> Result<Value> {
    check_reference(container, "container")?;
    let mut inspect = EngineCommand::new(ctx, &["container", "inspect"])?;
    inspect.arg("--").arg(container);
    let output = inspect.run(ctx)?;
    if !output.success() {
        if is_not_found(&output) {
            return Ok(json!({"exists": false, "running": false}));
        }
        return Err(inspect.failure(ctx, 3, &output));
    }
    let parsed: Value = serde_json::from_slice(&output.stdout).map_err(|error| {
        PrimitiveError::Failed(format!(
            "{} container inspect {container} on {} printed no JSON: {error}",
            inspect.runtime.command(),
            ctx.name
        ))
    })?;
    let details = parsed.get(0).unwrap_or(&parsed);
    let text = |pointer: &str| {
        details
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(json!({
        "exists": true,
        "running": details.pointer("/State/Running").and_then(Value::as_bool).unwrap_or(false),
        "status": text("/State/Status"),
        "id": text("/Id"),
        "image": text("/Config/Image"),
        "image_id": text("/Image"),
        "pid": details.pointer("/State/Pid").and_then(Value::as_i64).unwrap_or(0),
    }))
}

/// Options of `exec`: the container, the command, and how its failure is handled.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecOptions {
    pub container: String,
    pub argv: Vec<String>,
    /// Text for the process's standard input. Put secrets here, never in `argv`.
    #[serde(default)]
    pub stdin: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// Environment variables for the process. Values reach the engine client through its own
    /// environment (`--env NAME`), not its arguments.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub workdir: Option<String>,
    /// The command only reads state: it runs in check mode too and never counts as a change.
    #[serde(default)]
    pub read_only: bool,
    /// Return a non-zero exit status to the task file instead of failing the step.
    #[serde(default)]
    pub ignore_errors: bool,
    #[serde(default)]
    pub name: Option<String>,
}

fn add_env(command: &mut EngineCommand, env: &BTreeMap<String, String>) -> Result<()> {
    for (key, value) in env {
        if key.is_empty() || key.contains('=') {
            return Err(PrimitiveError::InvalidOption(format!(
                "invalid environment variable name {key:?}"
            )));
        }
        command.arg("--env").arg(key.as_str());
        command.request.env.push((key.clone(), value.clone()));
    }
    Ok(())
}

/// Runs a prepared `exec` command and turns its result into an outcome.
fn finish(
    ctx: &HostContext,
    command: &EngineCommand,
    label_words: usize,
    read_only: bool,
    ignore_errors: bool,
) -> Result<Outcome> {
    if ctx.check_mode() && !read_only {
        return Ok(Outcome::changed().with_message("would run (check mode)"));
    }
    let output = command.run(ctx)?;
    outcome_of(ctx, command, label_words, &output, read_only, ignore_errors)
}

fn outcome_of(
    ctx: &HostContext,
    command: &EngineCommand,
    label_words: usize,
    output: &ExecOutput,
    read_only: bool,
    ignore_errors: bool,
) -> Result<Outcome> {
    if !output.success() && !ignore_errors {
        return Err(command.failure(ctx, label_words, output));
    }
    let outcome = if read_only {
        Outcome::unchanged()
    } else {
        Outcome::changed()
    };
    Ok(outcome
        .with_data("rc", output.status.map(i64::from).unwrap_or(-1))
        .with_data("stdout", output.stdout_text())
        .with_data("stderr", output.stderr_text()))
}

/// Runs a command in a running container (`exec`), with optional standard input.
pub fn exec(ctx: &HostContext, options: &ExecOptions) -> Result<Outcome> {
    check_reference(&options.container, "container")?;
    if options.argv.is_empty() {
        return Err(PrimitiveError::InvalidOption(
            "argv must not be empty".into(),
        ));
    }
    let mut command = EngineCommand::new(ctx, &["exec"])?;
    if options.stdin.is_some() {
        command.arg("--interactive");
        command.request.stdin = options.stdin.as_ref().map(|s| s.clone().into_bytes());
    }
    if let Some(user) = &options.user {
        command.arg("--user").arg(user.as_str());
    }
    if let Some(workdir) = &options.workdir {
        command.arg("--workdir").arg(workdir.as_str());
    }
    add_env(&mut command, &options.env)?;
    command.arg(options.container.as_str());
    for arg in &options.argv {
        command.arg(arg.as_str());
    }
    finish(ctx, &command, 2, options.read_only, options.ignore_errors)
}

/// A bind mount of a host path into a one-off container.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub src: PathBuf,
    pub dst: String,
    #[serde(default)]
    pub read_only: bool,
}

impl Mount {
    fn to_arg(&self) -> Result<String> {
        let src = self.src.display().to_string();
        // The --mount syntax separates fields with commas.
        if src.contains(',') || self.dst.contains(',') {
            return Err(PrimitiveError::InvalidOption(format!(
                "mount paths must not contain commas ({src} -> {})",
                self.dst
            )));
        }
        if !self.src.is_absolute() || !self.dst.starts_with('/') {
            return Err(PrimitiveError::InvalidOption(format!(
                "mount paths must be absolute ({src} -> {})",
                self.dst
            )));
        }
        let mut arg = format!("type=bind,src={src},dst={}", self.dst);
        if self.read_only {
            arg.push_str(",ro");
        }
        Ok(arg)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOptions {
    pub image: String,
    /// The command after the image (for MAS's image, the arguments of `mas-cli`).
    #[serde(default)]
    pub argv: Vec<String>,
    /// The container's name, so a second run at the same time fails instead of doubling up.
    #[serde(default)]
    pub container_name: Option<String>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub stdin: Option<String>,
    /// More engine options, placed before the image (`--cap-drop=ALL`, `--log-driver=none`).
    #[serde(default)]
    pub extra_arguments: Vec<String>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub ignore_errors: bool,
    #[serde(default)]
    pub name: Option<String>,
}

/// Runs a one-off container, waits for it to exit, and removes it.
///
/// masrun removes the container itself instead of passing `--rm`, because the docker client
/// against podman's Docker-compatible API (podman 4.3) reports exit status 0 for every
/// `run --rm`, which would hide a failed syn2mas. A stopped container left with the same
/// `container_name` by an interrupted run is removed first.
pub fn run(ctx: &HostContext, options: &RunOptions) -> Result<Outcome> {
    check_reference(&options.image, "image")?;
    let name = match &options.container_name {
        Some(name) => {
            check_reference(name, "container")?;
            name.clone()
        }
        None => format!(
            "masrun-run-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ),
    };
    let mut command = EngineCommand::new(ctx, &["run"])?;
    command.arg(format!("--name={name}"));
    if options.stdin.is_some() {
        command.arg("--interactive");
        command.request.stdin = options.stdin.as_ref().map(|s| s.clone().into_bytes());
    }
    if let Some(network) = &options.network {
        command.arg(format!("--network={network}"));
    }
    if let Some(user) = &options.user {
        command.arg(format!("--user={user}"));
    }
    if let Some(workdir) = &options.workdir {
        command.arg(format!("--workdir={workdir}"));
    }
    for mount in &options.mounts {
        command.arg("--mount").arg(mount.to_arg()?);
    }
    add_env(&mut command, &options.env)?;
    for arg in &options.extra_arguments {
        command.arg(arg.as_str());
    }
    command.arg(options.image.as_str());
    for arg in &options.argv {
        command.arg(arg.as_str());
    }

    if ctx.check_mode() && !options.read_only {
        return Ok(Outcome::changed().with_message("would run (check mode)"));
    }
    if options.container_name.is_some() {
        remove_container(ctx, &name)?;
    }
    let output = command.run(ctx);
    if let Err(error) = remove_container(ctx, &name) {
        tracing::warn!(host = %ctx.name, container = %name, %error, "one-off container not removed");
    }
    outcome_of(
        ctx,
        &command,
        2,
        &output?,
        options.read_only,
        options.ignore_errors,
    )
}

/// Removes a stopped container; a missing one is fine. A running one is an error, since it
/// belongs to something else.
fn remove_container(ctx: &HostContext, name: &str) -> Result<()> {
    let mut command = EngineCommand::new(ctx, &["rm", "--"])?;
    command.arg(name);
    let output = command.run(ctx)?;
    if output.success() || is_not_found(&output) {
        return Ok(());
    }
    Err(PrimitiveError::Failed(format!(
        "container {name} exists on {} and cannot be removed: {}; stop it first",
        ctx.name,
        engine_message(&output)
    )))
}

/// Returns a container's last `lines` log lines as `#{stdout, stderr}`, as the engine keeps
/// them. A container started with `--log-driver=none` has no logs; its output is in the
/// journal of the unit that runs it.
pub fn logs(ctx: &HostContext, container: &str, lines: usize) -> Result<Value> {
    check_reference(container, "container")?;
    let mut command = EngineCommand::new(ctx, &["logs", "--tail"])?;
    command.arg(lines.to_string()).arg("--").arg(container);
    let output = command.run(ctx)?;
    if !output.success() {
        return Err(command.failure(ctx, 2, &output));
    }
    Ok(json!({"stdout": output.stdout_text(), "stderr": output.stderr_text()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_argument_has_bind_fields() {
        let mount = Mount {
            src: "/matrix/mas/config.yaml".into(),
            dst: "/config.yaml".into(),
            read_only: true,
        };
        assert_eq!(
            mount.to_arg().unwrap(),
            "type=bind,src=/matrix/mas/config.yaml,dst=/config.yaml,ro"
        );
    }

    #[test]
    fn mount_rejects_commas_and_relative_paths() {
        let comma = Mount {
            src: "/a,b".into(),
            dst: "/c".into(),
            read_only: false,
        };
        assert!(comma.to_arg().is_err());
        let relative = Mount {
            src: "a".into(),
            dst: "/c".into(),
            read_only: false,
        };
        assert!(relative.to_arg().is_err());
    }

    #[test]
    fn store_races_are_told_from_other_errors() {
        let output = |message: &str| ExecOutput {
            status: Some(1),
            stdout: Vec::new(),
            stderr: message.as_bytes().to_vec(),
        };
        for race in [
            "Error response from daemon: getting container from store \"1b9a\": container not known",
            "Error response from daemon: reading information about layer \"6d1e\": layer not known",
        ] {
            assert!(is_store_race(&output(race)), "{race}");
        }
        let unreachable = "Cannot connect to the Docker daemon at unix:///run/docker.sock";
        assert!(!is_store_race(&output(unreachable)));
    }

    #[test]
    fn not_found_messages_of_both_engines() {
        for message in [
            "Error: No such image: localhost/x:1",
            "Error: localhost/x:1: image not known",
            "Error: mtest: network not found",
            "Error: no container with name or ID \"c1\" found: no such container",
            "Error response from daemon: failed to find image localhost/x:1",
        ] {
            let output = ExecOutput {
                status: Some(1),
                stdout: Vec::new(),
                stderr: message.as_bytes().to_vec(),
            };
            assert!(is_not_found(&output), "{message}");
        }
        let unrelated = ExecOutput {
            status: Some(125),
            stdout: Vec::new(),
            stderr: b"Error: open /etc/cni/net.d/x.conflist: no such file or directory".to_vec(),
        };
        assert!(!is_not_found(&unrelated));
    }
}
