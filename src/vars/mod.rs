//! Lazy, Jinja-templated variable resolution per host, with Ansible's filters and semantics.
//!
//! [`HostVars`] contains one host's variables as the inventory layers left them, raw and
//! unrendered. Reading a variable renders it (and whatever it refers to) against the same host's
//! variables, memoises the result, and fails with a [`VarError`] that names the variable, the
//! file and line it was set at, and the chain of references. This module does not read files
//! of the inventory and does not define built-in variables such as `inventory_hostname`: the
//! caller passes them in as layers.
//!
//! # Templates in variable values
//!
//! - A string containing `{{` or `{%` is a template. A string that is exactly one
//!   `{{ expression }}`, whitespace around it aside, keeps the expression's type, so
//!   `"{{ keys | map(attribute='config') | list }}"` is a list and `"{{ x | bool }}"` a boolean.
//!   A string result keeps the whitespace around the expression.
//! - Any other template renders to a string. Like Ansible, a result that is exactly `True`,
//!   `False` or `None`, or that starts with `[` or `{` and parses as a JSON or Python literal,
//!   becomes that value.
//! - Strings inside lists and maps are rendered too, map keys included.
//! - A variable whose value refers to an undefined name counts as undefined, so `default()`
//!   and `is defined` apply to it as in Ansible. A cycle or a template error is never hidden.
//!
//! # Differences from Ansible's Jinja2
//!
//! Templates run on minijinja with the filters of [`environment`]. Authors of default variable
//! files should know these differences:
//!
//! - An attribute of an undefined attribute fails even under `default()`: with `foo = {}`,
//!   `foo.bar.baz | default('x')` is an error, while `foo.bar | default('x')` is `x`.
//! - Python's `%` string operator is missing. Use `'%s:%d' | format('a', 1)` or `~`.
//! - `'text' is sequence` is false, and `md5` is not a `hash()` type.
//! - Only the `vars`, `env`, `template` and `varnames` lookups exist.
//! - `to_yaml` and `to_nice_yaml` do not fold long lines and write multi-line strings
//!   double-quoted, so their text can differ from PyYAML's although the data is the same.
//! - A value that contains only `{#` (a comment) is not rendered.

pub mod error;
pub mod secrets;
pub mod source;

mod convert;
mod filters;
mod json_text;
mod lookup;
mod resolve;
mod text;
mod yaml_text;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value;

use self::convert::json_to_value;
pub use self::error::VarError;
use self::error::{Referrer, is_identifier};
pub use self::filters::{ansible_bool, environment};
use self::resolve::{Entry, Resolution, Resolver};
pub use self::secrets::is_secret_name;
pub use self::text::shell_quote;
pub use self::yaml_text::double_quoted as yaml_double_quoted;

/// Deep-merges `overlay` into `base` the way `combine(recursive=True)` does: maps merge key by
/// key, anything else (lists included) is replaced. A non-map `overlay` replaces `base`.
pub fn combine_values(base: &Value, overlay: &Value) -> Value {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            let mut merged = base.clone();
            filters::merge_maps(&mut merged, overlay.clone(), true, "replace");
            Value::Object(merged)
        }
        _ => overlay.clone(),
    }
}

use self::source::{Origin, RawVar, VarSource};

/// Minimum similarity (normalised Damerau-Levenshtein, 0 to 1) for a known variable to be
/// suggested in place of an undefined name.
const SUGGESTION_MIN_SIMILARITY: f64 = 0.75;

/// One host's variables: raw values from every layer, resolved lazily and memoised.
///
/// Cloning is cheap and clones share the memo and the run-time overrides. Every method takes
/// `&self` and may be called from several threads at once.
#[derive(Clone, Debug)]
pub struct HostVars {
    resolver: Arc<Resolver>,
}

impl HostVars {
    /// Layers variables for `host`. `layers` are in precedence order, lowest first: a later
    /// layer replaces an earlier layer's value key by key, without merging maps.
    /// `template_dirs` are searched, first match first, by `lookup('template', ...)` and
    /// `{% include %}`.
    pub fn new(host: &str, layers: Vec<VarSource>, template_dirs: Vec<PathBuf>) -> HostVars {
        let mut entries: IndexMap<String, Arc<Entry>> = IndexMap::new();
        for layer in layers {
            for (name, raw) in layer {
                entries.insert(
                    name,
                    Arc::new(Entry {
                        raw,
                        literal: false,
                    }),
                );
            }
        }
        let env = environment(template_dirs.clone());
        HostVars {
            resolver: Arc::new(Resolver::new(host.to_string(), entries, env, template_dirs)),
        }
    }

    /// Returns the name of the host these variables belong to.
    #[allow(dead_code)] // NOTE: the REPL labels results with it.
    pub fn host(&self) -> &str {
        &self.resolver.host
    }

    /// Resolves a variable, rendering its templates and those of the variables it refers to.
    pub fn get(&self, name: &str) -> Result<Value, VarError> {
        let resolution = Arc::new(Resolution::default());
        self.resolver
            .resolve(name, &resolution)
            .map(|resolved| (*resolved.json).clone())
            .map_err(|error| self.with_suggestion(error))
    }

    /// Resolves a variable, or returns `None` when no layer defines it. Errors while rendering
    /// a defined variable (including undefined names it refers to) are still errors.
    pub fn try_get(&self, name: &str) -> Result<Option<Value>, VarError> {
        if !self.contains(name) {
            return Ok(None);
        }
        self.get(name).map(Some)
    }

    /// Returns whether any layer defines the variable.
    pub fn contains(&self, name: &str) -> bool {
        self.resolver.entry(name).is_some()
    }

    /// Returns where the variable's current value was set.
    pub fn origin(&self, name: &str) -> Option<Origin> {
        self.resolver
            .entry(name)
            .map(|entry| entry.raw.origin.clone())
    }

    /// Returns the variable's value as set, before rendering.
    pub fn raw(&self, name: &str) -> Option<RawVar> {
        self.resolver.entry(name).map(|entry| entry.raw.clone())
    }

    /// Returns the variables set outside masrun's defaults that `name`'s value is derived from,
    /// following the templates of default values, with where each was set. An error about a
    /// derived variable such as `matrix_authentication_service_hostname` can then name the
    /// operator's `matrix_domain`.
    pub fn operator_sources(&self, name: &str) -> Vec<(String, Origin)> {
        let mut sources = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut pending = vec![name.to_string()];
        while let Some(current) = pending.pop() {
            if !seen.insert(current.clone()) || seen.len() > 200 {
                continue;
            }
            let Some(raw) = self.raw(&current) else {
                continue;
            };
            if current != name && raw.origin.layer != source::Layer::Defaults {
                sources.push((current, raw.origin));
                continue;
            }
            let mut text = String::new();
            collect_strings(&raw.value, &mut text);
            if !text.contains("{{") && !text.contains("{%") {
                continue;
            }
            let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
            pending.extend(
                words
                    .filter(|word| !word.is_empty() && self.contains(word))
                    .map(str::to_string),
            );
        }
        sources.sort_by(|a, b| a.0.cmp(&b.0));
        sources
    }

    /// Returns the names of all variables, sorted.
    pub fn names(&self) -> Vec<String> {
        self.resolver.names()
    }

    /// Overrides a variable for the rest of the run, above every layer, like Ansible's
    /// `set_fact`. The value is used as given and is not rendered again, so a password that
    /// contains `{{` stays intact. Every memoised result is forgotten, because any of them may
    /// depend on the old value.
    pub fn set(&self, name: &str, value: Value, origin: Origin) {
        self.resolver.set(name, value, origin);
    }

    /// Renders a template file's text with the host's variables and `extra` top-level
    /// variables. In the template's own text, `extra` takes precedence over the host's
    /// variables. The host's variables that the template reads are resolved without `extra`.
    /// `template_name` names the template in errors. `extra` must be a map when given.
    pub fn render_str(
        &self,
        source: &str,
        template_name: &str,
        extra: Option<&Value>,
    ) -> Result<String, VarError> {
        let referrer = Referrer::Template {
            name: template_name.to_string(),
        };
        let extra = match extra {
            None => None,
            Some(Value::Object(map)) => Some(json_to_value(&Value::Object(map.clone()))),
            Some(other) => {
                return Err(VarError::Template {
                    place: Box::new(referrer),
                    message: format!("the extra variables must be a map, got {other}"),
                    excerpt: None,
                    chain: Vec::new(),
                });
            }
        };
        let resolution = Arc::new(Resolution::default());
        self.resolver
            .render_template(source, &referrer, &resolution, extra, false)
            .map_err(|error| self.with_suggestion(error))
    }

    /// Evaluates one template expression (without `{{ }}`) and returns its value with its own
    /// type, for scripts and the REPL.
    pub fn eval_expression(&self, expression: &str) -> Result<Value, VarError> {
        let referrer = Referrer::Expression {
            text: expression.to_string(),
        };
        let source = format!("{{{{ {expression} }}}}");
        let resolution = Arc::new(Resolution::default());
        self.resolver
            .eval_native(expression, &source, &referrer, &resolution, None, false)
            .map_err(|error| self.with_suggestion(error))
    }

    /// Collects the secret values to redact from output.
    ///
    /// These are the strings and numbers of at least [`secrets::SECRET_MIN_LEN`] characters
    /// in the value of each variable whose name looks secret ([`is_secret_name`]). Inside any
    /// other variable's value, they are such values under a secret-looking map key
    /// ([`secrets::SECRET_KEYS`]). A variable that fails to resolve contributes its raw
    /// value instead, because the render error may quote that text, for example a secret
    /// that contains `{%` by chance. An undefined name that the error names and that occurs
    /// in such a raw value (`abc{{ xyz }}`) is most likely a piece of the secret, so it is
    /// added too. A name close to a defined variable's name is a typo and is not added.
    /// The result has no duplicates and lists longer values first, so that a redactor
    /// replacing them in order never leaves part of a longer secret behind.
    pub fn secrets(&self) -> Vec<String> {
        let mut found = Vec::new();
        for name in self.names() {
            let collect = |value: &Value, out: &mut Vec<String>| {
                if is_secret_name(&name) {
                    secrets::collect_all_strings(value, out);
                } else {
                    secrets::collect_keyed_secrets(value, out);
                }
            };
            match self.get(&name) {
                Ok(value) => collect(&value, &mut found),
                Err(error) => {
                    let Some(raw) = self.raw(&name) else {
                        continue;
                    };
                    let mut raw_secrets = Vec::new();
                    collect(&raw.value, &mut raw_secrets);
                    if let VarError::Undefined {
                        name: undefined, ..
                    } = &error
                        && raw_secrets
                            .iter()
                            .any(|text| text.contains(undefined.as_str()))
                        && self.closest_name(undefined).is_none()
                    {
                        secrets::push_secret(undefined, &mut found);
                    }
                    found.extend(raw_secrets);
                }
            }
        }
        found.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        found.dedup();
        found
    }

    /// Adds a "did you mean" suggestion to an undefined-variable error.
    fn with_suggestion(&self, error: VarError) -> VarError {
        match error {
            VarError::Undefined {
                name,
                chain,
                suggestion: None,
            } if is_identifier(&name) => {
                let suggestion = self.closest_name(&name);
                VarError::Undefined {
                    name,
                    chain,
                    suggestion,
                }
            }
            other => other,
        }
    }

    fn closest_name(&self, name: &str) -> Option<String> {
        self.names()
            .into_iter()
            .filter(|candidate| candidate != name)
            .map(|candidate| {
                (
                    strsim::normalized_damerau_levenshtein(name, &candidate),
                    candidate,
                )
            })
            .filter(|(similarity, _)| *similarity >= SUGGESTION_MIN_SIMILARITY)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, candidate)| candidate)
    }
}

/// Appends every string inside `value` to `out`, separated by newlines.
fn collect_strings(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::String(text) => {
            out.push_str(text);
            out.push('\n');
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_strings(item, out)),
        serde_json::Value::Object(map) => map.values().for_each(|item| collect_strings(item, out)),
        _ => {}
    }
}
