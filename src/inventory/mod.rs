//! The Ansible-style inventory of the matrix-docker-ansible-deploy playbook: the INI hosts file
//! (`inventory/hosts`), `group_vars/` and `host_vars/` beside it, host selection with
//! `--limit` patterns, and `-e` extra variables.

mod extra_vars;
mod host_pattern;
mod ini;
mod limit;
mod tree;
mod vars_files;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::vars::source::{Layer, Origin, RawVar, VarSource};
use crate::yaml::YamlError;

pub use extra_vars::parse_extra_vars;
use ini::ALL;

/// An error while loading the inventory, selecting hosts or reading `-e` arguments.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// A file or directory of the inventory could not be read.
    #[error("failed to read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The hosts file path names a directory.
    #[error(
        "{} is a directory, but masrun expects the INI hosts file (for example inventory/hosts)",
        path.display()
    )]
    NotAFile { path: PathBuf },
    /// Invalid hosts file content at a 1-based line.
    #[error("{}:{line}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        message: String,
    },
    /// Invalid YAML or JSON in a variables file.
    #[error(transparent)]
    Yaml(#[from] YamlError),
    /// A `--limit` pattern that is invalid or selects no hosts. The message lists the known
    /// hosts and groups.
    #[error("{message}")]
    Limit { pattern: String, message: String },
    /// An invalid `-e` argument.
    #[error("invalid extra variables {argument:?}: {message}")]
    ExtraVars { argument: String, message: String },
}

/// A host of the inventory.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// Variables set on the host's lines in the hosts file, in file order, including
    /// `ansible_port` from a `name:port` host pattern.
    pub vars: VarSource,
    /// 1-based line of the host's first line in the hosts file, or `None` for the implicit
    /// localhost.
    #[allow(dead_code)] // NOTE: read by tests and by the REPL's `:hosts`.
    pub line: Option<usize>,
    /// Whether this is the implicit `localhost`, which the hosts file does not list.
    #[allow(dead_code)]
    pub implicit: bool,
}

/// A loaded inventory: hosts, groups and the variable files of both.
#[derive(Debug)]
pub struct Inventory {
    hosts_file: PathBuf,
    dir: PathBuf,
    /// Hosts in the order of their first line in the hosts file.
    hosts: Vec<Host>,
    host_index: HashMap<String, usize>,
    /// Every group, including `all` and `ungrouped`, with its `[group:vars]` variables.
    groups: BTreeMap<String, VarSource>,
    /// For each entry of `hosts`, the groups containing it (with `all`) by depth, then name.
    host_groups: Vec<Vec<String>>,
    /// The `localhost` that `--limit localhost` selects when the hosts file lacks it.
    implicit_localhost: Host,
    /// `group_vars/` files by group name, one source per file in load order.
    group_var_files: HashMap<String, Vec<VarSource>>,
    /// `host_vars/` files by host name, one source per file in load order.
    host_var_files: HashMap<String, Vec<VarSource>>,
    warnings: Vec<String>,
}

impl Inventory {
    /// Loads the INI hosts file `hosts_file` and the `group_vars/` and `host_vars/`
    /// directories beside it.
    ///
    /// Variable files are read for every group and host of the hosts file, and for
    /// `localhost` even when the file does not list it. Files for other names are skipped
    /// with a warning (see [`Inventory::warnings`]).
    pub fn load(hosts_file: &Path) -> Result<Inventory, InventoryError> {
        let read_error = |error| InventoryError::Read {
            path: hosts_file.to_path_buf(),
            error,
        };
        if fs::metadata(hosts_file).map_err(read_error)?.is_dir() {
            return Err(InventoryError::NotAFile {
                path: hosts_file.to_path_buf(),
            });
        }
        let text = fs::read_to_string(hosts_file).map_err(read_error)?;
        let parsed = ini::parse_hosts_file(&text, hosts_file)?;
        let tree = tree::resolve_group_tree(&parsed, hosts_file)?;

        let dir = inventory_dir_of(hosts_file);

        let hosts: Vec<Host> = parsed
            .hosts
            .into_iter()
            .map(|(name, entry)| Host {
                name,
                vars: entry.vars,
                line: Some(entry.line),
                implicit: false,
            })
            .collect();
        let host_index = hosts
            .iter()
            .enumerate()
            .map(|(index, host)| (host.name.clone(), index))
            .collect();
        let groups: BTreeMap<String, VarSource> = parsed
            .groups
            .into_iter()
            .map(|(name, entry)| (name, entry.vars))
            .collect();

        let mut inventory = Inventory {
            hosts_file: hosts_file.to_path_buf(),
            dir,
            hosts,
            host_index,
            groups,
            host_groups: tree.host_groups,
            implicit_localhost: implicit_localhost(),
            group_var_files: HashMap::new(),
            host_var_files: HashMap::new(),
            warnings: Vec::new(),
        };
        inventory.load_variable_files()?;
        Ok(inventory)
    }

    fn load_variable_files(&mut self) -> Result<(), InventoryError> {
        let group_vars = self.dir.join("group_vars");
        let host_vars = self.dir.join("host_vars");
        let mut warnings = Vec::new();

        for group in self.groups.keys() {
            let sources =
                vars_files::load_entity_vars(&group_vars, group, Layer::GroupVars, &mut warnings)?;
            self.group_var_files.insert(group.clone(), sources);
        }
        let mut host_names: Vec<String> = self.hosts.iter().map(|host| host.name.clone()).collect();
        if !self.host_index.contains_key("localhost") {
            host_names.push("localhost".to_string());
        }
        for host in host_names {
            let sources =
                vars_files::load_entity_vars(&host_vars, &host, Layer::HostVars, &mut warnings)?;
            self.host_var_files.insert(host, sources);
        }

        for (name, path) in vars_files::entity_names(&group_vars)? {
            if !self.groups.contains_key(&name) {
                let known = self.groups.keys().cloned().collect::<Vec<_>>().join(", ");
                warnings.push(format!(
                    "{} matches no group in {}, so masrun ignores it (groups: {known})",
                    path.display(),
                    self.hosts_file.display()
                ));
            }
        }
        for (name, path) in vars_files::entity_names(&host_vars)? {
            if !self.host_var_files.contains_key(&name) {
                let known = self
                    .hosts
                    .iter()
                    .map(|host| host.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                warnings.push(format!(
                    "{} matches no host in {}, so masrun ignores it (hosts: {known})",
                    path.display(),
                    self.hosts_file.display()
                ));
            }
        }

        self.warnings = warnings;
        Ok(())
    }

    /// Returns the inventory directory, which contains the hosts file, `group_vars/` and
    /// `host_vars/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    #[allow(dead_code)]
    pub fn hosts_file(&self) -> &Path {
        &self.hosts_file
    }

    /// Returns the hosts of the hosts file in the order of their first line. The implicit
    /// localhost is not among them.
    #[allow(dead_code)] // NOTE: the REPL's `:hosts` is its first caller.
    pub fn hosts(&self) -> Vec<&Host> {
        self.hosts.iter().collect()
    }

    /// Returns the host called `name`. For `localhost` this is the implicit localhost when the
    /// hosts file does not list it, because [`Inventory::select`] can return that host.
    pub fn host(&self, name: &str) -> Option<&Host> {
        match self.host_index.get(name) {
            Some(&index) => Some(&self.hosts[index]),
            None if name == "localhost" => Some(&self.implicit_localhost),
            None => None,
        }
    }

    /// Returns every group that contains `host` directly or through child groups, including
    /// `all` (and `ungrouped` for hosts in no other group), ordered by depth in the group tree
    /// and then by name. The implicit localhost is only in `all`, and unknown hosts are in no
    /// group.
    ///
    /// Ansible's `group_names` variable is this list without `all`.
    pub fn groups_of(&self, host: &str) -> Vec<String> {
        match self.host_index.get(host) {
            Some(&index) => self.host_groups[index].clone(),
            None if host == "localhost" => vec![ALL.to_string()],
            None => Vec::new(),
        }
    }

    /// Returns every group, including `all` and `ungrouped`, with the names of the hosts it
    /// contains directly or through child groups, in hosts file order. This is Ansible's
    /// `groups` variable. The implicit localhost is in no group here.
    pub fn group_hosts(&self) -> BTreeMap<String, Vec<String>> {
        let mut group_hosts: BTreeMap<String, Vec<String>> = self
            .groups
            .keys()
            .map(|group| (group.clone(), Vec::new()))
            .collect();
        for (host, groups) in self.hosts.iter().zip(&self.host_groups) {
            for group in groups {
                if let Some(members) = group_hosts.get_mut(group) {
                    members.push(host.name.clone());
                }
            }
        }
        group_hosts
    }

    /// Returns the variable layers of `host`, lowest precedence first, with Ansible's default
    /// precedence (`VARIABLE_PRECEDENCE` in ansible-core):
    ///
    /// 1. `[all:vars]` of the hosts file.
    /// 2. `[group:vars]` of each other group of the host, by depth in the group tree (parents
    ///    before children) and then by name.
    /// 3. The `group_vars/all` files.
    /// 4. The `group_vars/<group>` files of each other group, in the same group order.
    /// 5. The host's inline variables in the hosts file.
    /// 6. The `host_vars/<host>` files.
    ///
    /// Each file is its own layer, and empty layers are left out. The implicit localhost gets
    /// the `all` layers, its inline `ansible_connection=local` and `host_vars/localhost`. An
    /// unknown host has no layers. Role defaults and `-e` variables are the caller's to add.
    pub fn layers_for(&self, host: &str) -> Vec<VarSource> {
        let Some(found) = self.host(host) else {
            return Vec::new();
        };
        let groups = self.groups_of(host);
        let other_groups = || groups.iter().filter(|group| group.as_str() != ALL);

        let mut layers = Vec::new();
        layers.extend(self.groups.get(ALL).cloned());
        layers.extend(other_groups().filter_map(|group| self.groups.get(group).cloned()));
        layers.extend(self.group_var_files.get(ALL).into_iter().flatten().cloned());
        for group in other_groups() {
            layers.extend(
                self.group_var_files
                    .get(group)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
        layers.push(found.vars.clone());
        layers.extend(self.host_var_files.get(host).into_iter().flatten().cloned());

        layers.retain(|layer| !layer.is_empty());
        layers
    }

    /// Returns the warnings found while loading, such as duplicate YAML keys or variable
    /// files that match no group or host. Each names its file.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// Returns the directory of `hosts_file`, which is `.` for a bare file name.
fn inventory_dir_of(hosts_file: &Path) -> PathBuf {
    match hosts_file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Builds Ansible's implicit localhost, which connects locally.
fn implicit_localhost() -> Host {
    let origin = Origin {
        layer: Layer::InventoryHostVars,
        file: None,
        line: None,
    };
    let connection = RawVar {
        value: Value::String("local".to_string()),
        origin,
    };
    Host {
        name: "localhost".to_string(),
        vars: VarSource::from([("ansible_connection".to_string(), connection)]),
        line: None,
        implicit: true,
    }
}

#[cfg(test)]
mod tests;
