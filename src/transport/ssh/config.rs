//! Where and how to connect to one host: the inventory's `ansible_*` connection variables
//! layered over the operator's OpenSSH client configuration (`~/.ssh/config`, then
//! `/etc/ssh/ssh_config`), the way `ssh` combines `-o` options with its config files. This
//! module only reads settings; it opens no connection.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use ssh2_config::{HostParams, ParseRule, SshConfig};

use super::known_hosts::HostKeyPolicy;

/// masrun's defaults where neither the inventory nor ssh_config sets a value.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_KEEPALIVE_MAX: usize = 3;

/// One SSH server to authenticate to: the target host or a jump host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The address to connect to, after ssh_config's `HostName`.
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Private key files to offer, in order.
    pub identity_files: Vec<PathBuf>,
    /// Offer only `identity_files`, not every key of the agent (`IdentitiesOnly yes`).
    pub identities_only: bool,
}

impl Endpoint {
    /// `user@host:port`, as messages name a connection.
    pub fn label(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// Running commands as another user on the host (`ansible_become`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Become {
    pub user: String,
}

/// Everything needed to open and keep the connection to one inventory host.
#[derive(Clone, Debug)]
pub struct SshSettings {
    pub target: Endpoint,
    /// Jump hosts from `ProxyJump`, first hop first.
    pub jumps: Vec<Endpoint>,
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_max: usize,
    pub become_: Option<Become>,
    /// The sudo password (`ansible_become_password`), for `ansible_become` and for commands
    /// that name their own `become_user`. It only ever travels on sudo's stdin.
    pub become_password: Option<String>,
    pub host_key_policy: HostKeyPolicy,
}

/// Run-wide inputs: parsed ssh_config files and command-line overrides.
#[derive(Debug, Default)]
pub struct ClientConfig {
    pub home: Option<PathBuf>,
    pub local_user: String,
    user_config: Option<SshConfig>,
    system_config: Option<SshConfig>,
    /// `--host-key-policy`, which wins over the inventory.
    pub policy_override: Option<HostKeyPolicy>,
}

impl ClientConfig {
    /// Reads `~/.ssh/config` and `/etc/ssh/ssh_config`. A file that cannot be parsed is an
    /// error naming it; a missing file is fine.
    pub fn load(policy_override: Option<HostKeyPolicy>) -> Result<ClientConfig, String> {
        let home = home_dir();
        let user_config = match &home {
            Some(home) => parse_config_file(&home.join(".ssh/config"), home)?,
            None => None,
        };
        let system_config = parse_config_file(
            Path::new("/etc/ssh/ssh_config"),
            home.as_deref().unwrap_or(Path::new("/")),
        )?;
        Ok(ClientConfig {
            local_user: local_user_name(),
            home,
            user_config,
            system_config,
            policy_override,
        })
    }

    /// Merges the ssh_config parameters for `alias`, the user's file first, because in
    /// OpenSSH the first value found wins.
    fn query(&self, alias: &str) -> Option<HostParams> {
        let mut merged: Option<HostParams> = None;
        for config in [&self.user_config, &self.system_config]
            .into_iter()
            .flatten()
        {
            let params = config.query(alias);
            match &mut merged {
                Some(merged) => merged.overwrite_if_none(&params),
                None => merged = Some(params),
            }
        }
        merged
    }

    /// Resolves `alias` through ssh_config, with `user` and `port` from the caller winning.
    fn endpoint(
        &self,
        alias: &str,
        user: Option<String>,
        port: Option<u16>,
        extra_identity: Option<PathBuf>,
    ) -> Result<(Endpoint, Option<HostParams>), String> {
        let params = self.query(alias);
        let user = user
            .or_else(|| params.as_ref().and_then(|p| p.user.clone()))
            .unwrap_or_else(|| self.local_user.clone());
        let port = port
            .or_else(|| params.as_ref().and_then(|p| p.port))
            .unwrap_or(22);
        let host = params
            .as_ref()
            .and_then(|p| p.host_name.clone())
            .map(|name| self.expand_tokens(&name, alias, alias, port, &user))
            .unwrap_or_else(|| alias.to_string());

        let mut identity_files: Vec<PathBuf> = extra_identity.into_iter().collect();
        if let Some(files) = params.as_ref().and_then(|p| p.identity_file.clone()) {
            for file in files {
                let expanded = self.expand_path(&file.to_string_lossy(), alias, &host, port, &user);
                if !identity_files.contains(&expanded) {
                    identity_files.push(expanded);
                }
            }
        }
        let identities_only = params
            .as_ref()
            .and_then(|p| unsupported_value(p, "identitiesonly"))
            .is_some_and(|value| value.eq_ignore_ascii_case("yes"));

        if let Some(command) = params
            .as_ref()
            .and_then(|p| unsupported_value(p, "proxycommand"))
            && command != "none"
        {
            return Err(format!(
                "ssh_config sets ProxyCommand {command:?} for {alias}; masrun supports ProxyJump \
                 only, so replace it with ProxyJump user@jumphost"
            ));
        }

        let endpoint = Endpoint {
            host,
            port,
            user,
            identity_files,
            identities_only,
        };
        Ok((endpoint, params))
    }

    /// Settings for the inventory host `name`, whose variables `var` returns.
    pub fn settings(
        &self,
        name: &str,
        var: &dyn Fn(&str) -> Result<Option<Value>, String>,
    ) -> Result<SshSettings, String> {
        let first = |names: &[&str]| -> Result<Option<Value>, String> {
            for variable in names {
                if let Some(value) = var(variable)? {
                    return Ok(Some(value));
                }
            }
            Ok(None)
        };

        let alias = match first(&["ansible_host", "ansible_ssh_host"])? {
            Some(value) => text(&value),
            None => name.to_string(),
        };
        let user = first(&["ansible_user", "ansible_ssh_user"])?.map(|value| text(&value));
        let port = match first(&["ansible_port", "ansible_ssh_port"])? {
            Some(value) => Some(parse_port(&value)?),
            None => None,
        };
        let key_file = first(&["ansible_ssh_private_key_file", "ansible_private_key_file"])?
            .map(|value| self.expand_path(&text(&value), &alias, &alias, port.unwrap_or(22), ""));

        let (target, params) = self.endpoint(&alias, user, port, key_file)?;

        let mut jumps = Vec::new();
        if let Some(hops) = params.as_ref().and_then(|p| p.proxy_jump.clone()) {
            for hop in hops {
                if hop.eq_ignore_ascii_case("none") {
                    jumps.clear();
                    break;
                }
                let (hop_user, hop_host, hop_port) = parse_jump(&hop)?;
                let (endpoint, _) = self.endpoint(&hop_host, hop_user, hop_port, None)?;
                jumps.push(endpoint);
            }
        }

        let connect_timeout = params
            .as_ref()
            .and_then(|p| p.connect_timeout)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let keepalive_interval = params
            .as_ref()
            .and_then(|p| p.server_alive_interval)
            .filter(|interval| !interval.is_zero())
            .unwrap_or(DEFAULT_KEEPALIVE_INTERVAL);
        let keepalive_max = params
            .as_ref()
            .and_then(|p| unsupported_value(p, "serveralivecountmax"))
            .and_then(|value| value.parse().ok())
            .filter(|count: &usize| *count > 0)
            .unwrap_or(DEFAULT_KEEPALIVE_MAX);

        let become_ = match first(&["ansible_become"])? {
            Some(value) if crate::vars::ansible_bool(&value) => {
                let user = first(&["ansible_become_user"])?
                    .map(|value| text(&value))
                    .unwrap_or_else(|| "root".to_string());
                let method = first(&["ansible_become_method"])?.map(|value| text(&value));
                if let Some(method) = method.filter(|method| method != "sudo") {
                    return Err(format!(
                        "ansible_become_method={method} is not supported; masrun becomes another \
                         user with sudo only"
                    ));
                }
                Some(Become { user })
            }
            _ => None,
        };
        let become_password = first(&[
            "ansible_become_password",
            "ansible_become_pass",
            "ansible_sudo_pass",
        ])?
        .map(|value| text(&value));

        let host_key_policy = match self.policy_override {
            Some(policy) => policy,
            None => match first(&["masrun_host_key_policy"])? {
                Some(value) => HostKeyPolicy::parse(&text(&value)).ok_or_else(|| {
                    format!(
                        "masrun_host_key_policy must be strict or accept-new (got {})",
                        text(&value)
                    )
                })?,
                None => HostKeyPolicy::Strict,
            },
        };

        Ok(SshSettings {
            target,
            jumps,
            connect_timeout,
            keepalive_interval,
            keepalive_max,
            become_,
            become_password,
            host_key_policy,
        })
    }

    /// Expands ssh_config's `%h` (host), `%n` (original name), `%p`, `%r` (remote user),
    /// `%u` (local user), `%d` (local home) and `%%`.
    fn expand_tokens(&self, text: &str, alias: &str, host: &str, port: u16, user: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('h') => out.push_str(host),
                Some('n') => out.push_str(alias),
                Some('p') => out.push_str(&port.to_string()),
                Some('r') => out.push_str(user),
                Some('u') => out.push_str(&self.local_user),
                Some('d') => out.push_str(
                    &self
                        .home
                        .as_ref()
                        .map(|home| home.display().to_string())
                        .unwrap_or_default(),
                ),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }

    fn expand_path(&self, text: &str, alias: &str, host: &str, port: u16, user: &str) -> PathBuf {
        let expanded = self.expand_tokens(text, alias, host, port, user);
        match (expanded.strip_prefix("~/"), &self.home) {
            (Some(rest), Some(home)) => home.join(rest),
            _ => PathBuf::from(expanded),
        }
    }

    /// Lists the existing key files that OpenSSH offers when none is configured.
    pub fn default_identity_files(&self) -> Vec<PathBuf> {
        let Some(home) = &self.home else {
            return Vec::new();
        };
        ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|name| home.join(".ssh").join(name))
            .filter(|path| path.is_file())
            .collect()
    }
}

fn parse_config_file(path: &Path, home: &Path) -> Result<Option<SshConfig>, String> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    SshConfig::default()
        .home_dir(home)
        .parse(
            &mut BufReader::new(file),
            ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
        )
        .map(Some)
        .map_err(|error| {
            format!(
                "invalid ssh client configuration {}: {error}",
                path.display()
            )
        })
}

/// Returns the first value of an option that ssh2-config keeps as text only.
fn unsupported_value(params: &HostParams, field: &str) -> Option<String> {
    params
        .unsupported_fields
        .iter()
        .chain(params.ignored_fields.iter())
        .find(|(name, _)| name.eq_ignore_ascii_case(field))
        .and_then(|(_, args)| args.first().cloned())
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn parse_port(value: &Value) -> Result<u16, String> {
    let port = match value {
        Value::Number(number) => number.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    };
    port.filter(|port| *port > 0)
        .ok_or_else(|| format!("ansible_port must be a TCP port number (got {value})"))
}

/// `[user@]host[:port]` or `ssh://[user@]host[:port]`, one hop of `ProxyJump`.
fn parse_jump(hop: &str) -> Result<(Option<String>, String, Option<u16>), String> {
    let rest = hop.strip_prefix("ssh://").unwrap_or(hop);
    let (user, rest) = match rest.rsplit_once('@') {
        Some((user, rest)) => (Some(user.to_string()), rest),
        None => (None, rest),
    };
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("invalid ProxyJump host {hop:?}"))?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            _ => (rest, None),
        }
    };
    let port = match port {
        Some(port) => Some(
            port.parse::<u16>()
                .map_err(|_| format!("invalid port in ProxyJump {hop:?}"))?,
        ),
        None => None,
    };
    if host.is_empty() {
        return Err(format!("invalid ProxyJump host {hop:?}"));
    }
    Ok((user, host.to_string(), port))
}

fn home_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("HOME").filter(|home| !home.is_empty()) {
        return Some(PathBuf::from(home));
    }
    passwd_entry().map(|(_, home)| home)
}

fn local_user_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|user| !user.is_empty())
        .or_else(|| passwd_entry().map(|(name, _)| name))
        .unwrap_or_else(|| "root".to_string())
}

/// Looks up the name and home directory of the effective user in the password database.
fn passwd_entry() -> Option<(String, PathBuf)> {
    let mut buffer = vec![0u8; 4096];
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into `entry` and `buffer`, both valid for the given sizes. It
    // sets `result` to `&entry` or null, and the strings it points to live in `buffer`.
    let status = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut entry,
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            &mut result,
        )
    };
    if status != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success pw_name and pw_dir are NUL-terminated strings inside `buffer`.
    let (name, dir) = unsafe {
        (
            std::ffi::CStr::from_ptr(entry.pw_name),
            std::ffi::CStr::from_ptr(entry.pw_dir),
        )
    };
    Some((
        name.to_string_lossy().into_owned(),
        PathBuf::from(dir.to_string_lossy().into_owned()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(text: &str, home: &Path) -> ClientConfig {
        let parsed = SshConfig::default()
            .home_dir(home)
            .parse(
                &mut text.as_bytes(),
                ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
            )
            .unwrap();
        ClientConfig {
            home: Some(home.to_path_buf()),
            local_user: "operator".into(),
            user_config: Some(parsed),
            system_config: None,
            policy_override: None,
        }
    }

    fn vars(pairs: Value) -> impl Fn(&str) -> Result<Option<Value>, String> {
        move |name: &str| Ok(pairs.get(name).cloned())
    }

    #[test]
    fn inventory_wins_over_ssh_config() {
        let home = Path::new("/home/operator");
        let config = config(
            "Host matrix\n  HostName 203.0.113.10\n  Port 2200\n  User admin\n  IdentityFile ~/.ssh/matrix_key\n",
            home,
        );
        let settings = config
            .settings(
                "matrix.example.com",
                &vars(json!({"ansible_host": "matrix", "ansible_user": "root"})),
            )
            .unwrap();
        assert_eq!(settings.target.host, "203.0.113.10");
        assert_eq!(settings.target.port, 2200);
        assert_eq!(settings.target.user, "root");
        assert_eq!(
            settings.target.identity_files,
            vec![home.join(".ssh/matrix_key")]
        );
        assert_eq!(settings.host_key_policy, HostKeyPolicy::Strict);
        assert_eq!(settings.keepalive_interval, DEFAULT_KEEPALIVE_INTERVAL);
    }

    #[test]
    fn defaults_without_config() {
        let config = config("", Path::new("/root"));
        let settings = config
            .settings(
                "db.example.com",
                &vars(json!({"ansible_port": "2222", "ansible_ssh_user": "deploy"})),
            )
            .unwrap();
        assert_eq!(settings.target.host, "db.example.com");
        assert_eq!(settings.target.port, 2222);
        assert_eq!(settings.target.user, "deploy");
        assert!(settings.jumps.is_empty());
        assert!(settings.become_.is_none());
        assert_eq!(settings.target.label(), "deploy@db.example.com:2222");
    }

    #[test]
    fn proxy_jump_resolves_hop_through_config() {
        let config = config(
            "Host internal\n  ProxyJump admin@bastion:2201\nHost bastion\n  HostName 198.51.100.7\n  User ignored\n  Port 9999\n",
            Path::new("/root"),
        );
        let settings = config.settings("internal", &vars(json!({}))).unwrap();
        assert_eq!(settings.jumps.len(), 1);
        let hop = &settings.jumps[0];
        assert_eq!(hop.host, "198.51.100.7");
        assert_eq!(hop.user, "admin");
        assert_eq!(hop.port, 2201);
        assert_eq!(settings.target.user, "operator");
    }

    #[test]
    fn keepalive_and_timeout_from_config() {
        let config = config(
            "Host *\n  ServerAliveInterval 5\n  ServerAliveCountMax 2\n  ConnectTimeout 4\n  IdentitiesOnly yes\n",
            Path::new("/root"),
        );
        let settings = config.settings("h", &vars(json!({}))).unwrap();
        assert_eq!(settings.keepalive_interval, Duration::from_secs(5));
        assert_eq!(settings.keepalive_max, 2);
        assert_eq!(settings.connect_timeout, Duration::from_secs(4));
        assert!(settings.target.identities_only);
    }

    #[test]
    fn become_and_policy_variables() {
        let config = config("", Path::new("/root"));
        let settings = config
            .settings(
                "h",
                &vars(json!({
                    "ansible_become": "yes",
                    "ansible_become_user": "matrix",
                    "masrun_host_key_policy": "accept-new",
                })),
            )
            .unwrap();
        assert_eq!(
            settings.become_,
            Some(Become {
                user: "matrix".into(),
            })
        );
        assert_eq!(settings.become_password, None);
        assert_eq!(settings.host_key_policy, HostKeyPolicy::AcceptNew);

        let error = config
            .settings("h", &vars(json!({"masrun_host_key_policy": "no"})))
            .unwrap_err();
        assert!(error.contains("strict or accept-new"), "{error}");
        let error = config
            .settings("h", &vars(json!({"ansible_port": "ssh"})))
            .unwrap_err();
        assert!(error.contains("ansible_port"), "{error}");
    }

    #[test]
    fn proxy_command_is_rejected() {
        let config = config("Host h\n  ProxyCommand nc %h %p\n", Path::new("/root"));
        let error = config.settings("h", &vars(json!({}))).unwrap_err();
        assert!(error.contains("ProxyJump"), "{error}");
    }

    #[test]
    fn jump_syntax() {
        assert_eq!(
            parse_jump("ssh://a@b:3").unwrap(),
            (Some("a".into()), "b".into(), Some(3))
        );
        assert_eq!(parse_jump("b").unwrap(), (None, "b".into(), None));
        assert_eq!(
            parse_jump("[::1]:22").unwrap(),
            (None, "::1".into(), Some(22))
        );
        assert!(parse_jump("b:x").is_err());
    }
}
