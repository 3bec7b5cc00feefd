//! The SSH transport (russh): one authenticated connection per host for the whole run, with
//! the host key verified against known_hosts before anything else. Files go over one SFTP
//! session (pipelined), commands over `exec` channels, byte streams over direct-tcpip and
//! direct-streamlocal channels. At most [`MAX_CHANNELS`] channels are open at once.
//!
//! A failure of the connection itself becomes [`TransportError::Unreachable`], so the run
//! reports the host as unreachable. An operation the host carried out and reported as failed
//! stays an ordinary error.

mod auth;
mod config;
mod exec;
mod handler;
pub mod known_hosts;
mod sftp;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use russh::client::{Handle, Msg};
use russh::keys::Algorithm;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    ExecOutput, ExecRequest, FileAttrs, FileKind, FileStat, HostStream, Result, RoundTrips,
    StreamTarget, Transport, TransportError,
};
use crate::vars::HostVars;
use config::{ClientConfig, Endpoint, SshSettings};
pub use exec::wait_for_cleanups;
use exec::{BecomeMethod, ChannelOutcome, RunningChannel, become_wrapper, command_line};
use handler::{ClientHandler, DisconnectNote, HandlerError};
pub use known_hosts::HostKeyPolicy;
use known_hosts::{KnownHosts, host_entry_name};
use sftp::{Failure, Fetched, Sftp};

/// Channels open at once on one connection, the SFTP session included: below OpenSSH's
/// default `MaxSessions 10`, with room for an operator's own session.
const MAX_CHANNELS: usize = 8;

/// Paths of sftp-server on Debian and Ubuntu, RHEL and Fedora, Arch, and Alpine, for running
/// it through sudo when the host's commands and files belong to another user.
const SFTP_SERVER_PATHS: &[&str] = &[
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/lib/ssh/sftp-server",
    "/usr/libexec/sftp-server",
];

/// Opens SSH connections for a run: the parsed client configuration and known_hosts files,
/// shared by every host.
pub struct SshConnector {
    config: ClientConfig,
    known_hosts: Arc<KnownHosts>,
}

/// A session channel opened ahead of the command that will use it. A command must wait for
/// its channel to open, because the exec request names the channel number the host assigned.
/// A spare opened alongside the previous command (or the SFTP session) has usually finished
/// opening by the time the next command starts, so that wait costs no round trip of its own.
struct SpareChannel {
    opening: tokio::task::JoinHandle<std::result::Result<russh::Channel<Msg>, russh::Error>>,
    permit: OwnedSemaphorePermit,
}

/// Running commands as another user for the whole host (`ansible_become`).
#[derive(Clone, Debug)]
struct BecomeState {
    user: String,
    method: BecomeMethod,
    password: Option<String>,
}

impl SshConnector {
    /// `known_hosts` is `--known-hosts`; `policy` is `--host-key-policy`, which wins over the
    /// inventory's `masrun_host_key_policy`.
    pub fn new(
        known_hosts: Option<PathBuf>,
        policy: Option<HostKeyPolicy>,
    ) -> std::result::Result<SshConnector, String> {
        let config = ClientConfig::load(policy)?;
        let known_hosts = Arc::new(KnownHosts::new(known_hosts, config.home.as_deref()));
        Ok(SshConnector {
            config,
            known_hosts,
        })
    }

    /// Connects, verifies the host key, authenticates and starts SFTP for `inventory_host`.
    pub async fn connect(&self, inventory_host: &str, vars: &HostVars) -> Result<SshTransport> {
        let var = |name: &str| vars.try_get(name).map_err(|error| error.to_string());
        let settings = self
            .config
            .settings(inventory_host, &var)
            .map_err(TransportError::Other)?;

        let mut hops: Vec<Endpoint> = settings.jumps.clone();
        hops.push(settings.target.clone());
        let mut jump_sessions = Vec::new();
        let mut previous: Option<Handle<ClientHandler>> = None;
        let mut disconnect = DisconnectNote::default();
        for endpoint in &hops {
            disconnect = DisconnectNote::default();
            let session = self
                .open_session(
                    inventory_host,
                    &settings,
                    endpoint,
                    previous.as_ref(),
                    &disconnect,
                )
                .await?;
            if let Some(jump) = previous.take() {
                jump_sessions.push(jump);
            }
            previous = Some(session);
        }
        let session = previous.expect("the target is always the last hop");
        let label = settings.target.label();

        let transport = SshTransport {
            inventory_host: inventory_host.to_string(),
            label,
            login_user: settings.target.user.clone(),
            session: Arc::new(session),
            _jump_sessions: jump_sessions,
            disconnect,
            channels: Arc::new(Semaphore::new(MAX_CHANNELS - 1)),
            round_trips: RoundTrips::default(),
            spare_channel: std::sync::Mutex::new(None),
            become_: None,
            become_password: None,
            command_sudo: tokio::sync::OnceCell::new(),
            sftp: tokio::sync::OnceCell::new(),
            runtime: tokio::runtime::Handle::current(),
        };
        let transport = transport.with_become(&settings).await?;
        transport.start_sftp().await?;
        Ok(transport)
    }

    fn russh_config(&self, settings: &SshSettings, entry_name: &str) -> russh::client::Config {
        // Ask for a host key type the operator already trusts, as OpenSSH does, so a host
        // listed with its RSA key is not reported as changed for presenting its ed25519 key.
        let known = self.known_hosts.known_algorithms(entry_name);
        let mut keys: Vec<Algorithm> = russh::Preferred::DEFAULT.key.to_vec();
        keys.sort_by_key(|algorithm| {
            let name = if algorithm.clone().is_rsa() {
                "ssh-rsa".to_string()
            } else {
                algorithm.to_string()
            };
            !known.contains(&name)
        });
        russh::client::Config {
            keepalive_interval: Some(settings.keepalive_interval),
            keepalive_max: settings.keepalive_max,
            // A command may print nothing for hours; the keepalives tell a silent command
            // from a dead connection, so no inactivity timer closes the connection.
            inactivity_timeout: None,
            nodelay: true,
            preferred: russh::Preferred {
                key: keys.into(),
                ..russh::Preferred::DEFAULT
            },
            ..russh::client::Config::default()
        }
    }

    async fn open_session(
        &self,
        inventory_host: &str,
        settings: &SshSettings,
        endpoint: &Endpoint,
        jump: Option<&Handle<ClientHandler>>,
        disconnect: &DisconnectNote,
    ) -> Result<Handle<ClientHandler>> {
        let label = endpoint.label();
        let entry_name = host_entry_name(&endpoint.host, endpoint.port);
        let handler = ClientHandler {
            entry_name: entry_name.clone(),
            label: label.clone(),
            known_hosts: self.known_hosts.clone(),
            policy: settings.host_key_policy,
            disconnect: disconnect.clone(),
            inventory_host: inventory_host.to_string(),
        };
        let config = Arc::new(self.russh_config(settings, &entry_name));
        let timeout = settings.connect_timeout;
        let timed_out = || {
            TransportError::Unreachable(format!(
                "connection to {label} timed out after {} s (ConnectTimeout)",
                timeout.as_secs()
            ))
        };
        tracing::info!(host = inventory_host, "connecting to {label}");

        let handshake = match jump {
            None => {
                let stream = tokio::time::timeout(
                    timeout,
                    tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port)),
                )
                .await
                .map_err(|_| timed_out())?
                .map_err(|error| {
                    TransportError::Unreachable(format!("cannot connect to {label}: {error}"))
                })?;
                let _ = stream.set_nodelay(true);
                tokio::time::timeout(
                    timeout,
                    russh::client::connect_stream(config, stream, handler),
                )
                .await
            }
            Some(jump) => {
                let channel = jump
                    .channel_open_direct_tcpip(
                        endpoint.host.clone(),
                        u32::from(endpoint.port),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|error| {
                        TransportError::Unreachable(format!(
                            "the jump host could not open a connection to {label}: {error}"
                        ))
                    })?;
                tokio::time::timeout(
                    timeout,
                    russh::client::connect_stream(config, channel.into_stream(), handler),
                )
                .await
            }
        };
        let mut session = match handshake.map_err(|_| timed_out())? {
            Ok(session) => session,
            Err(HandlerError::HostKey(message)) => {
                return Err(TransportError::Unreachable(message));
            }
            Err(HandlerError::Ssh(error)) => {
                return Err(TransportError::Unreachable(format!(
                    "SSH handshake with {label} failed: {error}"
                )));
            }
        };

        auth::authenticate(
            &mut session,
            endpoint,
            &self.config.default_identity_files(),
            inventory_host,
        )
        .await
        .map_err(TransportError::Unreachable)?;
        tracing::info!(host = inventory_host, "authenticated to {label}");
        Ok(session)
    }
}

/// A connection to one host over SSH.
pub struct SshTransport {
    inventory_host: String,
    /// `user@host:port` of the target, for messages.
    label: String,
    login_user: String,
    session: Arc<Handle<ClientHandler>>,
    /// Connections to jump hosts, which carry `session` and must live as long.
    _jump_sessions: Vec<Handle<ClientHandler>>,
    disconnect: DisconnectNote,
    /// Permits for exec and stream channels. The SFTP session uses the remaining channel.
    channels: Arc<Semaphore>,
    round_trips: RoundTrips,
    /// A session channel opened ahead for the next command.
    spare_channel: std::sync::Mutex<Option<SpareChannel>>,
    become_: Option<BecomeState>,
    /// `ansible_become_password`, also when `ansible_become` is off.
    become_password: Option<String>,
    /// The sudo method for commands that name their own `become_user` while
    /// `ansible_become` is off and a password is set, probed on first use.
    command_sudo: tokio::sync::OnceCell<BecomeMethod>,
    sftp: tokio::sync::OnceCell<Sftp>,
    runtime: tokio::runtime::Handle,
}

impl SshTransport {
    /// Builds the error for an operation that failed because the connection is gone.
    fn lost(&self, detail: &str) -> TransportError {
        let reason = self
            .disconnect
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut message = format!("connection to {} lost", self.label);
        match reason {
            Some(reason) => message.push_str(&format!(": {reason}")),
            None if !detail.is_empty() => message.push_str(&format!(": {detail}")),
            None => {}
        }
        TransportError::Unreachable(message)
    }

    fn russh_error(&self, operation: &str, error: russh::Error) -> TransportError {
        match error {
            russh::Error::ChannelOpenFailure(reason) => TransportError::Other(format!(
                "{} rejected the channel for {operation}: {reason:?}",
                self.label
            )),
            other => self.lost(&other.to_string()),
        }
    }

    fn sftp_error(&self, failure: Failure) -> TransportError {
        match failure {
            Failure::Status {
                operation,
                path,
                code,
                message,
            } => {
                let kind = match code {
                    russh_sftp::protocol::StatusCode::NoSuchFile => std::io::ErrorKind::NotFound,
                    russh_sftp::protocol::StatusCode::PermissionDenied => {
                        std::io::ErrorKind::PermissionDenied
                    }
                    _ => std::io::ErrorKind::Other,
                };
                let text = if message.is_empty() {
                    format!("{code:?}")
                } else {
                    message
                };
                TransportError::Io {
                    operation,
                    path,
                    source: std::io::Error::new(kind, text),
                }
            }
            Failure::Session(detail) => self.lost(&detail),
        }
    }

    fn sftp(&self) -> Result<&Sftp> {
        self.sftp
            .get()
            .ok_or_else(|| TransportError::Other("the SFTP session is not started".into()))
    }

    /// The wrapper that runs a command as `user`, or nothing when that is the login user,
    /// and the password to send first on its stdin, if any.
    async fn wrapper_for(&self, user: Option<&str>) -> Result<(Vec<String>, Option<&str>)> {
        let Some(user) = user.or(self.become_.as_ref().map(|b| b.user.as_str())) else {
            return Ok((Vec::new(), None));
        };
        if user == self.login_user {
            return Ok((Vec::new(), None));
        }
        let (method, password) = match &self.become_ {
            Some(state) => (state.method.clone(), state.password.as_deref()),
            None if self.login_user == "root" => (BecomeMethod::Runuser, None),
            // Without ansible_become, sudo is probed when a command first names a
            // become_user. Only the probe shows whether sudo reads the password from stdin,
            // or would leave it there for the command to read.
            None => match &self.become_password {
                Some(password) => {
                    let method = self
                        .command_sudo
                        .get_or_try_init(|| self.probe_sudo(user, Some(password)))
                        .await?;
                    (method.clone(), Some(password.as_str()))
                }
                None => (BecomeMethod::Sudo, None),
            },
        };
        let password = if method == BecomeMethod::SudoPassword {
            password
        } else {
            None
        };
        Ok((become_wrapper(&method, user), password))
    }

    /// Checks once, at connect time, how sudo lets the login user become the target user,
    /// so a missing password is reported before any step runs.
    async fn with_become(mut self, settings: &SshSettings) -> Result<SshTransport> {
        self.become_password = settings.become_password.clone();
        let Some(wanted) = &settings.become_ else {
            return Ok(self);
        };
        if wanted.user == self.login_user {
            return Ok(self);
        }
        if self.login_user == "root" {
            self.become_ = Some(BecomeState {
                user: wanted.user.clone(),
                method: BecomeMethod::Runuser,
                password: None,
            });
            return Ok(self);
        }

        let method = self
            .probe_sudo(&wanted.user, settings.become_password.as_deref())
            .await?;
        self.become_ = Some(BecomeState {
            user: wanted.user.clone(),
            method,
            password: settings.become_password.clone(),
        });
        Ok(self)
    }

    /// Finds out how sudo lets the login user run commands as `user`: without a password
    /// (`sudo -n`), or with `password` on stdin, which this checks. One command, two with a
    /// password. The method found is used for every other user too.
    async fn probe_sudo(&self, user: &str, password: Option<&str>) -> Result<BecomeMethod> {
        let probe = |method: BecomeMethod| ExecRequest {
            argv: [become_wrapper(&method, user), vec!["true".into()]].concat(),
            ..ExecRequest::default()
        };
        let output = self
            .run_wrapped(&probe(BecomeMethod::Sudo), &[], None)
            .await?;
        if output.success() {
            return Ok(BecomeMethod::Sudo);
        }
        if !output.stderr_text().contains("password") {
            return Err(TransportError::Other(format!(
                "cannot become {user} on {} with sudo: {}",
                self.label,
                output.stderr_text().trim()
            )));
        }
        let Some(password) = password else {
            return Err(TransportError::Other(format!(
                "sudo on {} requires a password for {} to become {user}, and none was given; \
                 set ansible_become_password (for example in a vars file passed with -e \
                 @file), or allow {} to run sudo without a password (NOPASSWD)",
                self.label, self.login_user, self.login_user
            )));
        };
        let checked = self
            .run_wrapped(&probe(BecomeMethod::SudoPassword), &[], Some(password))
            .await?;
        if !checked.success() {
            return Err(TransportError::Other(format!(
                "sudo on {} rejected ansible_become_password for {} becoming {user}: {}",
                self.label,
                self.login_user,
                checked.stderr_text().trim()
            )));
        }
        Ok(BecomeMethod::SudoPassword)
    }

    /// Starts the SFTP session: the `sftp` subsystem, or sftp-server through the become
    /// wrapper, so files are read and written as the become user. Two round trips, during
    /// which the first command's channel opens too.
    async fn start_sftp(&self) -> Result<()> {
        self.open_spare_channel();
        self.round_trips.add(1);
        let channel = self
            .session
            .channel_open_session()
            .await
            .map_err(|error| self.russh_error("SFTP", error))?;
        let (wrapper, password) = self.wrapper_for(None).await?;
        if wrapper.is_empty() {
            channel
                .request_subsystem(true, "sftp")
                .await
                .map_err(|error| self.russh_error("SFTP", error))?;
        } else {
            let mut script = String::new();
            for path in SFTP_SERVER_PATHS {
                script.push_str(&format!(
                    "if [ -x {path} ]; then exec {} {path}; fi; ",
                    shell_words::join(&wrapper)
                ));
            }
            script.push_str("echo 'masrun: no sftp-server found on the host' >&2; exit 127");
            channel
                .exec(true, format!("exec sh -c {}", shell_words::quote(&script)))
                .await
                .map_err(|error| self.russh_error("SFTP", error))?;
        }
        let mut stream = channel.into_stream();
        if let Some(password) = password {
            stream
                .write_all(format!("{password}\n").as_bytes())
                .await
                .map_err(|error| self.lost(&error.to_string()))?;
        }

        self.round_trips.add(1);
        let sftp = Sftp::start(stream).await.map_err(|error| {
            if self.session.is_closed() {
                self.lost(&error)
            } else {
                TransportError::Other(format!(
                    "{error} on {}; check that sshd has `Subsystem sftp` configured",
                    self.label
                ))
            }
        })?;
        let _ = self.sftp.set(sftp);
        Ok(())
    }

    /// Opens a session channel for a command in the background and keeps it as the spare,
    /// unless there is one already or the channel limit is reached.
    fn open_spare_channel(&self) {
        let mut spare = self.spare_channel.lock().unwrap_or_else(|e| e.into_inner());
        if spare.is_some() {
            return;
        }
        let Ok(permit) = self.channels.clone().try_acquire_owned() else {
            return;
        };
        let session = self.session.clone();
        let opening = self
            .runtime
            .spawn(async move { session.channel_open_session().await });
        *spare = Some(SpareChannel { opening, permit });
    }

    /// Returns an open session channel for a command with its permit: the spare, or a new
    /// one. Opens the next spare either way, so its open travels with this command's exec
    /// request. Counts a round trip only when the command has to wait for its channel.
    /// Waits for a free channel under the connection's limit, and counts the open that
    /// follows as a round trip.
    async fn open_channel_slot(&self) -> Result<OwnedSemaphorePermit> {
        let permit = self
            .channels
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.lost("channel limit closed"))?;
        self.round_trips.add(1);
        Ok(permit)
    }

    async fn command_channel(&self) -> Result<(russh::Channel<Msg>, OwnedSemaphorePermit)> {
        let spare = self
            .spare_channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(spare) = spare {
            if !spare.opening.is_finished() {
                self.round_trips.add(1);
            }
            match spare.opening.await {
                Ok(Ok(channel)) => {
                    self.open_spare_channel();
                    return Ok((channel, spare.permit));
                }
                // Opening a channel now reports why the spare failed, or succeeds where the
                // host was only out of sessions for a moment.
                Ok(Err(error)) => {
                    tracing::debug!(host = %self.inventory_host, %error, "spare channel did not open");
                }
                Err(error) => {
                    tracing::debug!(host = %self.inventory_host, %error, "spare channel task failed");
                }
            }
        }

        let permit = self.open_channel_slot().await?;
        let channel = self
            .session
            .channel_open_session()
            .await
            .map_err(|error| self.russh_error("a command", error))?;
        self.open_spare_channel();
        Ok((channel, permit))
    }

    /// Runs a command as its `become_user` (or the host's become user) on a session
    /// channel: one round trip for the command, plus one when its channel was not open in
    /// advance.
    async fn run_command(&self, request: &ExecRequest) -> Result<ExecOutput> {
        let (wrapper, password) = self.wrapper_for(request.become_user.as_deref()).await?;
        self.run_wrapped(request, &wrapper, password).await
    }

    /// Runs a command inside `wrapper`. `password` goes first on stdin, for `sudo -S`.
    async fn run_wrapped(
        &self,
        request: &ExecRequest,
        wrapper: &[String],
        password: Option<&str>,
    ) -> Result<ExecOutput> {
        let mut stdin = Vec::new();
        if let Some(password) = password {
            stdin.extend_from_slice(password.as_bytes());
            stdin.push(b'\n');
        }
        if let Some(input) = &request.stdin {
            stdin.extend_from_slice(input);
        }
        let command = command_line(request, wrapper, stdin.len());

        let (channel, permit) = self.command_channel().await?;
        self.round_trips.add(1);
        let mut running = RunningChannel::new(channel, permit, self.runtime.clone());
        // When the caller drops this future (an interrupt), `running` drops with it, which
        // stops the command on the host.
        let outcome = running
            .run(&command, &stdin)
            .await
            .map_err(|error| self.russh_error("a command", error))?;
        drop(running);

        match outcome {
            ChannelOutcome::Finished {
                status,
                signal,
                stdout,
                mut stderr,
            } => {
                if let Some(signal) = signal {
                    stderr.extend_from_slice(format!("\n(killed by signal {signal})").as_bytes());
                }
                let output = ExecOutput {
                    status,
                    stdout,
                    stderr,
                };
                self.check_sudo_password(wrapper, &output)?;
                Ok(output)
            }
            ChannelOutcome::Refused => Err(TransportError::Other(format!(
                "{} rejected the exec request for {}",
                self.label,
                request.argv.first().map(String::as_str).unwrap_or_default()
            ))),
            ChannelOutcome::Lost => {
                Err(self.lost("the command's channel closed without an exit status"))
            }
        }
    }

    /// sudo's `-n` failure, turned into a message that names the host and the fix.
    fn check_sudo_password(&self, wrapper: &[String], output: &ExecOutput) -> Result<()> {
        let is_sudo = wrapper.first().is_some_and(|word| word == "sudo");
        if is_sudo
            && output.status == Some(1)
            && output.stderr_text().contains("a password is required")
        {
            return Err(TransportError::Other(format!(
                "sudo on {} requires a password for {} to run commands as {}; set \
                 ansible_become_password or allow NOPASSWD for {}",
                self.label,
                self.login_user,
                wrapper.get(3).map(String::as_str).unwrap_or("another user"),
                self.login_user
            )));
        }
        Ok(())
    }

    fn path_text<'a>(&self, path: &'a Path) -> Result<&'a str> {
        path.to_str().ok_or_else(|| {
            TransportError::Other(format!(
                "{} is not valid UTF-8, which SFTP paths must be",
                path.display()
            ))
        })
    }

    fn path_texts(&self, paths: &[PathBuf]) -> Result<Vec<String>> {
        paths
            .iter()
            .map(|path| self.path_text(path).map(str::to_string))
            .collect()
    }
}

#[async_trait]
impl Transport for SshTransport {
    async fn stat(&self, paths: &[PathBuf]) -> Result<Vec<Option<FileStat>>> {
        let texts = self.path_texts(paths)?;
        self.sftp()?
            .lstat_many(&texts, &self.round_trips)
            .await
            .map_err(|failure| self.sftp_error(failure))
    }

    async fn read(&self, paths: &[PathBuf]) -> Result<Vec<Option<Vec<u8>>>> {
        let texts = self.path_texts(paths)?;
        let fetched = self
            .sftp()?
            .fetch(&texts, true, &self.round_trips)
            .await
            .map_err(|failure| self.sftp_error(failure))?;
        fetched
            .into_iter()
            .zip(paths)
            .map(|(entry, path)| match entry {
                None => Ok(None),
                Some(Fetched {
                    stat,
                    contents: None,
                }) if stat.kind == FileKind::Directory => Err(TransportError::io(
                    "read",
                    path,
                    std::io::Error::new(std::io::ErrorKind::IsADirectory, "Is a directory"),
                )),
                Some(Fetched { contents, .. }) => Ok(contents),
            })
            .collect()
    }

    async fn stat_and_read(
        &self,
        paths: &[PathBuf],
    ) -> Result<Vec<Option<(FileStat, Option<Vec<u8>>)>>> {
        let texts = self.path_texts(paths)?;
        let fetched = self
            .sftp()?
            .fetch(&texts, false, &self.round_trips)
            .await
            .map_err(|failure| self.sftp_error(failure))?;
        Ok(fetched
            .into_iter()
            .map(|entry| entry.map(|Fetched { stat, contents }| (stat, contents)))
            .collect())
    }

    async fn write_atomic(&self, path: &Path, contents: &[u8], attrs: FileAttrs) -> Result<()> {
        let target = self.path_text(path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let file_name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(".{file_name}.masrun-{}", ulid::Ulid::new()));
        let temp = self.path_text(&temp)?.to_string();
        self.sftp()?
            .write_atomic(target, &temp, contents, attrs, &self.round_trips)
            .await
            .map_err(|failure| self.sftp_error(failure))
    }

    async fn mkdir(&self, path: &Path, attrs: FileAttrs) -> Result<()> {
        let text = self.path_text(path)?;
        self.sftp()?
            .mkdir(text, attrs, &self.round_trips)
            .await
            .map_err(|failure| self.sftp_error(failure))
    }

    async fn set_attrs(&self, path: &Path, attrs: FileAttrs) -> Result<()> {
        if attrs == FileAttrs::default() {
            return Ok(());
        }
        let text = self.path_text(path)?;
        self.sftp()?
            .set_attrs(text, attrs, &self.round_trips)
            .await
            .map_err(|failure| self.sftp_error(failure))
    }

    async fn remove(&self, path: &Path, recursive: bool) -> Result<()> {
        let stat = self.stat(&[path.to_path_buf()]).await?.remove(0);
        let Some(stat) = stat else {
            return Ok(());
        };
        let is_directory = stat.kind == FileKind::Directory;
        if is_directory && recursive {
            // SFTP has no recursive removal; walking the tree would cost a round trip per
            // directory, so one `rm -rf` does it.
            let output = self
                .run_command(&ExecRequest {
                    argv: vec![
                        "rm".into(),
                        "-rf".into(),
                        "--".into(),
                        path.display().to_string(),
                    ],
                    ..ExecRequest::default()
                })
                .await?;
            if !output.success() {
                return Err(TransportError::io(
                    "remove",
                    path,
                    std::io::Error::other(output.stderr_text().trim().to_string()),
                ));
            }
            return Ok(());
        }
        let text = self.path_text(path)?;
        self.sftp()?
            .remove(text, is_directory, &self.round_trips)
            .await
            .map_err(|failure| self.sftp_error(failure))
    }

    async fn exec(&self, request: &ExecRequest) -> Result<ExecOutput> {
        if request.argv.is_empty() {
            return Err(TransportError::Other("empty command".into()));
        }
        tracing::debug!(host = %self.inventory_host, program = %request.argv[0], "exec");
        self.run_command(request).await
    }

    async fn connect_stream(&self, target: &StreamTarget) -> Result<Box<dyn HostStream>> {
        let permit = self.open_channel_slot().await?;
        let opened = match target {
            StreamTarget::Tcp { host, port } => {
                self.session
                    .channel_open_direct_tcpip(host.clone(), u32::from(*port), "127.0.0.1", 0)
                    .await
            }
            StreamTarget::Unix(path) => {
                let path = self.path_text(path)?.to_string();
                self.session.channel_open_direct_streamlocal(path).await
            }
        };
        let channel = opened.map_err(|error| match error {
            russh::Error::ChannelOpenFailure(reason) => TransportError::Other(format!(
                "cannot connect to {target} through {}: {reason:?}",
                self.label
            )),
            other => self.lost(&other.to_string()),
        })?;
        Ok(Box::new(PermittedStream {
            stream: channel.into_stream(),
            _permit: permit,
        }))
    }

    fn round_trips(&self) -> u64 {
        self.round_trips.get()
    }
}

/// A channel stream that holds its connection's channel permit until dropped, which also
/// closes the channel.
struct PermittedStream {
    stream: russh::ChannelStream<Msg>,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for PermittedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PermittedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
