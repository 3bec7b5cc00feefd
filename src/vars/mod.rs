//! Lazy, Jinja-templated variable resolution per host.

// NOTE: nothing outside this module calls it yet, so the build would flag all of it as
// dead code. Remove this once the run and engine modules use `HostVars`.
#![allow(dead_code)]

pub mod error;
pub mod secrets;
pub mod source;

mod convert;
mod json_text;
mod text;
mod yaml_text;
