//! File operations over SFTP, pipelined: requests that do not depend on each other are sent
//! together and their replies awaited together, so one burst costs one round trip however many
//! files it touches. Each public method documents its bursts and counts them.

mod fetch;
mod handles;

use std::collections::HashMap;

use futures::future::join_all;
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};

use handles::{Forecast, Ledger};

use crate::transport::{FileAttrs, FileKind, FileStat, RoundTrips};

/// Bytes per READ or WRITE request: the size every SFTP server must accept.
const CHUNK: usize = 32 * 1024;

/// Seconds an SFTP request may wait for its reply. Longer than the keepalive window, so a
/// dead connection is reported as such, not as a slow request.
const REQUEST_TIMEOUT_SECS: u64 = 120;

const POSIX_RENAME: &str = "posix-rename@openssh.com";
const FSYNC: &str = "fsync@openssh.com";
const LSETSTAT: &str = "lsetstat@openssh.com";

/// A failed SFTP operation: either the server's status for one path, or the session itself.
#[derive(Debug)]
pub enum Failure {
    Status {
        operation: &'static str,
        path: String,
        code: StatusCode,
        message: String,
    },
    Session(String),
}

pub type Result<T> = std::result::Result<T, Failure>;

fn failure(operation: &'static str, path: &str, error: SftpError) -> Failure {
    match error {
        SftpError::Status(status) => Failure::Status {
            operation,
            path: path.to_string(),
            code: status.status_code,
            message: status.error_message,
        },
        SftpError::Timeout => Failure::Session(format!(
            "SFTP {operation} {path} got no reply within {REQUEST_TIMEOUT_SECS} s"
        )),
        other => Failure::Session(format!("SFTP {operation} {path}: {other}")),
    }
}

fn is_missing(error: &SftpError) -> bool {
    matches!(error, SftpError::Status(status) if status.status_code == StatusCode::NoSuchFile)
}

fn to_stat(attrs: &FileAttributes) -> FileStat {
    let bits = attrs.permissions.unwrap_or(0);
    let kind = match bits & 0o170000 {
        0o040000 => FileKind::Directory,
        0o100000 => FileKind::File,
        0o120000 => FileKind::Symlink,
        _ => FileKind::Other,
    };
    FileStat {
        kind,
        mode: bits & 0o7777,
        uid: attrs.uid.unwrap_or(0),
        gid: attrs.gid.unwrap_or(0),
        size: attrs.size.unwrap_or(0),
    }
}

/// SFTP's UIDGID flag sets both ids; `u32::MAX` is `(uid_t)-1`, which chown(2) reads as
/// "leave unchanged", so one id can be set alone.
fn ownership(attrs: FileAttrs) -> Option<(u32, u32)> {
    if attrs.uid.is_none() && attrs.gid.is_none() {
        return None;
    }
    Some((attrs.uid.unwrap_or(u32::MAX), attrs.gid.unwrap_or(u32::MAX)))
}

/// Appends an SSH `string`: length, then bytes.
fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

pub struct Sftp {
    session: RawSftpSession,
    extensions: HashMap<String, String>,
    /// Held by every operation that opens handles, for as long as it has any open.
    forecast: tokio::sync::Mutex<Forecast>,
}

/// The stat and contents [`Sftp::fetch`] found at one path.
pub struct Fetched {
    pub stat: FileStat,
    /// The contents, for anything but a directory.
    pub contents: Option<Vec<u8>>,
}

impl Sftp {
    /// Starts the protocol on `stream` (the `sftp` subsystem, or `sftp-server` run through
    /// sudo) and records the server's extensions. One round trip.
    pub async fn start<S>(stream: S) -> std::result::Result<Sftp, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = russh_sftp::client::Config {
            request_timeout_secs: REQUEST_TIMEOUT_SECS,
            ..russh_sftp::client::Config::default()
        };
        let session = RawSftpSession::new_with_config(stream, config);
        let version = session
            .init()
            .await
            .map_err(|error| format!("SFTP did not start: {error}"))?;
        Ok(Sftp {
            session,
            extensions: version.extensions,
            forecast: tokio::sync::Mutex::new(Forecast::new()),
        })
    }

    fn has(&self, extension: &str) -> bool {
        self.extensions.contains_key(extension)
    }

    /// `lstat` each path. One round trip.
    pub async fn lstat_many(
        &self,
        paths: &[String],
        trips: &RoundTrips,
    ) -> Result<Vec<Option<FileStat>>> {
        trips.add(1);
        let replies = join_all(paths.iter().map(|path| self.session.lstat(path.clone()))).await;
        paths
            .iter()
            .zip(replies)
            .map(|(path, reply)| match reply {
                Ok(attrs) => Ok(Some(to_stat(&attrs.attrs))),
                Err(error) if is_missing(&error) => Ok(None),
                Err(error) => Err(failure("stat", path, error)),
            })
            .collect()
    }

    /// Replaces `path` atomically. Round trips: open the temporary file; write, sync, set
    /// mode and owner, close; rename over `path` (and open the directory); sync the directory.
    pub async fn write_atomic(
        &self,
        path: &str,
        temp: &str,
        contents: &[u8],
        attrs: FileAttrs,
        trips: &RoundTrips,
    ) -> Result<()> {
        let mut forecast = self.forecast.lock().await;
        let ledger = forecast.begin();
        let result = self
            .write_atomic_tracked(path, temp, contents, attrs, &ledger, trips)
            .await;
        forecast.finish(&ledger);
        result
    }

    async fn write_atomic_tracked(
        &self,
        path: &str,
        temp: &str,
        contents: &[u8],
        attrs: FileAttrs,
        ledger: &Ledger,
        trips: &RoundTrips,
    ) -> Result<()> {
        // The temporary file starts as 0600, so a secret is never readable by others, even
        // briefly.
        let create = FileAttributes {
            permissions: Some(0o600),
            ..FileAttributes::default()
        };
        trips.add(1);
        let handle = self
            .session
            .open(
                temp.to_string(),
                OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE,
                create,
            )
            .await
            .map_err(|error| failure("create temporary file", temp, error))?
            .handle;
        ledger.opened();

        let result = self
            .fill_and_rename(&handle, path, temp, contents, attrs, ledger, trips)
            .await;
        if result.is_err() {
            trips.add(1);
            let _ = self.session.remove(temp.to_string()).await;
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn fill_and_rename(
        &self,
        handle: &str,
        path: &str,
        temp: &str,
        contents: &[u8],
        attrs: FileAttrs,
        ledger: &Ledger,
        trips: &RoundTrips,
    ) -> Result<()> {
        // Requests on one handle are processed in order, so the writes, the sync, the
        // attributes and the close go out together.
        trips.add(1);
        let writes = join_all(contents.chunks(CHUNK).enumerate().map(|(index, chunk)| {
            self.session
                .write(handle.to_string(), (index * CHUNK) as u64, chunk.to_vec())
        }));
        let sync = async {
            if self.has(FSYNC) {
                Some(self.session.fsync(handle.to_string()).await)
            } else {
                None
            }
        };
        let set_attrs = async {
            let wanted = FileAttributes {
                permissions: attrs.mode,
                uid: ownership(attrs).map(|(uid, _)| uid),
                gid: ownership(attrs).map(|(_, gid)| gid),
                ..FileAttributes::default()
            };
            if wanted.permissions.is_none() && wanted.uid.is_none() {
                None
            } else {
                Some(self.session.fsetstat(handle.to_string(), wanted).await)
            }
        };
        let close = self.session.close(handle.to_string());
        let (writes, sync, set_attrs, close) = tokio::join!(writes, sync, set_attrs, close);
        if close.is_ok() {
            ledger.closed(handle);
        }
        for write in writes {
            write.map_err(|error| failure("write", temp, error))?;
        }
        if let Some(sync) = sync {
            sync.map_err(|error| failure("sync", temp, error))?;
        }
        if let Some(set_attrs) = set_attrs {
            set_attrs.map_err(|error| failure("set mode and owner of", temp, error))?;
        }
        close.map_err(|error| failure("close", temp, error))?;

        trips.add(1);
        let directory = parent_dir(path);
        let open_dir = async {
            if self.has(FSYNC) {
                self.session
                    .open(
                        directory.clone(),
                        OpenFlags::READ,
                        FileAttributes::default(),
                    )
                    .await
                    .ok()
            } else {
                None
            }
        };
        let (renamed, dir_handle) = tokio::join!(self.rename_over(temp, path), open_dir);

        // Sync the directory so the rename survives a crash. The FSYNC waits for the rename's
        // reply, so it cannot reach the server before the rename.
        if let Some(dir_handle) = dir_handle {
            ledger.opened();
            trips.add(1);
            let dir_handle = dir_handle.handle;
            let (_, closed) = tokio::join!(
                self.session.fsync(dir_handle.clone()),
                self.session.close(dir_handle.clone())
            );
            if closed.is_ok() {
                ledger.closed(&dir_handle);
            }
        }
        renamed
    }

    /// Renames `from` over `to`. Plain SFTP rename fails when `to` exists, so this uses
    /// OpenSSH's posix-rename extension when the server has it.
    async fn rename_over(&self, from: &str, to: &str) -> Result<()> {
        if self.has(POSIX_RENAME) {
            let mut data = Vec::new();
            put_string(&mut data, from);
            put_string(&mut data, to);
            let reply = self
                .session
                .extended(POSIX_RENAME, data)
                .await
                .map_err(|error| failure("rename into", to, error))?;
            return status_ok(reply).map_err(|error| failure("rename into", to, error));
        }
        // NOTE: without posix-rename the target is removed first, so a reader may briefly
        // find no file; OpenSSH's sftp-server has had the extension since version 4.8.
        let _ = self.session.remove(to.to_string()).await;
        self.session
            .rename(from.to_string(), to.to_string())
            .await
            .map(|_| ())
            .map_err(|error| failure("rename into", to, error))
    }

    /// Creates a directory and sets its mode (free of the server's umask) and owner. One
    /// round trip.
    pub async fn mkdir(&self, path: &str, attrs: FileAttrs, trips: &RoundTrips) -> Result<()> {
        trips.add(1);
        let create = FileAttributes {
            permissions: attrs.mode,
            ..FileAttributes::default()
        };
        let make = self.session.mkdir(path.to_string(), create);
        let (made, set) = tokio::join!(make, self.set_attrs_requests(path, attrs));
        made.map_err(|error| failure("mkdir", path, error))?;
        match set {
            // A server that handled the attributes before the mkdir found no directory yet.
            Err(Failure::Status {
                code: StatusCode::NoSuchFile,
                ..
            }) => self.set_attrs(path, attrs, trips).await,
            other => other,
        }
    }

    /// Sets mode and owner: the owner without following a final symlink (lsetstat), the mode
    /// as chmod(2) does. One round trip.
    pub async fn set_attrs(&self, path: &str, attrs: FileAttrs, trips: &RoundTrips) -> Result<()> {
        trips.add(1);
        self.set_attrs_requests(path, attrs).await
    }

    async fn set_attrs_requests(&self, path: &str, attrs: FileAttrs) -> Result<()> {
        let owner = async {
            let (uid, gid) = ownership(attrs)?;
            if self.has(LSETSTAT) {
                let mut data = Vec::new();
                put_string(&mut data, path);
                // ATTRS with only the UIDGID flag.
                data.extend_from_slice(&0x0000_0002u32.to_be_bytes());
                data.extend_from_slice(&uid.to_be_bytes());
                data.extend_from_slice(&gid.to_be_bytes());
                Some(
                    self.session
                        .extended(LSETSTAT, data)
                        .await
                        .and_then(status_ok),
                )
            } else {
                let wanted = FileAttributes {
                    uid: Some(uid),
                    gid: Some(gid),
                    ..FileAttributes::default()
                };
                Some(
                    self.session
                        .setstat(path.to_string(), wanted)
                        .await
                        .map(|_| ()),
                )
            }
        };
        let mode = async {
            let mode = attrs.mode?;
            let wanted = FileAttributes {
                permissions: Some(mode),
                ..FileAttributes::default()
            };
            Some(
                self.session
                    .setstat(path.to_string(), wanted)
                    .await
                    .map(|_| ()),
            )
        };
        let (owner, mode) = tokio::join!(owner, mode);
        if let Some(owner) = owner {
            owner.map_err(|error| failure("chown", path, error))?;
        }
        if let Some(mode) = mode {
            mode.map_err(|error| failure("chmod", path, error))?;
        }
        Ok(())
    }

    /// Removes a file, symlink or empty directory. One round trip.
    pub async fn remove(&self, path: &str, is_directory: bool, trips: &RoundTrips) -> Result<()> {
        trips.add(1);
        let result = if is_directory {
            self.session.rmdir(path.to_string()).await
        } else {
            self.session.remove(path.to_string()).await
        };
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_missing(&error) => Ok(()),
            Err(error) => Err(failure("remove", path, error)),
        }
    }
}

fn status_ok(packet: Packet) -> std::result::Result<(), SftpError> {
    match packet {
        Packet::Status(status) if status.status_code == StatusCode::Ok => Ok(()),
        Packet::Status(status) => Err(SftpError::Status(status)),
        _ => Err(SftpError::UnexpectedPacket),
    }
}

fn parent_dir(path: &str) -> String {
    match path.rfind('/') {
        Some(0) => "/".to_string(),
        Some(index) => path[..index].to_string(),
        None => ".".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_bits_map_to_kinds() {
        let attrs = |bits| FileAttributes {
            permissions: Some(bits),
            uid: Some(1),
            gid: Some(2),
            size: Some(3),
            ..FileAttributes::default()
        };
        let stat = to_stat(&attrs(0o100640));
        assert_eq!(stat.kind, FileKind::File);
        assert_eq!(stat.mode, 0o640);
        assert_eq!((stat.uid, stat.gid, stat.size), (1, 2, 3));
        assert_eq!(to_stat(&attrs(0o040750)).kind, FileKind::Directory);
        assert_eq!(to_stat(&attrs(0o120777)).kind, FileKind::Symlink);
        assert_eq!(to_stat(&attrs(0o010644)).kind, FileKind::Other);
    }

    #[test]
    fn ownership_keeps_unset_id() {
        let attrs = FileAttrs {
            mode: None,
            uid: None,
            gid: Some(5),
        };
        assert_eq!(ownership(attrs), Some((u32::MAX, 5)));
        assert_eq!(ownership(FileAttrs::default()), None);
    }

    #[test]
    fn parent_of_paths() {
        assert_eq!(parent_dir("/etc/x.conf"), "/etc");
        assert_eq!(parent_dir("/x"), "/");
    }
}
