//! One run of a task file: load the inventory and variables, compile the task file, validate
//! every selected host, then run the file on the hosts in parallel and print the recap.
//!
//! Validation happens on all hosts before any host runs the body, so bad input stops the run
//! with exit status 2 and no host changed.

pub mod host;
pub mod paths;
mod preflight;
mod task_args;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::cli::{Cli, HostKeyPolicyArg, OutputArg};
use crate::engine::{self, ScriptError, error::FailureKind};
use crate::inventory::{self, Inventory};
use crate::report::{OutputFormat, Redactor, Reporter};
use crate::transport::cache::CachedTransport;
use crate::transport::local::LocalTransport;
use crate::transport::ssh::{HostKeyPolicy, SshConnector};
use crate::transport::{Transport, TransportError};
use crate::vars::HostVars;
use crate::vars::source::{Layer, Origin, RawVar, VarSource};
use host::{HostContext, Interrupt, SearchPaths, ValidationIssue};

/// The exit statuses scripts and CI rely on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitStatus {
    Ok = 0,
    Failed = 1,
    BadInput = 2,
    Unreachable = 3,
}

/// Everything prepared before the first host starts.
struct Plan {
    task: std::path::PathBuf,
    ast: rhai::AST,
    hosts: Vec<(String, Arc<HostVars>)>,
    paths: SearchPaths,
    default_names: Arc<BTreeSet<String>>,
    /// Raised by Ctrl-C: every host stops its running command and starts no new step.
    interrupt: Interrupt,
}

pub fn run(cli: Cli) -> ExitStatus {
    let redactor = Arc::new(Redactor::new());
    let format = match cli.output {
        OutputArg::Human => OutputFormat::Human,
        OutputArg::Json => OutputFormat::Json,
    };
    let reporter = Reporter::new(format, cli.diff, cli.verbose, redactor.clone());

    let plan = match prepare(&cli, &reporter) {
        Ok(Prepared::Plan(plan)) => plan,
        Ok(Prepared::Help(text)) => {
            // A closed pipe (`masrun setup --help | head`) is not an error worth reporting.
            let _ = writeln!(std::io::stdout(), "{text}");
            return ExitStatus::Ok;
        }
        Err(message) => {
            reporter.fatal(&message);
            return ExitStatus::BadInput;
        }
    };

    add_secrets(&redactor, &plan.hosts);

    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            reporter.fatal(&format!("cannot start the async runtime: {error}"));
            return ExitStatus::Failed;
        }
    };
    runtime.block_on(run_plan(plan, cli, reporter))
}

enum Prepared {
    Plan(Plan),
    Help(String),
}

fn prepare(cli: &Cli, reporter: &Reporter) -> Result<Prepared, String> {
    let (inventory, search) = load_inventory(&cli.inventory, reporter)?;
    let project_dir = search.project_dir.clone();

    let task = paths::find_task(&cli.task, &project_dir).map_err(|searched| {
        if let Some(dir) = searched.iter().find(|path| path.is_dir()) {
            return format!(
                "task '{}' is a directory ({}); give a .rhai file or a task name",
                cli.task,
                dir.display()
            );
        }
        let searched: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
        let available = paths::available_tasks(&project_dir);
        format!(
            "task '{}' not found (searched {}); available tasks: {}",
            cli.task,
            searched.join(", "),
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            }
        )
    })?;
    if cli.args.iter().any(|a| a == "--help" || a == "-h") {
        let help = engine::doc_comment(&task)
            .unwrap_or_else(|| format!("{} has no leading //! comment", task.display()));
        return Ok(Prepared::Help(help));
    }
    let word = task
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(usage) = engine::doc_comment(&task)
        .as_deref()
        .and_then(|doc| task_args::parse_usage(doc, &word))
    {
        task_args::check(&cli.args, &usage, &word, &crate::cli::option_names())?;
    }

    let selected = select_hosts(
        &inventory,
        &search,
        cli.limit.as_deref(),
        &cli.extra_vars,
        cli.check,
    )?;

    let compiler = rhai::Engine::new();
    let ast = engine::compile(&compiler, &task).map_err(|e| e.to_string())?;
    Ok(Prepared::Plan(Plan {
        task,
        ast,
        hosts: selected.hosts,
        paths: search,
        default_names: selected.default_names,
        interrupt: Interrupt::new(),
    }))
}

/// Loads the inventory file and finds the search paths of its project. Its warnings (such as
/// a duplicate YAML key) go through `reporter`, so they reach the JSON stream too.
pub fn load_inventory(
    path: &Path,
    reporter: &Reporter,
) -> Result<(Inventory, SearchPaths), String> {
    if !path.is_file() {
        return Err(format!(
            "inventory {} not found; pass the hosts file with -i",
            path.display()
        ));
    }
    let inventory = Inventory::load(path).map_err(|e| e.to_string())?;
    for warning in inventory.warnings() {
        reporter.warning(None, warning);
    }
    let project_dir = paths::project_dir(inventory.dir());
    let search = paths::search_paths(&project_dir);
    Ok((inventory, search))
}

/// The hosts a `--limit` pattern selects, each with its layered variables.
pub struct SelectedHosts {
    pub hosts: Vec<(String, Arc<HostVars>)>,
    /// Names that the stdlib defaults define.
    pub default_names: Arc<BTreeSet<String>>,
}

/// Selects the hosts `limit` matches and layers their variables: stdlib defaults, inventory
/// layers, `-e` extra variables, then masrun's built-in variables. Fails when nothing matches.
pub fn select_hosts(
    inventory: &Inventory,
    search: &SearchPaths,
    limit: Option<&str>,
    extra_vars: &[String],
    check: bool,
) -> Result<SelectedHosts, String> {
    let selected = inventory.select(limit).map_err(|e| e.to_string())?;
    if selected.is_empty() {
        return Err("no hosts selected".into());
    }

    let defaults = load_defaults(search)?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let extra = inventory::parse_extra_vars(extra_vars, &cwd).map_err(|e| e.to_string())?;

    let mut hosts = Vec::new();
    for host in selected {
        let mut layers = vec![defaults.clone()];
        layers.extend(inventory.layers_for(&host.name));
        layers.push(extra.clone());
        layers.push(builtins(inventory, &host.name, check));
        let vars = HostVars::new(&host.name, layers, search.template_dirs());
        hosts.push((host.name.clone(), Arc::new(vars)));
    }
    Ok(SelectedHosts {
        hosts,
        default_names: Arc::new(defaults.keys().cloned().collect()),
    })
}

/// Teaches the redactor every secret value of the hosts' variables.
pub fn add_secrets(redactor: &Redactor, hosts: &[(String, Arc<HostVars>)]) {
    for (_, vars) in hosts {
        for secret in vars.secrets() {
            redactor.add(&secret);
        }
    }
}

/// The async runtime that transports run on while scripts run on blocking threads.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
}

fn load_defaults(search: &SearchPaths) -> Result<VarSource, String> {
    let mut defaults = VarSource::new();
    for file in paths::default_files(search) {
        let layer =
            crate::yaml::load_vars_file(&file, Layer::Defaults).map_err(|e| e.to_string())?;
        defaults.extend(layer);
    }
    Ok(defaults)
}

/// Variables masrun sets for each host, as Ansible's magic variables.
fn builtins(inventory: &Inventory, host: &str, check: bool) -> VarSource {
    let origin = Origin {
        layer: Layer::Builtin,
        file: None,
        line: None,
    };
    let short = host.split('.').next().unwrap_or(host);
    let values = [
        ("inventory_hostname", json!(host)),
        ("inventory_hostname_short", json!(short)),
        ("group_names", json!(inventory.groups_of(host))),
        ("groups", json!(inventory.group_hosts())),
        ("ansible_check_mode", json!(check)),
    ];
    values
        .into_iter()
        .map(|(name, value)| {
            (
                name.to_string(),
                RawVar {
                    value,
                    origin: origin.clone(),
                },
            )
        })
        .collect()
}

/// The run's SSH client settings, read on first use so a run with only local hosts never
/// reads ~/.ssh.
pub struct SshClient {
    known_hosts: Option<std::path::PathBuf>,
    policy: Option<HostKeyPolicy>,
    connector: std::sync::OnceLock<Result<SshConnector, String>>,
}

impl SshClient {
    /// `known_hosts` replaces ~/.ssh/known_hosts; `policy` overrides the inventory's
    /// `masrun_host_key_policy`.
    pub fn new(
        known_hosts: Option<std::path::PathBuf>,
        policy: Option<HostKeyPolicy>,
    ) -> SshClient {
        SshClient {
            known_hosts,
            policy,
            connector: std::sync::OnceLock::new(),
        }
    }

    fn connector(&self) -> Result<&SshConnector, TransportError> {
        self.connector
            .get_or_init(|| SshConnector::new(self.known_hosts.clone(), self.policy))
            .as_ref()
            .map_err(|error| TransportError::Other(error.clone()))
    }
}

/// Opens the connection the host's `ansible_connection` names (ssh when unset).
pub async fn connect(
    name: &str,
    vars: &HostVars,
    ssh: &SshClient,
) -> Result<Arc<dyn Transport>, TransportError> {
    let connection = match vars.try_get("ansible_connection") {
        Ok(Some(Value::String(connection))) => connection,
        Ok(Some(other)) => other.to_string(),
        Ok(None) => "ssh".to_string(),
        Err(error) => return Err(TransportError::Other(error.to_string())),
    };
    match connection.as_str() {
        "local" => Ok(Arc::new(LocalTransport::new())),
        "ssh" | "smart" => Ok(Arc::new(ssh.connector()?.connect(name, vars).await?)),
        other => Err(TransportError::Unreachable(format!(
            "ansible_connection={other} is not supported; use ssh or local"
        ))),
    }
}

async fn run_plan(plan: Plan, cli: Cli, reporter: Reporter) -> ExitStatus {
    let plan = Arc::new(plan);
    let args = Arc::new(cli.args.clone());
    let forks = Arc::new(Semaphore::new(usize::from(cli.forks)));

    // Connect to every host at once; a host that cannot be reached drops out of the run
    // without holding up the others.
    let ssh = SshClient::new(
        cli.known_hosts.clone(),
        cli.host_key_policy.map(HostKeyPolicyArg::policy),
    );
    // Connection variables are checked for every host before any is contacted.
    let mut invalid = 0;
    for (name, vars) in &plan.hosts {
        for issue in preflight::check_connection(name, vars) {
            report_issue(&reporter, &issue);
            invalid += 1;
        }
    }
    if invalid > 0 {
        reporter.fatal(&format!(
            "{invalid} connection setting(s) are invalid; no host was contacted"
        ));
        return ExitStatus::BadInput;
    }
    for (name, _) in &plan.hosts {
        reporter.host_started(name);
    }
    tokio::spawn(interrupt_on_ctrl_c(
        reporter.clone(),
        plan.interrupt.clone(),
    ));
    let connections = futures::future::join_all(
        plan.hosts
            .iter()
            .map(|(name, vars)| connect(name, vars, &ssh)),
    )
    .await;
    let mut transports = Vec::new();
    let mut status = ExitStatus::Ok;
    for ((name, vars), connection) in plan.hosts.iter().zip(connections) {
        match connection {
            // One file cache per host for the whole run, so files the validation phase
            // prefetched serve the run phase too.
            Ok(transport) => transports.push((
                name.clone(),
                vars.clone(),
                Arc::new(CachedTransport::new(transport)),
            )),
            Err(error) if error.is_unreachable() => {
                reporter.host_unreachable(name, &error.to_string());
                reporter.host_finished(name);
                status = status.max(ExitStatus::Unreachable);
            }
            Err(error) => {
                reporter.host_failed(name, &error.to_string());
                reporter.host_finished(name);
                status = status.max(ExitStatus::Failed);
            }
        }
    }

    // Phase 1: validate every host in check mode; any error stops the run before a change.
    if engine::has_validate(&plan.ast) {
        let mut tasks = Vec::new();
        for (name, vars, transport) in &transports {
            let ctx = host_context(name, vars, transport, &reporter, &plan, true);
            let plan = plan.clone();
            let args = args.clone();
            let forks = forks.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = forks.acquire_owned().await;
                tokio::task::spawn_blocking(move || validate_host(&plan, &ctx, &args))
                    .await
                    .unwrap_or_else(|error| vec![internal_issue(&error.to_string())])
            }));
        }
        let mut errors = 0;
        // One cause can reach several checks that report it in the same words.
        let mut reported = std::collections::HashSet::new();
        for task in tasks {
            let issues = task.await.unwrap_or_default();
            for issue in issues {
                let key = (
                    issue.host.clone(),
                    issue.variable.clone(),
                    issue.message.clone(),
                );
                if !reported.insert(key) {
                    continue;
                }
                report_issue(&reporter, &issue);
                errors += usize::from(issue.is_error);
            }
        }
        if errors > 0 {
            reporter.fatal(&format!(
                "validation failed with {errors} error(s); nothing was changed"
            ));
            return ExitStatus::BadInput;
        }
    }

    // Phase 2: run the task file on every host.
    let mut tasks = Vec::new();
    for (name, vars, transport) in &transports {
        let ctx = host_context(name, vars, transport, &reporter, &plan, cli.check);
        let plan = plan.clone();
        let args = args.clone();
        let forks = forks.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = forks.acquire_owned().await;
            tokio::task::spawn_blocking(move || run_host(&plan, &ctx, &args))
                .await
                .unwrap_or(ExitStatus::Failed)
        }));
    }
    for task in tasks {
        status = status.max(task.await.unwrap_or(ExitStatus::Failed));
    }

    for (name, _, transport) in &transports {
        reporter.set_round_trips(name, transport.round_trips());
    }
    crate::transport::ssh::wait_for_cleanups(std::time::Duration::from_secs(5)).await;
    reporter.recap();
    // Unreachable wins over failed, as its fix (the connection) comes first.
    status
}

/// The first Ctrl-C stops the commands running on the hosts and lets each host's task fail
/// at its next step; a second one exits at once.
async fn interrupt_on_ctrl_c(reporter: Reporter, interrupt: Interrupt) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    reporter.warning(
        None,
        "interrupted: stopping the commands running on the hosts",
    );
    interrupt.raise();
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}

fn host_context(
    name: &str,
    vars: &Arc<HostVars>,
    transport: &Arc<CachedTransport>,
    reporter: &Reporter,
    plan: &Plan,
    check: bool,
) -> Arc<HostContext> {
    Arc::new(
        HostContext::with_file_cache(
            name.to_string(),
            transport.clone(),
            vars.clone(),
            reporter.clone(),
            tokio::runtime::Handle::current(),
            plan.paths.clone(),
            check,
            plan.default_names.clone(),
        )
        .with_interrupt(plan.interrupt.clone()),
    )
}

fn validate_host(plan: &Plan, ctx: &Arc<HostContext>, args: &[String]) -> Vec<ValidationIssue> {
    let engine = engine::build(ctx.clone());
    let mut scope = engine::scope(ctx, args);
    let options = rhai::CallFnOptions::new().eval_ast(false);
    let result = engine.call_fn_with_options::<rhai::Dynamic>(
        options,
        &mut scope,
        &plan.ast,
        "validate",
        (),
    );
    let mut issues = ctx.take_issues();
    if let Err(error) = result {
        let error = ScriptError::runtime(
            &error,
            &plan.task.display().to_string(),
            &plan.paths.stdlib_dirs,
        );
        issues.push(ValidationIssue {
            host: ctx.name.clone(),
            variable: None,
            origin: None,
            message: error.to_string(),
            is_error: true,
        });
    }
    issues
}

fn run_host(plan: &Plan, ctx: &Arc<HostContext>, args: &[String]) -> ExitStatus {
    let engine = engine::build(ctx.clone());
    let mut scope = engine::scope(ctx, args);
    let result = engine.run_ast_with_scope(&mut scope, &plan.ast);
    ctx.reporter.host_finished(&ctx.name);
    match result {
        Ok(()) => ExitStatus::Ok,
        Err(error) => {
            let error = ScriptError::runtime(
                &error,
                &plan.task.display().to_string(),
                &plan.paths.stdlib_dirs,
            );
            match error.kind() {
                FailureKind::Unreachable => {
                    ctx.reporter.host_unreachable(&ctx.name, &error.to_string());
                    ExitStatus::Unreachable
                }
                // Bad input found mid-run means "nothing changed" only if nothing had.
                FailureKind::BadInput if ctx.changes() == 0 => {
                    ctx.reporter.host_failed(&ctx.name, &error.to_string());
                    ExitStatus::BadInput
                }
                _ => {
                    ctx.reporter.host_failed(&ctx.name, &error.to_string());
                    ExitStatus::Failed
                }
            }
        }
    }
}

fn internal_issue(message: &str) -> ValidationIssue {
    ValidationIssue {
        host: String::new(),
        variable: None,
        origin: None,
        message: format!("internal error: {message}"),
        is_error: true,
    }
}

fn report_issue(reporter: &Reporter, issue: &ValidationIssue) {
    let mut text = String::new();
    if let Some(origin) = &issue.origin {
        text.push_str(&format!("{origin}: "));
    }
    if let Some(variable) = &issue.variable {
        text.push_str(&format!("{variable}: "));
    }
    text.push_str(&issue.message);
    if issue.is_error {
        reporter.validation_error(&issue.host, &text);
    } else {
        reporter.warning(Some(&issue.host), &text);
    }
}
