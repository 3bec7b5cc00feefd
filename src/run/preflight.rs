//! Checks of a host's connection variables before any host is contacted, so that a typo in
//! the inventory is bad input (exit status 2, nothing changed, the file and line named)
//! rather than an unreachable host or a failed task.

use std::path::PathBuf;

use serde_json::Value;

use super::host::ValidationIssue;
use crate::vars::HostVars;

/// Returns the problems with `host`'s `ansible_connection`, `ansible_port` and private key
/// file.
pub fn check_connection(host: &str, vars: &HostVars) -> Vec<ValidationIssue> {
    let mut issues = Vec::new();
    let mut error = |variable: &str, message: String| {
        issues.push(ValidationIssue {
            host: host.to_string(),
            variable: Some(variable.to_string()),
            origin: vars.origin(variable),
            message,
            is_error: true,
        });
    };
    let text = |variable: &str| -> Option<String> {
        match vars.try_get(variable).ok().flatten()? {
            Value::String(text) => Some(text),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    };

    let connection = text("ansible_connection");
    if let Some(connection) = &connection
        && !matches!(connection.as_str(), "ssh" | "smart" | "local")
    {
        error(
            "ansible_connection",
            format!("{connection:?} is not supported; use ssh or local"),
        );
    }
    if connection.as_deref() == Some("local") {
        return issues;
    }

    for variable in ["ansible_port", "ansible_ssh_port"] {
        if let Some(port) = text(variable)
            && !matches!(port.trim().parse::<u16>(), Ok(1..))
        {
            error(
                variable,
                format!("must be a TCP port number from 1 to 65535 (got {port:?})"),
            );
        }
    }

    for variable in ["ansible_ssh_private_key_file", "ansible_private_key_file"] {
        let Some(path) = text(variable) else { continue };
        // ~/.ssh/config tokens such as %h are expanded at connect time; leave those paths be.
        if path.contains('%') {
            continue;
        }
        let expanded = match path.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(rest))
                .unwrap_or_else(|| PathBuf::from(&path)),
            None => PathBuf::from(&path),
        };
        if !expanded.is_file() {
            error(
                variable,
                format!(
                    "{} does not exist or is not a file; point it at the private key masrun \
                     should log in with",
                    expanded.display()
                ),
            );
        }
    }
    issues
}
