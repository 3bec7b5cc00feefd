//! A per-host cache of file stats and contents in front of another [`Transport`]. A task file
//! fetches every file its steps will look at at once ([`CachedTransport::prefetch`]: two
//! round trips over SSH for any number of files), and the steps then find them without a
//! round trip each.
//!
//! Only `prefetch` fills the cache, and the cache never outlives a reason to trust it:
//!
//! - Every write, `mkdir`, `set_attrs` or `remove` clears the whole cache, not only the path
//!   it names, because another cached path may be the same file (a symlink, a hard link or a
//!   `..` in the path).
//! - Every command clears the whole cache, because a command may change any file. The one
//!   exception is [`CachedTransport::exec_lookup`], for masrun's own lookups (`getent`), which
//!   change no file.
//! - Opening a byte stream clears it too, because the service at the other end (PostgreSQL,
//!   an HTTP server on the host) may write files.
//!
//! A file that another process changes on the host after the prefetch is served as it was at
//! the prefetch until one of these clears the cache. The cache lives for one host's run or one
//! REPL entry, which keeps that window short.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{
    ExecOutput, ExecRequest, FileAttrs, FileKind, FileStat, HostStream, Result, StreamTarget,
    Transport,
};

/// The stat and contents the prefetch found at one path, or `None` when it did not exist.
type Entry = Option<(FileStat, Option<Vec<u8>>)>;

pub struct CachedTransport {
    inner: Arc<dyn Transport>,
    entries: Mutex<HashMap<PathBuf, Entry>>,
    /// `getent` results by database and key: the entry line, or `None` when the key was not
    /// found. They follow the same rules as the files, because `useradd` and its kind are
    /// commands.
    lookups: Mutex<HashMap<(String, String), Option<String>>>,
}

impl CachedTransport {
    pub fn new(inner: Arc<dyn Transport>) -> CachedTransport {
        CachedTransport {
            inner,
            entries: Mutex::new(HashMap::new()),
            lookups: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lookups(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Option<String>>> {
        self.lookups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets every cached path and lookup.
    pub fn clear(&self) {
        self.entries().clear();
        self.lookups().clear();
    }

    /// Returns the cached `getent DATABASE KEY` result: `Some(None)` when the key was not
    /// found, `None` when nothing is cached.
    pub fn cached_lookup(&self, database: &str, key: &str) -> Option<Option<String>> {
        self.lookups()
            .get(&(database.to_string(), key.to_string()))
            .cloned()
    }

    /// Keeps a `getent DATABASE KEY` result: the entry line, or `None` when it was not found.
    pub fn keep_lookup(&self, database: &str, key: &str, entry: Option<String>) {
        self.lookups()
            .insert((database.to_string(), key.to_string()), entry);
    }

    /// Stats and reads each path and each of its ancestor directories that is not cached yet,
    /// with one [`Transport::stat_and_read`] call, and caches what it finds. Ancestors are
    /// included because `file::directory` stats a path's whole ancestry. Returns the number
    /// of paths fetched.
    pub async fn prefetch(&self, paths: &[PathBuf]) -> Result<usize> {
        let mut missing_paths: Vec<PathBuf> = Vec::new();
        {
            let entries = self.entries();
            for path in paths {
                for ancestor in path.ancestors() {
                    let ancestor = ancestor.to_path_buf();
                    if !entries.contains_key(&ancestor) && !missing_paths.contains(&ancestor) {
                        missing_paths.push(ancestor);
                    }
                }
            }
        }
        if missing_paths.is_empty() {
            return Ok(0);
        }
        let found = self.inner.stat_and_read(&missing_paths).await?;
        let mut entries = self.entries();
        let count = missing_paths.len();
        entries.extend(missing_paths.into_iter().zip(found));
        Ok(count)
    }

    /// Runs a command that changes no file on the host, such as `getent`, and keeps the
    /// cache. Everything else goes through [`Transport::exec`], which clears it.
    pub async fn exec_lookup(&self, request: &ExecRequest) -> Result<ExecOutput> {
        self.inner.exec(request).await
    }

    /// Returns the cached entries of `paths`, or `None` unless every one is cached.
    fn cached(&self, paths: &[PathBuf]) -> Option<Vec<Entry>> {
        let entries = self.entries();
        paths
            .iter()
            .map(|path| entries.get(path).cloned())
            .collect()
    }

    /// Clears the cache before and after a change. Clearing before means an interrupted
    /// change leaves no stale entry, and clearing after drops anything cached while it ran.
    async fn changing<T>(&self, change: impl std::future::Future<Output = T>) -> T {
        self.clear();
        let result = change.await;
        self.clear();
        result
    }
}

/// Returns the contents `read` returns for a cached entry, or `None` when only the host can
/// tell (a directory, whose error the transport itself reports, or a dangling symlink).
fn readable(entry: &Entry) -> Option<Option<Vec<u8>>> {
    match entry {
        None => Some(None),
        Some((stat, _)) if stat.kind == FileKind::Directory => None,
        Some((_, Some(contents))) => Some(Some(contents.clone())),
        Some((_, None)) => None,
    }
}

#[async_trait]
impl Transport for CachedTransport {
    async fn stat(&self, paths: &[PathBuf]) -> Result<Vec<Option<FileStat>>> {
        if let Some(entries) = self.cached(paths) {
            return Ok(entries
                .into_iter()
                .map(|entry| entry.map(|(stat, _)| stat))
                .collect());
        }
        // Ask the host only for the paths the cache lacks, in one call.
        let (missing, known): (Vec<PathBuf>, Vec<Option<Entry>>) = {
            let entries = self.entries();
            let known: Vec<Option<Entry>> = paths
                .iter()
                .map(|path| entries.get(path).cloned())
                .collect();
            let missing = paths
                .iter()
                .zip(&known)
                .filter(|(_, entry)| entry.is_none())
                .map(|(path, _)| path.clone())
                .collect();
            (missing, known)
        };
        let mut fetched = self.inner.stat(&missing).await?.into_iter();
        Ok(known
            .into_iter()
            .map(|entry| match entry {
                Some(entry) => entry.map(|(stat, _)| stat),
                None => fetched.next().flatten(),
            })
            .collect())
    }

    async fn read(&self, paths: &[PathBuf]) -> Result<Vec<Option<Vec<u8>>>> {
        if let Some(entries) = self.cached(paths) {
            let contents: Option<Vec<Option<Vec<u8>>>> = entries.iter().map(readable).collect();
            if let Some(contents) = contents {
                return Ok(contents);
            }
        }
        self.inner.read(paths).await
    }

    async fn stat_and_read(
        &self,
        paths: &[PathBuf],
    ) -> Result<Vec<Option<(FileStat, Option<Vec<u8>>)>>> {
        if let Some(entries) = self.cached(paths) {
            return Ok(entries);
        }
        self.inner.stat_and_read(paths).await
    }

    async fn write_atomic(&self, path: &Path, contents: &[u8], attrs: FileAttrs) -> Result<()> {
        self.changing(self.inner.write_atomic(path, contents, attrs))
            .await
    }

    async fn mkdir(&self, path: &Path, attrs: FileAttrs) -> Result<()> {
        self.changing(self.inner.mkdir(path, attrs)).await
    }

    async fn set_attrs(&self, path: &Path, attrs: FileAttrs) -> Result<()> {
        self.changing(self.inner.set_attrs(path, attrs)).await
    }

    async fn remove(&self, path: &Path, recursive: bool) -> Result<()> {
        self.changing(self.inner.remove(path, recursive)).await
    }

    async fn exec(&self, request: &ExecRequest) -> Result<ExecOutput> {
        self.changing(self.inner.exec(request)).await
    }

    async fn connect_stream(&self, target: &StreamTarget) -> Result<Box<dyn HostStream>> {
        // NOTE: the cache is cleared when the stream opens, not while it is used. No step
        // prefetches files between opening a stream and its last request.
        self.changing(self.inner.connect_stream(target)).await
    }

    fn round_trips(&self) -> u64 {
        self.inner.round_trips()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::local::LocalTransport;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn prefetched_file_served_without_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "one\n").unwrap();
        let cache = CachedTransport::new(Arc::new(LocalTransport::new()));
        let runtime = runtime();

        let fetched = runtime.block_on(cache.prefetch(std::slice::from_ref(&file)));
        assert!(fetched.unwrap() >= 2, "the file and its ancestors");
        let before = cache.round_trips();
        let read = runtime.block_on(cache.read(std::slice::from_ref(&file)));
        assert_eq!(read.unwrap(), vec![Some(b"one\n".to_vec())]);
        let chain: Vec<PathBuf> = file.ancestors().map(Path::to_path_buf).collect();
        let stats = runtime.block_on(cache.stat(&chain)).unwrap();
        assert!(stats.iter().all(Option::is_some));
        assert_eq!(cache.round_trips(), before);
    }

    #[test]
    fn command_clears_cache() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "one\n").unwrap();
        let cache = CachedTransport::new(Arc::new(LocalTransport::new()));
        let runtime = runtime();
        runtime
            .block_on(cache.prefetch(std::slice::from_ref(&file)))
            .unwrap();

        let request = ExecRequest {
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!("echo two > '{}'", file.display()),
            ],
            ..ExecRequest::default()
        };
        runtime.block_on(cache.exec(&request)).unwrap();
        let read = runtime.block_on(cache.read(std::slice::from_ref(&file)));
        assert_eq!(read.unwrap(), vec![Some(b"two\n".to_vec())]);
    }

    #[test]
    fn lookup_keeps_cache() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        let cache = CachedTransport::new(Arc::new(LocalTransport::new()));
        let runtime = runtime();
        runtime
            .block_on(cache.prefetch(std::slice::from_ref(&file)))
            .unwrap();

        let request = ExecRequest {
            argv: vec!["true".into()],
            ..ExecRequest::default()
        };
        runtime.block_on(cache.exec_lookup(&request)).unwrap();
        let before = cache.round_trips();
        let stat = runtime.block_on(cache.stat(std::slice::from_ref(&file)));
        assert_eq!(stat.unwrap(), vec![None], "the missing file stays cached");
        assert_eq!(cache.round_trips(), before);
    }

    #[test]
    fn write_clears_cache() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        let other = dir.path().join("b.txt");
        std::fs::write(&other, "b\n").unwrap();
        let cache = CachedTransport::new(Arc::new(LocalTransport::new()));
        let runtime = runtime();
        runtime
            .block_on(cache.prefetch(&[file.clone(), other.clone()]))
            .unwrap();

        runtime
            .block_on(cache.write_atomic(&file, b"new\n", FileAttrs::default()))
            .unwrap();
        assert!(cache.entries().is_empty(), "every path is forgotten");
        let read = runtime.block_on(cache.read(std::slice::from_ref(&file)));
        assert_eq!(read.unwrap(), vec![Some(b"new\n".to_vec())]);
    }

    #[test]
    fn directory_read_goes_to_host() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CachedTransport::new(Arc::new(LocalTransport::new()));
        let runtime = runtime();
        let path = dir.path().to_path_buf();
        runtime
            .block_on(cache.prefetch(std::slice::from_ref(&path)))
            .unwrap();
        let read = runtime.block_on(cache.read(std::slice::from_ref(&path)));
        assert!(
            read.is_err(),
            "reading a directory fails as without the cache"
        );
    }
}
