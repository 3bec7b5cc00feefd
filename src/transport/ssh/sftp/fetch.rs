//! Reading files over SFTP: the stat and the contents of each path, in as few round trips as
//! the protocol allows. One path takes one burst when the handle forecast is right (see
//! [`super::handles`]). Otherwise the READs wait for the handle the OPEN returns.

use futures::future::join_all;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{Attrs, Data, FileAttributes, OpenFlags, StatusCode};

use super::handles::Ledger;
use super::{CHUNK, Fetched, Result, Sftp, failure, is_missing, to_stat};
use crate::transport::{FileKind, FileStat, RoundTrips};

/// READ requests sent together with the OPEN, before the file's size is known. A regular
/// file of up to this many chunks (128 KiB) arrives whole in that burst.
const READ_AHEAD_CHUNKS: usize = 4;

/// The contents put together from READ replies in offset order.
enum Assembled {
    Complete(Vec<u8>),
    /// The replies stop before the end of the file, or a short read came before the end.
    Incomplete,
    Failed(SftpError),
}

/// Puts READ replies for consecutive chunks together. The contents are complete when an
/// end-of-file status follows the data (after full chunks and at most one short one), or when
/// the data is exactly `size` bytes long, for a regular file whose stat reported `size`.
fn assemble(replies: Vec<std::result::Result<Data, SftpError>>, size: Option<u64>) -> Assembled {
    let mut contents = Vec::new();
    let mut after_short = false;
    for reply in replies {
        match reply {
            Err(SftpError::Status(status)) if status.status_code == StatusCode::Eof => {
                return Assembled::Complete(contents);
            }
            Ok(data) if after_short && data.data.is_empty() => {
                return Assembled::Complete(contents);
            }
            // Data after a short read: the server returned less than it had.
            Ok(_) | Err(_) if after_short => return Assembled::Incomplete,
            Ok(data) => {
                after_short = data.data.len() < CHUNK;
                contents.extend_from_slice(&data.data);
            }
            Err(error) => return Assembled::Failed(error),
        }
    }
    if size == Some(contents.len() as u64) {
        Assembled::Complete(contents)
    } else {
        Assembled::Incomplete
    }
}

/// Returns the size that reading `stat`'s file yields. Only a regular file's is known, because
/// an `lstat` of a symlink reports the length of the link.
fn expected_size(stat: &FileStat) -> Option<u64> {
    (stat.kind == FileKind::File).then_some(stat.size)
}

fn is_directory(stat: &Option<FileStat>) -> bool {
    stat.as_ref().is_some_and(|s| s.kind == FileKind::Directory)
}

impl Sftp {
    /// Stats (`lstat`, or `stat` with `follow`) and reads several files.
    ///
    /// Round trips: one for a single file of at most [`READ_AHEAD_CHUNKS`] chunks when the
    /// handle forecast is right. Otherwise two for any number of files, because the stats and
    /// opens go first and every read and close follows. A file that changes size while it is
    /// read, or a symlink, may cost a few more.
    ///
    /// NOTE: the speculative open blocks sftp-server on a FIFO without a writer; the paths
    /// masrun manages are regular files and directories.
    pub async fn fetch(
        &self,
        paths: &[String],
        follow: bool,
        trips: &RoundTrips,
    ) -> Result<Vec<Option<Fetched>>> {
        let mut forecast = self.forecast.lock().await;
        let ledger = forecast.begin();
        let result = match (paths, ledger.forecast()) {
            ([path], Some(handle)) => self
                .fetch_ahead(path, follow, &handle, &ledger, trips)
                .await
                .map(|fetched| vec![fetched]),
            _ => self.fetch_many(paths, follow, &ledger, trips).await,
        };
        forecast.finish(&ledger);
        result
    }

    async fn stat_request(
        &self,
        path: &str,
        follow: bool,
    ) -> std::result::Result<Attrs, SftpError> {
        if follow {
            self.session.stat(path.to_string()).await
        } else {
            self.session.lstat(path.to_string()).await
        }
    }

    /// Sends STAT, OPEN, READs of the first chunks and CLOSE in one burst, the READs and the
    /// CLOSE to the forecast handle. Reads through the handle the OPEN returned instead when
    /// the forecast missed or the file is longer than the chunks read ahead.
    async fn fetch_ahead(
        &self,
        path: &str,
        follow: bool,
        forecast: &str,
        ledger: &Ledger,
        trips: &RoundTrips,
    ) -> Result<Option<Fetched>> {
        trips.add(1);
        // futures::join! polls its futures in the order written, so the requests leave in
        // that order, and each future sends its request on its first poll.
        let (stat, open, reads, close) = futures::join!(
            self.stat_request(path, follow),
            self.session
                .open(path.to_string(), OpenFlags::READ, FileAttributes::default()),
            join_all((0..READ_AHEAD_CHUNKS).map(|index| {
                self.session
                    .read(forecast.to_string(), (index * CHUNK) as u64, CHUNK as u32)
            })),
            self.session.close(forecast.to_string()),
        );
        let opened = open.as_ref().ok().map(|handle| handle.handle.as_str());
        let (hit, still_open) = ledger.settle(forecast, opened, close.is_ok());

        let stat = match stat {
            Ok(attrs) => Some(to_stat(&attrs.attrs)),
            Err(error) if is_missing(&error) => None,
            Err(error) => return Err(failure("stat", path, error)),
        };
        if let Err(error) = open {
            // A dangling symlink has no contents, as reading it locally finds none.
            if stat.is_none() || is_missing(&error) || is_directory(&stat) {
                return Ok(stat.map(|stat| Fetched {
                    stat,
                    contents: None,
                }));
            }
            return Err(failure("open", path, error));
        }
        let Some(stat) = stat else {
            // The file appeared between the STAT and the OPEN; report what the STAT found.
            self.close_quietly(still_open, ledger, trips).await;
            return Ok(None);
        };
        if stat.kind == FileKind::Directory {
            self.close_quietly(still_open, ledger, trips).await;
            return Ok(Some(Fetched {
                stat,
                contents: None,
            }));
        }

        if hit && let Assembled::Complete(contents) = assemble(reads, expected_size(&stat)) {
            self.close_quietly(still_open, ledger, trips).await;
            return Ok(Some(Fetched {
                stat,
                contents: Some(contents),
            }));
        }
        let Some(handle) = still_open else {
            // The chunks read ahead did not reach the end, and their handle is closed: read
            // the file again, up to the size its STAT reports.
            let mut fetched = self
                .fetch_many(&[path.to_string()], follow, ledger, trips)
                .await?;
            return Ok(fetched.remove(0));
        };
        trips.add(1);
        let contents = self.read_open(path, &stat, &handle, ledger, trips).await?;
        Ok(Some(Fetched {
            stat,
            contents: Some(contents),
        }))
    }

    /// Closes a handle that a burst left open, ignoring the reply: nothing was written
    /// through it. One round trip when there is a handle.
    async fn close_quietly(&self, handle: Option<String>, ledger: &Ledger, trips: &RoundTrips) {
        let Some(handle) = handle else {
            return;
        };
        trips.add(1);
        if self.session.close(handle.clone()).await.is_ok() {
            ledger.closed(&handle);
        }
    }

    /// Two bursts for any number of files: stats and opens together, then every read and
    /// close together.
    async fn fetch_many(
        &self,
        paths: &[String],
        follow: bool,
        ledger: &Ledger,
        trips: &RoundTrips,
    ) -> Result<Vec<Option<Fetched>>> {
        trips.add(1);
        let stats = join_all(paths.iter().map(|path| self.stat_request(path, follow)));
        let opens = join_all(paths.iter().map(|path| {
            self.session
                .open(path.clone(), OpenFlags::READ, FileAttributes::default())
        }));
        let (stats, opens) = futures::join!(stats, opens);
        for _ in opens.iter().filter(|open| open.is_ok()) {
            ledger.opened();
        }

        // Second burst: read each file through its handle and close every handle.
        let mut plans = Vec::new();
        for ((path, stat), open) in paths.iter().zip(stats).zip(opens) {
            let stat = match stat {
                Ok(attrs) => Some(to_stat(&attrs.attrs)),
                Err(error) if is_missing(&error) => None,
                Err(error) => return Err(failure("stat", path, error)),
            };
            let handle = match open {
                Ok(handle) => Some(handle.handle),
                // A dangling symlink has no contents, as reading it locally finds none.
                Err(error) if stat.is_none() || is_missing(&error) => None,
                Err(_) if is_directory(&stat) => None,
                Err(error) => return Err(failure("open", path, error)),
            };
            plans.push((path, stat, handle));
        }
        trips.add(1);
        let reads = join_all(plans.iter().map(|(path, stat, handle)| async move {
            let Some(handle) = handle else {
                return Ok(None);
            };
            match stat {
                Some(stat) if stat.kind != FileKind::Directory => self
                    .read_open(path, stat, handle, ledger, trips)
                    .await
                    .map(Some),
                _ => {
                    if self.session.close(handle.clone()).await.is_ok() {
                        ledger.closed(handle);
                    }
                    Ok(None)
                }
            }
        }))
        .await;

        let mut fetched = Vec::new();
        for ((_, stat, _), contents) in plans.into_iter().zip(reads) {
            let contents = contents?;
            fetched.push(stat.map(|stat| Fetched { stat, contents }));
        }
        Ok(fetched)
    }

    /// Reads the file open as `handle` in whole chunks up to the size `stat` reported, and
    /// closes the handle, all in one burst that the caller counts. Reads again from the start
    /// when that did not reach the end of the file (a symlink, whose `lstat` size is the
    /// link's, or a file that changed size).
    async fn read_open(
        &self,
        path: &str,
        stat: &FileStat,
        handle: &str,
        ledger: &Ledger,
        trips: &RoundTrips,
    ) -> Result<Vec<u8>> {
        let chunks = (stat.size as usize).div_ceil(CHUNK);
        let (replies, close) = futures::join!(
            join_all((0..chunks).map(|index| {
                self.session
                    .read(handle.to_string(), (index * CHUNK) as u64, CHUNK as u32)
            })),
            self.session.close(handle.to_string()),
        );
        if close.is_ok() {
            ledger.closed(handle);
        }
        match assemble(replies, expected_size(stat)) {
            Assembled::Complete(contents) => Ok(contents),
            Assembled::Incomplete => self.read_to_end(path, ledger, trips).await,
            Assembled::Failed(error) => Err(failure("read", path, error)),
        }
    }

    /// Reads one file chunk by chunk until end of file: one round trip per chunk plus open
    /// and close. Only for the rare cases the bursts cannot size in advance.
    async fn read_to_end(
        &self,
        path: &str,
        ledger: &Ledger,
        trips: &RoundTrips,
    ) -> Result<Vec<u8>> {
        trips.add(1);
        let handle = self
            .session
            .open(path.to_string(), OpenFlags::READ, FileAttributes::default())
            .await
            .map_err(|error| failure("open", path, error))?
            .handle;
        ledger.opened();
        let mut contents = Vec::new();
        let result = loop {
            trips.add(1);
            match self
                .session
                .read(handle.clone(), contents.len() as u64, CHUNK as u32)
                .await
            {
                Ok(data) if data.data.is_empty() => break Ok(()),
                Ok(data) => contents.extend_from_slice(&data.data),
                Err(SftpError::Status(status)) if status.status_code == StatusCode::Eof => {
                    break Ok(());
                }
                Err(error) => break Err(failure("read", path, error)),
            }
        };
        trips.add(1);
        if self.session.close(handle.clone()).await.is_ok() {
            ledger.closed(&handle);
        }
        result.map(|()| contents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh_sftp::protocol::Status;

    fn data(length: usize) -> std::result::Result<Data, SftpError> {
        Ok(Data {
            id: 0,
            data: vec![b'x'; length],
        })
    }

    fn status(code: StatusCode) -> std::result::Result<Data, SftpError> {
        Err(SftpError::Status(Status {
            id: 0,
            status_code: code,
            error_message: String::new(),
            language_tag: String::new(),
        }))
    }

    fn length(assembled: Assembled) -> Option<usize> {
        match assembled {
            Assembled::Complete(contents) => Some(contents.len()),
            _ => None,
        }
    }

    #[test]
    fn eof_after_short_chunk_completes() {
        let replies = vec![data(CHUNK), data(10), status(StatusCode::Eof)];
        assert_eq!(length(assemble(replies, None)), Some(CHUNK + 10));
    }

    #[test]
    fn eof_at_start_is_empty_file() {
        let replies = vec![status(StatusCode::Eof), status(StatusCode::Eof)];
        assert_eq!(length(assemble(replies, None)), Some(0));
    }

    #[test]
    fn full_chunks_without_eof_are_incomplete() {
        let replies = vec![data(CHUNK), data(CHUNK)];
        assert!(matches!(assemble(replies, None), Assembled::Incomplete));
    }

    #[test]
    fn known_size_completes_without_eof() {
        let replies = vec![data(CHUNK), data(CHUNK)];
        assert_eq!(
            length(assemble(replies, Some(2 * CHUNK as u64))),
            Some(2 * CHUNK)
        );
    }

    #[test]
    fn data_after_short_chunk_is_incomplete() {
        let replies = vec![data(10), data(CHUNK), status(StatusCode::Eof)];
        assert!(matches!(assemble(replies, None), Assembled::Incomplete));
    }

    #[test]
    fn read_error_fails() {
        let replies = vec![status(StatusCode::Failure)];
        assert!(matches!(assemble(replies, None), Assembled::Failed(_)));
    }
}
