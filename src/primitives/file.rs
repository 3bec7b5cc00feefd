//! The `file` primitive family: directories, file contents, copies, removal, stat and read.
//! Every write is atomic (see [`Transport::write_atomic`]) and sets mode and ownership before
//! the new file becomes visible.
//!
//! [`Transport::write_atomic`]: crate::transport::Transport::write_atomic

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    IdSpec, ModeSpec, Outcome, PrimitiveError, Result, format_mode, prefetch_ids, resolve_id,
    text_diff,
};
use crate::run::host::HostContext;
use crate::transport::{FileAttrs, FileKind, FileStat};

/// Mode and ownership options shared by every primitive that creates a path.
#[derive(Clone, Debug, Default)]
pub struct AttrOptions {
    pub mode: Option<ModeSpec>,
    pub owner: Option<IdSpec>,
    pub group: Option<IdSpec>,
}

/// The wanted attributes, with names resolved to ids. `pending` lists owners or groups that do
/// not exist on the host yet (possible only in check mode, when an earlier step would create them).
struct WantedAttrs {
    attrs: FileAttrs,
    pending: Vec<String>,
}

fn resolve_attrs(ctx: &HostContext, options: &AttrOptions) -> Result<WantedAttrs> {
    let mut lookups = Vec::new();
    if let Some(owner) = &options.owner {
        lookups.push(("passwd", owner));
    }
    if let Some(group) = &options.group {
        lookups.push(("group", group));
    }
    prefetch_ids(ctx, &lookups)?;

    let mut pending = Vec::new();
    let mode = options.mode.as_ref().map(ModeSpec::to_bits).transpose()?;
    let mut resolve = |database: &'static str, spec: &Option<IdSpec>| -> Result<Option<u32>> {
        let Some(spec) = spec else { return Ok(None) };
        match resolve_id(ctx, database, spec)? {
            Some(id) => Ok(Some(id)),
            None if ctx.check_mode() => {
                let IdSpec::Name(name) = spec else {
                    unreachable!("numeric ids always resolve")
                };
                pending.push(name.clone());
                Ok(None)
            }
            None => {
                let kind = if database == "passwd" {
                    "user"
                } else {
                    "group"
                };
                let IdSpec::Name(name) = spec else {
                    unreachable!("numeric ids always resolve")
                };
                Err(PrimitiveError::Failed(format!(
                    "{kind} '{name}' does not exist on the host"
                )))
            }
        }
    };
    let uid = resolve("passwd", &options.owner)?;
    let gid = resolve("group", &options.group)?;
    Ok(WantedAttrs {
        attrs: FileAttrs { mode, uid, gid },
        pending,
    })
}

/// The attribute changes needed to turn `current` into `wanted`, as `FileAttrs` holding only
/// the differing fields, plus a description of each change.
fn attr_changes(current: &FileStat, wanted: &WantedAttrs) -> (FileAttrs, Vec<String>) {
    let mut needed = FileAttrs::default();
    let mut notes = Vec::new();
    if let Some(mode) = wanted.attrs.mode
        && mode != current.mode
    {
        needed.mode = Some(mode);
        notes.push(format!(
            "mode {} -> {}",
            format_mode(current.mode),
            format_mode(mode)
        ));
    }
    if let Some(uid) = wanted.attrs.uid
        && uid != current.uid
    {
        needed.uid = Some(uid);
        notes.push(format!("owner {} -> {uid}", current.uid));
    }
    if let Some(gid) = wanted.attrs.gid
        && gid != current.gid
    {
        needed.gid = Some(gid);
        notes.push(format!("group {} -> {gid}", current.gid));
    }
    // In check mode an account that an earlier step would create does not exist yet. Owner
    // and group often share that name, so it is listed once.
    let mut pending: Vec<&String> = wanted.pending.iter().collect();
    pending.dedup();
    for name in pending {
        notes.push(format!("owner or group '{name}' (not created yet)"));
    }
    (needed, notes)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryOptions {
    pub path: PathBuf,
    #[serde(default)]
    pub mode: Option<ModeSpec>,
    #[serde(default)]
    pub owner: Option<IdSpec>,
    #[serde(default)]
    pub group: Option<IdSpec>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Ensures `path` is a directory with the given attributes, creating missing parents (with the
/// host's default mode) the way `mkdir -p` does.
pub fn directory(ctx: &HostContext, options: &DirectoryOptions) -> Result<Outcome> {
    require_absolute(&options.path)?;
    let wanted = resolve_attrs(ctx, &options.attrs())?;

    // One stat request for the path and all of its ancestors.
    let chain: Vec<PathBuf> = options.path.ancestors().map(Path::to_path_buf).collect();
    let stats = ctx.block_on(ctx.transport.stat(&chain))?;

    match &stats[0] {
        Some(stat) if stat.kind == FileKind::Directory => {
            let (needed, notes) = attr_changes(stat, &wanted);
            if notes.is_empty() {
                return Ok(Outcome::unchanged());
            }
            if !ctx.check_mode() && needed != FileAttrs::default() {
                ctx.block_on(ctx.transport.set_attrs(&options.path, needed))?;
            }
            Ok(Outcome::changed().with_message(notes.join(", ")))
        }
        Some(stat) => Err(PrimitiveError::Failed(format!(
            "{} exists but is a {}, not a directory",
            display(&options.path),
            stat.kind.as_str()
        ))),
        None => {
            let missing: Vec<&PathBuf> = chain
                .iter()
                .zip(&stats)
                .take_while(|(_, stat)| stat.is_none())
                .map(|(path, _)| path)
                .collect();
            if !ctx.check_mode() {
                for path in missing.iter().rev() {
                    let attrs = if *path == &options.path {
                        wanted.attrs
                    } else {
                        FileAttrs::default()
                    };
                    ctx.block_on(ctx.transport.mkdir(path, attrs))?;
                }
            }
            let mode = wanted
                .attrs
                .mode
                .map(format_mode)
                .unwrap_or_else(|| "default".into());
            Ok(Outcome::changed().with_message(format!("created (mode {mode})")))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentOptions {
    pub path: PathBuf,
    pub content: String,
    #[serde(default)]
    pub mode: Option<ModeSpec>,
    #[serde(default)]
    pub owner: Option<IdSpec>,
    #[serde(default)]
    pub group: Option<IdSpec>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Ensures the file at `path` has exactly `content` and the given attributes.
pub fn content(ctx: &HostContext, options: &ContentOptions) -> Result<Outcome> {
    write_content(
        ctx,
        &options.path,
        options.content.as_bytes(),
        &options.attrs(),
    )
}

/// Writes `bytes` to `path` when they differ, atomically; fixes attributes otherwise.
pub fn write_content(
    ctx: &HostContext,
    path: &Path,
    bytes: &[u8],
    attr_options: &AttrOptions,
) -> Result<Outcome> {
    require_absolute(path)?;
    let wanted = resolve_attrs(ctx, attr_options)?;
    // The stat and the contents in one request burst where the transport can pipeline.
    let paths = [path.to_path_buf()];
    let found = ctx.block_on(ctx.transport.stat_and_read(&paths))?.remove(0);
    let (stat, current) = match found {
        Some((stat, _)) if stat.kind == FileKind::Directory => {
            return Err(PrimitiveError::Failed(format!(
                "{} is a directory, expected a file",
                display(path)
            )));
        }
        Some((stat, contents)) => (Some(stat), contents),
        None => (None, None),
    };

    if current.as_deref() == Some(bytes) {
        let stat = stat.expect("the file was read, so it exists");
        let (needed, notes) = attr_changes(&stat, &wanted);
        if notes.is_empty() {
            return Ok(Outcome::unchanged());
        }
        if !ctx.check_mode() && needed != FileAttrs::default() {
            ctx.block_on(ctx.transport.set_attrs(path, needed))?;
        }
        return Ok(Outcome::changed().with_message(notes.join(", ")));
    }

    // Keep the current attributes for what the caller did not specify, so rewriting content
    // never loosens a mode an operator tightened by hand.
    let mut attrs = wanted.attrs;
    if let Some(stat) = &stat {
        attrs.mode = attrs.mode.or(Some(stat.mode));
        attrs.uid = attrs.uid.or(Some(stat.uid));
        attrs.gid = attrs.gid.or(Some(stat.gid));
    } else {
        attrs.mode = attrs.mode.or(Some(0o644));
    }
    if !ctx.check_mode() {
        ctx.block_on(ctx.transport.write_atomic(path, bytes, attrs))?;
    }
    let mut outcome = Outcome::changed().with_message(if current.is_some() {
        "content changed"
    } else {
        "created"
    });
    outcome.diff = Some(text_diff(&display(path), current.as_deref(), bytes));
    Ok(outcome)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyOptions {
    /// A file on the controller, relative to the project's `files/` or the installed `stdlib/files/`.
    pub src: PathBuf,
    pub path: PathBuf,
    #[serde(default)]
    pub mode: Option<ModeSpec>,
    #[serde(default)]
    pub owner: Option<IdSpec>,
    #[serde(default)]
    pub group: Option<IdSpec>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Copies a file from the controller to the host.
pub fn copy(ctx: &HostContext, options: &CopyOptions) -> Result<Outcome> {
    let source = find_controller_file(ctx, &options.src)?;
    let bytes = std::fs::read(&source).map_err(|error| {
        PrimitiveError::Failed(format!("cannot read {}: {error}", source.display()))
    })?;
    write_content(ctx, &options.path, &bytes, &options.attrs())
}

fn find_controller_file(ctx: &HostContext, src: &Path) -> Result<PathBuf> {
    if src.is_absolute() {
        return Ok(src.to_path_buf());
    }
    let candidates: Vec<PathBuf> = ctx.paths.files_dirs().iter().map(|d| d.join(src)).collect();
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .ok_or_else(|| {
            let searched: Vec<String> =
                candidates.iter().map(|c| c.display().to_string()).collect();
            PrimitiveError::Failed(format!(
                "source file {} not found; searched {}",
                src.display(),
                searched.join(", ")
            ))
        })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesOptions {
    pub path: PathBuf,
    #[serde(default)]
    pub mode: Option<ModeSpec>,
    #[serde(default)]
    pub owner: Option<IdSpec>,
    #[serde(default)]
    pub group: Option<IdSpec>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Sets mode and ownership of an existing path. A missing path is an error, except in check
/// mode, where an earlier step would have created it.
pub fn attributes(ctx: &HostContext, options: &AttributesOptions) -> Result<Outcome> {
    require_absolute(&options.path)?;
    let wanted = resolve_attrs(ctx, &options.attrs())?;
    let stat = ctx
        .block_on(ctx.transport.stat(std::slice::from_ref(&options.path)))?
        .remove(0);
    let Some(stat) = stat else {
        if ctx.check_mode() {
            return Ok(Outcome::changed().with_message("would set attributes once the path exists"));
        }
        return Err(PrimitiveError::Failed(format!(
            "{} does not exist",
            display(&options.path)
        )));
    };
    let (needed, notes) = attr_changes(&stat, &wanted);
    if notes.is_empty() {
        return Ok(Outcome::unchanged());
    }
    if !ctx.check_mode() && needed != FileAttrs::default() {
        ctx.block_on(ctx.transport.set_attrs(&options.path, needed))?;
    }
    Ok(Outcome::changed().with_message(notes.join(", ")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbsentOptions {
    pub path: PathBuf,
    #[serde(default)]
    pub name: Option<String>,
}

/// Removes a file, symlink or whole directory tree if it exists.
pub fn absent(ctx: &HostContext, options: &AbsentOptions) -> Result<Outcome> {
    require_absolute(&options.path)?;
    if options.path.parent().is_none() {
        return Err(PrimitiveError::InvalidOption("refusing to remove /".into()));
    }
    let stat = ctx
        .block_on(ctx.transport.stat(std::slice::from_ref(&options.path)))?
        .remove(0);
    let Some(stat) = stat else {
        return Ok(Outcome::unchanged());
    };
    if !ctx.check_mode() {
        ctx.block_on(ctx.transport.remove(&options.path, true))?;
    }
    Ok(Outcome::changed().with_message(format!("removed {}", stat.kind.as_str())))
}

/// Returns `#{exists, kind, mode, uid, gid, size}` for a path; `exists` is false when missing.
pub fn stat(ctx: &HostContext, path: &Path) -> Result<Value> {
    let stat = ctx
        .block_on(ctx.transport.stat(&[path.to_path_buf()]))?
        .remove(0);
    Ok(match stat {
        Some(stat) => json!({
            "exists": true,
            "kind": stat.kind.as_str(),
            "mode": format_mode(stat.mode),
            "uid": stat.uid,
            "gid": stat.gid,
            "size": stat.size,
        }),
        None => json!({"exists": false}),
    })
}

/// Returns a file's text, or `None` when it does not exist.
pub fn read(ctx: &HostContext, path: &Path) -> Result<Option<String>> {
    let contents = ctx
        .block_on(ctx.transport.read(&[path.to_path_buf()]))?
        .remove(0);
    Ok(contents.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// Fetches the stats and contents of `paths` and their ancestor directories at once (two
/// round trips over SSH), so the steps that follow find them without a round trip each. It is
/// no step and changes nothing. A failure other than an unreachable host is logged and
/// ignored, because each step then queries the host itself and reports what it finds.
pub fn prefetch(ctx: &HostContext, paths: &[PathBuf]) -> Result<()> {
    for path in paths {
        require_absolute(path)?;
    }
    let round_trips_before = ctx.transport.round_trips();
    match ctx.prefetch_files(paths) {
        Ok(count) => {
            tracing::debug!(
                host = %ctx.name,
                paths = count,
                round_trips = ctx.transport.round_trips() - round_trips_before,
                "prefetched files"
            );
            Ok(())
        }
        Err(error) if error.is_unreachable() => Err(error.into()),
        Err(error) => {
            tracing::debug!(host = %ctx.name, %error, "prefetch failed; each step reads for itself");
            Ok(())
        }
    }
}

fn require_absolute(path: &Path) -> Result<()> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(PrimitiveError::InvalidOption(format!(
            "path {} must be absolute",
            path.display()
        )))
    }
}

/// Implements `attrs()` for option structs that carry `mode`, `owner` and `group`. Serde cannot
/// combine `flatten` with `deny_unknown_fields`, so each struct lists the three fields itself.
macro_rules! impl_attrs {
    ($($options:ty),*) => {$(
        impl $options {
            pub fn attrs(&self) -> $crate::primitives::file::AttrOptions {
                $crate::primitives::file::AttrOptions {
                    mode: self.mode.clone(),
                    owner: self.owner.clone(),
                    group: self.group.clone(),
                }
            }
        }
    )*};
}
pub(crate) use impl_attrs;

impl_attrs!(
    DirectoryOptions,
    ContentOptions,
    CopyOptions,
    AttributesOptions
);
