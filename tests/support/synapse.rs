//! A real Synapse homeserver from PyPI for tests: its generated homeserver.yaml and a running
//! process on a loopback port, stopped by PID when the guard drops.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The virtualenv that tests/run.sh installs Synapse into.
pub fn venv() -> PathBuf {
    std::env::var_os("MASRUN_TEST_SYNAPSE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/masrun-tests/synapse-venv"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Generates Synapse's own homeserver.yaml for `server_name` in `config_dir`, listening on
/// 127.0.0.1:`port`, and returns its path.
pub fn generate_config(config_dir: &Path, server_name: &str, port: u16) -> PathBuf {
    std::fs::create_dir_all(config_dir).unwrap();
    let config = config_dir.join("homeserver.yaml");
    let python = venv().join("bin/python");
    assert!(
        python.exists(),
        "Synapse venv missing at {}; run tests/run.sh",
        venv().display()
    );
    let output = Command::new(&python)
        .args([
            "-m",
            "synapse.app.homeserver",
            "--server-name",
            server_name,
            "--config-path",
        ])
        .arg(&config)
        .args(["--generate-config", "--report-stats=no", "--data-directory"])
        .arg(config_dir)
        // The generated log config names homeserver.log in the working directory.
        .current_dir(config_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "synapse --generate-config failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Bind loopback only, on a free port, and never contact other servers.
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace(
            "    - ::1\n    - 127.0.0.1\n    port: 8008",
            &format!("    - 127.0.0.1\n    port: {port}"),
        )
        .replace(
            "trusted_key_servers:\n  - server_name: \"matrix.org\"\n",
            "trusted_key_servers: []\n",
        );
    assert!(
        text.contains(&format!("port: {port}")),
        "listener rewritten:\n{text}"
    );
    let text = format!("{text}\nsuppress_key_server_warning: true\n");
    std::fs::write(&config, text).unwrap();
    config
}

/// A running Synapse, killed when dropped.
pub struct Synapse {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Synapse {
    /// Starts Synapse with the given config files and waits until it serves
    /// `/_matrix/client/versions`, or panics with its log.
    pub fn start(configs: &[&Path], port: u16) -> Synapse {
        let log = configs[0].with_extension("stdout.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(venv().join("bin/python"));
        command.args(["-m", "synapse.app.homeserver"]);
        for config in configs {
            command.arg("-c").arg(config);
        }
        // Synapse's generated log config writes homeserver.log into the working directory.
        let child = command
            .current_dir(configs[0].parent().unwrap())
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap();
        let mut synapse = Synapse { child, port, log };
        synapse.wait_ready();
        synapse
    }

    fn wait_ready(&mut self) {
        // Generous, because a loaded 2-core machine can take a minute to start Python.
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("Synapse exited with {status}:\n{}", self.log_text());
            }
            if let Ok((200, _)) = self.get("/_matrix/client/versions") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("Synapse not ready after 180 s:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A plain HTTP/1.1 GET on loopback; returns the status and body.
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.port, path)
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_request(port, path, "")
}

/// A plain HTTP/1.1 GET on loopback with extra header lines (each ending in `\r\n`); returns
/// the status and body.
fn http_request(port: u16, path: &str, headers: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Ok((status, body))
}

/// The MAS stand-in (tests/stand-ins/mas), running on loopback with a copy of a rendered
/// config.yaml whose listeners are moved to free ports. Killed when dropped.
pub struct MasStandIn {
    child: Child,
    pub web_port: u16,
    pub internal_port: u16,
}

impl MasStandIn {
    pub fn start(config_yaml: &Path, dir: &Path) -> MasStandIn {
        let web_port = free_port();
        let internal_port = free_port();
        let mut config: serde_json::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(config_yaml).unwrap()).unwrap();
        for listener in config["http"]["listeners"].as_array_mut().unwrap() {
            let port = if listener["name"] == "internal" {
                internal_port
            } else {
                web_port
            };
            listener["binds"] = serde_json::json!([{"host": "127.0.0.1", "port": port}]);
        }
        let copy = dir.join("mas-stand-in.yaml");
        std::fs::write(&copy, serde_yaml_ng::to_string(&config).unwrap()).unwrap();

        // Cargo builds examples beside the binary under test, in whatever target directory.
        let binary = Path::new(env!("CARGO_BIN_EXE_masrun"))
            .parent()
            .unwrap()
            .join("examples/mas-stand-in");
        let binary = std::env::var_os("MASRUN_TEST_MAS_STAND_IN")
            .map(PathBuf::from)
            .unwrap_or(binary);
        assert!(
            binary.exists(),
            "MAS stand-in not built at {}; cargo test builds examples",
            binary.display()
        );
        let child = Command::new(binary)
            .arg("--config")
            .arg(&copy)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stand_in = MasStandIn {
            child,
            web_port,
            internal_port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(internal_port, "/auth/health").is_err() {
            assert!(Instant::now() < deadline, "MAS stand-in did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        stand_in
    }
}

impl Drop for MasStandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET with an `Authorization: Bearer` header; returns status and body.
pub fn http_get_with_token(port: u16, path: &str, token: &str) -> std::io::Result<(u16, String)> {
    http_request(port, path, &format!("Authorization: Bearer {token}\r\n"))
}
