//! The state of one host during a run: its connection, variables, check mode and reporter.
//! Primitives receive a [`HostContext`] and never reach other hosts.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::report::Reporter;
use crate::transport::Transport;
use crate::vars::HostVars;
use crate::vars::source::Origin;

/// Where task files, stdlib modules, templates and files are looked up, first match wins: the
/// operator's project directory before the installed copy.
#[derive(Clone, Debug)]
pub struct SearchPaths {
    pub project_dir: PathBuf,
    pub stdlib_dirs: Vec<PathBuf>,
}

impl SearchPaths {
    pub fn template_dirs(&self) -> Vec<PathBuf> {
        self.stdlib_dirs
            .iter()
            .map(|d| d.join("templates"))
            .collect()
    }

    pub fn files_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.project_dir.join("files")];
        dirs.extend(self.stdlib_dirs.iter().map(|d| d.join("files")));
        dirs
    }
}

/// A problem found by a task file's `validate()` function.
#[derive(Clone, Debug)]
pub struct ValidationIssue {
    pub host: String,
    pub variable: Option<String>,
    pub origin: Option<Origin>,
    pub message: String,
    pub is_error: bool,
}

pub struct HostContext {
    pub name: String,
    pub transport: Arc<dyn Transport>,
    pub vars: Arc<HostVars>,
    pub reporter: Reporter,
    pub runtime: tokio::runtime::Handle,
    pub paths: SearchPaths,
    /// Names that the stdlib defaults define, to tell a typo from a known variable.
    pub default_names: Arc<BTreeSet<String>>,
    check: AtomicBool,
    changes: AtomicU64,
    /// User and group ids resolved on the host, by `(database, name)`.
    ids: Mutex<HashMap<(&'static str, String), u32>>,
    issues: Mutex<Vec<ValidationIssue>>,
    /// Whether a unit file changed since systemd last reloaded its units on this host.
    units_changed: AtomicBool,
    /// Open PostgreSQL sessions, by target, role and database, reused by later steps.
    postgres_clients: Mutex<HashMap<String, Arc<tokio_postgres::Client>>>,
}

impl HostContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        transport: Arc<dyn Transport>,
        vars: Arc<HostVars>,
        reporter: Reporter,
        runtime: tokio::runtime::Handle,
        paths: SearchPaths,
        check: bool,
        default_names: Arc<BTreeSet<String>>,
    ) -> HostContext {
        HostContext {
            name,
            transport,
            vars,
            reporter,
            runtime,
            paths,
            default_names,
            check: AtomicBool::new(check),
            changes: AtomicU64::new(0),
            ids: Mutex::new(HashMap::new()),
            issues: Mutex::new(Vec::new()),
            units_changed: AtomicBool::new(false),
            postgres_clients: Mutex::new(HashMap::new()),
        }
    }

    /// Whether primitives must only report what they would change.
    pub fn check_mode(&self) -> bool {
        self.check.load(Ordering::Relaxed)
    }

    /// Runs a transport future to completion from the script's blocking thread.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub fn record_change(&self) {
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Changes made (or, in check mode, reported) on this host so far.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    pub fn cached_id(&self, database: &'static str, name: &str) -> Option<u32> {
        self.ids
            .lock()
            .unwrap()
            .get(&(database, name.to_string()))
            .copied()
    }

    pub fn cache_id(&self, database: &'static str, name: &str, id: u32) {
        self.ids
            .lock()
            .unwrap()
            .insert((database, name.to_string()), id);
    }

    pub fn forget_id(&self, database: &'static str, name: &str) {
        self.ids
            .lock()
            .unwrap()
            .remove(&(database, name.to_string()));
    }

    /// Records that a unit file changed, so the next systemd step reloads units first.
    pub fn mark_units_changed(&self) {
        self.units_changed.store(true, Ordering::Relaxed);
    }

    /// Returns whether a unit file changed since the last reload, and clears the flag.
    pub fn take_units_changed(&self) -> bool {
        self.units_changed.swap(false, Ordering::Relaxed)
    }

    /// Returns the open PostgreSQL session for `key`, unless its connection has closed.
    pub fn postgres_client(&self, key: &str) -> Option<Arc<tokio_postgres::Client>> {
        let mut clients = self.postgres_clients.lock().unwrap();
        match clients.get(key) {
            Some(client) if !client.is_closed() => Some(client.clone()),
            Some(_) => {
                clients.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn keep_postgres_client(&self, key: &str, client: Arc<tokio_postgres::Client>) {
        self.postgres_clients
            .lock()
            .unwrap()
            .insert(key.to_string(), client);
    }

    pub fn add_issue(&self, issue: ValidationIssue) {
        self.issues.lock().unwrap().push(issue);
    }

    pub fn take_issues(&self) -> Vec<ValidationIssue> {
        std::mem::take(&mut *self.issues.lock().unwrap())
    }
}
