//! The Rhai engine of one host: registers the primitives as modules (`file::`, `template::`,
//! `command::`, `user::`, `systemd::`, `container::`, `postgres::`, `validation::`, `yaml::`,
//! `json::`), the `vars` object and helper functions, and resolves `import` from the stdlib
//! directories. It owns no flow: task files do.

pub mod error;
mod option_names;
mod register;
mod register_services;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::module_resolvers::{FileModuleResolver, ModuleResolversCollection};
use rhai::{AST, Dynamic, Engine, Scope};

use crate::run::host::HostContext;
use crate::vars::HostVars;

pub use error::ScriptError;
pub use register::suggest;

/// A handle on the host's variables as task files see them: `vars.name`, `vars["name"]`.
#[derive(Clone)]
pub struct VarsHandle(pub Arc<HostVars>);

/// Builds an engine whose primitives act on `ctx`'s host. Cheap enough to build per host.
pub fn build(ctx: Arc<HostContext>) -> Engine {
    let mut engine = Engine::new();
    engine.set_max_expr_depths(128, 64);

    let mut resolvers = ModuleResolversCollection::new();
    for dir in &ctx.paths.stdlib_dirs {
        let mut resolver = FileModuleResolver::new_with_path(dir);
        resolver.enable_cache(true);
        resolvers.push(resolver);
    }
    engine.set_module_resolver(resolvers);

    let print_ctx = ctx.clone();
    engine.on_print(move |text| print_ctx.reporter.message(&print_ctx.name, text));
    let debug_ctx = ctx.clone();
    engine.on_debug(move |text, source, position| {
        let location = match source {
            Some(source) => format!("{source}:{position}"),
            None => position.to_string(),
        };
        debug_ctx
            .reporter
            .message(&debug_ctx.name, &format!("[debug {location}] {text}"));
    });

    register::all(&mut engine, ctx);
    engine
}

/// Compiles a task file, keeping its path as the AST's source for error messages.
pub fn compile(engine: &Engine, path: &Path) -> Result<AST, ScriptError> {
    let source = std::fs::read_to_string(path).map_err(|error| ScriptError::Io {
        path: path.to_path_buf(),
        message: error.to_string(),
    })?;
    let mut ast = engine
        .compile(&source)
        .map_err(|error| ScriptError::parse(path, &source, &error))?;
    ast.set_source(path.display().to_string());
    Ok(ast)
}

/// The scope a task file starts with: `host`, `check_mode`, `args` and `vars`.
pub fn scope(ctx: &HostContext, args: &[String]) -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push_constant("host", ctx.name.clone());
    scope.push_constant("check_mode", ctx.check_mode());
    let args: rhai::Array = args.iter().cloned().map(Dynamic::from).collect();
    scope.push_constant("args", args);
    scope.push_constant("vars", VarsHandle(ctx.vars.clone()));
    scope
}

/// Whether the task file defines `fn validate()`, which masrun runs on every host before any
/// host runs the file's body.
pub fn has_validate(ast: &AST) -> bool {
    ast.iter_functions()
        .any(|f| f.name == "validate" && f.params.is_empty())
}

/// The leading `//!` comment of a task file: its help text.
pub fn doc_comment(path: &Path) -> Option<String> {
    let source = std::fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = source
        .lines()
        .take_while(|line| line.starts_with("//!") || line.trim().is_empty())
        .filter_map(|line| line.strip_prefix("//!"))
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The stdlib directory a `FileModuleResolver` would read `name` from; for error messages.
pub fn module_path(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter()
        .map(|dir| dir.join(format!("{name}.rhai")))
        .find(|path| path.is_file())
}
