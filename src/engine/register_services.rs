//! Registration of the service primitives: the `systemd::`, `container::` and `postgres::`
//! modules. Steps take one options map and are reported like every other primitive. The state
//! queries (`systemd::status`, `container::state`, …) return values and are not steps. Every
//! function carries a one-line description for the REPL's `:help`.

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, ImmutableString, Map, Module, NativeCallContext};

use super::register::{
    RhaiResult, StepLabel, at_call, documented, parse_options, primitive_failure, register_step,
    step_label, to_dynamic,
};
use crate::primitives::{self, PrimitiveError, container, postgres, systemd};
use crate::run::host::HostContext;

step_label!(systemd::UnitOptions, |o| o.unit());
step_label!(systemd::RemoveUnitOptions, |o| o.unit());
step_label!(systemd::EnableOptions, |o| o.unit.clone());
step_label!(systemd::StartOptions, |o| o.unit.clone());
step_label!(systemd::StopOptions, |o| o.unit.clone());
step_label!(systemd::RestartOptions, |o| o.unit.clone());
step_label!(systemd::WaitOptions, |o| o.unit.clone());
step_label!(container::ImageOptions, |o| o.image.clone());
step_label!(container::NetworkOptions, |o| o.network.clone());
step_label!(container::ExecOptions, |o| format!(
    "{} {}",
    o.container,
    o.argv.first().map(String::as_str).unwrap_or_default()
));
step_label!(container::RunOptions, |o| o.image.clone());
step_label!(postgres::RoleOptions, |o| o.role.clone());
step_label!(postgres::DatabaseOptions, |o| o.database.clone());
step_label!(postgres::QueryOptions, |o| first_line(&o.sql));
step_label!(postgres::CountRowsOptions, |o| o.tables.join(", "));
step_label!(postgres::ExistsOptions, |o| o.subject());

/// Returns the first line of a statement, shortened, to name its step.
fn first_line(sql: &str) -> String {
    const MAX_CHARS: usize = 60;
    let line = sql.trim().lines().next().unwrap_or_default();
    if line.chars().count() > MAX_CHARS {
        let short: String = line.chars().take(MAX_CHARS).collect();
        format!("{short}…")
    } else {
        line.to_string()
    }
}

pub fn all(engine: &mut Engine, ctx: &Arc<HostContext>) {
    engine.register_static_module("systemd", systemd_module(ctx).into());
    engine.register_static_module("container", container_module(ctx).into());
    engine.register_static_module("postgres", postgres_module(ctx).into());
}

/// Converts a count from a script, which Rhai passes as `i64`.
fn count(value: i64, what: &str) -> RhaiResult<usize> {
    usize::try_from(value).map_err(|_| {
        primitive_failure(PrimitiveError::InvalidOption(format!(
            "{what} must be 0 or more (got {value})"
        )))
    })
}

/// Registers a query on a unit, which reads its state and returns one part of it.
fn unit_query<T: Clone + Send + Sync + 'static>(
    module: &mut Module,
    ctx: &Arc<HostContext>,
    name: &str,
    return_type: &str,
    description: &str,
    pick: fn(&systemd::UnitState) -> RhaiResult<T>,
) {
    let ctx = ctx.clone();
    documented(name, &["unit: String", return_type], description).set_into_module(
        module,
        move |context: NativeCallContext, unit: ImmutableString| -> RhaiResult<T> {
            let state = systemd::query_state(&ctx, &unit)
                .map_err(|error| at_call(&context, primitive_failure(error)))?;
            pick(&state)
        },
    );
}

fn systemd_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    register_step(
        &mut module,
        ctx,
        "systemd::unit",
        "Installs a unit file at `path` from the template `src` (or `content`), atomically and owned by root; the next systemd step runs one daemon-reload.",
        systemd::unit,
    );
    register_step(
        &mut module,
        ctx,
        "systemd::remove_unit",
        "Stops and disables the unit of the file at `path`, then removes the file.",
        systemd::remove_unit,
    );
    register_step(
        &mut module,
        ctx,
        "systemd::enable",
        "Enables `unit` so it starts at boot.",
        systemd::enable,
    );
    register_step(
        &mut module,
        ctx,
        "systemd::disable",
        "Disables `unit`.",
        systemd::disable,
    );
    register_step(
        &mut module,
        ctx,
        "systemd::start",
        "Starts `unit` unless it is active, and fails with its journal lines if it does not stay up for `settle` seconds.",
        systemd::start,
    );
    register_step(
        &mut module,
        ctx,
        "systemd::stop",
        "Stops `unit` if it is active.",
        systemd::stop,
    );
    register_step(
        &mut module,
        ctx,
        "systemd::restart",
        "Restarts `unit`; with `if_changed: [results]` only when one of those results changed. An inactive unit is started.",
        systemd::restart,
    );
    register_step(
        &mut module,
        ctx,
        "systemd::reload",
        "Reloads an active unit's configuration, or starts an inactive one.",
        systemd::reload,
    );
    register_step(
        &mut module,
        ctx,
        "systemd::wait",
        "Waits up to `timeout` seconds until `unit` is `state` (active, inactive or failed).",
        systemd::wait,
    );

    let reload_ctx = ctx.clone();
    documented(
        "daemon_reload",
        &["options: Map", "Map"],
        "Runs systemctl daemon-reload when a unit file changed in this run, or always with `only_if_changed: false`.",
    )
    .set_into_module(
        &mut module,
        move |context: NativeCallContext, options: Map| -> RhaiResult<Dynamic> {
            let options: systemd::DaemonReloadOptions =
                parse_options("systemd::daemon_reload", options)?;
            let label = options
                .name
                .clone()
                .unwrap_or_else(|| "systemd.daemon_reload".into());
            let outcome = primitives::run_step(&reload_ctx, &label, || {
                systemd::daemon_reload(&reload_ctx, &options)
            })
            .map_err(|error| at_call(&context, primitive_failure(error)))?;
            to_dynamic(&outcome.into_value())
        },
    );
    let if_needed_ctx = ctx.clone();
    documented(
        "daemon_reload_if_needed",
        &["Map"],
        "Runs systemctl daemon-reload when a unit file changed in this run.",
    )
    .set_into_module(
        &mut module,
        move |context: NativeCallContext| -> RhaiResult<Dynamic> {
            let options = systemd::DaemonReloadOptions {
                only_if_changed: true,
                name: None,
            };
            let outcome = primitives::run_step(&if_needed_ctx, "systemd.daemon_reload", || {
                systemd::daemon_reload(&if_needed_ctx, &options)
            })
            .map_err(|error| at_call(&context, primitive_failure(error)))?;
            to_dynamic(&outcome.into_value())
        },
    );

    unit_query(
        &mut module,
        ctx,
        "status",
        "Map",
        "Returns #{exists, load_state, active_state, sub_state, unit_file_state, main_pid, restarts, result, is_active, is_enabled} of a unit.",
        |state| to_dynamic(&state.to_value()),
    );
    unit_query(
        &mut module,
        ctx,
        "is_active",
        "bool",
        "Returns whether a unit is active.",
        |state| Ok(state.is_active()),
    );
    unit_query(
        &mut module,
        ctx,
        "is_enabled",
        "bool",
        "Returns whether a unit is enabled to start at boot.",
        |state| Ok(state.is_enabled()),
    );
    unit_query(
        &mut module,
        ctx,
        "main_pid",
        "i64",
        "Returns the PID of a unit's main process, or 0 when it has none.",
        |state| Ok(i64::from(state.main_pid)),
    );

    let journal_ctx = ctx.clone();
    documented(
        "journal",
        &["unit: String", "lines: i64", "Array"],
        "Returns a unit's last `lines` journal lines, oldest first.",
    )
    .set_into_module(
        &mut module,
        move |context: NativeCallContext, unit: ImmutableString, lines: i64| -> RhaiResult<Array> {
            let lines = count(lines, "the number of journal lines")?;
            let lines = systemd::journal(&journal_ctx, &unit, lines)
                .map_err(|error| at_call(&context, primitive_failure(error)))?;
            Ok(lines.into_iter().map(Dynamic::from).collect())
        },
    );
    module
}

fn container_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    register_step(
        &mut module,
        ctx,
        "container::image",
        "Ensures `image` is on the host, pulled with retries as `pull` sets (always, missing, never); localhost/ images are never pulled.",
        container::image,
    );
    register_step(
        &mut module,
        ctx,
        "container::network",
        "Ensures the container network `network` exists, creating it with `driver` when missing.",
        container::network,
    );
    register_step(
        &mut module,
        ctx,
        "container::exec",
        "Runs `argv` in a running container, with `stdin` for secrets; a non-zero exit fails the step unless `ignore_errors`.",
        container::exec,
    );
    register_step(
        &mut module,
        ctx,
        "container::run",
        "Runs a one-off container of `image` with `argv` and bind `mounts`, waits for it to exit and removes it.",
        container::run,
    );

    let state_ctx = ctx.clone();
    documented(
        "state",
        &["name: String", "Map"],
        "Returns #{exists, running, status, id, image, image_id, pid} of a container.",
    )
    .set_into_module(
        &mut module,
        move |context: NativeCallContext, name: ImmutableString| -> RhaiResult<Dynamic> {
            let state = container::state(&state_ctx, &name)
                .map_err(|error| at_call(&context, primitive_failure(error)))?;
            to_dynamic(&state)
        },
    );
    let image_ctx = ctx.clone();
    documented(
        "image_id",
        &["image: String", "String"],
        "Returns the id of a local image, or () when the host does not have it.",
    )
    .set_into_module(
        &mut module,
        move |context: NativeCallContext, image: ImmutableString| -> RhaiResult<Dynamic> {
            let id = container::image_id(&image_ctx, &image)
                .map_err(|error| at_call(&context, primitive_failure(error)))?;
            Ok(id.map(Dynamic::from).unwrap_or(Dynamic::UNIT))
        },
    );
    let logs_ctx = ctx.clone();
    documented(
        "logs",
        &["name: String", "lines: i64", "Map"],
        "Returns a container's last `lines` log lines as #{stdout, stderr}.",
    )
    .set_into_module(
        &mut module,
        move |context: NativeCallContext,
              name: ImmutableString,
              lines: i64|
              -> RhaiResult<Dynamic> {
            let lines = count(lines, "the number of log lines")?;
            let logs = container::logs(&logs_ctx, &name, lines)
                .map_err(|error| at_call(&context, primitive_failure(error)))?;
            to_dynamic(&logs)
        },
    );
    let runtime_ctx = ctx.clone();
    documented(
        "runtime",
        &["String"],
        "Returns the container engine of the host: docker or podman (masrun_container_runtime).",
    )
    .set_into_module(
        &mut module,
        move |context: NativeCallContext| -> RhaiResult<String> {
            let runtime = container::runtime(&runtime_ctx)
                .map_err(|error| at_call(&context, primitive_failure(error)))?;
            Ok(runtime.command().to_string())
        },
    );
    module
}

fn postgres_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    register_step(
        &mut module,
        ctx,
        "postgres::ensure_role",
        "Ensures `role` exists with LOGIN and `password`, set only when the server's SCRAM verifier does not match it.",
        postgres::ensure_role,
    );
    register_step(
        &mut module,
        ctx,
        "postgres::ensure_database",
        "Ensures `database` exists with `owner`, UTF8 and C collation (created from template0).",
        postgres::ensure_database,
    );
    register_step(
        &mut module,
        ctx,
        "postgres::query",
        "Runs `sql` with `params` ($1, $2, …) and returns rows; `read_only` queries run in check mode too.",
        postgres::query,
    );
    register_step(
        &mut module,
        ctx,
        "postgres::count_rows",
        "Counts the rows of each of `tables`; a missing table counts as ().",
        postgres::count_rows,
    );
    register_step(
        &mut module,
        ctx,
        "postgres::exists",
        "Returns whether the `role`, `database` or `table` named exists.",
        postgres::exists,
    );
    module
}
