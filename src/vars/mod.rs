//! Lazy, Jinja-templated variable resolution per host.

pub mod source;
