//! Registration of the primitives and helpers that task files call. Each primitive takes one
//! options map (`#{path: "...", mode: "0750"}`), rejects unknown keys, runs as one reported
//! step and returns its outcome map. Every function is registered with its parameter names and
//! a one-line description, which the REPL's `:help` reads back from the engine.

use std::path::PathBuf;
use std::sync::Arc;

use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FuncRegistration, ImmutableString, Map, Module,
    NativeCallContext,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::VarsHandle;
use super::error::{FailureKind, ScriptFailure};
use super::option_names::option_names;
use crate::primitives::{
    self, Outcome, PrimitiveError, command, file, http, template, user, yaml_edit,
};
use crate::run::host::{HostContext, ValidationIssue};
use crate::vars::VarError;

pub(super) type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

pub fn all(engine: &mut Engine, ctx: Arc<HostContext>) {
    register_vars(engine, &ctx);
    register_globals(engine, &ctx);
    register_helpers(engine, &ctx);
    engine.register_static_module("file", file_module(&ctx).into());
    engine.register_static_module("template", template_module(&ctx).into());
    engine.register_static_module("command", command_module(&ctx).into());
    engine.register_static_module("http", http_module(&ctx).into());
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

/// A function's registration with its parameters (`"name: Type"`, the return type last) and the
/// description that `:help` shows.
pub(super) fn documented(name: &str, params: &[&str], description: &str) -> FuncRegistration {
    FuncRegistration::new(name)
        .with_params_info(params)
        .with_comments([doc_comment(description)])
}

/// Rhai's form of a doc comment: every line starts with `///`.
fn doc_comment(text: &str) -> String {
    text.lines()
        .map(|line| format!("/// {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) fn parse_options<O: DeserializeOwned>(function: &str, options: Map) -> RhaiResult<O> {
    rhai::serde::from_dynamic(&Dynamic::from_map(options)).map_err(|error| {
        // Rhai words every deserialisation error as a syntax error, but the script parsed
        // fine: the options map is what is wrong.
        let text = error.to_string();
        let text = text.strip_prefix("Syntax error: ").unwrap_or(&text);
        failure(
            FailureKind::BadInput,
            format!("{function}: invalid options: {text}"),
        )
    })
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
step_label!(yaml_edit::YamlEditOptions, |o| o.path.display().to_string());
step_label!(http::HttpOptions, |o| format!("{} {}", o.method, o.url));
step_label!(command::CommandOptions, |o| o.argv.join(" "));

/// Registers `module::function(options)` as a reported step. `description` and the names of
/// `O`'s fields become the function's help text.
pub(super) fn register_step<O>(
    module: &mut Module,
    ctx: &Arc<HostContext>,
    qualified: &'static str,
    description: &str,
    action: fn(&HostContext, &O) -> primitives::Result<Outcome>,
) where
    O: DeserializeOwned + StepLabel + Send + Sync + 'static,
{
    let function = qualified.rsplit("::").next().unwrap_or(qualified);
    let ctx = ctx.clone();
    let description = options_help(description, option_names::<O>());
    let registration = documented(function, &["options: Map", "Map"], &description);
    registration.set_into_module(
        module,
        move |context: NativeCallContext, options: Map| -> RhaiResult<Dynamic> {
            let step = || -> RhaiResult<Dynamic> {
                let options: O = parse_options(qualified, options)?;
                let label = match options.explicit_name() {
                    Some(name) => name.clone(),
                    None => format!("{} {}", qualified.replace("::", "."), options.target()),
                };
                let outcome = primitives::run_step(&ctx, &label, || action(&ctx, &options))
                    .map_err(primitive_failure)?;
                to_dynamic(&outcome.into_value())
            };
            step().map_err(|error| at_call(&context, error))
        },
    );
}

/// Gives an error the position of the call that raised it. Rhai 1.27 leaves the position of
/// an error from a native function called through a module (`file::read(...)`) unset, so the
/// error frame would not point at the call.
pub(super) fn at_call(
    context: &NativeCallContext,
    mut error: Box<EvalAltResult>,
) -> Box<EvalAltResult> {
    if error.position().is_none() {
        error.set_position(context.call_position());
    }
    error
}

/// Appends the accepted option keys to a primitive's description.
fn options_help(description: &str, options: &[&str]) -> String {
    if options.is_empty() {
        description.to_string()
    } else {
        format!("{description}\nOptions: {}.", options.join(", "))
    }
}

fn file_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    register_step(
        &mut module,
        ctx,
        "file::directory",
        "Ensures a directory exists with the given mode and owner, creating parents like mkdir -p.",
        file::directory,
    );
    register_step(
        &mut module,
        ctx,
        "file::content",
        "Ensures a file holds exactly `content`, written atomically, with the given mode and owner.",
        file::content,
    );
    register_step(
        &mut module,
        ctx,
        "file::copy",
        "Copies a file from the controller (`src`) to the host (`path`), written atomically.",
        file::copy,
    );
    register_step(
        &mut module,
        ctx,
        "file::absent",
        "Removes a file, symlink or whole directory tree if it exists.",
        file::absent,
    );
    register_step(
        &mut module,
        ctx,
        "file::attributes",
        "Sets the mode and owner of an existing path.",
        file::attributes,
    );
    register_step(
        &mut module,
        ctx,
        "file::yaml_edit",
        "Sets and removes keys in a YAML file, keeping its other keys, comments and layout.",
        yaml_edit::edit,
    );

    let stat_ctx = ctx.clone();
    documented(
        "stat",
        &["path: String", "Map"],
        "Returns #{exists, kind, mode, uid, gid, size} for a path on the host.",
    )
    .set_into_module(
        &mut module,
        move |context: NativeCallContext, path: ImmutableString| -> RhaiResult<Dynamic> {
            let value = file::stat(&stat_ctx, &PathBuf::from(path.as_str()))
                .map_err(|error| at_call(&context, primitive_failure(error)))?;
            to_dynamic(&value)
        },
    );
    let prefetch_ctx = ctx.clone();
    documented(
        "prefetch",
        &["paths: Array", "()"],
        "Fetches the stat and contents of each path and its parent directories at once (two round trips over SSH) for the steps that follow; changes nothing.",
    )
    .set_into_module(
        &mut module,
        move |context: NativeCallContext, paths: Array| -> RhaiResult<()> {
            let paths = paths
                .into_iter()
                .map(|path| {
                    path.into_immutable_string()
                        .map(|text| PathBuf::from(text.as_str()))
                        .map_err(|kind| {
                            failure(
                                FailureKind::BadInput,
                                format!("file::prefetch: each path must be a string, not {kind}"),
                            )
                        })
                })
                .collect::<RhaiResult<Vec<PathBuf>>>()
                .map_err(|error| at_call(&context, error))?;
            file::prefetch(&prefetch_ctx, &paths)
                .map_err(|error| at_call(&context, primitive_failure(error)))
        },
    );
    let read_ctx = ctx.clone();
    documented(
        "read",
        &["path: String", "String"],
        "Returns a file's text from the host, or () when the file does not exist.",
    )
    .set_into_module(
        &mut module,
        move |context: NativeCallContext, path: ImmutableString| -> RhaiResult<Dynamic> {
            let text = file::read(&read_ctx, &PathBuf::from(path.as_str()))
                .map_err(|error| at_call(&context, primitive_failure(error)))?;
            Ok(text.map(Dynamic::from).unwrap_or(Dynamic::UNIT))
        },
    );
    module
}

fn template_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    register_step(
        &mut module,
        ctx,
        "template::file",
        "Renders the Jinja template `src` with the host's variables and writes it to `path` like file::content.",
        template::file,
    );

    let render_ctx = ctx.clone();
    documented(
        "render",
        &["name: String", "String"],
        "Renders a template from stdlib/templates/ with the host's variables and returns the text.",
    )
    .set_into_module(
        &mut module,
        move |context: NativeCallContext, name: ImmutableString| -> RhaiResult<String> {
            template::render(&render_ctx, &name, None)
                .map_err(|error| at_call(&context, template_failure(error)))
        },
    );
    let render_with_ctx = ctx.clone();
    documented(
        "render",
        &["name: String", "extra: Map", "String"],
        "Renders a template with the host's variables, shadowed by the variables in `extra`.",
    )
    .set_into_module(
        &mut module,
        move |context: NativeCallContext,
              name: ImmutableString,
              extra: Map|
              -> RhaiResult<String> {
            let extra = to_value(&Dynamic::from_map(extra))?;
            template::render(&render_with_ctx, &name, Some(&extra))
                .map_err(|error| at_call(&context, template_failure(error)))
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
    register_step(
        &mut module,
        ctx,
        "command::run",
        "Runs `argv` on the host without a shell and returns rc, stdout and stderr; a non-zero exit fails the step unless `ignore_errors`.",
        command::run,
    );
    module
}

fn http_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    register_step(
        &mut module,
        ctx,
        "http::request",
        "Sends an HTTP request from the host (through its connection) and returns status, body and json; `wait` retries until an `expect`ed status.",
        http::request,
    );
    module
}

fn user_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    let group_ctx = ctx.clone();
    let group_help = options_help(
        "Ensures a group exists on the host, with `gid` when given.",
        option_names::<user::GroupOptions>(),
    );
    let group = documented("group", &["options: Map", "Map"], &group_help);
    group.set_into_module(
        &mut module,
        move |context: NativeCallContext, options: Map| -> RhaiResult<Dynamic> {
            let options: user::GroupOptions = parse_options("user::group", options)?;
            let label = format!("user.group {}", options.name);
            let outcome =
                primitives::run_step(&group_ctx, &label, || user::group(&group_ctx, &options))
                    .map_err(|error| at_call(&context, primitive_failure(error)))?;
            to_dynamic(&outcome.into_value())
        },
    );
    let user_ctx = ctx.clone();
    let user_help = options_help(
        "Ensures a user exists on the host with the given uid, primary group, home and shell.",
        option_names::<user::UserOptions>(),
    );
    let user = documented("user", &["options: Map", "Map"], &user_help);
    user.set_into_module(
        &mut module,
        move |context: NativeCallContext, options: Map| -> RhaiResult<Dynamic> {
            let options: user::UserOptions = parse_options("user::user", options)?;
            let label = format!("user.user {}", options.name);
            let outcome =
                primitives::run_step(&user_ctx, &label, || user::user(&user_ctx, &options))
                    .map_err(|error| at_call(&context, primitive_failure(error)))?;
            to_dynamic(&outcome.into_value())
        },
    );
    let prefetch_ctx = ctx.clone();
    let prefetch_help = options_help(
        "Looks up the given users and groups with one command, for the user steps and owners that follow; changes nothing.",
        option_names::<user::PrefetchOptions>(),
    );
    documented("prefetch", &["options: Map", "()"], &prefetch_help).set_into_module(
        &mut module,
        move |context: NativeCallContext, options: Map| -> RhaiResult<()> {
            let options: user::PrefetchOptions = parse_options("user::prefetch", options)
                .map_err(|error| at_call(&context, error))?;
            user::prefetch(&prefetch_ctx, &options)
                .map_err(|error| at_call(&context, primitive_failure(error)))
        },
    );
    module
}

fn validation_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    let kinds = [
        (
            "error",
            true,
            "an error",
            " Any error stops the run before a change.",
        ),
        ("warning", false, "a warning", ""),
    ];
    for (function, is_error, kind, effect) in kinds {
        let with_var = ctx.clone();
        documented(
            function,
            &["variable: String", "message: String", "()"],
            &format!("Reports {kind} about `variable` from a task file's validate().{effect}"),
        )
        .set_into_module(
            &mut module,
            move |variable: ImmutableString, message: ImmutableString| -> RhaiResult<()> {
                let origin = with_var.vars.origin(&variable);
                let mut message = message.to_string();
                // A default derived from the operator's variables: name those, since that is
                // where the fix goes.
                if origin
                    .as_ref()
                    .is_some_and(|origin| origin.layer == crate::vars::source::Layer::Defaults)
                {
                    let sources: Vec<String> = with_var
                        .vars
                        .operator_sources(&variable)
                        .into_iter()
                        .map(|(name, origin)| format!("{name} (set at {origin})"))
                        .collect();
                    // A handful is a hint, and a long list would bury the message.
                    let listed = sources.len().min(4);
                    if listed > 0 {
                        let more = match sources.len() - listed {
                            0 => String::new(),
                            rest => format!(" and {rest} more"),
                        };
                        message.push_str(&format!(
                            "; it is derived from {}{more}",
                            sources[..listed].join(", ")
                        ));
                    }
                }
                with_var.add_issue(ValidationIssue {
                    host: with_var.name.clone(),
                    variable: Some(variable.to_string()),
                    origin,
                    message,
                    is_error,
                });
                Ok(())
            },
        );
        let without_var = ctx.clone();
        documented(
            function,
            &["message: String", "()"],
            &format!("Reports {kind} from a task file's validate().{effect}"),
        )
        .set_into_module(
            &mut module,
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
    documented(
        "decode",
        &["text: String", "Dynamic"],
        "Parses YAML text the way Ansible reads it (YAML 1.1).",
    )
    .set_into_module(
        &mut module,
        |text: ImmutableString| -> RhaiResult<Dynamic> {
            let value = crate::yaml::parse_value_unmarked(&text).map_err(|error| {
                failure(FailureKind::BadInput, format!("yaml::decode: {error}"))
            })?;
            to_dynamic(&value)
        },
    );
    // The encoder reads its output back and fails unless every value survives, so a secret
    // with quotes, `#` or a newline can never reach a file changed or half-quoted.
    documented(
        "encode",
        &["value: Dynamic", "String"],
        "Writes a value as block-style YAML that Ansible reads back as the same value.",
    )
    .set_into_module(&mut module, |value: Dynamic| -> RhaiResult<String> {
        let value = to_value(&value)?;
        let text = crate::yaml::to_yaml_string(&value);
        match crate::yaml::parse_value_unmarked(&text) {
            Ok(read_back) if read_back == value => Ok(text),
            _ => Err(failure(
                FailureKind::Failed,
                "yaml::encode: the YAML written does not read back as the same data",
            )),
        }
    });
    documented(
        "key_lines",
        &["text: String", "Map"],
        "Returns the 1-based line of each top-level key of a YAML document.",
    )
    .set_into_module(&mut module, |text: ImmutableString| -> RhaiResult<Map> {
        let vars = crate::yaml::parse_vars_str(&text, None, crate::vars::source::Layer::Builtin)
            .map_err(|error| failure(FailureKind::BadInput, format!("yaml::key_lines: {error}")))?;
        Ok(vars
            .into_iter()
            .filter_map(|(key, raw)| {
                raw.origin
                    .line
                    .map(|line| (key.into(), Dynamic::from(line as i64)))
            })
            .collect())
    });
    module
}

fn json_module() -> Module {
    let mut module = Module::new();
    documented("decode", &["text: String", "Dynamic"], "Parses JSON text.").set_into_module(
        &mut module,
        |text: ImmutableString| -> RhaiResult<Dynamic> {
            let value: Value = serde_json::from_str(&text).map_err(|error| {
                failure(FailureKind::BadInput, format!("json::decode: {error}"))
            })?;
            to_dynamic(&value)
        },
    );
    documented(
        "encode",
        &["value: Dynamic", "String"],
        "Writes a value as compact JSON.",
    )
    .set_into_module(&mut module, |value: Dynamic| -> RhaiResult<String> {
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
    documented(
        "get",
        &["vars: Vars", "name: String", "default: Dynamic", "Dynamic"],
        "Returns a variable's resolved value, or `default` when no layer defines it.",
    )
    .register_into_engine(
        engine,
        |vars: &mut VarsHandle, name: ImmutableString, default: Dynamic| -> RhaiResult<Dynamic> {
            match vars.0.try_get(&name).map_err(var_failure)? {
                Some(value) => to_dynamic(&value),
                None => Ok(default),
            }
        },
    );
    documented(
        "has",
        &["vars: Vars", "name: String", "bool"],
        "Returns whether any layer defines the variable.",
    )
    .register_into_engine(engine, |vars: &mut VarsHandle, name: ImmutableString| {
        vars.0.contains(&name)
    });
    documented(
        "origin",
        &["vars: Vars", "name: String", "String"],
        "Returns where the variable's value was set (layer, file and line).",
    )
    .register_into_engine(engine, |vars: &mut VarsHandle, name: ImmutableString| {
        vars.0
            .origin(&name)
            .map(|o| o.to_string())
            .unwrap_or_default()
    });

    // The same lookups as plain functions, for stdlib modules, which cannot see the task
    // file's `vars` constant.
    let get_ctx = ctx.clone();
    documented(
        "variable",
        &["name: String", "Dynamic"],
        "Returns a variable's resolved value; fails when it is undefined.",
    )
    .register_into_engine(
        engine,
        move |name: ImmutableString| -> RhaiResult<Dynamic> {
            to_dynamic(&get_ctx.vars.get(&name).map_err(var_failure)?)
        },
    );
    let default_ctx = ctx.clone();
    documented(
        "variable",
        &["name: String", "default: Dynamic", "Dynamic"],
        "Returns a variable's resolved value, or `default` when no layer defines it.",
    )
    .register_into_engine(
        engine,
        move |name: ImmutableString, default: Dynamic| -> RhaiResult<Dynamic> {
            match default_ctx.vars.try_get(&name).map_err(var_failure)? {
                Some(value) => to_dynamic(&value),
                None => Ok(default),
            }
        },
    );
    let has_ctx = ctx.clone();
    documented(
        "has_variable",
        &["name: String", "bool"],
        "Returns whether any layer defines the variable.",
    )
    .register_into_engine(engine, move |name: ImmutableString| {
        has_ctx.vars.contains(&name)
    });
    let origin_ctx = ctx.clone();
    documented(
        "variable_origin",
        &["name: String", "String"],
        "Returns where the variable's value was set (layer, file and line).",
    )
    .register_into_engine(engine, move |name: ImmutableString| {
        origin_ctx
            .vars
            .origin(&name)
            .map(|o| o.to_string())
            .unwrap_or_default()
    });
    let raw_ctx = ctx.clone();
    documented(
        "variable_raw",
        &["name: String", "Dynamic"],
        "Returns a variable's value as set, before its templates are rendered.",
    )
    .register_into_engine(
        engine,
        move |name: ImmutableString| -> RhaiResult<Dynamic> {
            match raw_ctx.vars.raw(&name) {
                Some(raw) => to_dynamic(&raw.value),
                None => Ok(Dynamic::UNIT),
            }
        },
    );
    let set_ctx = ctx.clone();
    documented(
        "set_variable",
        &["name: String", "value: Dynamic", "()"],
        "Overrides a variable for the rest of the run, above every layer, like set_fact.",
    )
    .register_into_engine(
        engine,
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
    documented(
        "variable_names",
        &["Array"],
        "Returns the names of all of the host's variables, sorted.",
    )
    .register_into_engine(engine, move || -> Array {
        names_ctx
            .vars
            .names()
            .into_iter()
            .map(Dynamic::from)
            .collect()
    });
    let eval_ctx = ctx.clone();
    documented(
        "jinja",
        &["expression: String", "Dynamic"],
        "Evaluates a Jinja expression (without braces) with the host's variables and filters.",
    )
    .register_into_engine(
        engine,
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
    documented(
        "fail",
        &["message: String", "()"],
        "Fails the task on this host with `message`.",
    )
    .register_into_engine(engine, |message: ImmutableString| -> RhaiResult<()> {
        Err(failure(FailureKind::Failed, message.to_string()))
    });
    let warn_ctx = ctx.clone();
    documented(
        "warn",
        &["message: String", "()"],
        "Prints a warning for this host.",
    )
    .register_into_engine(engine, move |message: ImmutableString| {
        warn_ctx.reporter.warning(Some(&warn_ctx.name), &message);
    });
    let check_ctx = ctx.clone();
    documented(
        "is_check_mode",
        &["bool"],
        "Returns whether primitives only report what they would change.",
    )
    .register_into_engine(engine, move || check_ctx.check_mode());
    let host_ctx = ctx.clone();
    documented(
        "host_name",
        &["String"],
        "Returns the inventory name of the host.",
    )
    .register_into_engine(engine, move || host_ctx.name.clone());
}

/// Registers helpers for text, values and variable names.
fn register_helpers(engine: &mut Engine, ctx: &Arc<HostContext>) {
    documented(
        "split_command",
        &["command: String", "Array"],
        "Splits a command line into words the way a POSIX shell does, without running it.",
    )
    .register_into_engine(engine, |command: ImmutableString| -> RhaiResult<Array> {
        let words = shell_words::split(&command).map_err(|error| {
            failure(
                FailureKind::BadInput,
                format!("cannot split command {command:?}: {error}"),
            )
        })?;
        Ok(words.into_iter().map(Dynamic::from).collect())
    });
    documented(
        "regex_match",
        &["text: String", "pattern: String", "bool"],
        "Returns whether the regular expression matches anywhere in `text`.",
    )
    .register_into_engine(
        engine,
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
    documented(
        "as_bool",
        &["value: Dynamic", "bool"],
        "Reads a value as a boolean the way Ansible's `bool` filter does (\"yes\", \"on\", 1, ...).",
    )
    .register_into_engine(engine, |value: Dynamic| -> RhaiResult<bool> {
        Ok(crate::vars::ansible_bool(&to_value(&value)?))
    });
    documented(
        "shell_quote",
        &["text: String", "String"],
        "Quotes text for a POSIX shell, like Ansible's `quote` filter.",
    )
    .register_into_engine(engine, |text: ImmutableString| {
        crate::vars::shell_quote(&text)
    });
    documented(
        "path_parent",
        &["path: String", "String"],
        "Returns the parent directory of a path, or \"\" for a path without one.",
    )
    .register_into_engine(engine, |path: ImmutableString| {
        std::path::Path::new(path.as_str())
            .parent()
            .map(|parent| parent.display().to_string())
            .unwrap_or_default()
    });
    documented("new_ulid", &["String"], "Returns a new random ULID.")
        .register_into_engine(engine, || ulid::Ulid::new().to_string());
    documented(
        "did_you_mean",
        &["word: String", "candidates: Array", "String"],
        "Returns the candidate closest to `word` if it is a likely typo of it, else \"\".",
    )
    .register_into_engine(engine, |word: ImmutableString, candidates: Array| {
        let candidates: Vec<String> = candidates.iter().map(|c| c.to_string()).collect();
        suggest(&word, candidates.iter().map(String::as_str)).unwrap_or_default()
    });
    let unknown_ctx = ctx.clone();
    documented(
        "unknown_variables",
        &["prefix: String", "Array"],
        "Lists variables with `prefix` that no default defines, as #{name, suggestion}: usually typos.",
    )
    .register_into_engine(
        engine,
        move |prefix: ImmutableString| -> Array { unknown_variables(&unknown_ctx, &prefix) },
    );
    engine.register_type_with_name::<ScriptFailure>("Failure");
    engine.register_fn("to_string", |failure: &mut ScriptFailure| {
        failure.message.clone()
    });
    engine.register_fn("to_debug", |failure: &mut ScriptFailure| {
        failure.message.clone()
    });
    documented(
        "combine",
        &["base: Dynamic", "overlay: Dynamic", "Dynamic"],
        "Deep-merges `overlay` into `base` like Ansible's combine(recursive=True).",
    )
    .register_into_engine(
        engine,
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
