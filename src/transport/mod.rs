//! The connection to one host. Primitives do every host operation through [`Transport`], so
//! local and SSH runs execute the same primitive code; nothing here decides what to change.

pub mod cache;
pub mod local;
pub mod ssh;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// The kind of a file system entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    Other,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Other => "other",
        }
    }
}

/// What `lstat` reports about a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStat {
    pub kind: FileKind,
    /// Permission bits only (`0o7777` mask).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
}

/// Mode and ownership to apply to a file or directory. `None` leaves that attribute as the
/// host's default (umask, the connecting user).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileAttrs {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// A command to run on the host, as an argument vector: no shell unless the caller puts one in.
#[derive(Clone, Debug, Default)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    /// Bytes written to the command's standard input, which is closed afterwards. Secrets go
    /// here, never into `argv`.
    pub stdin: Option<Vec<u8>>,
    /// Over SSH these reach the host on the command line of `env`, so they must not be
    /// secrets.
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// Run as this user instead of the connecting user.
    pub become_user: Option<String>,
}

/// The result of a command that ran to completion.
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    /// The exit status, or `None` when a signal ended the command.
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Where a byte stream opened through the host connects, as the host sees it.
#[allow(dead_code)] // NOTE: the postgres and http primitives are its first callers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamTarget {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl std::fmt::Display for StreamTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamTarget::Tcp { host, port } => write!(f, "{host}:{port}"),
            StreamTarget::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A bidirectional byte stream to a service on the host (PostgreSQL, an HTTP listener).
#[allow(dead_code)]
pub trait HostStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> HostStream for T {}

/// A failure to talk to the host, as opposed to an operation the host carried out and
/// reported as failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The host cannot be reached at all; the run reports it as unreachable.
    #[error("host unreachable: {0}")]
    Unreachable(String),
    /// The operator interrupted the operation, which was stopped on the host.
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Other(String),
}

impl TransportError {
    pub fn io(operation: &'static str, path: &Path, source: std::io::Error) -> TransportError {
        TransportError::Io {
            operation,
            path: path.display().to_string(),
            source,
        }
    }

    pub fn is_unreachable(&self) -> bool {
        matches!(self, TransportError::Unreachable(_))
    }
}

pub type Result<T> = std::result::Result<T, TransportError>;

/// Operations on one host. Implementations keep one connection for the whole run.
///
/// Each call is one round trip where the transport allows it: `stat` and `read` take several
/// paths so a primitive that looks at many files asks once.
#[async_trait]
pub trait Transport: Send + Sync {
    /// `lstat` each path; `None` where the path does not exist.
    async fn stat(&self, paths: &[PathBuf]) -> Result<Vec<Option<FileStat>>>;

    /// Read each file whole; `None` where the file does not exist.
    async fn read(&self, paths: &[PathBuf]) -> Result<Vec<Option<Vec<u8>>>>;

    /// `lstat` each path and read the contents of every one that is not a directory
    /// (following a final symlink, as `read` does); `None` where the path does not exist.
    /// Transports that can pipeline do both in one request burst.
    async fn stat_and_read(
        &self,
        paths: &[PathBuf],
    ) -> Result<Vec<Option<(FileStat, Option<Vec<u8>>)>>> {
        let stats = self.stat(paths).await?;
        let readable: Vec<PathBuf> = paths
            .iter()
            .zip(&stats)
            .filter(|(_, stat)| stat.as_ref().is_some_and(|s| s.kind != FileKind::Directory))
            .map(|(path, _)| path.clone())
            .collect();
        let mut contents = if readable.is_empty() {
            Vec::new()
        } else {
            self.read(&readable).await?
        }
        .into_iter();
        Ok(stats
            .into_iter()
            .map(|stat| {
                stat.map(|stat| {
                    let bytes = if stat.kind == FileKind::Directory {
                        None
                    } else {
                        contents.next().flatten()
                    };
                    (stat, bytes)
                })
            })
            .collect())
    }

    /// Replace `path` atomically: a temporary file in the same directory gets the contents,
    /// is synced and given `attrs`, then renamed over `path`. A reader never sees a partial file.
    async fn write_atomic(&self, path: &Path, contents: &[u8], attrs: FileAttrs) -> Result<()>;

    /// Create one directory (the parent must exist) with `attrs`.
    async fn mkdir(&self, path: &Path, attrs: FileAttrs) -> Result<()>;

    /// Change mode and ownership of an existing path without following a final symlink.
    async fn set_attrs(&self, path: &Path, attrs: FileAttrs) -> Result<()>;

    /// Remove a file, a symlink or (with `recursive`) a directory tree. A missing path is fine.
    async fn remove(&self, path: &Path, recursive: bool) -> Result<()>;

    /// Run a command and wait for it to exit.
    async fn exec(&self, request: &ExecRequest) -> Result<ExecOutput>;

    /// Opens a byte stream to a TCP port or Unix socket on the host: directly for the local
    /// transport, through the connection (direct-tcpip, direct-streamlocal) for SSH.
    #[allow(dead_code)]
    async fn connect_stream(&self, target: &StreamTarget) -> Result<Box<dyn HostStream>>;

    /// Round trips to the host so far: each wait for replies counts once, however many
    /// requests were pipelined into it (an SSH channel open, a command run, a burst of SFTP
    /// requests). The connection's handshake and authentication are not counted.
    fn round_trips(&self) -> u64;
}

/// A counter of round trips, shared by transport implementations.
///
/// The counting rule: a round trip is a wait of the controller for the host's replies. A
/// burst of N pipelined requests whose replies are awaited together is one round trip. A
/// request sent ahead without waiting (an SSH channel opened for the next command) counts only
/// if something later has to wait for its reply. The local transport has no network and
/// counts one for each call of `stat`, `read`, `write_atomic`, `mkdir`, `set_attrs`, `remove`
/// and `exec`.
#[derive(Debug, Default)]
pub struct RoundTrips(AtomicU64);

impl RoundTrips {
    pub fn add(&self, count: u64) {
        self.0.fetch_add(count, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
