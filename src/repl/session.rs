//! A REPL session: the selected hosts, one connection, engine and Rhai scope per host, and what
//! earlier entries defined. Each entry runs on every target host at once, with the engine,
//! primitives and variables of a task file. `let` bindings stay in the host's scope, `fn`
//! definitions become a module registered in every host's engine, and top-level `import`s are
//! registered as static modules, so all three outlive the entry that made them.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{AST, Dynamic, Engine, Expr, Module, Position, Scope, Stmt};
use serde_json::json;

use crate::cli::HostArgs;
use crate::engine::{self, ScriptError, error::FailureKind};
use crate::inventory::Inventory;
use crate::report::{Redactor, Reporter};
use crate::run::host::{HostContext, Interrupt, SearchPaths, ValidationIssue};
use crate::run::{self, paths};
use crate::transport::local::LocalTransport;
use crate::vars::HostVars;
use crate::vars::source::{Layer, Origin};

/// The outcome of an entry on one host.
pub enum Outcome {
    Value(Dynamic),
    Failed(ScriptError),
    /// The host could not be reached, or the connection was lost during the entry.
    Unreachable(String),
}

pub struct HostResult {
    pub host: String,
    pub outcome: Outcome,
    /// Whether a primitive changed the host (or, in check mode, reported a change) during
    /// the entry.
    pub changed: bool,
}

impl HostResult {
    fn unreachable(host: String, message: String) -> HostResult {
        HostResult {
            host,
            outcome: Outcome::Unreachable(message),
            changed: false,
        }
    }
}

/// A task file loaded with `:load`: the validation issues its `validate()` raised, and the
/// results of its body, which runs only when no issue is an error.
pub struct Loaded {
    pub issues: Vec<ValidationIssue>,
    pub results: Option<Vec<HostResult>>,
}

pub struct HostSession {
    pub name: String,
    pub vars: Arc<HostVars>,
    scope: Scope<'static>,
    connection: Option<Connection>,
    /// Why the host is not connected: the last connection error or the lost connection.
    pub down: Option<String>,
}

impl HostSession {
    pub fn is_connected(&self) -> bool {
        self.connection.is_some()
    }

    /// Returns the names in the host's scope, for completion.
    pub fn scope_names(&self) -> Vec<String> {
        self.scope
            .iter_raw()
            .map(|(name, ..)| name.to_string())
            .collect()
    }

    fn evaluate(&mut self, ast: &AST, sources: &SourceTexts, dirs: &[PathBuf]) -> HostResult {
        // Files prefetched by one entry are not trusted in the next: the operator may have
        // changed them on the host in between.
        if let Some(connection) = &self.connection {
            connection.ctx.clear_file_cache();
        }
        let changes_before = self.connection.as_ref().map(|c| c.ctx.changes());
        let outcome = self.outcome(ast, sources, dirs);
        let changes_after = self.connection.as_ref().map(|c| c.ctx.changes());
        HostResult {
            host: self.name.clone(),
            outcome,
            // A lost connection may have happened after a change.
            changed: changes_after.is_none() || changes_after != changes_before,
        }
    }

    fn outcome(&mut self, ast: &AST, sources: &SourceTexts, dirs: &[PathBuf]) -> Outcome {
        let Some(connection) = &self.connection else {
            return Outcome::Unreachable(self.down.clone().unwrap_or_default());
        };
        match connection
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, ast)
        {
            Ok(value) => Outcome::Value(value),
            Err(error) => {
                let source = ast.source().unwrap_or_default();
                let error = ScriptError::runtime_with_sources(&error, source, dirs, &|name| {
                    sources.text(name)
                });
                if error.kind() == FailureKind::Unreachable {
                    let message = error.to_string();
                    self.connection = None;
                    self.down = Some(message.clone());
                    return Outcome::Unreachable(message);
                }
                Outcome::Failed(error)
            }
        }
    }
}

struct Connection {
    ctx: Arc<HostContext>,
    engine: Engine,
}

/// A top-level `import "path" as alias;` of an earlier entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Import {
    path: String,
    alias: String,
}

/// The text of every entry of the session by its source name, for error excerpts. Sources
/// that are not entries are files.
#[derive(Default)]
struct SourceTexts(HashMap<String, String>);

impl SourceTexts {
    fn text(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .cloned()
            .or_else(|| std::fs::read_to_string(name).ok())
    }
}

pub struct Session {
    inventory: Inventory,
    paths: SearchPaths,
    extra_vars: Vec<String>,
    default_names: Arc<BTreeSet<String>>,
    reporter: Reporter,
    redactor: Arc<Redactor>,
    runtime: tokio::runtime::Handle,
    ssh: run::SshClient,
    interrupt: Interrupt,
    check: bool,
    hosts: Vec<HostSession>,
    /// Indices into `hosts` of the hosts entries run on.
    targets: Vec<usize>,
    /// Functions of earlier entries and loaded files, oldest first.
    functions: Vec<Arc<Module>>,
    imports: Vec<Import>,
    sources: SourceTexts,
    entries: usize,
    /// Compiles entries; it has no primitives, as compiling calls none.
    compiler: Engine,
}

impl Session {
    /// Loads the inventory and the variables of the hosts `args` selects, without connecting.
    pub fn open(
        args: &HostArgs,
        reporter: Reporter,
        redactor: Arc<Redactor>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Session, String> {
        let (inventory, paths) = run::load_inventory(&args.inventory, &reporter)?;
        let selected = run::select_hosts(
            &inventory,
            &paths,
            args.limit.as_deref(),
            &args.extra_vars,
            args.check,
        )?;
        run::add_secrets(&redactor, &selected.hosts);

        let hosts: Vec<HostSession> = selected
            .hosts
            .into_iter()
            .map(|(name, vars)| HostSession {
                name,
                vars,
                scope: Scope::new(),
                connection: None,
                down: None,
            })
            .collect();
        Ok(Session {
            targets: (0..hosts.len()).collect(),
            hosts,
            inventory,
            paths,
            extra_vars: args.extra_vars.clone(),
            default_names: selected.default_names,
            reporter,
            redactor,
            runtime,
            ssh: run::SshClient::new(
                args.known_hosts.clone(),
                args.host_key_policy
                    .map(crate::cli::HostKeyPolicyArg::policy),
            ),
            interrupt: Interrupt::new(),
            check: args.check,
            functions: Vec::new(),
            imports: Vec::new(),
            sources: SourceTexts::default(),
            entries: 0,
            compiler: Engine::new(),
        })
    }

    /// Returns the flag that Ctrl-C raises to stop the running entry on every host.
    pub fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    pub fn hosts(&self) -> &[HostSession] {
        &self.hosts
    }

    pub fn is_target(&self, host: &str) -> bool {
        self.targets
            .iter()
            .any(|&index| self.hosts[index].name == host)
    }

    pub fn targets(&self) -> impl Iterator<Item = &HostSession> {
        self.targets.iter().map(|&index| &self.hosts[index])
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    pub fn check_mode(&self) -> bool {
        self.check
    }

    /// Connects every target host that is not connected. Returns the hosts that failed, with
    /// the reason.
    pub fn connect_targets(&mut self) -> Vec<(String, String)> {
        let mut failures = Vec::new();
        for index in self.targets.clone() {
            if self.hosts[index].is_connected() {
                continue;
            }
            if let Err(message) = self.connect(index) {
                failures.push((self.hosts[index].name.clone(), message));
            }
        }
        failures
    }

    /// Opens the host's connection and builds its engine, with the functions and imports of
    /// earlier entries. The host's scope survives a reconnection.
    fn connect(&mut self, index: usize) -> Result<(), String> {
        let host = &self.hosts[index];
        let transport = match self
            .runtime
            .block_on(run::connect(&host.name, &host.vars, &self.ssh))
        {
            Ok(transport) => transport,
            Err(error) => {
                let message = error.to_string();
                self.hosts[index].down = Some(message.clone());
                return Err(message);
            }
        };
        let ctx = HostContext::new(
            host.name.clone(),
            transport,
            host.vars.clone(),
            self.reporter.clone(),
            self.runtime.clone(),
            self.paths.clone(),
            self.check,
            self.default_names.clone(),
        )
        .with_interrupt(self.interrupt.clone());
        let ctx = Arc::new(ctx);
        let engine = self.build_engine(&ctx);

        let host = &mut self.hosts[index];
        if host.scope.is_empty() {
            host.scope = engine::scope(&ctx, &[]);
        }
        host.connection = Some(Connection { ctx, engine });
        host.down = None;
        Ok(())
    }

    fn build_engine(&self, ctx: &Arc<HostContext>) -> Engine {
        let mut engine = engine::build(ctx.clone());
        let progress_ctx = ctx.clone();
        engine.on_progress(move |_| {
            progress_ctx
                .interrupt()
                .is_raised()
                .then(|| Dynamic::from("interrupted"))
        });
        for module in &self.functions {
            engine.register_global_module(module.clone());
        }
        for import in &self.imports {
            if let Err(error) = register_import(&mut engine, import) {
                tracing::warn!(host = %ctx.name, module = %import.path, "cannot import again: {error}");
            }
        }
        engine
    }

    /// Compiles and runs one entry on every target host. A syntax error returns `Err` and
    /// nothing runs.
    pub fn evaluate(&mut self, text: &str) -> Result<Vec<HostResult>, ScriptError> {
        self.entries += 1;
        let source = format!("<input-{}>", self.entries);
        let mut ast = self
            .compiler
            .compile(text)
            .map_err(|error| ScriptError::parse(Path::new(&source), text, &error))?;
        ast.set_source(source.clone());
        self.sources.0.insert(source, text.to_string());
        Ok(self.run(&ast))
    }

    /// Runs a task file in the session's scope on every target host: its `validate()` first,
    /// in check mode, as a run does, then its body with `args`.
    pub fn load(&mut self, path: &Path, args: &[String]) -> Result<Loaded, ScriptError> {
        let ast = engine::compile(&self.compiler, path)?;
        self.interrupt.clear();
        let failures = self.connect_targets();
        let mut results: Vec<HostResult> = failures
            .into_iter()
            .map(|(host, message)| HostResult::unreachable(host, message))
            .collect();

        if engine::has_validate(&ast) {
            let issues = self.validate(&ast);
            if issues.iter().any(|issue| issue.is_error) {
                return Ok(Loaded {
                    issues,
                    results: None,
                });
            }
        }

        let arguments: rhai::Array = args.iter().cloned().map(Dynamic::from).collect();
        let saved = self.replace_args(arguments);
        results.extend(self.run(&ast));
        self.replace_args(saved);
        Ok(Loaded {
            issues: Vec::new(),
            results: Some(results),
        })
    }

    fn validate(&mut self, ast: &AST) -> Vec<ValidationIssue> {
        let mut issues = Vec::new();
        for index in self.targets.clone() {
            let host = &mut self.hosts[index];
            let Some(connection) = &host.connection else {
                continue;
            };
            connection.ctx.set_check_mode(true);
            let options = rhai::CallFnOptions::new().eval_ast(false);
            let result = connection.engine.call_fn_with_options::<Dynamic>(
                options,
                &mut host.scope,
                ast,
                "validate",
                (),
            );
            connection.ctx.set_check_mode(self.check);
            issues.extend(connection.ctx.take_issues());
            if let Err(error) = result {
                let source = ast.source().unwrap_or_default();
                let error = ScriptError::runtime_with_sources(
                    &error,
                    source,
                    &self.paths.stdlib_dirs,
                    &|name| self.sources.text(name),
                );
                issues.push(ValidationIssue {
                    host: host.name.clone(),
                    variable: None,
                    origin: None,
                    message: error.to_string(),
                    is_error: true,
                });
            }
        }
        issues
    }

    /// Sets the `args` constant of every host's scope, returning the value it had.
    fn replace_args(&mut self, arguments: rhai::Array) -> rhai::Array {
        let mut previous = rhai::Array::new();
        for host in &mut self.hosts {
            if let Some(value) = host.scope.get_value_mut::<rhai::Array>("args") {
                previous = std::mem::replace(value, arguments.clone());
            }
        }
        previous
    }

    /// Runs a compiled entry or file on the target hosts in parallel, then keeps its functions
    /// and imports for later entries. Results are in target order.
    fn run(&mut self, ast: &AST) -> Vec<HostResult> {
        self.interrupt.clear();
        let mut results: Vec<HostResult> = self
            .connect_targets()
            .into_iter()
            .map(|(host, message)| HostResult::unreachable(host, message))
            .collect();

        let Session {
            hosts,
            targets,
            sources,
            paths,
            ..
        } = self;
        let sources = &*sources;
        let dirs = &paths.stdlib_dirs;
        let running: Vec<&mut HostSession> = hosts
            .iter_mut()
            .enumerate()
            .filter(|(index, host)| targets.contains(index) && host.is_connected())
            .map(|(_, host)| host)
            .collect();
        let evaluated: Vec<HostResult> = std::thread::scope(|threads| {
            let handles: Vec<_> = running
                .into_iter()
                .map(|host| {
                    let name = host.name.clone();
                    let handle = threads.spawn(move || host.evaluate(ast, sources, dirs));
                    (name, handle)
                })
                .collect();
            handles
                .into_iter()
                .map(|(name, handle)| {
                    handle.join().unwrap_or_else(|_| HostResult {
                        host: name,
                        outcome: Outcome::Failed(ScriptError::Runtime {
                            kind: FailureKind::Failed,
                            rendered: "internal error: the evaluation thread panicked".into(),
                        }),
                        changed: true,
                    })
                })
                .collect()
        });
        results.extend(evaluated);
        results.sort_by_key(|result| self.hosts.iter().position(|host| host.name == result.host));

        self.remember(ast);
        results
    }

    /// Keeps the functions and top-level imports of `ast` for the rest of the session.
    fn remember(&mut self, ast: &AST) {
        let functions = ast.clone_functions_only();
        if functions.has_functions() {
            match Module::eval_ast_as_new(Scope::new(), &functions, &self.compiler) {
                Ok(module) => {
                    let module = Arc::new(module);
                    for connection in self.hosts.iter_mut().filter_map(|h| h.connection.as_mut()) {
                        connection.engine.register_global_module(module.clone());
                    }
                    self.functions.push(module);
                }
                Err(error) => tracing::warn!("cannot keep the entry's functions: {error}"),
            }
        }

        for import in top_level_imports(ast) {
            for host in &mut self.hosts {
                if let Some(connection) = &mut host.connection
                    && let Err(error) = register_import(&mut connection.engine, &import)
                {
                    tracing::debug!(host = %host.name, module = %import.path, "import not kept: {error}");
                }
            }
            self.imports.retain(|kept| kept.alias != import.alias);
            self.imports.push(import);
        }
    }

    /// Switches check mode for the entries that follow, on every host: primitives, the
    /// `check_mode` constant and `ansible_check_mode`.
    pub fn set_check_mode(&mut self, check: bool) {
        self.check = check;
        let origin = Origin {
            layer: Layer::Builtin,
            file: None,
            line: None,
        };
        for host in &mut self.hosts {
            if let Some(connection) = &host.connection {
                connection.ctx.set_check_mode(check);
            }
            if let Some(value) = host.scope.get_value_mut::<bool>("check_mode") {
                *value = check;
            }
            host.vars
                .set("ansible_check_mode", json!(check), origin.clone());
        }
    }

    /// Makes the hosts `pattern` selects the targets of the following entries. Hosts of the
    /// inventory outside the session join it. Returns the new targets' names.
    pub fn select_targets(&mut self, pattern: &str) -> Result<Vec<String>, String> {
        let matched: Vec<String> = self
            .inventory
            .select(Some(pattern))
            .map_err(|error| error.to_string())?
            .into_iter()
            .map(|host| host.name.clone())
            .collect();
        if matched.is_empty() {
            let known: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
            return Err(format!(
                "no inventory host matches {pattern:?}; this session has {}",
                known.join(", ")
            ));
        }

        let missing = matched
            .iter()
            .any(|name| !self.hosts.iter().any(|host| &host.name == name));
        if missing {
            let selected = run::select_hosts(
                &self.inventory,
                &self.paths,
                Some(pattern),
                &self.extra_vars,
                self.check,
            )?;
            for (name, vars) in selected.hosts {
                if self.hosts.iter().any(|host| host.name == name) {
                    continue;
                }
                run::add_secrets(&self.redactor, &[(name.clone(), vars.clone())]);
                self.hosts.push(HostSession {
                    name,
                    vars,
                    scope: Scope::new(),
                    connection: None,
                    down: None,
                });
            }
        }

        self.targets = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, host)| matched.contains(&host.name))
            .map(|(index, _)| index)
            .collect();
        Ok(self.targets().map(|host| host.name.clone()).collect())
    }

    /// Calls `read` with the engine whose registered functions `:help` and completion list:
    /// the first connected target's.
    pub fn with_docs_engine<T>(&self, read: impl FnOnce(&Engine) -> T) -> T {
        let connected = self
            .targets()
            .chain(self.hosts.iter())
            .find_map(|host| host.connection.as_ref());
        if let Some(connection) = connected {
            return read(&connection.engine);
        }
        // No host is connected. This engine is only read for its function metadata: none of
        // its functions is called, so its transport never runs anything.
        let host = &self.hosts[self.targets.first().copied().unwrap_or(0)];
        let ctx = Arc::new(HostContext::new(
            host.name.clone(),
            Arc::new(LocalTransport::new()),
            host.vars.clone(),
            self.reporter.clone(),
            self.runtime.clone(),
            self.paths.clone(),
            true,
            self.default_names.clone(),
        ));
        read(&self.build_engine(&ctx))
    }

    /// Finds a task file for `:load`: a path, or a task name as `masrun TASK` finds it.
    pub fn find_task(&self, task: &str) -> Result<PathBuf, String> {
        let path = Path::new(task);
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        paths::find_task(task, &self.paths.project_dir).map_err(|searched| {
            let searched: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
            format!(
                "task file {task} not found (searched {})",
                searched.join(", ")
            )
        })
    }

    /// Returns the names of the tasks `:load` accepts as words.
    pub fn available_tasks(&self) -> Vec<String> {
        paths::available_tasks(&self.paths.project_dir)
    }

    pub fn prompt(&self) -> String {
        let targets: Vec<&str> = self.targets().map(|host| host.name.as_str()).collect();
        let label = match targets.as_slice() {
            [one] => one.to_string(),
            many => format!("{} hosts", many.len()),
        };
        let check = if self.check { " (check)" } else { "" };
        format!("{label}{check}> ")
    }
}

/// Finds the `import "path" as alias;` statements at the top level of `ast` whose path is a
/// string literal.
fn top_level_imports(ast: &AST) -> Vec<Import> {
    ast.statements()
        .iter()
        .filter_map(|statement| match statement {
            Stmt::Import(import, _) => match &import.0 {
                Expr::StringConstant(path, _) if !import.1.name.is_empty() => Some(Import {
                    path: path.to_string(),
                    alias: import.1.name.to_string(),
                }),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn register_import(engine: &mut Engine, import: &Import) -> Result<(), String> {
    let module = engine
        .module_resolver()
        .resolve(engine, None, &import.path, Position::NONE)
        .map_err(|error| error.to_string())?;
    engine.register_static_module(&import.alias, module);
    Ok(())
}
