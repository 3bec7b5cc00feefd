//! Ansible's `lookup()` and `query()` functions for the plugins masrun supports: `vars`, `env`,
//! `template` and `varnames`. They reach the host's variables through the [`HostContext`] of the
//! template they run in.

use std::sync::Arc;

use minijinja::value::{Kwargs, Rest, Value};
use minijinja::{Error, ErrorKind, State};
use regex::Regex;

use super::error::Referrer;
use super::filters::find_template;
use super::resolve::{CONTEXT_KEY, HostContext};

const SUPPORTED_PLUGINS: &str = "vars, env, template and varnames";

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

fn host_context(state: &State) -> Result<Arc<HostContext>, Error> {
    state
        .lookup(CONTEXT_KEY)
        .and_then(|value| value.downcast_object::<HostContext>())
        .ok_or_else(|| invalid("lookup() and query() need a template rendered with host variables"))
}

/// `lookup(plugin, *terms, wantlist=False, ...)`. Like Ansible, the results are joined with
/// `,` when they are all strings, a single result is returned as it is, and `wantlist=True`
/// returns the list.
pub fn lookup(
    state: &State,
    plugin: &str,
    terms: Rest<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let wantlist = kwargs.get::<Option<bool>>("wantlist")?.unwrap_or(false);
    let results = run_plugin(state, plugin, &terms, &kwargs)?;
    kwargs.assert_all_used()?;
    if wantlist {
        return Ok(Value::from(results));
    }
    if results.iter().all(|item| item.as_str().is_some()) {
        let texts: Vec<&str> = results.iter().filter_map(Value::as_str).collect();
        return Ok(Value::from(texts.join(",")));
    }
    if results.len() == 1 {
        return Ok(results.into_iter().next().unwrap_or_default());
    }
    Ok(Value::from(results))
}

/// `query(plugin, *terms, ...)` and its short form `q`: the results as a list.
pub fn query(
    state: &State,
    plugin: &str,
    terms: Rest<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let results = run_plugin(state, plugin, &terms, &kwargs)?;
    kwargs.assert_all_used()?;
    Ok(Value::from(results))
}

fn run_plugin(
    state: &State,
    plugin: &str,
    terms: &[Value],
    kwargs: &Kwargs,
) -> Result<Vec<Value>, Error> {
    let names = terms
        .iter()
        .map(|term| {
            term.as_str().map(str::to_string).ok_or_else(|| {
                invalid(format!(
                    "lookup('{plugin}'): every term must be a string, got {term}"
                ))
            })
        })
        .collect::<Result<Vec<String>, Error>>()?;
    match plugin {
        "vars" => lookup_vars(state, &names, kwargs),
        "env" => lookup_env(&names, kwargs),
        "template" => lookup_template(state, &names, kwargs),
        "varnames" => lookup_varnames(state, &names),
        other => Err(invalid(format!(
            "lookup plugin '{other}' is not supported; masrun supports {SUPPORTED_PLUGINS}"
        ))),
    }
}

/// `vars`: the value of each named variable, or `default` when it is undefined.
fn lookup_vars(state: &State, names: &[String], kwargs: &Kwargs) -> Result<Vec<Value>, Error> {
    let default = kwargs.get::<Option<Value>>("default")?;
    let mut results = Vec::with_capacity(names.len());
    for name in names {
        match (state.lookup(name), &default) {
            (Some(value), _) if !value.is_undefined() => results.push(value),
            (_, Some(default)) => results.push(default.clone()),
            // The wording matches the engine's, so that the error is mapped to the failed
            // lookup recorded by the host context, which records why the variable is undefined.
            _ => {
                return Err(Error::new(
                    ErrorKind::UndefinedError,
                    format!("`{name}` is undefined"),
                ));
            }
        }
    }
    Ok(results)
}

/// `env`: each environment variable of the masrun process, or `default` (`''` unless given)
/// when it is not set.
fn lookup_env(names: &[String], kwargs: &Kwargs) -> Result<Vec<Value>, Error> {
    let default = kwargs.get::<Option<String>>("default")?.unwrap_or_default();
    Ok(names
        .iter()
        .map(|name| Value::from(std::env::var(name).unwrap_or_else(|_| default.clone())))
        .collect())
}

/// `template`: each template file rendered with the host's variables, plus `template_vars`.
fn lookup_template(state: &State, names: &[String], kwargs: &Kwargs) -> Result<Vec<Value>, Error> {
    let context = host_context(state)?;
    let extra = kwargs.get::<Option<Value>>("template_vars")?;
    let mut results = Vec::with_capacity(names.len());
    for name in names {
        let Some(path) = find_template(&context.resolver.template_dirs, name) else {
            let searched: Vec<String> = context
                .resolver
                .template_dirs
                .iter()
                .map(|dir| dir.display().to_string())
                .collect();
            return Err(invalid(format!(
                "template '{name}' was not found in {}",
                if searched.is_empty() {
                    "any template directory (none are set)".to_string()
                } else {
                    searched.join(", ")
                }
            )));
        };
        let source = std::fs::read_to_string(&path)
            .map_err(|err| invalid(format!("failed to read template {}: {err}", path.display())))?;

        let referrer = Referrer::Template { name: name.clone() };
        let rendered = context.resolver.render_template(
            &source,
            &referrer,
            &context.resolution,
            extra.clone(),
            false,
        );
        match rendered {
            Ok(text) => results.push(Value::from(text)),
            Err(error) => {
                // The calling template's error mapping reports the recorded error, with the
                // chain through this template file.
                let kind = if error.is_fatal() {
                    ErrorKind::InvalidOperation
                } else {
                    ErrorKind::UndefinedError
                };
                context.record(&format!("lookup('template', '{name}')"), error);
                return Err(Error::new(
                    kind,
                    format!("failed to render template '{name}'"),
                ));
            }
        }
    }
    Ok(results)
}

/// `varnames`: the sorted names of the host's variables that each regular expression matches
/// at their start (Python's `re.match`).
fn lookup_varnames(state: &State, patterns: &[String]) -> Result<Vec<Value>, Error> {
    let context = host_context(state)?;
    let names = context.resolver.names();
    let mut results = Vec::new();
    for pattern in patterns {
        let regex = Regex::new(&format!("^(?:{pattern})")).map_err(|err| {
            invalid(format!(
                "lookup('varnames'): invalid regular expression '{pattern}': {err}"
            ))
        })?;
        results.extend(
            names
                .iter()
                .filter(|name| regex.is_match(name))
                .map(|name| Value::from(name.as_str())),
        );
    }
    Ok(results)
}
