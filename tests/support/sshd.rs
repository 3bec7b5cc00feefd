//! Real OpenSSH servers for the SSH tests: each on its own unused port with a fresh ed25519 host
//! key and client key in a temporary directory, on loopback or inside a network namespace the
//! test created. Servers and their session processes are stopped by PID on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A network namespace with a veth link to a peer namespace, removed on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates namespace `name` with loopback up.
    pub fn create(name: &str) -> Netns {
        // A namespace left over from a killed earlier run would make `add` fail.
        let _ = Command::new("ip")
            .args(["netns", "delete", name])
            .stderr(std::process::Stdio::null())
            .status();
        run_checked("ip", &["netns", "add", name]);
        let namespace = Netns {
            name: name.to_string(),
        };
        namespace.exec_checked(&["ip", "link", "set", "lo", "up"]);
        namespace
    }

    /// Links two namespaces with a veth pair and gives each end an address in `prefix.0/24`
    /// (`prefix.1` here, `prefix.2` there). Returns both addresses.
    pub fn link(&self, other: &Netns, prefix: &str, veth: &str) -> (String, String) {
        let near_end = format!("{veth}a");
        let far_end = format!("{veth}b");
        run_checked(
            "ip",
            &[
                "link",
                "add",
                &near_end,
                "netns",
                &self.name,
                "type",
                "veth",
                "peer",
                "name",
                &far_end,
                "netns",
                &other.name,
            ],
        );
        let ours = format!("{prefix}.1");
        let theirs = format!("{prefix}.2");
        self.exec_checked(&["ip", "addr", "add", &format!("{ours}/24"), "dev", &near_end]);
        self.exec_checked(&["ip", "link", "set", &near_end, "up"]);
        other.exec_checked(&[
            "ip",
            "addr",
            "add",
            &format!("{theirs}/24"),
            "dev",
            &far_end,
        ]);
        other.exec_checked(&["ip", "link", "set", &far_end, "up"]);
        (ours, theirs)
    }

    /// Returns the argument prefix that runs a program inside this namespace.
    pub fn prefix(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.name.clone(),
        ]
    }

    pub fn exec_checked(&self, argv: &[&str]) {
        let mut full: Vec<&str> = vec!["netns", "exec", &self.name];
        full.extend_from_slice(argv);
        run_checked("ip", &full);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn run_checked(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot start: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One running sshd.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub address: String,
    pub port: u16,
    /// `ssh-ed25519 AAAA...` of the server's host key.
    pub host_key: String,
    /// The private key the client logs in with (authorized for every user).
    pub client_key: PathBuf,
    netns: Option<String>,
    pid: Option<u32>,
}

impl Sshd {
    /// Starts sshd on 127.0.0.1.
    pub fn start() -> Sshd {
        let port = unused_port();
        Sshd::start_at("127.0.0.1", port, None)
    }

    /// Starts sshd inside `netns` on `address`, port 22.
    pub fn start_in(netns: &Netns, address: &str) -> Sshd {
        Sshd::start_at(address, 22, Some(netns.name.clone()))
    }

    fn start_at(address: &str, port: u16, netns: Option<String>) -> Sshd {
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "/usr/sbin/sshd is missing; tests/run.sh installs openssh-server"
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path();
        keygen(&path.join("host_ed25519"));
        keygen(&path.join("client_ed25519"));
        std::fs::copy(
            path.join("client_ed25519.pub"),
            path.join("authorized_keys"),
        )
        .unwrap();
        // sshd reads authorized_keys as the user logging in, so a non-root login needs to
        // reach it. The private keys beside it stay 0600.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::set_permissions(
            path.join("authorized_keys"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let host_key = public_key_text(&path.join("host_ed25519.pub"));

        // Sessions get an empty home, so the login shell sources no ~/.bashrc of the
        // machine. A root ~/.bashrc that runs `pyenv rehash` leaves a lock file behind when a
        // test kills the session, and every later root login then waits 60 s for it.
        let home = path.join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = format!(
            "Port {port}\nListenAddress {address}\nHostKey {dir}/host_ed25519\n\
             PidFile {dir}/sshd.pid\nAuthorizedKeysFile {dir}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             StrictModes no\nPermitRootLogin prohibit-password\n\
             Subsystem sftp internal-sftp\nLogLevel VERBOSE\nSetEnv HOME={home}\n",
            dir = path.display(),
            home = home.display()
        );
        std::fs::write(path.join("sshd_config"), config).unwrap();

        let mut argv: Vec<String> = Vec::new();
        if let Some(ns) = &netns {
            argv.extend(["ip".into(), "netns".into(), "exec".into(), ns.clone()]);
        }
        argv.extend([
            "/usr/sbin/sshd".into(),
            "-f".into(),
            path.join("sshd_config").display().to_string(),
            "-E".into(),
            path.join("sshd.log").display().to_string(),
        ]);
        let status = Command::new(&argv[0])
            .args(&argv[1..])
            .status()
            .expect("sshd starts");
        assert!(
            status.success(),
            "sshd failed to start: {}",
            std::fs::read_to_string(path.join("sshd.log")).unwrap_or_default()
        );

        // sshd writes its PID file once it listens.
        let pid_file = path.join("sshd.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Ok(text) = std::fs::read_to_string(&pid_file)
                && let Ok(pid) = text.trim().parse::<u32>()
            {
                break pid;
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not write {} within 10 s: {}",
                pid_file.display(),
                std::fs::read_to_string(path.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };

        let client_key = path.join("client_ed25519");
        Sshd {
            dir,
            address: address.to_string(),
            port,
            host_key,
            client_key,
            netns,
            pid: Some(pid),
        }
    }

    /// Returns the known_hosts line for this server.
    pub fn known_hosts_line(&self) -> String {
        let name = if self.port == 22 {
            self.address.clone()
        } else {
            format!("[{}]:{}", self.address, self.port)
        };
        format!("{name} {}\n", self.host_key)
    }

    /// Returns the inventory variables that reach this server as root.
    pub fn inventory_vars(&self) -> String {
        self.inventory_vars_as("root")
    }

    /// Returns the inventory variables that reach this server as `user`, who logs in with
    /// the same client key.
    pub fn inventory_vars_as(&self, user: &str) -> String {
        format!(
            "ansible_host={} ansible_port={} ansible_user={user} ansible_ssh_private_key_file={}",
            self.address,
            self.port,
            self.client_key.display()
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Kills the listener and every session process it forked, as a crashed or powered-off
    /// host would drop its connections.
    pub fn kill(&mut self) {
        let Some(pid) = self.pid.take() else {
            return;
        };
        let mut victims = descendants(pid);
        victims.push(pid);
        for victim in victims {
            // SAFETY: kill has no memory effects; the PIDs are this server's processes.
            unsafe {
                libc::kill(victim as i32, libc::SIGKILL);
            }
        }
    }

    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Lists every process below `pid`, from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The fields after the parenthesised command: state, ppid, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.push((child, ppid));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (child, ppid) in &parents {
            if *ppid == parent && !found.contains(child) {
                found.push(*child);
                frontier.push(*child);
            }
        }
    }
    found
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "masrun-test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

fn public_key_text(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Returns a TCP port nothing listens on right now.
pub fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("bind an ephemeral port")
}

impl Sshd {
    /// Starts the server again after [`Sshd::kill`], with the same port and keys.
    pub fn restart(&mut self) {
        assert!(self.pid.is_none(), "restart needs a stopped server");
        let path = self.dir.path();
        let _ = std::fs::remove_file(path.join("sshd.pid"));
        let mut argv: Vec<String> = Vec::new();
        if let Some(ns) = &self.netns {
            argv.extend(["ip".into(), "netns".into(), "exec".into(), ns.clone()]);
        }
        argv.extend([
            "/usr/sbin/sshd".into(),
            "-f".into(),
            path.join("sshd_config").display().to_string(),
            "-E".into(),
            path.join("sshd.log").display().to_string(),
        ]);
        let status = Command::new(&argv[0])
            .args(&argv[1..])
            .status()
            .expect("sshd starts");
        assert!(status.success(), "sshd failed to restart: {}", self.log());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(path.join("sshd.pid"))
                && let Ok(pid) = text.trim().parse::<u32>()
            {
                self.pid = Some(pid);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not restart: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// PIDs of this server's session processes whose command line contains `needle`.
    pub fn sessions_running(&self, needle: &str) -> Vec<u32> {
        let Some(pid) = self.pid else {
            return Vec::new();
        };
        descendants(pid)
            .into_iter()
            .filter(|child| {
                std::fs::read(format!("/proc/{child}/cmdline"))
                    .map(|bytes| {
                        String::from_utf8_lossy(&bytes)
                            .replace('\0', " ")
                            .trim_end()
                            .ends_with(needle)
                    })
                    .unwrap_or(false)
            })
            .collect()
    }
}

/// A project directory for SSH runs: `inventory/hosts`, a host_vars copy of the example
/// host's vars.yml for each host, a known_hosts file, and a HOME with an empty `.ssh`. The
/// tester's own ssh configuration and agent stay out of the run.
pub struct SshProject {
    pub dir: tempfile::TempDir,
}

impl SshProject {
    /// `hosts` are `(inventory name, inline variables)` lines of the `[matrix_servers]` group.
    pub fn new(hosts: &[(&str, String)]) -> SshProject {
        let dir = tempfile::tempdir().expect("temporary directory");
        let inventory = dir.path().join("inventory");
        let example = super::repo_root().join("inventory/host_vars/matrix.example.com/vars.yml");
        let mut lines = String::from("[matrix_servers]\n");
        for (name, vars) in hosts {
            lines.push_str(&format!("{name} {vars}\n"));
            let host_vars = inventory.join("host_vars").join(name);
            std::fs::create_dir_all(&host_vars).unwrap();
            std::fs::copy(&example, host_vars.join("vars.yml")).unwrap();
        }
        std::fs::write(inventory.join("hosts"), lines).unwrap();
        std::fs::create_dir_all(dir.path().join("home/.ssh")).unwrap();
        std::fs::write(dir.path().join("known_hosts"), "").unwrap();
        SshProject { dir }
    }

    pub fn inventory(&self) -> PathBuf {
        self.dir.path().join("inventory/hosts")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Adds each server's key to the known_hosts file.
    pub fn trust(&self, servers: &[&Sshd]) {
        let mut text = std::fs::read_to_string(self.known_hosts()).unwrap();
        for server in servers {
            text.push_str(&server.known_hosts_line());
        }
        std::fs::write(self.known_hosts(), text).unwrap();
    }

    /// Writes a task file into the project and returns its path.
    pub fn task(&self, name: &str, source: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, source).unwrap();
        path
    }

    /// Builds the masrun command for this project: JSON output, the inventory and
    /// known_hosts, then `args`.
    pub fn command(&self, prefix: &[String], args: &[String]) -> Command {
        let binary = env!("CARGO_BIN_EXE_masrun").to_string();
        let mut argv: Vec<String> = prefix.to_vec();
        argv.push(binary);
        argv.extend([
            "--output".into(),
            "json".into(),
            "-i".into(),
            self.inventory().display().to_string(),
            "--known-hosts".into(),
            self.known_hosts().display().to_string(),
        ]);
        argv.extend(args.iter().cloned());
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(super::repo_root())
            .env("HOME", self.home())
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1");
        command
    }

    pub fn run(&self, args: &[String]) -> super::Run {
        self.run_in(&[], args)
    }

    /// Runs masrun with `prefix` in front (such as `ip netns exec NS`).
    pub fn run_in(&self, prefix: &[String], args: &[String]) -> super::Run {
        let output = self
            .command(prefix, args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("masrun runs");
        super::Run { output }
    }
}

/// Turns string slices into owned arguments.
pub fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| word.to_string()).collect()
}
