//! Variable sources: where a raw variable value came from, shared by the inventory loader and
//! the resolver so that every error can name the file and line an operator must edit.

use std::fmt;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde_json::Value;

/// The layer a variable was set in, lowest precedence first.
///
/// The order matches Ansible's for the layers masrun reads: role defaults, inventory file group
/// variables, `group_vars/`, inventory file host variables, `host_vars/`, then `-e`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    Defaults,
    InventoryGroupVars,
    GroupVars,
    InventoryHostVars,
    HostVars,
    ExtraVars,
    /// Values set by masrun itself for one run (for example `inventory_hostname`).
    Builtin,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Layer::Defaults => "stdlib defaults",
            Layer::InventoryGroupVars => "inventory group variables",
            Layer::GroupVars => "group_vars",
            Layer::InventoryHostVars => "inventory host variables",
            Layer::HostVars => "host_vars",
            Layer::ExtraVars => "extra variables (-e)",
            Layer::Builtin => "built-in",
        };
        f.write_str(name)
    }
}

/// The place a variable was set: a file and, where known, the 1-based line of its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub layer: Layer,
    /// The file, or `None` for `-e key=value` on the command line and built-in values.
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{}", file.display(), line),
            (Some(file), None) => write!(f, "{}", file.display()),
            (None, _) if self.layer == Layer::ExtraVars => f.write_str("the command line (-e)"),
            (None, _) => write!(f, "{}", self.layer),
        }
    }
}

/// A raw, unrendered variable value and where it was set.
#[derive(Clone, Debug)]
pub struct RawVar {
    pub value: Value,
    pub origin: Origin,
}

/// One layer of variables in file order. Later sources override earlier ones key by key
/// (no deep merge, as in Ansible's default `hash_behaviour = replace`).
pub type VarSource = IndexMap<String, RawVar>;
