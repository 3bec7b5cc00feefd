//! Host key verification against OpenSSH `known_hosts` files: plain, wildcard, negated,
//! `[host]:port` and hashed (`|1|salt|hash`) host patterns, and the `@revoked` marker.
//! This module decides whether a presented key is trusted and appends keys the operator chose
//! to accept. Every lookup ends in a verdict, and only [`Verdict::Known`] lets a connection go on.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use russh::keys::{HashAlg, PublicKey};
use sha1::Sha1;

/// The handling of a host whose key is not in any known_hosts file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Reject the host (OpenSSH's `StrictHostKeyChecking yes`).
    Strict,
    /// Record the key and connect (OpenSSH's `StrictHostKeyChecking accept-new`). A changed
    /// key is still rejected.
    AcceptNew,
}

impl HostKeyPolicy {
    pub fn parse(text: &str) -> Option<HostKeyPolicy> {
        match text {
            "strict" | "yes" => Some(HostKeyPolicy::Strict),
            "accept-new" => Some(HostKeyPolicy::AcceptNew),
            _ => None,
        }
    }
}

/// One key line of a known_hosts file.
#[derive(Clone, Debug)]
struct Entry {
    file: PathBuf,
    line: usize,
    revoked: bool,
    patterns: Vec<String>,
    key: PublicKey,
}

/// The outcome of looking up a presented host key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Known,
    Unknown,
    /// The host is listed with another key; `file:line` is the first such entry.
    Changed {
        file: PathBuf,
        line: usize,
        known_algorithm: String,
    },
    Revoked {
        file: PathBuf,
        line: usize,
    },
}

/// The known_hosts files of a run: read from all of them, new keys go to `write_file`.
#[derive(Debug)]
pub struct KnownHosts {
    read_files: Vec<PathBuf>,
    write_file: PathBuf,
    /// Serialises appends, since hosts connect concurrently.
    append_lock: Mutex<()>,
}

/// Returns the name a host is listed under: `host` for port 22, `[host]:port` otherwise, as
/// OpenSSH writes it.
pub fn host_entry_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// `SHA256:...` as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Formats the key as a known_hosts field pair: `ssh-ed25519 AAAA...`.
pub fn openssh_key_text(key: &PublicKey) -> String {
    let mut key = key.clone();
    key.set_comment("");
    key.to_openssh()
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|_| key.algorithm().to_string())
}

impl KnownHosts {
    /// `explicit` (from `--known-hosts`) replaces the defaults: `~/.ssh/known_hosts` for
    /// reading and writing, and `/etc/ssh/ssh_known_hosts` for reading.
    pub fn new(explicit: Option<PathBuf>, home: Option<&Path>) -> KnownHosts {
        match explicit {
            Some(file) => KnownHosts {
                read_files: vec![file.clone()],
                write_file: file,
                append_lock: Mutex::new(()),
            },
            None => {
                let user_file = home
                    .map(|home| home.join(".ssh/known_hosts"))
                    .unwrap_or_else(|| PathBuf::from(".ssh/known_hosts"));
                KnownHosts {
                    read_files: vec![user_file.clone(), PathBuf::from("/etc/ssh/ssh_known_hosts")],
                    write_file: user_file,
                    append_lock: Mutex::new(()),
                }
            }
        }
    }

    pub fn write_file(&self) -> &Path {
        &self.write_file
    }

    fn entries(&self) -> Result<Vec<Entry>, String> {
        let mut entries = Vec::new();
        for file in &self.read_files {
            let text = match fs::read_to_string(file) {
                Ok(text) => text,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => {
                    return Err(format!(
                        "cannot read known_hosts {}: {error}",
                        file.display()
                    ));
                }
            };
            entries.extend(parse(file, &text));
        }
        Ok(entries)
    }

    /// Lists the key algorithms known for `name`, so the connection can ask the server for a
    /// key the operator already trusts.
    pub fn known_algorithms(&self, name: &str) -> Vec<String> {
        let mut algorithms: Vec<String> = Vec::new();
        for entry in self.entries().unwrap_or_default() {
            let algorithm = entry.key.algorithm().to_string();
            if !entry.revoked
                && host_matches(&entry.patterns, name)
                && !algorithms.contains(&algorithm)
            {
                algorithms.push(algorithm);
            }
        }
        algorithms
    }

    /// Looks `key` up for the host listed as `name`.
    pub fn verify(&self, name: &str, key: &PublicKey) -> Result<Verdict, String> {
        let entries = self.entries()?;
        let matching: Vec<&Entry> = entries
            .iter()
            .filter(|entry| host_matches(&entry.patterns, name))
            .collect();

        if let Some(entry) = matching
            .iter()
            .find(|entry| entry.revoked && entry.key.key_data() == key.key_data())
        {
            return Ok(Verdict::Revoked {
                file: entry.file.clone(),
                line: entry.line,
            });
        }
        if matching
            .iter()
            .any(|entry| !entry.revoked && entry.key.key_data() == key.key_data())
        {
            return Ok(Verdict::Known);
        }
        // A host listed under any other key counts as changed, even with another key type: a
        // server that drops the type the operator trusts is no less suspicious.
        let same_type = matching
            .iter()
            .find(|entry| !entry.revoked && entry.key.algorithm() == key.algorithm());
        let other = same_type.or_else(|| matching.iter().find(|entry| !entry.revoked));
        Ok(match other {
            Some(entry) => Verdict::Changed {
                file: entry.file.clone(),
                line: entry.line,
                known_algorithm: entry.key.algorithm().to_string(),
            },
            None => Verdict::Unknown,
        })
    }

    /// Appends `name key` to the write file, creating it (and `~/.ssh`, mode 0700) if needed.
    pub fn append(&self, name: &str, key: &PublicKey) -> Result<(), String> {
        let _guard = self.append_lock.lock().unwrap_or_else(|e| e.into_inner());
        let file = &self.write_file;
        if let Some(dir) = file.parent().filter(|dir| !dir.as_os_str().is_empty())
            && !dir.exists()
        {
            fs::create_dir_all(dir)
                .and_then(|()| {
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                })
                .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        }

        // Start on a new line if the file does not end with one.
        let needs_newline = fs::read(file)
            .map(|bytes| !bytes.is_empty() && !bytes.ends_with(b"\n"))
            .unwrap_or(false);
        let mut handle = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .map_err(|error| format!("cannot open {} for writing: {error}", file.display()))?;
        let line = format!(
            "{}{name} {}\n",
            if needs_newline { "\n" } else { "" },
            openssh_key_text(key)
        );
        handle
            .write_all(line.as_bytes())
            .and_then(|()| handle.sync_all())
            .map_err(|error| format!("cannot write {}: {error}", file.display()))
    }
}

fn parse(file: &Path, text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let mut revoked = false;
        if first.starts_with('@') {
            match first {
                "@revoked" => revoked = true,
                // Certificate authorities sign host certificates, which masrun does not
                // request, so their lines never vouch for a plain host key.
                _ => continue,
            }
            first = match fields.next() {
                Some(field) => field,
                None => continue,
            };
        }
        let (Some(algorithm), Some(data)) = (fields.next(), fields.next()) else {
            tracing::debug!(file = %file.display(), line = index + 1, "skipping malformed known_hosts line");
            continue;
        };
        let Ok(key) = PublicKey::from_openssh(&format!("{algorithm} {data}")) else {
            tracing::debug!(file = %file.display(), line = index + 1, "skipping known_hosts line with an unreadable key");
            continue;
        };
        entries.push(Entry {
            file: file.to_path_buf(),
            line: index + 1,
            revoked,
            patterns: first.split(',').map(str::to_string).collect(),
            key,
        });
    }
    entries
}

/// OpenSSH's rule: a line matches when one of its patterns matches `name` and no negated
/// pattern (`!pattern`) does.
fn host_matches(patterns: &[String], name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if pattern_matches(negated, name) {
                return false;
            }
        } else if pattern_matches(pattern, name) {
            matched = true;
        }
    }
    matched
}

fn pattern_matches(pattern: &str, name: &str) -> bool {
    if let Some(hashed) = pattern.strip_prefix("|1|") {
        return hashed_matches(hashed, name);
    }
    wildcard_matches(
        pattern.to_ascii_lowercase().as_bytes(),
        name.to_ascii_lowercase().as_bytes(),
    )
}

/// `salt|hash`, both base64: the hash is HMAC-SHA1 of the name keyed with the salt.
fn hashed_matches(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (BASE64.decode(salt), BASE64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// `*` matches any run of characters and `?` one character, as in OpenSSH's `match_pattern`.
fn wildcard_matches(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| wildcard_matches(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && wildcard_matches(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && wildcard_matches(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOqSYTcVt5mow3doHYwDi8U3GOg/TB/iB0r/UqALWgKl";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDJoP3bRzsW6WxlagqVXSEpY986C3t97vQ9P62Oe8PS3";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).expect("test key parses")
    }

    fn store(text: &str) -> (tempfile::TempDir, KnownHosts) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        fs::write(&file, text).unwrap();
        let store = KnownHosts::new(Some(file), None);
        (dir, store)
    }

    /// Hashes `name` into the `|1|salt|hash` form that `ssh-keygen -H` writes.
    fn hashed(name: &str, salt: &[u8]) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).unwrap();
        mac.update(name.as_bytes());
        let hash = mac.finalize().into_bytes();
        format!("|1|{}|{}", BASE64.encode(salt), BASE64.encode(hash))
    }

    #[test]
    fn entry_name_brackets_non_default_port() {
        assert_eq!(host_entry_name("example.com", 22), "example.com");
        assert_eq!(host_entry_name("127.0.0.1", 2222), "[127.0.0.1]:2222");
    }

    #[test]
    fn plain_entry_is_known() {
        let (_dir, store) = store(&format!("example.com,10.0.0.1 {KEY_A}\n"));
        assert_eq!(
            store.verify("example.com", &key(KEY_A)).unwrap(),
            Verdict::Known
        );
        assert_eq!(
            store.verify("10.0.0.1", &key(KEY_A)).unwrap(),
            Verdict::Known
        );
        assert_eq!(
            store.verify("other.com", &key(KEY_A)).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn port_entry_matches_only_that_port() {
        let (_dir, store) = store(&format!("[127.0.0.1]:2222 {KEY_A}\n"));
        assert_eq!(
            store.verify("[127.0.0.1]:2222", &key(KEY_A)).unwrap(),
            Verdict::Known
        );
        assert_eq!(
            store.verify("[127.0.0.1]:2223", &key(KEY_A)).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            store.verify("127.0.0.1", &key(KEY_A)).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn hashed_entry_matches() {
        let line = format!(
            "{} {KEY_A}\n",
            hashed("[10.0.0.5]:2200", b"0123456789abcdefghij")
        );
        let (_dir, store) = store(&line);
        assert_eq!(
            store.verify("[10.0.0.5]:2200", &key(KEY_A)).unwrap(),
            Verdict::Known
        );
        assert_eq!(
            store.verify("10.0.0.5", &key(KEY_A)).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn changed_key_names_file_and_line() {
        let (dir, store) = store(&format!(
            "# comment\nother.com {KEY_B}\nexample.com {KEY_B}\n"
        ));
        let verdict = store.verify("example.com", &key(KEY_A)).unwrap();
        assert_eq!(
            verdict,
            Verdict::Changed {
                file: dir.path().join("known_hosts"),
                line: 3,
                known_algorithm: "ssh-ed25519".into(),
            }
        );
    }

    #[test]
    fn wildcards_and_negation() {
        let (_dir, store) = store(&format!("*.example.com,!bad.example.com {KEY_A}\n"));
        assert_eq!(
            store.verify("web.example.com", &key(KEY_A)).unwrap(),
            Verdict::Known
        );
        assert_eq!(
            store.verify("bad.example.com", &key(KEY_A)).unwrap(),
            Verdict::Unknown
        );
        assert!(wildcard_matches(b"host?", b"host1"));
        assert!(!wildcard_matches(b"host?", b"host12"));
    }

    #[test]
    fn revoked_key_is_rejected_and_ca_lines_ignored() {
        let (_dir, store) = store(&format!(
            "@cert-authority *.example.com {KEY_B}\n@revoked * {KEY_A}\nexample.com {KEY_A}\n"
        ));
        assert!(matches!(
            store.verify("example.com", &key(KEY_A)).unwrap(),
            Verdict::Revoked { line: 2, .. }
        ));
        assert_eq!(
            store.verify("web.example.com", &key(KEY_B)).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn append_then_known() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/known_hosts");
        let store = KnownHosts::new(Some(file.clone()), None);
        store.append("[127.0.0.1]:2222", &key(KEY_A)).unwrap();
        assert_eq!(
            store.verify("[127.0.0.1]:2222", &key(KEY_A)).unwrap(),
            Verdict::Known
        );
        let text = fs::read_to_string(&file).unwrap();
        assert_eq!(text, format!("[127.0.0.1]:2222 {KEY_A}\n"));
        assert_eq!(
            store.known_algorithms("[127.0.0.1]:2222"),
            vec!["ssh-ed25519".to_string()]
        );
    }
}
