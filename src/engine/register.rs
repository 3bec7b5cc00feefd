//! Registration of the primitives and helpers that task files call. Each primitive takes one
//! options map (`#{path: "...", mode: "0750"}`), rejects unknown keys, runs as one reported
//! step and returns its outcome map.

use std::path::PathBuf;
use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map, Module};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::VarsHandle;
use super::error::{FailureKind, ScriptFailure};
use crate::primitives::{self, Outcome, PrimitiveError, command, file, template, user};
use crate::run::host::{HostContext, ValidationIssue};
use crate::vars::VarError;

pub(super) type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

pub fn all(engine: &mut Engine, ctx: Arc<HostContext>) {
    register_vars(engine, &ctx);
    register_globals(engine, &ctx);
    engine.register_static_module("file", file_module(&ctx).into());
    engine.register_static_module("template", template_module(&ctx).into());
    engine.register_static_module("command", command_module(&ctx).into());
    engine.register_static_module("user", user_module(&ctx).into());
    engine.register_static_module("validation", validation_module(&ctx).into());
    engine.register_static_module("yaml", yaml_module().into());
    engine.register_static_module("json", json_module().into());
    super::register_services::all(engine, &ctx);
}

fn failure(kind: FailureKind, message: impl Into<String>) -> Box<EvalAltResult> {
    ScriptFailure {
        kind,
        message: message.into(),
    }
    .into_error()
}

pub(super) fn primitive_failure(error: PrimitiveError) -> Box<EvalAltResult> {
    let kind = match &error {
        PrimitiveError::InvalidOption(_) => FailureKind::BadInput,
        error if error.is_unreachable() => FailureKind::Unreachable,
        _ => FailureKind::Failed,
    };
    failure(kind, error.to_string())
}

fn var_failure(error: VarError) -> Box<EvalAltResult> {
    failure(FailureKind::BadInput, error.to_string())
}

pub fn to_dynamic(value: &Value) -> RhaiResult<Dynamic> {
    rhai::serde::to_dynamic(value)
}

pub fn to_value(value: &Dynamic) -> RhaiResult<Value> {
    rhai::serde::from_dynamic(value)
}

pub(super) fn parse_options<O: DeserializeOwned>(function: &str, options: Map) -> RhaiResult<O> {
    rhai::serde::from_dynamic(&Dynamic::from_map(options))
        .map_err(|error| failure(FailureKind::BadInput, format!("{function}: {error}")))
}

/// Options that name their step: an explicit `name`, or the primitive and its target.
pub(super) trait StepLabel {
    fn explicit_name(&self) -> Option<&String>;
    fn target(&self) -> String;
}

macro_rules! step_label {
    ($options:ty, |$o:ident| $target:expr) => {
        impl StepLabel for $options {
            fn explicit_name(&self) -> Option<&String> {
                self.name.as_ref()
            }
            fn target(&self) -> String {
                let $o = self;
                $target
            }
        }
    };
}
pub(super) use step_label;

step_label!(file::DirectoryOptions, |o| o.path.display().to_string());
step_label!(file::ContentOptions, |o| o.path.display().to_string());
step_label!(file::CopyOptions, |o| o.path.display().to_string());
step_label!(file::AttributesOptions, |o| o.path.display().to_string());
step_label!(file::AbsentOptions, |o| o.path.display().to_string());
step_label!(template::TemplateOptions, |o| o.path.display().to_string());
step_label!(command::CommandOptions, |o| o.argv.join(" "));

/// Registers `module::function(options)` as a reported step.
pub(super) fn register_step<O>(
    module: &mut Module,
    ctx: &Arc<HostContext>,
    qualified: &'static str,
    action: fn(&HostContext, &O) -> primitives::Result<Outcome>,
) where
    O: DeserializeOwned + StepLabel + Send + Sync + 'static,
{
    let function = qualified.rsplit("::").next().unwrap_or(qualified);
    let ctx = ctx.clone();
    module.set_native_fn(function, move |options: Map| -> RhaiResult<Dynamic> {
        let options: O = parse_options(qualified, options)?;
        let label = match options.explicit_name() {
            Some(name) => name.clone(),
            None => format!("{} {}", qualified.replace("::", "."), options.target()),
        };
        let outcome = primitives::run_step(&ctx, &label, || action(&ctx, &options))
            .map_err(primitive_failure)?;
        to_dynamic(&outcome.into_value())
    });
}

fn file_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    register_step(&mut module, ctx, "file::directory", file::directory);
    register_step(&mut module, ctx, "file::content", file::content);
    register_step(&mut module, ctx, "file::copy", file::copy);
    register_step(&mut module, ctx, "file::absent", file::absent);
    register_step(&mut module, ctx, "file::attributes", file::attributes);

    let stat_ctx = ctx.clone();
    module.set_native_fn(
        "stat",
        move |path: ImmutableString| -> RhaiResult<Dynamic> {
            let value =
                file::stat(&stat_ctx, &PathBuf::from(path.as_str())).map_err(primitive_failure)?;
            to_dynamic(&value)
        },
    );
    let read_ctx = ctx.clone();
    module.set_native_fn(
        "read",
        move |path: ImmutableString| -> RhaiResult<Dynamic> {
            let text =
                file::read(&read_ctx, &PathBuf::from(path.as_str())).map_err(primitive_failure)?;
            Ok(text.map(Dynamic::from).unwrap_or(Dynamic::UNIT))
        },
    );
    module
}

fn template_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    register_step(&mut module, ctx, "template::file", template::file);

    let render_ctx = ctx.clone();
    module.set_native_fn(
        "render",
        move |name: ImmutableString| -> RhaiResult<String> {
            template::render(&render_ctx, &name, None).map_err(template_failure)
        },
    );
    let render_with_ctx = ctx.clone();
    module.set_native_fn(
        "render",
        move |name: ImmutableString, extra: Map| -> RhaiResult<String> {
            let extra = to_value(&Dynamic::from_map(extra))?;
            template::render(&render_with_ctx, &name, Some(&extra)).map_err(template_failure)
        },
    );
    module
}

/// A template that cannot render is bad input, not a failed step.
fn template_failure(error: PrimitiveError) -> Box<EvalAltResult> {
    failure(FailureKind::BadInput, error.to_string())
}

fn command_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    register_step(&mut module, ctx, "command::run", command::run);
    module
}

fn user_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    let group_ctx = ctx.clone();
    module.set_native_fn("group", move |options: Map| -> RhaiResult<Dynamic> {
        let options: user::GroupOptions = parse_options("user::group", options)?;
        let label = format!("user.group {}", options.name);
        let outcome =
            primitives::run_step(&group_ctx, &label, || user::group(&group_ctx, &options))
                .map_err(primitive_failure)?;
        to_dynamic(&outcome.into_value())
    });
    let user_ctx = ctx.clone();
    module.set_native_fn("user", move |options: Map| -> RhaiResult<Dynamic> {
        let options: user::UserOptions = parse_options("user::user", options)?;
        let label = format!("user.user {}", options.name);
        let outcome = primitives::run_step(&user_ctx, &label, || user::user(&user_ctx, &options))
            .map_err(primitive_failure)?;
        to_dynamic(&outcome.into_value())
    });
    module
}

fn validation_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    for (function, is_error) in [("error", true), ("warning", false)] {
        let with_var = ctx.clone();
        module.set_native_fn(
            function,
            move |variable: ImmutableString, message: ImmutableString| -> RhaiResult<()> {
                with_var.add_issue(ValidationIssue {
                    host: with_var.name.clone(),
                    variable: Some(variable.to_string()),
                    origin: with_var.vars.origin(&variable),
                    message: message.to_string(),
                    is_error,
                });
                Ok(())
            },
        );
        let without_var = ctx.clone();
        module.set_native_fn(
            function,
            move |message: ImmutableString| -> RhaiResult<()> {
                without_var.add_issue(ValidationIssue {
                    host: without_var.name.clone(),
                    variable: None,
                    origin: None,
                    message: message.to_string(),
                    is_error,
                });
                Ok(())
            },
        );
    }
    module
}

fn yaml_module() -> Module {
    let mut module = Module::new();
    module.set_native_fn("decode", |text: ImmutableString| -> RhaiResult<Dynamic> {
        let value = crate::yaml::parse_value(&text)
            .map_err(|error| failure(FailureKind::BadInput, format!("yaml::decode: {error}")))?;
        to_dynamic(&value)
    });
    module.set_native_fn("encode", |value: Dynamic| -> RhaiResult<String> {
        Ok(crate::yaml::to_yaml_string(&to_value(&value)?))
    });
    module
}

fn json_module() -> Module {
    let mut module = Module::new();
    module.set_native_fn("decode", |text: ImmutableString| -> RhaiResult<Dynamic> {
        let value: Value = serde_json::from_str(&text)
            .map_err(|error| failure(FailureKind::BadInput, format!("json::decode: {error}")))?;
        to_dynamic(&value)
    });
    module.set_native_fn("encode", |value: Dynamic| -> RhaiResult<String> {
        Ok(to_value(&value)?.to_string())
    });
    module
}

fn register_vars(engine: &mut Engine, ctx: &Arc<HostContext>) {
    engine.register_type_with_name::<VarsHandle>("Vars");
    engine.register_indexer_get(
        |vars: &mut VarsHandle, name: ImmutableString| -> RhaiResult<Dynamic> {
            to_dynamic(&vars.0.get(&name).map_err(var_failure)?)
        },
    );
    engine.register_fn(
        "get",
        |vars: &mut VarsHandle, name: ImmutableString, default: Dynamic| -> RhaiResult<Dynamic> {
            match vars.0.try_get(&name).map_err(var_failure)? {
                Some(value) => to_dynamic(&value),
                None => Ok(default),
            }
        },
    );
    engine.register_fn("has", |vars: &mut VarsHandle, name: ImmutableString| {
        vars.0.contains(&name)
    });
    engine.register_fn("origin", |vars: &mut VarsHandle, name: ImmutableString| {
        vars.0
            .origin(&name)
            .map(|o| o.to_string())
            .unwrap_or_default()
    });

    // The same lookups as plain functions, for stdlib modules, which cannot see the task
    // file's `vars` constant.
    let get_ctx = ctx.clone();
    engine.register_fn(
        "variable",
        move |name: ImmutableString| -> RhaiResult<Dynamic> {
            to_dynamic(&get_ctx.vars.get(&name).map_err(var_failure)?)
        },
    );
    let default_ctx = ctx.clone();
    engine.register_fn(
        "variable",
        move |name: ImmutableString, default: Dynamic| -> RhaiResult<Dynamic> {
            match default_ctx.vars.try_get(&name).map_err(var_failure)? {
                Some(value) => to_dynamic(&value),
                None => Ok(default),
            }
        },
    );
    let has_ctx = ctx.clone();
    engine.register_fn("has_variable", move |name: ImmutableString| {
        has_ctx.vars.contains(&name)
    });
    let origin_ctx = ctx.clone();
    engine.register_fn("variable_origin", move |name: ImmutableString| {
        origin_ctx
            .vars
            .origin(&name)
            .map(|o| o.to_string())
            .unwrap_or_default()
    });
    let raw_ctx = ctx.clone();
    engine.register_fn(
        "variable_raw",
        move |name: ImmutableString| -> RhaiResult<Dynamic> {
            match raw_ctx.vars.raw(&name) {
                Some(raw) => to_dynamic(&raw.value),
                None => Ok(Dynamic::UNIT),
            }
        },
    );
    let set_ctx = ctx.clone();
    engine.register_fn(
        "set_variable",
        move |name: ImmutableString, value: Dynamic| -> RhaiResult<()> {
            let origin = crate::vars::source::Origin {
                layer: crate::vars::source::Layer::Builtin,
                file: None,
                line: None,
            };
            set_ctx.vars.set(&name, to_value(&value)?, origin);
            Ok(())
        },
    );
    let names_ctx = ctx.clone();
    engine.register_fn("variable_names", move || -> Array {
        names_ctx
            .vars
            .names()
            .into_iter()
            .map(Dynamic::from)
            .collect()
    });
    let eval_ctx = ctx.clone();
    engine.register_fn(
        "jinja",
        move |expression: ImmutableString| -> RhaiResult<Dynamic> {
            to_dynamic(
                &eval_ctx
                    .vars
                    .eval_expression(&expression)
                    .map_err(var_failure)?,
            )
        },
    );
}

fn register_globals(engine: &mut Engine, ctx: &Arc<HostContext>) {
    engine.register_fn("fail", |message: ImmutableString| -> RhaiResult<()> {
        Err(failure(FailureKind::Failed, message.to_string()))
    });
    let warn_ctx = ctx.clone();
    engine.register_fn("warn", move |message: ImmutableString| {
        warn_ctx.reporter.warning(Some(&warn_ctx.name), &message);
    });
    let check_ctx = ctx.clone();
    engine.register_fn("is_check_mode", move || check_ctx.check_mode());
    let host_ctx = ctx.clone();
    engine.register_fn("host_name", move || host_ctx.name.clone());
    engine.register_fn(
        "split_command",
        |command: ImmutableString| -> RhaiResult<Array> {
            let words = shell_words::split(&command).map_err(|error| {
                failure(
                    FailureKind::BadInput,
                    format!("cannot split command {command:?}: {error}"),
                )
            })?;
            Ok(words.into_iter().map(Dynamic::from).collect())
        },
    );
    engine.register_fn(
        "regex_match",
        |text: ImmutableString, pattern: ImmutableString| -> RhaiResult<bool> {
            let regex = regex::Regex::new(&pattern).map_err(|error| {
                failure(
                    FailureKind::BadInput,
                    format!("invalid regex {pattern:?}: {error}"),
                )
            })?;
            Ok(regex.is_match(&text))
        },
    );
    engine.register_fn("as_bool", |value: Dynamic| -> RhaiResult<bool> {
        Ok(crate::vars::ansible_bool(&to_value(&value)?))
    });
    engine.register_fn("shell_quote", |text: ImmutableString| {
        crate::vars::shell_quote(&text)
    });
    engine.register_fn("new_ulid", || ulid::Ulid::new().to_string());
    engine.register_fn(
        "did_you_mean",
        |word: ImmutableString, candidates: Array| {
            let candidates: Vec<String> = candidates.iter().map(|c| c.to_string()).collect();
            suggest(&word, candidates.iter().map(String::as_str)).unwrap_or_default()
        },
    );
    let unknown_ctx = ctx.clone();
    engine.register_fn(
        "unknown_variables",
        move |prefix: ImmutableString| -> Array { unknown_variables(&unknown_ctx, &prefix) },
    );
    engine.register_type_with_name::<ScriptFailure>("Failure");
    engine.register_fn("to_string", |failure: &mut ScriptFailure| {
        failure.message.clone()
    });
    engine.register_fn("to_debug", |failure: &mut ScriptFailure| {
        failure.message.clone()
    });
    engine.register_fn(
        "combine",
        |base: Dynamic, overlay: Dynamic| -> RhaiResult<Dynamic> {
            to_dynamic(&crate::vars::combine_values(
                &to_value(&base)?,
                &to_value(&overlay)?,
            ))
        },
    );
}

/// The closest candidate to `word` by Jaro-Winkler similarity, if it is close enough to be a
/// likely typo.
pub fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    candidates
        .map(|candidate| (strsim::jaro_winkler(word, candidate), candidate))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate.to_string())
}

/// Variables with `prefix` that the operator set but no default defines: usually typos.
fn unknown_variables(ctx: &HostContext, prefix: &str) -> Array {
    let known = &ctx.default_names;
    ctx.vars
        .names()
        .into_iter()
        .filter(|name| name.starts_with(prefix) && !known.contains(name))
        .map(|name| {
            let mut entry = Map::new();
            let suggestion = suggest(&name, known.iter().map(String::as_str)).unwrap_or_default();
            entry.insert("suggestion".into(), Dynamic::from(suggestion));
            entry.insert("name".into(), Dynamic::from(name));
            Dynamic::from_map(entry)
        })
        .collect()
}
