//! The `template` primitive: renders Jinja templates from the project's or the installed
//! `stdlib/templates/` with the host's variables, and writes them like `file::content`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::file::{impl_attrs, write_content};
use super::{IdSpec, ModeSpec};
use super::{Outcome, PrimitiveError, Result};
use crate::run::host::HostContext;

/// Finds a template by its path relative to a templates directory, first match wins.
pub fn find(ctx: &HostContext, name: &str) -> Result<PathBuf> {
    let relative = Path::new(name);
    if relative.is_absolute() {
        return Ok(relative.to_path_buf());
    }
    let candidates: Vec<PathBuf> = ctx
        .paths
        .template_dirs()
        .iter()
        .map(|dir| dir.join(relative))
        .collect();
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .ok_or_else(|| {
            let searched: Vec<String> =
                candidates.iter().map(|c| c.display().to_string()).collect();
            PrimitiveError::Failed(format!(
                "template {name} not found; searched {}",
                searched.join(", ")
            ))
        })
}

/// Renders a template to text. `extra` contains variables that shadow the host's for this render.
pub fn render(ctx: &HostContext, name: &str, extra: Option<&Value>) -> Result<String> {
    let path = find(ctx, name)?;
    let source = std::fs::read_to_string(&path).map_err(|error| {
        PrimitiveError::Failed(format!("cannot read template {}: {error}", path.display()))
    })?;
    ctx.vars
        .render_str(&source, &path.display().to_string(), extra)
        .map_err(|error| PrimitiveError::Failed(error.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateOptions {
    pub src: String,
    pub path: PathBuf,
    #[serde(default)]
    pub mode: Option<ModeSpec>,
    #[serde(default)]
    pub owner: Option<IdSpec>,
    #[serde(default)]
    pub group: Option<IdSpec>,
    /// Extra variables for this template only.
    #[serde(default)]
    pub vars: Option<Value>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Renders `src` and ensures `path` contains the result.
pub fn file(ctx: &HostContext, options: &TemplateOptions) -> Result<Outcome> {
    let text = render(ctx, &options.src, options.vars.as_ref())?;
    write_content(ctx, &options.path, text.as_bytes(), &options.attrs())
}

impl_attrs!(TemplateOptions);
