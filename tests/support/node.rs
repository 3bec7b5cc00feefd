//! A real systemd host for the service tests. A Debian 12 root file system is built once with
//! debootstrap and cached under `/var/cache/masrun-tests/`. Each test binary boots one node
//! from it with systemd-nspawn, inside a network namespace of its own, and its tests share it.
//!
//! How tests reach the node: over SSH, as masrun reaches a real host. A veth pair links the
//! node's namespace to a second namespace for the controller (10.231.0.1 there, 10.231.0.2 in
//! the node). The node's own sshd accepts a key that the test writes. [`Node::masrun`] runs
//! the test build of masrun on the host inside the controller's namespace (`ip netns exec`),
//! with an inventory whose host has `ansible_host=10.231.0.2`. Commands that set up
//! or inspect the node ([`Node::sh`]) use `nsenter -t LEADER -a` instead, where LEADER is the
//! node's PID 1 as the host sees it. `machinectl` cannot be used: the host has no systemd as
//! PID 1, so the node is started with `--register=no --keep-unit`. A scratch directory is
//! bind-mounted read-write at its own path, so a file a test writes there on the host has the
//! same path in the node.
//!
//! Inside the node: OpenSSH, podman with runc, its API socket at `/run/podman/podman.sock` with
//! `/run/docker.sock` linked to it (so the real docker client, bind-mounted from the host,
//! talks to podman), a tmpfs at `/var/lib/containers`, a test image
//! `localhost/masrun-test/busybox:1` imported from busybox-static (nothing can be pulled from
//! outside), a registry of its own at `localhost:5000` (docker-registry, plain HTTP) for pull
//! tests, nginx, and PostgreSQL 15 with a superuser `matrix` whose password is
//! [`Node::postgres_password`].

use std::ffi::CString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::Run;
use super::project::Project;

/// Where built root file systems, node records and scratch directories live, outside any
/// checkout, so every run on a machine reuses the same root file system.
const CACHE_DIR: &str = "/var/cache/masrun-tests";

const SUITE: &str = "bookworm";

/// The start of the name of every root file system this file builds, before the suite and
/// the recipe's hash. Other files in the cache directory are left alone.
const ROOTFS_PREFIX: &str = "services-node-rootfs-";

/// Installed by debootstrap itself.
const BASE_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
];

/// Installed afterwards with apt inside the root file system: debootstrap does not resolve
/// virtual packages such as podman's container-network-stack.
const EXTRA_PACKAGES: &[&str] = &[
    "podman",
    "runc",
    "postgresql",
    "postgresql-client",
    "curl",
    "ca-certificates",
    "busybox-static",
    "docker-registry",
    "nginx-light",
];

/// crun fails on this kernel's hybrid cgroup layout, and the default limits cannot be raised
/// inside the node.
const CONTAINERS_CONF: &str = "\
[containers]
default_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]
pids_limit = 0

[engine]
runtime = \"runc\"
";

/// The node's own registry (docker-registry on port 5000) serves plain HTTP.
const REGISTRIES_CONF: &str = "\
[[registry]]
location = \"localhost:5000\"
insecure = true
";

/// Debian's docker-registry requires htpasswd credentials by default. The node's registry is
/// open, on loopback only.
const REGISTRY_CONFIG: &str = "\
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
http:
  addr: 127.0.0.1:5000
";

/// podman's API socket under the name the docker client looks for. podman.socket cannot
/// listen on a second path: podman's socket activation accepts exactly one socket.
const DOCKER_SOCKET_TMPFILES: &str = "L /run/docker.sock - - - - /run/podman/podman.sock\n";

/// The `postgres` system user keeps peer authentication for psql; everyone else, masrun
/// included, uses a password.
const PG_HBA: &str = "\
local   all   postgres                 peer
local   all   all                      scram-sha-256
host    all   all      127.0.0.1/32    scram-sha-256
host    all   all      ::1/128         scram-sha-256
";

/// Units that would make the node `degraded` or reach for the network.
const MASKED_UNITS: &[&str] = &[
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "podman-auto-update.timer",
    "systemd-machine-id-commit.service",
    "e2scrub_reap.service",
];

/// Changes whenever the steps of [`build_rootfs`] change, so a new recipe builds a new cache.
const RECIPE_VERSION: &str = "1";

/// The PATH of commands run in the node.
const NODE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The controller's and the node's addresses on the veth link between their namespaces.
const CONTROLLER_ADDRESS: &str = "10.231.0.1";
pub const NODE_ADDRESS: &str = "10.231.0.2";

/// The test image, imported into the node at boot.
pub const TEST_IMAGE: &str = "localhost/masrun-test/busybox:1";

/// The name of the node's PostgreSQL superuser (the playbook's `postgres_connection_username`).
pub const POSTGRES_SUPERUSER: &str = "matrix";

fn cache_key() -> String {
    let mut hasher = Sha256::new();
    for part in [
        RECIPE_VERSION,
        SUITE,
        &BASE_PACKAGES.join(","),
        &EXTRA_PACKAGES.join(","),
        CONTAINERS_CONF,
        DOCKER_SOCKET_TMPFILES,
        REGISTRIES_CONF,
        REGISTRY_CONFIG,
        PG_HBA,
        &MASKED_UNITS.join(","),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs a command on the host and returns its output, or an error with everything it printed.
fn run(command: &mut Command) -> Result<Output, String> {
    let description = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {description}: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{description} failed ({}):\n{}{}",
            output.status,
            tail(&String::from_utf8_lossy(&output.stdout), 40),
            tail(&String::from_utf8_lossy(&output.stderr), 40)
        ))
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut kept = all[start..].join("\n");
    if !kept.is_empty() {
        kept.push('\n');
    }
    kept
}

/// Returns the Debian mirror that the host's apt uses, so the node is built from it too.
fn debian_mirror() -> String {
    let mut texts = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for entry in entries.flatten() {
            if entry.path().extension().and_then(|e| e.to_str()) == Some("sources") {
                texts.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
    }
    for text in &texts {
        for stanza in text.split("\n\n") {
            let suites = stanza.lines().find_map(|l| l.strip_prefix("Suites:"));
            let uris = stanza.lines().find_map(|l| l.strip_prefix("URIs:"));
            if let (Some(suites), Some(uris)) = (suites, uris)
                && suites.split_whitespace().any(|s| s == SUITE)
                && let Some(uri) = uris.split_whitespace().next()
            {
                return uri.to_string();
            }
        }
    }
    let list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    for line in list.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() >= 3 && words[0] == "deb" && words[2] == SUITE {
            return words[1].to_string();
        }
    }
    "http://deb.debian.org/debian".to_string()
}

/// Takes an exclusive lock on `path`, held until the returned file is dropped.
fn lock(path: &Path) -> std::fs::File {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    // SAFETY: flock on a descriptor this function owns; it blocks until the lock is free.
    let status = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
    assert_eq!(status, 0, "flock {}", path.display());
    file
}

/// Returns the cached root file system, building it first when this recipe has none yet.
/// Concurrent test binaries wait for one build.
pub fn rootfs() -> Result<PathBuf, String> {
    std::fs::create_dir_all(CACHE_DIR).map_err(|e| format!("create {CACHE_DIR}: {e}"))?;
    let target = Path::new(CACHE_DIR).join(format!("{ROOTFS_PREFIX}{SUITE}-{}", cache_key()));
    if target.is_dir() {
        return Ok(target);
    }
    let _lock = lock(&Path::new(CACHE_DIR).join("rootfs.lock"));
    if target.is_dir() {
        return Ok(target);
    }
    build_rootfs(&target)?;
    Ok(target)
}

fn chroot(root: &Path, argv: &[&str]) -> Result<Output, String> {
    run(Command::new("chroot")
        .arg(root)
        .args(argv)
        .env_clear()
        .env("PATH", NODE_PATH)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C"))
}

fn write_file(root: &Path, relative: &str, text: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap())
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// Builds the root file system into a temporary directory beside `target`, then renames it,
/// so an interrupted build never leaves a half-built cache behind.
fn build_rootfs(target: &Path) -> Result<(), String> {
    for tool in ["debootstrap", "chroot", "systemd-nspawn"] {
        if which(tool).is_none() {
            return Err(format!(
                "{tool} is not installed; tests/run.sh installs it (debootstrap, systemd-container)"
            ));
        }
    }
    let partial = target.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .map_err(|e| format!("remove {}: {e}", partial.display()))?;
    }
    let started = Instant::now();
    eprintln!(
        "building the test node's root file system in {} (once per machine, a few minutes)",
        target.display()
    );

    run(Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", BASE_PACKAGES.join(",")))
        .arg(SUITE)
        .arg(&partial)
        .arg(debian_mirror()))?;

    // Package scripts must not start services inside the chroot.
    write_file(
        &partial,
        "usr/sbin/policy-rc.d",
        "#!/bin/sh\nexit 101\n",
        0o755,
    )?;
    chroot(&partial, &["apt-get", "update", "-qq"])?;
    let mut install = vec!["apt-get", "install", "-y", "-qq", "--no-install-recommends"];
    install.extend_from_slice(EXTRA_PACKAGES);
    chroot(&partial, &install)?;
    chroot(&partial, &["apt-get", "clean"])?;
    std::fs::remove_file(partial.join("usr/sbin/policy-rc.d"))
        .map_err(|e| format!("remove policy-rc.d: {e}"))?;

    write_file(
        &partial,
        "etc/containers/containers.conf",
        CONTAINERS_CONF,
        0o644,
    )?;
    write_file(
        &partial,
        "etc/tmpfiles.d/docker-socket.conf",
        DOCKER_SOCKET_TMPFILES,
        0o644,
    )?;
    write_file(
        &partial,
        "etc/postgresql/15/main/pg_hba.conf",
        PG_HBA,
        0o640,
    )?;
    write_file(
        &partial,
        "etc/containers/registries.conf.d/masrun-test.conf",
        REGISTRIES_CONF,
        0o644,
    )?;
    write_file(
        &partial,
        "etc/docker/registry/config.yml",
        REGISTRY_CONFIG,
        0o644,
    )?;
    let mut mask = vec!["systemctl", "mask"];
    mask.extend_from_slice(MASKED_UNITS);
    chroot(&partial, &mask)?;
    chroot(&partial, &["systemctl", "enable", "podman.socket"])?;
    chroot(
        &partial,
        &[
            "chown",
            "postgres:postgres",
            "/etc/postgresql/15/main/pg_hba.conf",
        ],
    )?;
    // Each node takes its machine name as host name.
    let _ = std::fs::remove_file(partial.join("etc/hostname"));

    std::fs::rename(&partial, target)
        .map_err(|e| format!("rename {} to {}: {e}", partial.display(), target.display()))?;
    remove_other_rootfs(target);
    eprintln!(
        "built {} in {:.0} s",
        target.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Removes root file systems of earlier recipes, so the cache keeps one (about 1 GB).
fn remove_other_rootfs(current: &Path) {
    let Ok(entries) = std::fs::read_dir(CACHE_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(ROOTFS_PREFIX) && path.is_dir() && path != current {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Returns the start time of a process in clock ticks since boot, to tell it from a later
/// process that reuses its PID.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in field 2 may contain spaces; the fields after it do not.
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// A process recorded with its start time.
#[derive(Clone, Copy, Debug)]
struct Recorded {
    pid: u32,
    start: u64,
}

impl Recorded {
    fn of(pid: u32) -> Option<Recorded> {
        start_time(pid).map(|start| Recorded { pid, start })
    }

    fn is_alive(self) -> bool {
        start_time(self.pid) == Some(self.start)
    }

    /// Sends `signal` only if the PID still belongs to the recorded process.
    fn signal(self, signal: i32) {
        if self.is_alive() {
            // SAFETY: kill has no memory effects; the PID was checked just before.
            unsafe { libc::kill(self.pid as i32, signal) };
        }
    }
}

pub struct Node {
    pub name: String,
    netns: String,
    nspawn: Mutex<Child>,
    nspawn_process: Recorded,
    leader: Recorded,
    scratch: PathBuf,
    record: PathBuf,
    postgres_password: String,
    container_storage: Mutex<()>,
}

/// The node of this test binary, booted by the first test that uses it.
static NODE: OnceLock<Result<Node, String>> = OnceLock::new();

/// Returns the node shared by this test binary's tests, booting it on first use. A node that
/// cannot boot fails every test that needs it, with the reason.
pub fn shared() -> &'static Node {
    let node = NODE.get_or_init(|| {
        let node = Node::boot();
        if node.is_ok() {
            // SAFETY: registers a plain function to run at process exit.
            unsafe { libc::atexit(shut_down_shared) };
        }
        node
    });
    match node {
        Ok(node) => node,
        Err(error) => panic!("the test node did not start: {error}"),
    }
}

extern "C" fn shut_down_shared() {
    if let Some(Ok(node)) = NODE.get() {
        node.shut_down();
    }
}

fn records_dir() -> PathBuf {
    Path::new(CACHE_DIR).join("nodes")
}

/// Shuts down nodes whose test binary died without its exit handler (killed, aborted), so
/// they do not pile up. Only nodes this suite recorded are touched, checked by start time.
fn remove_orphaned_nodes() {
    let Ok(entries) = std::fs::read_dir(records_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [
            owner,
            owner_start,
            nspawn,
            nspawn_start,
            leader,
            leader_start,
            name,
        ] = fields[..]
        else {
            continue;
        };
        let parse = |pid: &str, start: &str| Recorded {
            pid: pid.parse().unwrap_or(0),
            start: start.parse().unwrap_or(0),
        };
        if parse(owner, owner_start).is_alive() {
            continue;
        }
        let leader = parse(leader, leader_start);
        let nspawn = parse(nspawn, nspawn_start);
        leader.signal(libc::SIGKILL);
        nspawn.signal(libc::SIGKILL);
        wait_until(Duration::from_secs(10), || !nspawn.is_alive());
        release_resources(name);
        let _ = std::fs::remove_file(entry.path());
    }
}

fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    ["unified", "systemd"]
        .iter()
        .map(|hierarchy| Path::new("/sys/fs/cgroup").join(hierarchy).join(name))
        .collect()
}

/// Removes a cgroup tree, children first (cgroup directories are removed with rmdir).
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Deletes what a node named `name` used on the host: its namespace, cgroups and scratch.
fn release_resources(name: &str) {
    for namespace in [name.to_string(), controller_namespace(name)] {
        let _ = Command::new("ip")
            .args(["netns", "delete", &namespace])
            .stderr(Stdio::null())
            .status();
    }
    for dir in cgroup_dirs(name) {
        remove_cgroup(&dir);
    }
    let _ = std::fs::remove_dir_all(Path::new(CACHE_DIR).join("scratch").join(name));
}

/// Read-only binds that let the node run the test Synapse: its virtualenv, and the Python
/// installation the virtualenv links to, each at the same path as on the host. Empty when the
/// virtualenv is missing.
fn synapse_binds() -> Vec<String> {
    let venv = super::synapse::venv();
    let Ok(config) = std::fs::read_to_string(venv.join("pyvenv.cfg")) else {
        return Vec::new();
    };
    let mut binds = vec![format!("--bind-ro={}", venv.display())];
    let home = config
        .lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == "home")
        .map(|(_, value)| PathBuf::from(value.trim()));
    // NOTE: a virtualenv made from Debian's own python3 (home /usr/bin) is not bound, because
    // that would hide the node's /usr. The node then needs python3 installed to run Synapse.
    if let Some(prefix) = home.as_deref().and_then(Path::parent)
        && !prefix.starts_with("/usr")
    {
        binds.push(format!("--bind-ro={}", prefix.display()));
    }
    binds
}

/// Returns the namespace that masrun runs in to reach the node named `node`.
fn controller_namespace(node: &str) -> String {
    node.replace("masrun-node-", "masrun-ctl-")
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

impl Node {
    fn boot() -> Result<Node, String> {
        remove_orphaned_nodes();
        let rootfs = rootfs()?;
        let docker = which("docker")
            .ok_or("the docker client is not installed; tests/run.sh installs it")?;
        let name = format!("masrun-node-{}", std::process::id());
        let scratch = Path::new(CACHE_DIR).join("scratch").join(&name);
        std::fs::create_dir_all(&scratch)
            .map_err(|e| format!("create {}: {e}", scratch.display()))?;
        std::fs::create_dir_all(records_dir()).map_err(|e| format!("create records: {e}"))?;

        run(Command::new("ip").args(["netns", "add", &name]))?;
        let cgroup = cgroup_dirs(&name).remove(0);
        std::fs::create_dir_all(&cgroup)
            .map_err(|e| format!("create cgroup {}: {e}", cgroup.display()))?;
        let console = std::fs::File::create(scratch.with_extension("console.log"))
            .map_err(|e| format!("create console log: {e}"))?;

        let mut command = Command::new("systemd-nspawn");
        command
            .arg("--boot")
            .arg(format!("--directory={}", rootfs.display()))
            .arg("--volatile=overlay")
            .arg("--register=no")
            .arg("--keep-unit")
            .arg(format!("--machine={name}"))
            .arg("--console=passive")
            .arg(format!("--network-namespace-path=/run/netns/{name}"))
            .arg("--capability=all")
            .arg("--tmpfs=/var/lib/containers")
            .arg(format!(
                "--bind-ro={}:/usr/local/bin/docker",
                docker.display()
            ))
            .arg(format!("--bind={}", scratch.display()))
            .args(synapse_binds())
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .env("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "1")
            .env("SYSTEMD_SECCOMP", "0")
            .env("SYSTEMD_NSPAWN_LOCK", "0")
            .stdin(Stdio::null())
            .stdout(console.try_clone().map_err(|e| e.to_string())?)
            .stderr(console);

        // Each node gets a cgroup of its own: nspawn otherwise puts every node into the same
        // `payload` cgroup, where one node's systemd can stop another's services.
        let procs = CString::new(cgroup.join("cgroup.procs").display().to_string()).unwrap();
        // SAFETY: the closure runs between fork and exec and calls only open, write and close.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("start systemd-nspawn: {e}"))?;
        let nspawn_process =
            Recorded::of(child.id()).ok_or("systemd-nspawn exited at once; see its console log")?;

        // nspawn's first child is a helper that starts the node's init and exits; the leader
        // is the child that runs systemd.
        let mut leader = None;
        wait_until(Duration::from_secs(30), || {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
                    .unwrap_or_default();
            leader = children
                .split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok())
                .find(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|comm| comm.trim() == "systemd")
                })
                .and_then(Recorded::of);
            leader.is_some()
        });
        let owner = Recorded::of(std::process::id()).unwrap();
        let node = Node {
            name: name.clone(),
            netns: name.clone(),
            nspawn: Mutex::new(child),
            nspawn_process,
            leader: leader.unwrap_or(Recorded { pid: 0, start: 0 }),
            scratch,
            record: records_dir().join(&name),
            postgres_password: format!("node-pg-{}", super::postgres::uuid_like()),
            container_storage: Mutex::new(()),
        };
        std::fs::write(
            &node.record,
            format!(
                "{} {} {} {} {} {} {name}\n",
                owner.pid,
                owner.start,
                node.nspawn_process.pid,
                node.nspawn_process.start,
                node.leader.pid,
                node.leader.start
            ),
        )
        .map_err(|e| format!("write {}: {e}", node.record.display()))?;

        if let Err(error) = node.prepare() {
            let console = std::fs::read_to_string(node.scratch.with_extension("console.log"))
                .unwrap_or_default();
            node.shut_down();
            return Err(format!("{error}\nnode console:\n{}", tail(&console, 30)));
        }
        Ok(node)
    }

    /// Waits for the boot to finish, then adds what the tests use: the test image and the
    /// PostgreSQL superuser.
    fn prepare(&self) -> Result<(), String> {
        if self.leader.pid == 0 {
            return Err("the node's init did not start within 30 s".into());
        }
        // systemctl cannot connect until the node's systemd has opened its private socket.
        let mut state = self.exec(&["true"], None);
        wait_until(Duration::from_secs(90), || {
            state = self.exec(
                &["timeout", "90", "systemctl", "is-system-running", "--wait"],
                None,
            );
            !state.stdout.is_empty()
        });
        let state_text = String::from_utf8_lossy(&state.stdout).trim().to_string();
        if state_text != "running" {
            let failed = self.exec(&["systemctl", "--failed", "--no-pager"], None);
            return Err(format!(
                "the node is {state_text:?} instead of running: {}\n{}",
                String::from_utf8_lossy(&state.stderr).trim(),
                String::from_utf8_lossy(&failed.stdout)
            ));
        }

        let image = format!(
            "set -e
root=$(mktemp -d)
mkdir \"$root/bin\"
cp /bin/busybox \"$root/bin/\"
for applet in sh cat echo env sleep ls id printf; do ln -s busybox \"$root/bin/$applet\"; done
tar -C \"$root\" -c . | podman import --change 'CMD [\"/bin/sh\"]' - {TEST_IMAGE} >/dev/null
rm -rf \"$root\"
"
        );
        self.check(&["sh", "-c", &image], None)?;

        // The password goes to psql on standard input, never as an argument.
        let sql = format!(
            "CREATE ROLE {POSTGRES_SUPERUSER} SUPERUSER LOGIN PASSWORD '{}';\n",
            self.postgres_password
        );
        self.check(
            &[
                "runuser",
                "-u",
                "postgres",
                "--",
                "psql",
                "--quiet",
                "--set=ON_ERROR_STOP=1",
            ],
            Some(&sql),
        )?;
        self.prepare_ssh()
    }

    /// Links the node to the controller's namespace, authorizes a client key for root and
    /// writes the known_hosts line of the node's host key.
    fn prepare_ssh(&self) -> Result<(), String> {
        let controller = controller_namespace(&self.name);
        let _ = Command::new("ip")
            .args(["netns", "delete", &controller])
            .stderr(Stdio::null())
            .status();
        run(Command::new("ip").args(["netns", "add", &controller]))?;
        run(Command::new("ip").args(["-n", &controller, "link", "set", "lo", "up"]))?;
        let pid = std::process::id();
        let (node_end, controller_end) = (format!("mrn{pid}n"), format!("mrn{pid}c"));
        run(Command::new("ip").args([
            "link",
            "add",
            &node_end,
            "netns",
            &self.netns,
            "type",
            "veth",
            "peer",
            "name",
            &controller_end,
            "netns",
            &controller,
        ]))?;
        for (namespace, device, address) in [
            (&self.netns, &node_end, NODE_ADDRESS),
            (&controller, &controller_end, CONTROLLER_ADDRESS),
        ] {
            run(Command::new("ip").args([
                "-n",
                namespace,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                device,
            ]))?;
            run(Command::new("ip").args(["-n", namespace, "link", "set", device, "up"]))?;
        }

        let ssh = self.ssh_dir();
        std::fs::create_dir_all(ssh.join("home/.ssh"))
            .map_err(|e| format!("create {}: {e}", ssh.display()))?;
        let key = ssh.join("client_ed25519");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key))?;
        let public = std::fs::read_to_string(key.with_extension("pub"))
            .map_err(|e| format!("read the client key: {e}"))?;
        self.check(
            &[
                "sh",
                "-c",
                "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys",
            ],
            Some(&public),
        )?;
        let host_key = self.check(&["cat", "/etc/ssh/ssh_host_ed25519_key.pub"], None)?;
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        std::fs::write(
            ssh.join("known_hosts"),
            format!("{NODE_ADDRESS} {}\n", host_key.join(" ")),
        )
        .map_err(|e| format!("write known_hosts: {e}"))?;
        Ok(())
    }

    /// Returns the directory of the client key, known_hosts file and empty home directory
    /// that masrun uses over SSH.
    fn ssh_dir(&self) -> PathBuf {
        self.scratch.join("ssh")
    }

    /// Returns the password of the node's PostgreSQL superuser.
    pub fn postgres_password(&self) -> &str {
        &self.postgres_password
    }

    /// Gives one test at a time the node's container storage. podman 4.3 (Debian 12) races
    /// when one process removes an image or container while another lists: the lister fails
    /// with "layer not known". Tests that create or remove images or containers hold this.
    pub fn lock_containers(&self) -> std::sync::MutexGuard<'_, ()> {
        self.container_storage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Builds a command that runs `argv` inside the node, in all of its namespaces, with a
    /// clean environment plus `env`.
    pub fn command(&self, argv: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .args(["-t", &self.leader.pid.to_string(), "-a", "--", "env", "-i"])
            .arg(format!("PATH={NODE_PATH}"))
            .args(["HOME=/root", "LANG=C.UTF-8"]);
        for (key, value) in env {
            command.arg(format!("{key}={value}"));
        }
        command.args(argv);
        command
    }

    /// Runs `argv` inside the node with optional standard input and returns its output.
    pub fn exec(&self, argv: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self
            .command(argv, &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nsenter runs");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Runs `argv` inside the node and fails with its output unless it succeeds.
    pub fn check(&self, argv: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let output = self.exec(argv, stdin);
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "{argv:?} failed in the node ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Runs a shell script inside the node and returns its standard output; panics on failure.
    #[track_caller]
    pub fn sh(&self, script: &str) -> String {
        self.check(&["sh", "-c", script], None)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Creates a project directory under the scratch directory, which has the same path in
    /// the node.
    pub fn project(&self, label: &str, vars: &serde_json::Value) -> Project {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{label}-"))
            .tempdir_in(&self.scratch)
            .expect("project directory")
            .keep();
        let connection = format!(
            "ansible_host={NODE_ADDRESS} ansible_user=root ansible_ssh_private_key_file={}",
            self.ssh_dir().join("client_ed25519").display()
        );
        Project::in_dir(&dir, &format!("{label}.node.test"), &connection, vars)
    }

    /// Runs masrun against `project` from the controller's namespace, over SSH to the node.
    pub fn masrun(&self, project: &Project, task: &Path, extra: &[&str]) -> Run {
        let ssh = self.ssh_dir();
        let known_hosts = ssh.join("known_hosts").display().to_string();
        let mut args = vec!["--known-hosts", known_hosts.as_str()];
        args.extend_from_slice(extra);
        let output = Command::new("ip")
            .args(["netns", "exec", &controller_namespace(&self.name)])
            .arg(env!("CARGO_BIN_EXE_masrun"))
            .args(project.args(task, &args))
            .current_dir(super::repo_root())
            .env("HOME", ssh.join("home"))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec runs masrun");
        Run { output }
    }

    /// Powers the node off and releases its namespace, cgroups and scratch directory. A node
    /// that does not stop within 15 s (podman's cleanup of containers started outside a unit
    /// can hang the poweroff) has its init killed.
    fn shut_down(&self) {
        let Ok(mut child) = self.nspawn.lock() else {
            return;
        };
        let exited = |child: &mut Child| matches!(child.try_wait(), Ok(Some(_)));
        if !exited(&mut child) {
            self.nspawn_process.signal(libc::SIGTERM);
            if !wait_until(Duration::from_secs(15), || exited(&mut child)) {
                self.leader.signal(libc::SIGKILL);
                if !wait_until(Duration::from_secs(5), || exited(&mut child)) {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        release_resources(&self.netns);
        let _ = std::fs::remove_file(self.scratch.with_extension("console.log"));
        let _ = std::fs::remove_file(&self.record);
    }
}
