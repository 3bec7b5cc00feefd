//! A throwaway PostgreSQL cluster for a test: `initdb` into a temporary directory as the
//! `postgres` system user, a server on 127.0.0.1 and on a Unix socket in that directory, with
//! SCRAM password authentication everywhere, stopped when the value is dropped.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The superuser the tests connect as.
pub const SUPERUSER: &str = "masrun_admin";

pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    pub password: String,
}

/// Returns the directory of the newest installed PostgreSQL server programs.
fn server_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|bin| bin.join("initdb").is_file());
    versions.sort();
    versions.pop().expect(
        "PostgreSQL server programs not found under /usr/lib/postgresql/*/bin; \
         install them with: apt-get install postgresql (tests/run.sh does)",
    )
}

/// Returns a TCP port on 127.0.0.1 that nothing listens on right now.
pub fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

fn run_as_postgres(program: &Path, args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
}

impl Cluster {
    /// Creates and starts a cluster; panics with the server's output when it cannot start.
    pub fn start() -> Cluster {
        let bin = server_bin();
        let dir = tempfile::Builder::new()
            .prefix("masrun-pg-")
            .tempdir()
            .expect("temporary directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let password = format!("pg-super-{}", uuid_like());

        let password_file = dir.path().join("superuser-password");
        std::fs::write(&password_file, format!("{password}\n")).unwrap();
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let data = dir.path().join("data");
        let data_text = data.display().to_string();
        let initdb = run_as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                &data_text,
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                "--pwfile",
                &password_file.display().to_string(),
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
        );
        assert!(
            initdb.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&initdb.stdout),
            String::from_utf8_lossy(&initdb.stderr)
        );
        std::fs::remove_file(&password_file).unwrap();

        let port = unused_port();
        let mut config = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        // Every statement goes to the log, so tests can check that no password reached it.
        writeln!(
            config,
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             log_statement = 'all'\nlogging_collector = off\n",
            dir.path().display()
        )
        .unwrap();

        let cluster = Cluster {
            dir,
            bin,
            port,
            password,
        };
        let log = cluster.log_path().display().to_string();
        let start = run_as_postgres(
            &cluster.bin.join("pg_ctl"),
            &["-D", &data_text, "-l", &log, "-w", "-t", "30", "start"],
        );
        assert!(
            start.status.success(),
            "pg_ctl start failed:\n{}{}\nserver log:\n{}",
            String::from_utf8_lossy(&start.stdout),
            String::from_utf8_lossy(&start.stderr),
            cluster.log()
        );
        cluster
    }

    /// Returns the directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Returns the server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs SQL with the real psql client as the superuser over the socket, with the password
    /// in the environment. Returns psql's unaligned, tuples-only output; panics on an error.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let output = self.psql_as(SUPERUSER, &self.password, database, sql);
        assert!(
            output.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Runs SQL with psql as `user`, returning its whole output, success or not.
    pub fn psql_as(&self, user: &str, password: &str, database: &str, sql: &str) -> Output {
        let mut child = Command::new("psql")
            .args([
                "--no-psqlrc",
                "--tuples-only",
                "--no-align",
                "--set=ON_ERROR_STOP=1",
            ])
            .arg(format!(
                "host={} port={} user={user} dbname={database}",
                self.socket_dir().display(),
                self.port
            ))
            .env("PGPASSWORD", password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").display().to_string();
        let _ = run_as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-m", "fast", "-w", "stop"],
        );
    }
}

/// Returns a random hex string for passwords and names that must not repeat between runs.
pub fn uuid_like() -> String {
    let mut bytes = [0u8; 12];
    let file = std::fs::File::open("/dev/urandom").expect("/dev/urandom");
    std::io::Read::read_exact(&mut &file, &mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
