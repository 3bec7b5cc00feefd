//! The russh client callbacks of one connection: host key verification against known_hosts
//! (the only gate between key exchange and authentication) and the reason the connection
//! ended, kept for the message that reports a lost host.

use std::path::Path;
use std::sync::{Arc, Mutex};

use russh::client::{DisconnectReason, Handler};
use russh::keys::PublicKeyOrCertificate;

use super::known_hosts::{HostKeyPolicy, KnownHosts, Verdict, fingerprint, openssh_key_text};

/// The reason a connection could not be set up or ended.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Ssh(#[from] russh::Error),
    /// The host key was rejected. The message gives the reason and the fix.
    #[error("{0}")]
    HostKey(String),
}

/// The text of the last disconnect, shared with the transport.
pub type DisconnectNote = Arc<Mutex<Option<String>>>;

pub struct ClientHandler {
    /// The name the host is listed under in known_hosts (`host` or `[host]:port`).
    pub entry_name: String,
    /// `user@host:port`, for messages.
    pub label: String,
    pub known_hosts: Arc<KnownHosts>,
    pub policy: HostKeyPolicy,
    pub disconnect: DisconnectNote,
    pub inventory_host: String,
}

impl ClientHandler {
    fn verify(&self, key: &russh::keys::PublicKey) -> Result<(), String> {
        let file = self.known_hosts.write_file();
        let name = &self.entry_name;
        let algorithm = key.algorithm().to_string();
        let print = fingerprint(key);
        match self.known_hosts.verify(name, key)? {
            Verdict::Known => Ok(()),
            Verdict::Unknown => match self.policy {
                HostKeyPolicy::AcceptNew => {
                    self.known_hosts.append(name, key)?;
                    tracing::warn!(
                        host = %self.inventory_host,
                        "permanently added {name} ({algorithm} {print}) to {}",
                        file.display()
                    );
                    Ok(())
                }
                HostKeyPolicy::Strict => Err(unknown_message(&self.label, name, key, file)),
            },
            Verdict::Changed {
                file,
                line,
                known_algorithm,
            } => Err(format!(
                "HOST KEY VERIFICATION FAILED for {label}: the host key of {name} has changed. \
                 It now presents {algorithm} key {print}, but {file}:{line} holds a different \
                 {known_algorithm} key. Someone may be intercepting the connection \
                 (man-in-the-middle), or the host was reinstalled. masrun will not connect. If \
                 the change is expected, check the new fingerprint with the host's \
                 administrator, then remove the old key with: ssh-keygen -R '{name}' -f {file}",
                label = self.label,
                file = file.display(),
            )),
            Verdict::Revoked { file, line } => Err(format!(
                "HOST KEY VERIFICATION FAILED for {label}: {name} presents {algorithm} key \
                 {print}, which {file}:{line} marks as @revoked. masrun will not connect.",
                label = self.label,
                file = file.display(),
            )),
        }
    }
}

fn unknown_message(label: &str, name: &str, key: &russh::keys::PublicKey, file: &Path) -> String {
    format!(
        "host key verification failed for {label}: {name} is not in {file}. It presents {algorithm} \
         key {print}. Compare that fingerprint with the one the host's administrator sees \
         (ssh-keygen -lf /etc/ssh/ssh_host_{short}_key.pub on the host); then either add the key \
         with: echo '{name} {key_text}' >> {file}, or run once with --host-key-policy accept-new \
         (or masrun_host_key_policy: accept-new) to record it",
        file = file.display(),
        algorithm = key.algorithm(),
        print = fingerprint(key),
        short = short_key_name(key),
        key_text = openssh_key_text(key),
    )
}

/// The word in `/etc/ssh/ssh_host_<word>_key.pub` for the key's type.
fn short_key_name(key: &russh::keys::PublicKey) -> &'static str {
    let algorithm = key.algorithm();
    if algorithm.clone().is_rsa() {
        "rsa"
    } else if algorithm.is_ecdsa() {
        "ecdsa"
    } else {
        "ed25519"
    }
}

impl Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                self.verify(key).map_err(HandlerError::HostKey)?;
                Ok(true)
            }
            // masrun advertises no certificate algorithms, so a server that sends one anyway
            // is not following the negotiation.
            PublicKeyOrCertificate::Certificate(_) => Err(HandlerError::HostKey(format!(
                "{} presented a host certificate, which masrun does not verify",
                self.label
            ))),
        }
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let text = match &reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                format!("the server closed the connection ({info:?})")
            }
            DisconnectReason::Error(error) => error.to_string(),
        };
        tracing::debug!(host = %self.inventory_host, "disconnected from {}: {text}", self.label);
        *self.disconnect.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
        match reason {
            DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            DisconnectReason::Error(error) => Err(error),
        }
    }
}
