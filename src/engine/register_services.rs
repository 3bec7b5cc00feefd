//! Registration of the service primitives: the `systemd::`, `container::` and `postgres::`
//! modules. Steps take one options map and are reported like every other primitive; the state
//! queries (`systemd::status`, `container::state`, …) return values and are not steps.

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, ImmutableString, Map, Module};

use super::register::{
    RhaiResult, StepLabel, parse_options, primitive_failure, register_step, step_label, to_dynamic,
};
use crate::primitives::{self, container, postgres, systemd};
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

/// The first line of a statement, shortened, to name its step.
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

/// A count or size from a script, which Rhai passes as `i64`.
fn count(value: i64, what: &str) -> RhaiResult<usize> {
    usize::try_from(value).map_err(|_| {
        primitive_failure(primitives::PrimitiveError::InvalidOption(format!(
            "{what} must be 0 or more (got {value})"
        )))
    })
}

fn systemd_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    register_step(&mut module, ctx, "systemd::unit", systemd::unit);
    register_step(
        &mut module,
        ctx,
        "systemd::remove_unit",
        systemd::remove_unit,
    );
    register_step(&mut module, ctx, "systemd::enable", systemd::enable);
    register_step(&mut module, ctx, "systemd::disable", systemd::disable);
    register_step(&mut module, ctx, "systemd::start", systemd::start);
    register_step(&mut module, ctx, "systemd::stop", systemd::stop);
    register_step(&mut module, ctx, "systemd::restart", systemd::restart);
    register_step(&mut module, ctx, "systemd::reload", systemd::reload);
    register_step(&mut module, ctx, "systemd::wait", systemd::wait);

    let reload_ctx = ctx.clone();
    module.set_native_fn(
        "daemon_reload",
        move |options: Map| -> RhaiResult<Dynamic> {
            let options: systemd::DaemonReloadOptions =
                parse_options("systemd::daemon_reload", options)?;
            let label = options
                .name
                .clone()
                .unwrap_or_else(|| "systemd.daemon_reload".into());
            let outcome = primitives::run_step(&reload_ctx, &label, || {
                systemd::daemon_reload(&reload_ctx, &options)
            })
            .map_err(primitive_failure)?;
            to_dynamic(&outcome.into_value())
        },
    );
    let if_needed_ctx = ctx.clone();
    module.set_native_fn("daemon_reload_if_needed", move || -> RhaiResult<Dynamic> {
        let options = systemd::DaemonReloadOptions {
            only_if_changed: true,
            name: None,
        };
        let outcome = primitives::run_step(&if_needed_ctx, "systemd.daemon_reload", || {
            systemd::daemon_reload(&if_needed_ctx, &options)
        })
        .map_err(primitive_failure)?;
        to_dynamic(&outcome.into_value())
    });

    let status_ctx = ctx.clone();
    module.set_native_fn(
        "status",
        move |unit: ImmutableString| -> RhaiResult<Dynamic> {
            let state = systemd::query_state(&status_ctx, &unit).map_err(primitive_failure)?;
            to_dynamic(&state.to_value())
        },
    );
    let active_ctx = ctx.clone();
    module.set_native_fn(
        "is_active",
        move |unit: ImmutableString| -> RhaiResult<bool> {
            let state = systemd::query_state(&active_ctx, &unit).map_err(primitive_failure)?;
            Ok(state.is_active())
        },
    );
    let enabled_ctx = ctx.clone();
    module.set_native_fn(
        "is_enabled",
        move |unit: ImmutableString| -> RhaiResult<bool> {
            let state = systemd::query_state(&enabled_ctx, &unit).map_err(primitive_failure)?;
            Ok(state.is_enabled())
        },
    );
    let pid_ctx = ctx.clone();
    module.set_native_fn(
        "main_pid",
        move |unit: ImmutableString| -> RhaiResult<i64> {
            let state = systemd::query_state(&pid_ctx, &unit).map_err(primitive_failure)?;
            Ok(i64::from(state.main_pid))
        },
    );
    let journal_ctx = ctx.clone();
    module.set_native_fn(
        "journal",
        move |unit: ImmutableString, lines: i64| -> RhaiResult<Array> {
            let lines = count(lines, "the number of journal lines")?;
            let lines = systemd::journal(&journal_ctx, &unit, lines).map_err(primitive_failure)?;
            Ok(lines.into_iter().map(Dynamic::from).collect())
        },
    );
    module
}

fn container_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    register_step(&mut module, ctx, "container::image", container::image);
    register_step(&mut module, ctx, "container::network", container::network);
    register_step(&mut module, ctx, "container::exec", container::exec);
    register_step(&mut module, ctx, "container::run", container::run);

    let state_ctx = ctx.clone();
    module.set_native_fn(
        "state",
        move |name: ImmutableString| -> RhaiResult<Dynamic> {
            to_dynamic(&container::state(&state_ctx, &name).map_err(primitive_failure)?)
        },
    );
    let image_ctx = ctx.clone();
    module.set_native_fn(
        "image_id",
        move |image: ImmutableString| -> RhaiResult<Dynamic> {
            let id = container::image_id(&image_ctx, &image).map_err(primitive_failure)?;
            Ok(id.map(Dynamic::from).unwrap_or(Dynamic::UNIT))
        },
    );
    let logs_ctx = ctx.clone();
    module.set_native_fn(
        "logs",
        move |name: ImmutableString, lines: i64| -> RhaiResult<Dynamic> {
            let lines = count(lines, "the number of log lines")?;
            to_dynamic(&container::logs(&logs_ctx, &name, lines).map_err(primitive_failure)?)
        },
    );
    let runtime_ctx = ctx.clone();
    module.set_native_fn("runtime", move || -> RhaiResult<String> {
        let runtime = container::runtime(&runtime_ctx).map_err(primitive_failure)?;
        Ok(runtime.command().to_string())
    });
    module
}

fn postgres_module(ctx: &Arc<HostContext>) -> Module {
    let mut module = Module::new();
    register_step(
        &mut module,
        ctx,
        "postgres::ensure_role",
        postgres::ensure_role,
    );
    register_step(
        &mut module,
        ctx,
        "postgres::ensure_database",
        postgres::ensure_database,
    );
    register_step(&mut module, ctx, "postgres::query", postgres::query);
    register_step(
        &mut module,
        ctx,
        "postgres::count_rows",
        postgres::count_rows,
    );
    register_step(&mut module, ctx, "postgres::exists", postgres::exists);
    module
}
