//! The state of one host during a run: its connection, variables, check mode and reporter.
//! Primitives receive a [`HostContext`] and never reach other hosts.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::report::Reporter;
use crate::transport::cache::CachedTransport;
use crate::transport::{ExecOutput, ExecRequest, Transport, TransportError};
use crate::vars::HostVars;
use crate::vars::source::Origin;

/// Search paths for task files, stdlib modules, templates and files. The first match wins,
/// and the operator's project directory comes before the installed copy.
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

/// A flag the operator raises to stop what hosts are doing (Ctrl-C in the REPL). Clones share
/// the flag, so one interrupt reaches every host context that has a clone.
#[derive(Clone, Debug)]
pub struct Interrupt {
    raised: Arc<AtomicBool>,
    /// Wakes the futures waiting in [`HostContext::block_on`] when the flag is raised.
    wake: Arc<watch::Sender<()>>,
}

impl Interrupt {
    pub fn new() -> Interrupt {
        Interrupt {
            raised: Arc::new(AtomicBool::new(false)),
            wake: Arc::new(watch::Sender::new(())),
        }
    }

    pub fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        self.wake.send_replace(());
    }

    pub fn clear(&self) {
        self.raised.store(false, Ordering::SeqCst);
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// Completes once the flag is raised, at once if it already is.
    async fn raised(&self) {
        let mut wake = self.wake.subscribe();
        while !self.is_raised() {
            // The sender lives in `self`, so the channel cannot close while this waits.
            if wake.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Default for Interrupt {
    fn default() -> Interrupt {
        Interrupt::new()
    }
}

/// A result type that can carry [`TransportError::Interrupted`], so [`HostContext::block_on`]
/// can return it in place of the future's own output.
pub trait Interruptible {
    fn interrupted() -> Self;
}

impl<T, E: From<TransportError>> Interruptible for Result<T, E> {
    fn interrupted() -> Self {
        Err(TransportError::Interrupted.into())
    }
}

pub struct HostContext {
    pub name: String,
    /// The host's transport, wrapped in the file cache, so every operation through it keeps
    /// the cache true.
    pub transport: Arc<dyn Transport>,
    /// The cache of prefetched file stats and contents in front of the host's transport.
    files: Arc<CachedTransport>,
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
    interrupt: Interrupt,
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
        HostContext::with_file_cache(
            name,
            Arc::new(CachedTransport::new(transport)),
            vars,
            reporter,
            runtime,
            paths,
            check,
            default_names,
        )
    }

    /// Builds a context whose file cache is `files`, which other contexts of the same host
    /// may share (the validation and run phases of one run).
    #[allow(clippy::too_many_arguments)]
    pub fn with_file_cache(
        name: String,
        files: Arc<CachedTransport>,
        vars: Arc<HostVars>,
        reporter: Reporter,
        runtime: tokio::runtime::Handle,
        paths: SearchPaths,
        check: bool,
        default_names: Arc<BTreeSet<String>>,
    ) -> HostContext {
        HostContext {
            name,
            transport: files.clone(),
            files,
            vars,
            reporter,
            runtime,
            paths,
            default_names,
            check: AtomicBool::new(check),
            changes: AtomicU64::new(0),
            ids: Mutex::new(HashMap::new()),
            issues: Mutex::new(Vec::new()),
            interrupt: Interrupt::new(),
            units_changed: AtomicBool::new(false),
            postgres_clients: Mutex::new(HashMap::new()),
        }
    }

    /// Makes `interrupt` stop this host's primitives; see [`HostContext::block_on`].
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> HostContext {
        self.interrupt = interrupt;
        self
    }

    pub fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    /// Whether primitives must only report what they would change.
    pub fn check_mode(&self) -> bool {
        self.check.load(Ordering::Relaxed)
    }

    /// Switches check mode for the primitives called from now on.
    pub fn set_check_mode(&self, check: bool) {
        self.check.store(check, Ordering::Relaxed);
    }

    /// Runs a transport future to completion from the script's blocking thread.
    ///
    /// When the context's [`Interrupt`] is raised, the future is dropped and
    /// [`TransportError::Interrupted`] returned. A transport stops the operation on the host
    /// when its future is dropped: the local transport kills the command. An operation that
    /// completed while the interrupt was raised also returns `Interrupted`, although it may
    /// have taken effect.
    pub fn block_on<F>(&self, future: F) -> F::Output
    where
        F: Future,
        F::Output: Interruptible,
    {
        self.runtime.block_on(async {
            tokio::select! {
                biased;
                () = self.interrupt.raised() => F::Output::interrupted(),
                output = future => {
                    if self.interrupt.is_raised() {
                        F::Output::interrupted()
                    } else {
                        output
                    }
                }
            }
        })
    }

    /// Fetches the stats and contents of `paths` and their ancestors with one
    /// [`Transport::stat_and_read`] call and keeps them for the steps that follow. See
    /// [`CachedTransport`] for when they are dropped. Returns the number of paths fetched.
    pub fn prefetch_files(&self, paths: &[PathBuf]) -> Result<usize, TransportError> {
        self.block_on(self.files.prefetch(paths))
    }

    /// Drops every prefetched file, so the next step queries the host.
    pub fn clear_file_cache(&self) {
        self.files.clear();
    }

    /// Runs a command that changes no file on the host (a `getent` lookup) without dropping
    /// the prefetched files.
    pub fn exec_lookup(&self, request: &ExecRequest) -> Result<ExecOutput, TransportError> {
        self.block_on(self.files.exec_lookup(request))
    }

    /// Returns the cached result of `getent DATABASE KEY` (`Some(None)`: not found), which
    /// lasts until the next command or change.
    pub fn cached_lookup(&self, database: &str, key: &str) -> Option<Option<String>> {
        self.files.cached_lookup(database, key)
    }

    pub fn keep_lookup(&self, database: &str, key: &str, entry: Option<String>) {
        self.files.keep_lookup(database, key, entry);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::{HostContext, Interrupt, SearchPaths};
    use crate::report::{OutputFormat, Redactor, Reporter};
    use crate::transport::local::LocalTransport;
    use crate::transport::{ExecRequest, TransportError};
    use crate::vars::HostVars;

    fn context(runtime: &tokio::runtime::Runtime, interrupt: Interrupt) -> HostContext {
        let reporter = Reporter::on_stderr(OutputFormat::Json, false, 0, Arc::new(Redactor::new()));
        HostContext::new(
            "test".into(),
            Arc::new(LocalTransport::new()),
            Arc::new(HostVars::new("test", Vec::new(), Vec::new())),
            reporter,
            runtime.handle().clone(),
            SearchPaths {
                project_dir: ".".into(),
                stdlib_dirs: Vec::new(),
            },
            false,
            Arc::new(BTreeSet::new()),
        )
        .with_interrupt(interrupt)
    }

    fn process_exists(pattern: &str) -> bool {
        std::process::Command::new("pgrep")
            .args(["-f", pattern])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("pgrep runs")
            .success()
    }

    #[test]
    fn interrupt_stops_running_command() {
        let runtime = crate::run::runtime().unwrap();
        let interrupt = Interrupt::new();
        let ctx = context(&runtime, interrupt.clone());
        // A unique duration finds this test's process among others.
        let duration = format!("30.{}4", std::process::id());
        let request = ExecRequest {
            argv: vec!["sleep".into(), duration.clone()],
            ..ExecRequest::default()
        };

        let raiser = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !process_exists(&format!("sleep {duration}")) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            interrupt.raise();
            duration
        });
        let result = ctx.block_on(ctx.transport.exec(&request));
        let duration = raiser.join().unwrap();

        assert!(
            matches!(result, Err(TransportError::Interrupted)),
            "got {result:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        while process_exists(&format!("sleep {duration}")) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !process_exists(&format!("sleep {duration}")),
            "the dropped command was killed"
        );
    }

    #[test]
    fn raised_interrupt_refuses_new_work() {
        let runtime = crate::run::runtime().unwrap();
        let interrupt = Interrupt::new();
        let ctx = context(&runtime, interrupt.clone());
        interrupt.raise();
        let result = ctx.block_on(ctx.transport.stat(&["/".into()]));
        assert!(matches!(result, Err(TransportError::Interrupted)));

        interrupt.clear();
        let result = ctx.block_on(ctx.transport.stat(&["/".into()]));
        assert!(result.is_ok(), "got {result:?}");
    }
}
