//! The lazy resolver behind `HostVars`: it renders one variable at a time on demand, memoises
//! the result, detects reference cycles per resolution, and turns template engine failures into
//! `VarError`s that name the variable, its origin and the chain of references.
//!
//! Templates see the host's variables through [`HostContext`], a template engine object whose
//! lookups resolve the requested variable only when a template reads it. No lock is held while
//! a template renders, so a variable may be resolved from inside another one's rendering and
//! from several threads at once.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use indexmap::IndexMap;
use minijinja::value::{Enumerator, Object};
use minijinja::{Environment, ErrorKind, Value};
use serde_json::Value as Json;

use super::convert::{json_to_value, read_rendered, value_to_json};
use super::error::{CycleStep, Referrer, VarError, excerpt};
use super::secrets::{is_secret_key, is_secret_name};
use super::source::{Origin, RawVar};

/// The context key under which a [`HostContext`] returns itself, so that functions such as
/// `lookup()` can reach the resolver of the template they run in.
pub(crate) const CONTEXT_KEY: &str = "__masrun_host_context__";

/// Nesting levels of variable resolution that run on one thread's stack. Each level costs tens
/// of KiB of stack in a debug build, so a long chain of references continues on a new thread
/// every this many levels instead of overflowing the caller's stack.
const LEVELS_PER_THREAD: usize = 16;

/// Stack size of a thread that continues a deep resolution.
const CONTINUATION_STACK_BYTES: usize = 4 * 1024 * 1024;

/// Locks a mutex, continuing with the data when another thread panicked while holding it.
/// The critical sections here only read, insert, remove or clear, none of which can panic
/// halfway, so the data is never left half-changed.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One variable as the layers left it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub raw: RawVar,
    /// Set at run time: the value is used as given and never rendered.
    pub literal: bool,
}

/// A resolved value in both forms that callers need.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub value: Value,
    pub json: Arc<Json>,
}

impl Resolved {
    fn new(json: Json) -> Resolved {
        Resolved {
            value: json_to_value(&json),
            json: Arc::new(json),
        }
    }
}

#[derive(Default)]
struct Memo {
    /// Increased by every run-time override. A result computed under an older generation is
    /// not stored, because it may depend on the value that the override replaced.
    generation: u64,
    results: HashMap<String, Result<Resolved, VarError>>,
}

pub(crate) struct Resolver {
    pub host: String,
    entries: RwLock<IndexMap<String, Arc<Entry>>>,
    memo: Mutex<Memo>,
    pub env: Environment<'static>,
    /// Names of the environment's functions (`lookup`, `range`, ...). The engine looks these
    /// names up in the context before its globals, so such a lookup is not a failure to record.
    globals: HashSet<String>,
    /// Template directories that `lookup('template', ...)` searches, first match first.
    pub template_dirs: Vec<PathBuf>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    pub fn new(
        host: String,
        entries: IndexMap<String, Arc<Entry>>,
        env: Environment<'static>,
        template_dirs: Vec<PathBuf>,
    ) -> Self {
        let globals = env.globals().map(|(name, _)| name.to_string()).collect();
        Resolver {
            host,
            entries: RwLock::new(entries),
            memo: Mutex::new(Memo::default()),
            env,
            globals,
            template_dirs,
        }
    }

    pub fn entry(&self, name: &str) -> Option<Arc<Entry>> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries.get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> = entries.keys().cloned().collect();
        names.sort();
        names
    }

    /// Replaces a variable with a literal value and clears every memoised result.
    pub fn set(&self, name: &str, value: Json, origin: Origin) {
        let entry = Arc::new(Entry {
            raw: RawVar { value, origin },
            literal: true,
        });
        {
            let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
            entries.insert(name.to_string(), entry);
        }
        let mut memo = lock(&self.memo);
        memo.generation += 1;
        memo.results.clear();
    }

    /// Resolves variable `name`, reusing the memoised result when there is one.
    ///
    /// `resolution` carries the names being resolved by the caller's chain, so that a reference
    /// back to one of them fails as a cycle instead of recursing forever.
    pub fn resolve(
        self: &Arc<Self>,
        name: &str,
        resolution: &Arc<Resolution>,
    ) -> Result<Resolved, VarError> {
        let generation = {
            let memo = lock(&self.memo);
            if let Some(result) = memo.results.get(name) {
                return result.clone();
            }
            memo.generation
        };
        let Some(entry) = self.entry(name) else {
            return Err(VarError::undefined(name));
        };

        let depth = resolution.enter(name, &entry.raw.origin)?;
        let render = || {
            if entry.literal {
                return Ok(entry.raw.value.clone());
            }
            let referrer = Referrer::Variable {
                name: name.to_string(),
                origin: Some(entry.raw.origin.clone()),
            };
            self.render_json(
                &entry.raw.value,
                &referrer,
                resolution,
                is_secret_name(name),
            )
        };
        let result = if depth % LEVELS_PER_THREAD == 0 {
            run_with_fresh_stack(render)
        } else {
            render()
        };
        resolution.leave();
        let result = result.map(Resolved::new);

        // A cycle error depends on where the resolution started, so it is not memoised.
        if !matches!(result, Err(VarError::Cycle { .. })) {
            let mut memo = lock(&self.memo);
            if memo.generation == generation {
                memo.results.insert(name.to_string(), result.clone());
            }
        }
        result
    }

    /// Renders every templated string inside a raw value, keys of maps included.
    pub fn render_json(
        self: &Arc<Self>,
        raw: &Json,
        referrer: &Referrer,
        resolution: &Arc<Resolution>,
        secret: bool,
    ) -> Result<Json, VarError> {
        match raw {
            Json::String(text) => self.render_string(text, referrer, resolution, secret),
            Json::Array(items) => items
                .iter()
                .map(|item| self.render_json(item, referrer, resolution, secret))
                .collect::<Result<Vec<_>, _>>()
                .map(Json::Array),
            Json::Object(map) => {
                let mut rendered = serde_json::Map::with_capacity(map.len());
                for (key, value) in map {
                    let key = if is_template(key) {
                        self.render_template(key, referrer, resolution, None, secret)?
                    } else {
                        key.clone()
                    };
                    let secret = secret || is_secret_key(&key);
                    rendered.insert(key, self.render_json(value, referrer, resolution, secret)?);
                }
                Ok(Json::Object(rendered))
            }
            other => Ok(other.clone()),
        }
    }

    /// Renders one string the way Ansible templates a variable's value.
    ///
    /// A string that is exactly one `{{ expression }}` keeps the expression's type (a list stays
    /// a list), with whitespace around the expression ignored unless the value is a string. A string wrapped whole in `{% raw %}…{% endraw %}`, which is how the YAML loader
    /// stores `!unsafe` values, is returned literally. Any other template renders to a string
    /// that [`read_rendered`] may turn into a list, map, boolean or null.
    fn render_string(
        self: &Arc<Self>,
        text: &str,
        referrer: &Referrer,
        resolution: &Arc<Resolution>,
        secret: bool,
    ) -> Result<Json, VarError> {
        if !is_template(text) {
            return Ok(Json::String(text.to_string()));
        }
        if let Some(literal) = raw_block_literal(text) {
            return Ok(Json::String(literal.to_string()));
        }
        if let Some(expression) = single_expression(text) {
            let value = self.eval_native(expression, text, referrer, resolution, None, secret)?;
            // A string result keeps the whitespace around the expression, such as the final
            // newline of a YAML block scalar, so it is rendered as text instead.
            let keeps_whitespace = value.is_string() && text.trim() != text;
            if !keeps_whitespace {
                return Ok(value);
            }
        }
        let rendered = self.render_template(text, referrer, resolution, None, secret)?;
        Ok(read_rendered(rendered))
    }

    /// Renders template text against the host's variables plus `extra` top-level variables.
    pub fn render_template(
        self: &Arc<Self>,
        source: &str,
        referrer: &Referrer,
        resolution: &Arc<Resolution>,
        extra: Option<Value>,
        secret: bool,
    ) -> Result<String, VarError> {
        let context = HostContext::new(self.clone(), resolution.clone(), extra);
        let result = self.env.render_named_str(
            &template_name(referrer),
            source,
            Value::from_dyn_object(context.clone()),
        );
        context.finish(result, source, referrer, secret)
    }

    /// Evaluates one expression and returns its value with its own type.
    ///
    /// `source` is the text the expression came from, quoted in errors and rendered once more
    /// when the result is undefined so that the error names what was undefined.
    pub fn eval_native(
        self: &Arc<Self>,
        expression: &str,
        source: &str,
        referrer: &Referrer,
        resolution: &Arc<Resolution>,
        extra: Option<Value>,
        secret: bool,
    ) -> Result<Json, VarError> {
        let context = HostContext::new(self.clone(), resolution.clone(), extra.clone());
        let result = self
            .env
            .compile_expression_owned(expression.to_string())
            .and_then(|compiled| compiled.eval(Value::from_dyn_object(context.clone())));
        let value = context.finish(result, source, referrer, secret)?;

        match value_to_json(&value) {
            Ok(json) => Ok(json),
            Err(message) => {
                // Rendering the same text fails with the engine's description of the
                // undefined part, which `finish` maps to the variable behind it. It succeeds
                // for the silent undefined of `x if condition` without `else`, which renders
                // as an empty string.
                let rendered = self.render_template(source, referrer, resolution, extra, secret)?;
                if value.is_undefined() {
                    return Ok(read_rendered(rendered));
                }
                Err(VarError::Template {
                    place: Box::new(referrer.clone()),
                    message,
                    excerpt: (!secret).then(|| excerpt(source, None)),
                    chain: Vec::new(),
                })
            }
        }
    }
}

/// The names being resolved by one top-level request, outermost first.
///
/// Each request (one `get`, one template rendering) has its own, so threads never share it.
#[derive(Debug, Default)]
pub(crate) struct Resolution {
    stack: Mutex<Vec<CycleStep>>,
}

impl Resolution {
    /// Pushes `name` and returns the new depth, or fails if `name` is already being resolved.
    fn enter(&self, name: &str, origin: &Origin) -> Result<usize, VarError> {
        let mut stack = lock(&self.stack);
        if let Some(start) = stack.iter().position(|step| step.name == name) {
            let mut path = stack[start..].to_vec();
            path.push(CycleStep {
                name: name.to_string(),
                origin: Some(origin.clone()),
            });
            return Err(VarError::Cycle { path });
        }
        stack.push(CycleStep {
            name: name.to_string(),
            origin: Some(origin.clone()),
        });
        Ok(stack.len())
    }

    fn leave(&self) {
        lock(&self.stack).pop();
    }
}

/// Runs `work` on a new thread with a stack of [`CONTINUATION_STACK_BYTES`] and waits for it.
/// The caller holds no lock meanwhile. If no thread can be started, `work` runs on the
/// caller's stack.
fn run_with_fresh_stack<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    let slot = Mutex::new(Some(work));
    let take = || lock(&slot).take().expect("the work runs only once");
    let spawned = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("masrun-vars".to_string())
            .stack_size(CONTINUATION_STACK_BYTES)
            .spawn_scoped(scope, || take()())
            .map(|handle| handle.join())
    });
    match spawned {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => take()(),
    }
}

/// A failed lookup made while rendering one template.
struct Failure {
    /// The name the template asked for.
    lookup: String,
    error: VarError,
}

/// The variables visible to one template rendering: `extra` values first, then the host's variables,
/// each resolved only when the template reads it.
///
/// The engine's lookup interface can only return "not found", so a lookup that fails records
/// its error here. After rendering, [`finish`](Self::finish) reports the recorded error that
/// caused the failure instead of the engine's generic "undefined value".
pub(crate) struct HostContext {
    pub resolver: Arc<Resolver>,
    pub resolution: Arc<Resolution>,
    extra: Option<Value>,
    failures: Mutex<Vec<Failure>>,
}

impl fmt::Debug for HostContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostContext")
            .field("host", &self.resolver.host)
            .finish_non_exhaustive()
    }
}

impl HostContext {
    pub fn new(
        resolver: Arc<Resolver>,
        resolution: Arc<Resolution>,
        extra: Option<Value>,
    ) -> Arc<HostContext> {
        Arc::new(HostContext {
            resolver,
            resolution,
            extra,
            failures: Mutex::new(Vec::new()),
        })
    }

    /// Records an error met while rendering, to be reported if it made the rendering fail.
    pub fn record(&self, lookup: &str, error: VarError) {
        lock(&self.failures).push(Failure {
            lookup: lookup.to_string(),
            error,
        });
    }

    /// Turns the engine's result into the caller's result.
    ///
    /// A recorded fatal error (a cycle, or a template error in a referenced variable) fails
    /// the rendering even when the engine got past it, for example through `default()`.
    /// Recorded undefined names matter only when the engine failed.
    pub fn finish<T>(
        &self,
        result: Result<T, minijinja::Error>,
        source: &str,
        referrer: &Referrer,
        secret: bool,
    ) -> Result<T, VarError> {
        let failures = std::mem::take(&mut *lock(&self.failures));
        if let Some(fatal) = failures.iter().find(|failure| failure.error.is_fatal()) {
            return Err(fatal.error.clone().referred_by(referrer));
        }
        result.map_err(|error| attribute_error(&error, &failures, source, referrer, secret))
    }
}

impl Object for HostContext {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        if name == CONTEXT_KEY {
            return Some(Value::from_dyn_object(self.clone()));
        }
        if let Some(extra) = &self.extra
            && let Ok(value) = extra.get_attr(name)
            && !value.is_undefined()
        {
            return Some(value);
        }
        match self.resolver.resolve(name, &self.resolution) {
            Ok(resolved) => Some(resolved.value),
            Err(VarError::Undefined { .. }) if self.resolver.globals.contains(name) => None,
            Err(error) => {
                self.record(name, error);
                None
            }
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut names = self.resolver.names();
        if let Some(extra) = &self.extra
            && let Ok(keys) = extra.try_iter()
        {
            names.extend(keys.filter_map(|key| key.as_str().map(str::to_string)));
        }
        Enumerator::Values(names.into_iter().map(Value::from).collect())
    }
}

/// Maps an engine error to the `VarError` an operator can act on.
///
/// The engine describes an undefined name as "`name` is undefined". When a lookup of that name
/// failed inside this rendering, the recorded error, which contains the deeper chain, is reported.
fn attribute_error(
    error: &minijinja::Error,
    failures: &[Failure],
    source: &str,
    referrer: &Referrer,
    secret: bool,
) -> VarError {
    let detail = error.detail().unwrap_or_default();
    if let Some(undefined) = undefined_expression(detail) {
        let root = undefined.split(['.', '[']).next().unwrap_or(undefined);
        let recorded = failures
            .iter()
            .rev()
            .find(|failure| failure.lookup == undefined)
            .or_else(|| failures.iter().rev().find(|failure| failure.lookup == root));
        return match recorded {
            Some(failure) => failure.error.clone().referred_by(referrer),
            None => VarError::undefined(undefined).referred_by(referrer),
        };
    }

    // An undefined error without a name, such as the one of `mandatory`, is most likely about
    // the last lookup that failed.
    // NOTE: this is a guess when several lookups failed and `default()` handled the later ones.
    if error.kind() == ErrorKind::UndefinedError
        && let Some(failure) = failures.last()
    {
        return failure.error.clone().referred_by(referrer);
    }

    VarError::Template {
        place: Box::new(referrer.clone()),
        message: if secret {
            describe_secret_engine_error(error, source)
        } else {
            describe_engine_error(error, source)
        },
        excerpt: (!secret).then(|| excerpt(source, error.line())),
        chain: Vec::new(),
    }
}

/// Extracts `name` from an engine error detail containing "`name` is undefined".
fn undefined_expression(detail: &str) -> Option<&str> {
    let end = detail.find("` is undefined")?;
    let start = detail[..end].rfind('`')? + 1;
    Some(&detail[start..end])
}

fn describe_engine_error(error: &minijinja::Error, source: &str) -> String {
    let mut message = match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    };
    if let (Some(line), true) = (error.line(), source.contains('\n')) {
        message.push_str(&format!(" (line {line})"));
    }
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        message.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    message
}

/// Describes an engine error in a secret value by its kind and line only, because the
/// engine's detail can quote a token of the value (`unknown statement def`).
fn describe_secret_engine_error(error: &minijinja::Error, source: &str) -> String {
    let mut message = error.kind().to_string();
    if let (Some(line), true) = (error.line(), source.contains('\n')) {
        message.push_str(&format!(" (line {line})"));
    }
    message
}

fn template_name(referrer: &Referrer) -> String {
    match referrer {
        Referrer::Variable { name, .. } | Referrer::Template { name } => name.clone(),
        Referrer::Expression { .. } => "<expression>".to_string(),
    }
}

/// Returns whether a string contains template syntax that Ansible would render.
///
/// Comments alone (`{#`) do not count, so a secret containing `{#` stays as written.
pub(crate) fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// Returns the inside of a string that is one `{% raw %}…{% endraw %}` block and nothing else.
fn raw_block_literal(text: &str) -> Option<&str> {
    const START: &str = "{% raw %}";
    const END: &str = "{% endraw %}";
    let inner = text.strip_prefix(START)?.strip_suffix(END)?;
    (!inner.contains(END)).then_some(inner)
}

/// Returns the expression of a string that is exactly one `{{ expression }}`, surrounding
/// whitespace and whitespace-control markers (`{{-`, `-}}`) allowed.
pub(crate) fn single_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    if ["{{", "}}", "{%", "%}", "{#"]
        .iter()
        .any(|marker| inner.contains(marker))
    {
        return None;
    }
    let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
    let inner = inner.strip_suffix(['-', '+']).unwrap_or(inner);
    let inner = inner.trim();
    (!inner.is_empty()).then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_expression_detection() {
        assert_eq!(single_expression("{{ a }}"), Some("a"));
        assert_eq!(single_expression("  {{- a | bool -}}\n"), Some("a | bool"));
        assert_eq!(single_expression("{{ a }}/b"), None);
        assert_eq!(single_expression("{{ a }}{{ b }}"), None);
        assert_eq!(single_expression("{% if a %}{{ a }}{% endif %}"), None);
        assert_eq!(single_expression("{{ x - 1 }}"), Some("x - 1"));
    }

    #[test]
    fn raw_block_detection() {
        assert_eq!(
            raw_block_literal("{% raw %}{{ x }}{% endraw %}"),
            Some("{{ x }}")
        );
        assert_eq!(
            raw_block_literal("{% raw %}a{% endraw %}{{ b }}{% raw %}c{% endraw %}"),
            None
        );
        assert_eq!(raw_block_literal("x{% raw %}a{% endraw %}"), None);
    }

    #[test]
    fn undefined_expression_from_detail() {
        assert_eq!(
            undefined_expression("`missing` is undefined"),
            Some("missing")
        );
        assert_eq!(
            undefined_expression(
                "tried to use + operator on unsupported types number and undefined (`b` is undefined)"
            ),
            Some("b")
        );
        assert_eq!(undefined_expression("filter bogus is unknown"), None);
    }
}
