//! Public key authentication, as OpenSSH's client does it: keys held by ssh-agent
//! (`SSH_AUTH_SOCK`) and private key files, an encrypted file's passphrase asked once on the
//! terminal. Passphrases and private keys never leave this process.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use russh::client::{AuthResult, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};

use super::config::Endpoint;
use super::handler::ClientHandler;
use super::known_hosts::fingerprint;

/// Decrypted key files by path, so a passphrase is asked once per run, not once per host.
fn key_cache() -> &'static tokio::sync::Mutex<HashMap<PathBuf, Arc<PrivateKey>>> {
    static CACHE: OnceLock<tokio::sync::Mutex<HashMap<PathBuf, Arc<PrivateKey>>>> = OnceLock::new();
    CACHE.get_or_init(|| tokio::sync::Mutex::new(HashMap::new()))
}

/// Authenticates `endpoint.user`, trying in order: the configured key files (through the
/// agent when it has the same key), the agent's other keys unless `IdentitiesOnly`, then,
/// when nothing is configured, `~/.ssh/id_ed25519`, `id_ecdsa` and `id_rsa`.
pub async fn authenticate(
    session: &mut Handle<ClientHandler>,
    endpoint: &Endpoint,
    default_files: &[PathBuf],
    inventory_host: &str,
) -> Result<(), String> {
    let label = endpoint.label();
    let mut agent = match std::env::var_os("SSH_AUTH_SOCK") {
        Some(_) => match AgentClient::connect_env().await {
            Ok(agent) => Some(agent),
            Err(error) => {
                tracing::info!(host = inventory_host, "ssh-agent not usable: {error}");
                None
            }
        },
        None => None,
    };
    let agent_keys: Vec<PublicKey> = match &mut agent {
        Some(agent) => match agent.request_identities().await {
            Ok(identities) => identities
                .into_iter()
                .filter_map(|identity| match identity {
                    AgentIdentity::PublicKey { key, .. } => Some(key),
                    // NOTE: certificates in the agent are not offered.
                    _ => None,
                })
                .collect(),
            Err(error) => {
                tracing::info!(
                    host = inventory_host,
                    "ssh-agent did not list its keys: {error}"
                );
                Vec::new()
            }
        },
        None => Vec::new(),
    };

    let files: Vec<PathBuf> = if endpoint.identity_files.is_empty() {
        default_files.to_vec()
    } else {
        endpoint.identity_files.clone()
    };
    let rsa_hash = session
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();

    let mut tried: Vec<String> = Vec::new();
    let mut offered_by_agent: Vec<PublicKey> = Vec::new();
    let mut problems: Vec<String> = Vec::new();

    // Configured files come first. The agent signs for a file whose public key it has, so
    // that file's passphrase is never needed.
    let mut file_keys = Vec::new();
    for file in &files {
        let public = read_public_key(file);
        match (&mut agent, public) {
            (Some(agent), Some(public))
                if agent_keys.iter().any(|k| k.key_data() == public.key_data()) =>
            {
                tracing::info!(
                    host = inventory_host,
                    "offering agent key {} ({})",
                    file.display(),
                    fingerprint(&public)
                );
                tried.push(format!("agent key {}", file.display()));
                offered_by_agent.push(public.clone());
                if try_agent_key(session, &endpoint.user, agent, public, rsa_hash).await? {
                    return Ok(());
                }
            }
            _ => file_keys.push(file.clone()),
        }
    }

    if !endpoint.identities_only
        && let Some(agent) = &mut agent
    {
        for key in &agent_keys {
            if offered_by_agent
                .iter()
                .any(|k| k.key_data() == key.key_data())
            {
                continue;
            }
            tracing::info!(
                host = inventory_host,
                "offering agent key {} ({})",
                key.comment(),
                fingerprint(key)
            );
            tried.push(format!("agent key {}", fingerprint(key)));
            if try_agent_key(session, &endpoint.user, agent, key.clone(), rsa_hash).await? {
                return Ok(());
            }
        }
    }

    for file in &file_keys {
        let key = match load_key(file, &label).await {
            Ok(key) => key,
            Err(problem) => {
                tracing::info!(
                    host = inventory_host,
                    "skipping key {}: {problem}",
                    file.display()
                );
                problems.push(problem);
                continue;
            }
        };
        tracing::info!(
            host = inventory_host,
            "offering key file {} ({})",
            file.display(),
            fingerprint(key.public_key())
        );
        tried.push(format!("key file {}", file.display()));
        let result = session
            .authenticate_publickey(&endpoint.user, PrivateKeyWithHashAlg::new(key, rsa_hash))
            .await
            .map_err(|error| format!("authentication to {label} failed: {error}"))?;
        if result.success() {
            return Ok(());
        }
    }

    let mut message = format!("permission denied for {label} (publickey)");
    if tried.is_empty() {
        message.push_str(": no key to offer; set ansible_ssh_private_key_file, add IdentityFile to ~/.ssh/config or load a key into ssh-agent");
    } else {
        message.push_str(&format!("; tried {}", tried.join(", ")));
    }
    for problem in problems {
        message.push_str(&format!("; {problem}"));
    }
    Err(message)
}

async fn try_agent_key(
    session: &mut Handle<ClientHandler>,
    user: &str,
    agent: &mut AgentClient<
        impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    >,
    key: PublicKey,
    rsa_hash: Option<russh::keys::HashAlg>,
) -> Result<bool, String> {
    let hash = key.algorithm().is_rsa().then_some(rsa_hash).flatten();
    match session
        .authenticate_publickey_with(user, key, hash, agent)
        .await
    {
        Ok(AuthResult::Success) => Ok(true),
        Ok(AuthResult::Failure { .. }) => Ok(false),
        // The agent refused to sign (a locked or confirm-only key): go on with the next key.
        Err(error) => {
            tracing::info!("ssh-agent did not sign: {error}");
            Ok(false)
        }
    }
}

/// The public half of a key file, from `FILE.pub` or the file itself (OpenSSH's format keeps
/// the public key unencrypted).
fn read_public_key(file: &Path) -> Option<PublicKey> {
    let mut pub_file = file.as_os_str().to_owned();
    pub_file.push(".pub");
    if let Ok(key) = PublicKey::read_openssh_file(Path::new(&pub_file)) {
        return Some(key);
    }
    let text = std::fs::read_to_string(file).ok()?;
    russh::keys::ssh_key::PrivateKey::from_openssh(text.trim())
        .ok()
        .map(|key| key.public_key().clone())
}

/// Loads a private key file, asking for its passphrase on the terminal when it is encrypted.
async fn load_key(file: &Path, label: &str) -> Result<Arc<PrivateKey>, String> {
    let mut cache = key_cache().lock().await;
    if let Some(key) = cache.get(file) {
        return Ok(key.clone());
    }
    let key = match russh::keys::load_secret_key(file, None) {
        Ok(key) => key,
        Err(russh::keys::Error::KeyIsEncrypted) => {
            let file_owned = file.to_path_buf();
            let label = label.to_string();
            // The lock stays held while the operator types, so concurrent hosts wait for
            // this one answer instead of prompting over each other.
            tokio::task::spawn_blocking(move || ask_passphrase(&file_owned, &label))
                .await
                .map_err(|error| format!("passphrase prompt failed: {error}"))??
        }
        Err(error) => return Err(format!("cannot load key {}: {error}", file.display())),
    };
    let key = Arc::new(key);
    cache.insert(file.to_path_buf(), key.clone());
    Ok(key)
}

fn ask_passphrase(file: &Path, label: &str) -> Result<PrivateKey, String> {
    let has_terminal = std::io::stdin().is_terminal()
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .is_ok();
    if !has_terminal {
        return Err(format!(
            "key {} is encrypted and there is no terminal to ask for its passphrase; load it \
             into ssh-agent with `ssh-add {}` and run again",
            file.display(),
            file.display()
        ));
    }
    for _ in 0..3 {
        let passphrase = rpassword::prompt_password(format!(
            "Enter passphrase for key '{}' ({label}): ",
            file.display()
        ))
        .map_err(|error| format!("cannot read the passphrase for {}: {error}", file.display()))?;
        match russh::keys::load_secret_key(file, Some(&passphrase)) {
            Ok(key) => return Ok(key),
            Err(_) => eprintln!("Bad passphrase, try again."),
        }
    }
    Err(format!(
        "wrong passphrase for key {} after three attempts",
        file.display()
    ))
}
