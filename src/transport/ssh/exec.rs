//! Commands over SSH. This module builds the command line of an `exec` request: the argument
//! vector quoted for the login shell, inside the `env`, working directory and become wrappers.
//! It also runs the session channel, which is always closed, and whose command is stopped
//! when its future is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::sync::OwnedSemaphorePermit;

use crate::transport::ExecRequest;

/// How long a cancelled command gets between SIGTERM and SIGKILL.
const CANCEL_GRACE: Duration = Duration::from_secs(3);

/// Cancelled commands whose channels are still being stopped and closed.
static PENDING_CLEANUPS: AtomicUsize = AtomicUsize::new(0);

/// Waits until every cancelled command has been stopped, or `limit` has passed, so the
/// process does not exit while a signal is still on its way to a host.
pub async fn wait_for_cleanups(limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while PENDING_CLEANUPS.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The method that runs a command as another user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BecomeMethod {
    /// `runuser`, when the connecting user is root: it needs no sudo on the host.
    Runuser,
    /// `sudo -n`, which fails at once instead of prompting.
    Sudo,
    /// `sudo -S` with the password as the first line of stdin. `-k` makes sudo ask for it
    /// every time, so the line is never left over for the command to read.
    SudoPassword,
}

/// The wrapper words that run a command as `user`.
pub fn become_wrapper(method: &BecomeMethod, user: &str) -> Vec<String> {
    let words: Vec<&str> = match method {
        BecomeMethod::Runuser => vec!["runuser", "-u", user, "--"],
        BecomeMethod::Sudo => vec!["sudo", "-n", "-u", user, "--"],
        BecomeMethod::SudoPassword => vec!["sudo", "-k", "-S", "-p", "", "-u", user, "--"],
    };
    words.into_iter().map(str::to_string).collect()
}

/// Runs `"$@"` with the first `$1` bytes of stdin as its input, then treats the end of stdin
/// as a stop request. masrun keeps the channel's stdin open while the command runs, so the end
/// comes only when masrun cancels the command or the channel or connection goes away. sshd
/// does neither itself: OpenSSH 9.2 rejects signal requests in a root login's session and
/// leaves commands running when their channel closes.
const LIFELINE: &str = r#"n=$1; shift
d=$(mktemp -d) || exit 125
mkfifo "$d/in" || { rm -rf "$d"; exit 125; }
exec 3<&0
"$@" <"$d/in" & c=$!
head -c "$n" <&3 >"$d/in"
rm -rf "$d"
{ cat <&3 >/dev/null 2>&1; kill -TERM "$c" 2>/dev/null; sleep 3; kill -KILL "$c" 2>/dev/null; } >/dev/null 2>&1 & w=$!
wait "$c"; s=$?
kill "$w" 2>/dev/null
exit "$s""#;

/// The string for the `exec` request: the [`LIFELINE`] wrapper around the quoted words.
///
/// `env` values and the working directory appear on the host's process list while the
/// command starts, so they must not be secrets. Secrets go on stdin.
pub fn command_line(request: &ExecRequest, wrapper: &[String], stdin_len: usize) -> String {
    let mut words: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        LIFELINE.into(),
        "sh".into(),
        stdin_len.to_string(),
    ];
    words.extend(wrapper.iter().cloned());
    if !request.env.is_empty() {
        words.push("env".into());
        for (name, value) in &request.env {
            words.push(format!("{name}={value}"));
        }
    }
    if let Some(cwd) = &request.cwd {
        // The directory change runs as the target user, after sudo, so a directory only that
        // user can enter works.
        words.extend([
            "sh".to_string(),
            "-c".to_string(),
            "cd \"$1\" && shift && exec \"$@\"".to_string(),
            "sh".to_string(),
            cwd.display().to_string(),
        ]);
    }
    words.extend(request.argv.iter().cloned());
    format!("exec {}", shell_words::join(&words))
}

/// The result of running a command on an open session channel.
pub enum ChannelOutcome {
    Finished {
        status: Option<i32>,
        signal: Option<String>,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// The host rejected the exec request.
    Refused,
    /// The channel ended without an exit status: the connection is gone.
    Lost,
}

/// A session channel running a command. Dropping it before the command finished (a cancelled
/// future) ends the channel's stdin and sends SIGTERM, then SIGKILL after [`CANCEL_GRACE`], and
/// closes the channel. The connection's channel permit is released only after that.
pub struct RunningChannel {
    write: Option<ChannelWriteHalf<Msg>>,
    read: Option<ChannelReadHalf>,
    permit: Option<OwnedSemaphorePermit>,
    runtime: tokio::runtime::Handle,
    finished: bool,
}

impl RunningChannel {
    pub fn new(
        channel: russh::Channel<Msg>,
        permit: OwnedSemaphorePermit,
        runtime: tokio::runtime::Handle,
    ) -> RunningChannel {
        let (read, write) = channel.split();
        RunningChannel {
            write: Some(write),
            read: Some(read),
            permit: Some(permit),
            runtime,
            finished: false,
        }
    }

    /// Starts `command` (built by [`command_line`]), feeds `stdin`, and collects the output
    /// until the host closes the channel. The channel's stdin stays open: its end would stop
    /// the command.
    pub async fn run(
        &mut self,
        command: &str,
        stdin: &[u8],
    ) -> Result<ChannelOutcome, russh::Error> {
        let (Some(write), Some(read)) = (self.write.as_ref(), self.read.as_mut()) else {
            return Ok(ChannelOutcome::Lost);
        };
        write.exec(true, command).await?;

        // Input and output flow at once: a command may write more than the channel window
        // before it reads all of its input.
        let feed = async {
            if !stdin.is_empty() {
                // A command that exits without reading its input is its own business.
                let _ = write.data(stdin).await;
            }
        };
        let collect = async {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            let mut status = None;
            let mut signal = None;
            let mut exited = false;
            let mut output_ended = false;
            // sshd closes the channel only after masrun ends stdin, which the lifeline keeps
            // open, so the command is done once its exit status and the end of its output
            // have arrived.
            while !(exited && output_ended) {
                match read.wait().await {
                    Some(ChannelMsg::Eof) => output_ended = true,
                    Some(ChannelMsg::Data { data }) => stdout.extend_from_slice(&data),
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                        stderr.extend_from_slice(&data)
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        status = i32::try_from(exit_status).ok();
                        exited = true;
                    }
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                        signal = Some(format!("{signal_name:?}"));
                        exited = true;
                    }
                    Some(ChannelMsg::Failure) if !exited => return ChannelOutcome::Refused,
                    Some(ChannelMsg::Close) => break,
                    Some(_) => {}
                    None if exited => break,
                    None => return ChannelOutcome::Lost,
                }
            }
            if !exited {
                return ChannelOutcome::Lost;
            }
            ChannelOutcome::Finished {
                status,
                signal,
                stdout,
                stderr,
            }
        };
        let ((), outcome) = tokio::join!(feed, collect);
        self.finished = true;
        Ok(outcome)
    }
}

impl Drop for RunningChannel {
    fn drop(&mut self) {
        let Some(write) = self.write.take() else {
            return;
        };
        let read = self.read.take();
        let permit = self.permit.take();
        let finished = self.finished;
        if !finished {
            PENDING_CLEANUPS.fetch_add(1, Ordering::SeqCst);
        }
        // Dropping may happen outside the runtime (a blocking script thread), so the cleanup
        // runs on the runtime the channel belongs to.
        self.runtime.spawn(async move {
            let _permit = permit;
            if !finished {
                // The end of stdin stops the command through its lifeline wrapper; the
                // signal reaches it directly where sshd allows (logins other than root).
                let _ = write.eof().await;
                let _ = write.signal(Sig::TERM).await;
                let exited = match read {
                    Some(mut read) => tokio::time::timeout(CANCEL_GRACE, async move {
                        while let Some(message) = read.wait().await {
                            if matches!(
                                message,
                                ChannelMsg::ExitStatus { .. }
                                    | ChannelMsg::ExitSignal { .. }
                                    | ChannelMsg::Close
                            ) {
                                return true;
                            }
                        }
                        false
                    })
                    .await
                    .unwrap_or(false),
                    None => false,
                };
                if !exited {
                    let _ = write.signal(Sig::KILL).await;
                }
                tracing::debug!("stopped a cancelled command");
            }
            let _ = write.eof().await;
            let _ = write.close().await;
            if !finished {
                PENDING_CLEANUPS.fetch_sub(1, Ordering::SeqCst);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn words_of(line: &str) -> Vec<String> {
        shell_words::split(line.strip_prefix("exec ").expect("starts with exec")).unwrap()
    }

    #[test]
    fn plain_command_is_quoted() {
        let request = ExecRequest {
            argv: vec!["echo".into(), "it's a $HOME".into()],
            ..ExecRequest::default()
        };
        let words = words_of(&command_line(&request, &[], 0));
        assert_eq!(words[4], "0");
        assert_eq!(&words[5..], ["echo", "it's a $HOME"]);
    }

    #[test]
    fn wrappers_env_and_cwd_nest_in_order() {
        let request = ExecRequest {
            argv: vec!["id".into(), "-un".into()],
            env: vec![("LANG".into(), "C".into())],
            cwd: Some(PathBuf::from("/srv/my dir")),
            ..ExecRequest::default()
        };
        let wrapper = become_wrapper(&BecomeMethod::Sudo, "matrix");
        let words = words_of(&command_line(&request, &wrapper, 12));
        assert_eq!(&words[..2], ["sh", "-c"]);
        assert_eq!(words[4], "12");
        assert_eq!(
            &words[5..],
            vec![
                "sudo",
                "-n",
                "-u",
                "matrix",
                "--",
                "env",
                "LANG=C",
                "sh",
                "-c",
                "cd \"$1\" && shift && exec \"$@\"",
                "sh",
                "/srv/my dir",
                "id",
                "-un",
            ]
        );
    }

    #[test]
    fn password_wrapper_reads_stdin_without_prompt() {
        assert_eq!(
            become_wrapper(&BecomeMethod::SudoPassword, "root"),
            vec!["sudo", "-k", "-S", "-p", "", "-u", "root", "--"]
        );
        assert_eq!(
            become_wrapper(&BecomeMethod::Runuser, "matrix"),
            vec!["runuser", "-u", "matrix", "--"]
        );
    }
}
