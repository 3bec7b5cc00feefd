//! The local transport: the controller is the host (`ansible_connection=local`). File
//! operations use the standard library; commands run as child processes without a shell.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::{
    ExecOutput, ExecRequest, FileAttrs, FileKind, FileStat, HostStream, Result, RoundTrips,
    StreamTarget, Transport, TransportError,
};

#[derive(Debug, Default)]
pub struct LocalTransport {
    round_trips: RoundTrips,
}

impl LocalTransport {
    pub fn new() -> LocalTransport {
        LocalTransport::default()
    }
}

fn stat_one(path: &Path) -> Result<Option<FileStat>> {
    match fs::symlink_metadata(path) {
        Ok(meta) => {
            let file_type = meta.file_type();
            let kind = if file_type.is_symlink() {
                FileKind::Symlink
            } else if file_type.is_dir() {
                FileKind::Directory
            } else if file_type.is_file() {
                FileKind::File
            } else {
                FileKind::Other
            };
            Ok(Some(FileStat {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                size: meta.size(),
            }))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(TransportError::io("stat", path, error)),
    }
}

fn apply_attrs(path: &Path, attrs: FileAttrs) -> Result<()> {
    if attrs.uid.is_some() || attrs.gid.is_some() {
        std::os::unix::fs::lchown(path, attrs.uid, attrs.gid)
            .map_err(|error| TransportError::io("chown", path, error))?;
    }
    if let Some(mode) = attrs.mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|error| TransportError::io("chmod", path, error))?;
    }
    Ok(())
}

fn write_atomic_blocking(path: &Path, contents: &[u8], attrs: FileAttrs) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}.masrun-"))
        .tempfile_in(dir)
        .map_err(|error| TransportError::io("create temporary file in", dir, error))?;

    // The temporary file starts as 0600, so a secret is never readable by others, even briefly.
    temp.write_all(contents)
        .map_err(|error| TransportError::io("write", temp.path(), error))?;
    temp.as_file()
        .sync_all()
        .map_err(|error| TransportError::io("sync", temp.path(), error))?;
    apply_attrs(temp.path(), attrs)?;
    temp.persist(path)
        .map_err(|error| TransportError::io("rename into", path, error.error))?;

    // Sync the directory so the rename survives a crash.
    if let Ok(dir_handle) = fs::File::open(dir) {
        let _ = dir_handle.sync_all();
    }
    Ok(())
}

/// Wraps `argv` so it runs as `user`: `runuser` when masrun is root, otherwise `sudo -n`, which
/// fails at once instead of prompting when a password would be needed.
fn become_argv(user: &str, argv: &[String]) -> Vec<String> {
    // SAFETY: geteuid takes no arguments and POSIX defines no error for it.
    let is_root = unsafe { libc::geteuid() } == 0;
    let mut wrapped: Vec<String> = if is_root {
        vec!["runuser".into(), "-u".into(), user.into(), "--".into()]
    } else {
        vec![
            "sudo".into(),
            "-n".into(),
            "-u".into(),
            user.into(),
            "--".into(),
        ]
    };
    wrapped.extend(argv.iter().cloned());
    wrapped
}

#[async_trait]
impl Transport for LocalTransport {
    async fn stat(&self, paths: &[PathBuf]) -> Result<Vec<Option<FileStat>>> {
        self.round_trips.add(1);
        paths.iter().map(|path| stat_one(path)).collect()
    }

    async fn read(&self, paths: &[PathBuf]) -> Result<Vec<Option<Vec<u8>>>> {
        self.round_trips.add(1);
        paths
            .iter()
            .map(|path| match fs::read(path) {
                Ok(contents) => Ok(Some(contents)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(TransportError::io("read", path, error)),
            })
            .collect()
    }

    async fn write_atomic(&self, path: &Path, contents: &[u8], attrs: FileAttrs) -> Result<()> {
        self.round_trips.add(1);
        write_atomic_blocking(path, contents, attrs)
    }

    async fn mkdir(&self, path: &Path, attrs: FileAttrs) -> Result<()> {
        self.round_trips.add(1);
        fs::create_dir(path).map_err(|error| TransportError::io("mkdir", path, error))?;
        apply_attrs(path, attrs)
    }

    async fn set_attrs(&self, path: &Path, attrs: FileAttrs) -> Result<()> {
        self.round_trips.add(1);
        apply_attrs(path, attrs)
    }

    async fn remove(&self, path: &Path, recursive: bool) -> Result<()> {
        self.round_trips.add(1);
        let result = match fs::symlink_metadata(path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => Err(error),
            Ok(meta) if meta.is_dir() && recursive => fs::remove_dir_all(path),
            Ok(meta) if meta.is_dir() => fs::remove_dir(path),
            Ok(_) => fs::remove_file(path),
        };
        result.map_err(|error| TransportError::io("remove", path, error))
    }

    async fn exec(&self, request: &ExecRequest) -> Result<ExecOutput> {
        self.round_trips.add(1);
        let argv = match &request.become_user {
            Some(user) => become_argv(user, &request.argv),
            None => request.argv.clone(),
        };
        let Some((program, arguments)) = argv.split_first() else {
            return Err(TransportError::Other("empty command".into()));
        };

        let mut command = tokio::process::Command::new(program);
        command
            .args(
                arguments
                    .iter()
                    .map(|a| OsString::from_vec(a.clone().into_bytes())),
            )
            .stdin(if request.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // NOTE: with `become_user` this kills runuser or sudo, and the command they
            // started keeps running.
            .kill_on_drop(true);
        for (key, value) in &request.env {
            command.env(key, value);
        }
        if let Some(cwd) = &request.cwd {
            command.current_dir(cwd);
        }

        let mut child = command.spawn().map_err(|source| TransportError::Spawn {
            program: program.clone(),
            source,
        })?;
        if let (Some(input), Some(mut stdin)) = (&request.stdin, child.stdin.take()) {
            // A command that exits without reading its input closes the pipe; that is its choice.
            let _ = stdin.write_all(input).await;
            drop(stdin);
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|source| TransportError::Spawn {
                program: program.clone(),
                source,
            })?;
        // Ctrl-C in masrun's terminal sends SIGINT to local commands as well as to masrun.
        if output.status.signal() == Some(libc::SIGINT) {
            return Err(TransportError::Interrupted);
        }
        Ok(ExecOutput {
            status: output.status.code(),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }

    async fn connect_stream(&self, target: &StreamTarget) -> Result<Box<dyn HostStream>> {
        self.round_trips.add(1);
        let connect_error = |source: std::io::Error| {
            TransportError::Other(format!("cannot connect to {target}: {source}"))
        };
        match target {
            StreamTarget::Tcp { host, port } => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(connect_error)?;
                Ok(Box::new(stream))
            }
            StreamTarget::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_error)?;
                Ok(Box::new(stream))
            }
        }
    }

    fn round_trips(&self) -> u64 {
        self.round_trips.get()
    }
}
