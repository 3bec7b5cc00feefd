//! The `user` primitive family: system users and groups, looked up with `getent` and created
//! with `groupadd`/`useradd`, as the playbook's base role creates the `matrix` account.

use serde::Deserialize;

use super::{IdSpec, Outcome, PrimitiveError, Result, lookup_entries, resolve_id};
use crate::run::host::HostContext;
use crate::transport::{ExecOutput, ExecRequest};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupOptions {
    pub name: String,
    #[serde(default)]
    pub gid: Option<u32>,
    #[serde(default = "default_true")]
    pub system: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserOptions {
    pub name: String,
    #[serde(default)]
    pub uid: Option<u32>,
    /// The primary group, which must exist.
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub home: Option<String>,
    #[serde(default)]
    pub shell: Option<String>,
    #[serde(default = "default_true")]
    pub system: bool,
}

fn default_true() -> bool {
    true
}

fn split_entry(entry: &str) -> Vec<String> {
    entry.trim_end().split(':').map(str::to_string).collect()
}

/// An entry of `getent passwd` or `getent group`, split on `:`, from the lookups that
/// [`prefetch`] cached when there is one.
fn getent(ctx: &HostContext, database: &str, name: &str) -> Result<Option<Vec<String>>> {
    if let Some(entry) = ctx.cached_lookup(database, name) {
        return Ok(entry.as_deref().map(split_entry));
    }
    let output = ctx.exec_lookup(&ExecRequest {
        argv: vec!["getent".into(), database.into(), name.into()],
        ..ExecRequest::default()
    })?;
    match output.status {
        Some(0) => Ok(Some(split_entry(&output.stdout_text()))),
        Some(2) => Ok(None),
        _ => Err(PrimitiveError::Failed(format!(
            "getent {database} {name} failed: {}",
            output.stderr_text().trim()
        ))),
    }
}

fn exec(ctx: &HostContext, argv: Vec<String>) -> Result<ExecOutput> {
    Ok(ctx.block_on(ctx.transport.exec(&ExecRequest {
        argv,
        ..ExecRequest::default()
    }))?)
}

fn exec_checked(ctx: &HostContext, argv: Vec<String>) -> Result<()> {
    let output = exec(ctx, argv.clone())?;
    if output.success() {
        Ok(())
    } else {
        Err(PrimitiveError::Failed(format!(
            "{} failed: {}",
            argv.join(" "),
            output.stderr_text().trim()
        )))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefetchOptions {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Looks up every user and group in `options` with one command on the host, for the
/// `user::group`, `user::user` and owner lookups that follow. It is no step and changes
/// nothing.
pub fn prefetch(ctx: &HostContext, options: &PrefetchOptions) -> Result<()> {
    let mut pending: Vec<(&'static str, &str)> = Vec::new();
    let users = options.users.iter().map(|name| ("passwd", name.as_str()));
    let groups = options.groups.iter().map(|name| ("group", name.as_str()));
    for (database, name) in users.chain(groups) {
        if ctx.cached_lookup(database, name).is_none() && !pending.contains(&(database, name)) {
            pending.push((database, name));
        }
    }
    lookup_entries(ctx, &pending)
}

/// Ensures a group exists, with `gid` when given.
pub fn group(ctx: &HostContext, options: &GroupOptions) -> Result<Outcome> {
    match getent(ctx, "group", &options.name)? {
        Some(fields) => {
            let current: Option<u32> = fields.get(2).and_then(|g| g.parse().ok());
            // Later steps that name this group as an owner find its id without a lookup.
            if let Some(gid) = current {
                ctx.cache_id("group", &options.name, gid);
            }
            match options.gid {
                Some(gid) if current != Some(gid) => {
                    if !ctx.check_mode() {
                        exec_checked(
                            ctx,
                            vec![
                                "groupmod".into(),
                                "--gid".into(),
                                gid.to_string(),
                                options.name.clone(),
                            ],
                        )?;
                        ctx.forget_id("group", &options.name);
                    }
                    Ok(Outcome::changed().with_message(format!(
                        "gid {} -> {gid}",
                        current.map(|g| g.to_string()).unwrap_or_default()
                    )))
                }
                _ => Ok(Outcome::unchanged()),
            }
        }
        None => {
            if !ctx.check_mode() {
                let mut argv = vec!["groupadd".to_string()];
                if options.system {
                    argv.push("--system".into());
                }
                if let Some(gid) = options.gid {
                    argv.extend(["--gid".into(), gid.to_string()]);
                }
                argv.push(options.name.clone());
                exec_checked(ctx, argv)?;
            }
            Ok(Outcome::changed().with_message("created"))
        }
    }
}

/// Ensures a user exists with the given uid, primary group, home and shell.
pub fn user(ctx: &HostContext, options: &UserOptions) -> Result<Outcome> {
    let wanted_gid = match &options.group {
        Some(group) => match resolve_id(ctx, "group", &IdSpec::Name(group.clone()))? {
            Some(gid) => Some(gid),
            None if ctx.check_mode() => None,
            None => {
                return Err(PrimitiveError::Failed(format!(
                    "group '{group}' does not exist; create it first"
                )));
            }
        },
        None => None,
    };

    let Some(fields) = getent(ctx, "passwd", &options.name)? else {
        if !ctx.check_mode() {
            let mut argv = vec!["useradd".to_string()];
            if options.system {
                argv.push("--system".into());
            }
            if let Some(uid) = options.uid {
                argv.extend(["--uid".into(), uid.to_string()]);
            }
            if let Some(group) = &options.group {
                argv.extend(["--gid".into(), group.clone()]);
            }
            if let Some(home) = &options.home {
                argv.extend(["--home-dir".into(), home.clone(), "--no-create-home".into()]);
            }
            if let Some(shell) = &options.shell {
                argv.extend(["--shell".into(), shell.clone()]);
            }
            argv.push(options.name.clone());
            exec_checked(ctx, argv)?;
        }
        return Ok(Outcome::changed().with_message("created"));
    };

    // getent passwd fields: name, password, uid, gid, gecos, home, shell.
    if let Some(uid) = fields.get(2).and_then(|u| u.parse::<u32>().ok()) {
        ctx.cache_id("passwd", &options.name, uid);
    }
    let mut argv = vec!["usermod".to_string()];
    let mut notes = Vec::new();
    if let Some(uid) = options.uid
        && fields.get(2).and_then(|u| u.parse::<u32>().ok()) != Some(uid)
    {
        argv.extend(["--uid".into(), uid.to_string()]);
        notes.push(format!("uid -> {uid}"));
    }
    if let Some(gid) = wanted_gid
        && fields.get(3).and_then(|g| g.parse::<u32>().ok()) != Some(gid)
    {
        argv.extend(["--gid".into(), gid.to_string()]);
        notes.push(format!("primary group -> {gid}"));
    }
    if let Some(home) = &options.home
        && fields.get(5) != Some(home)
    {
        argv.extend(["--home".into(), home.clone()]);
        notes.push(format!("home -> {home}"));
    }
    if let Some(shell) = &options.shell
        && fields.get(6) != Some(shell)
    {
        argv.extend(["--shell".into(), shell.clone()]);
        notes.push(format!("shell -> {shell}"));
    }
    if notes.is_empty() {
        return Ok(Outcome::unchanged());
    }
    if !ctx.check_mode() {
        argv.push(options.name.clone());
        exec_checked(ctx, argv)?;
        ctx.forget_id("passwd", &options.name);
    }
    Ok(Outcome::changed().with_message(notes.join(", ")))
}
