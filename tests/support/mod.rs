//! Shared helpers for the integration tests: the masrun binary, a relocated temporary root
//! for `masrun setup`, and readers for its JSON output.

#![allow(dead_code)]

pub mod node;
pub mod postgres;
pub mod project;
pub mod sshd;
pub mod sudo;
pub mod synapse;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

/// The account the tests deploy as, instead of the real `matrix` user of a production host.
pub const TEST_USER: &str = "masrun-test";
pub const TEST_UID: u32 = 64991;

/// The repository root, which is also the example project (inventory/, scripts/, stdlib/).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// MAS's JSON schema for config.yaml, kept beside the project for tests.
pub fn mas_schema_path() -> PathBuf {
    repo_root().join("../shared/reference/mas-config.schema.json")
}

/// Creates the test account once per test binary, so concurrent runs find it present.
pub fn ensure_test_user() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let group_exists = Command::new("getent")
            .args(["group", TEST_USER])
            .output()
            .unwrap();
        if !group_exists.status.success() {
            let status = Command::new("groupadd")
                .args(["--system", "--gid", &TEST_UID.to_string(), TEST_USER])
                .status()
                .expect("groupadd runs");
            assert!(status.success(), "groupadd {TEST_USER} failed");
        }
        let user_exists = Command::new("getent")
            .args(["passwd", TEST_USER])
            .output()
            .unwrap();
        if !user_exists.status.success() {
            let status = Command::new("useradd")
                .args([
                    "--system",
                    "--uid",
                    &TEST_UID.to_string(),
                    "--gid",
                    TEST_USER,
                    "--home-dir",
                    "/nonexistent",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    TEST_USER,
                ])
                .status()
                .expect("useradd runs");
            assert!(status.success(), "useradd {TEST_USER} failed");
        }
    });
}

/// A temporary root that `masrun setup` deploys into, through `-e` path variables.
pub struct TestRoot {
    pub dir: tempfile::TempDir,
}

impl TestRoot {
    pub fn new() -> TestRoot {
        ensure_test_user();
        let dir = tempfile::tempdir().expect("temporary directory");
        // The matrix user generates keys inside, so it must be able to traverse the root.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        TestRoot { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn base(&self) -> PathBuf {
        self.path().join("matrix")
    }

    pub fn mas(&self) -> PathBuf {
        self.base().join("matrix-authentication-service")
    }

    pub fn unit_dir(&self) -> PathBuf {
        self.path().join("systemd")
    }

    /// The `-e` arguments that relocate every path and the account.
    pub fn extra_vars(&self) -> Vec<String> {
        vec![
            "-e".into(),
            format!(
                "matrix_base_data_path={} devture_systemd_docker_base_systemd_path={} \
                 matrix_user_name={TEST_USER} matrix_group_name={TEST_USER} \
                 matrix_user_home=/nonexistent",
                self.base().display(),
                self.unit_dir().display()
            ),
            "-e".into(),
            format!(r#"{{"matrix_user_uid": {TEST_UID}, "matrix_user_gid": {TEST_UID}}}"#),
        ]
    }

    /// Runs `masrun <args> setup` against the example inventory, relocated into this root.
    pub fn setup(&self, extra: &[&str]) -> Run {
        let mut args: Vec<String> = vec!["--output".into(), "json".into()];
        args.extend(self.extra_vars());
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push("setup".into());
        masrun(&args)
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.mas().join(relative))
            .unwrap_or_else(|e| panic!("read {relative}: {e}"))
    }

    pub fn mode(&self, path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    pub fn owner(&self, path: &Path) -> (u32, u32) {
        let meta = std::fs::metadata(path).unwrap();
        (meta.uid(), meta.gid())
    }
}

/// The result of one masrun invocation.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn status(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn all_output(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }

    /// The JSON lines of `--output json`.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The recap counters of `host`.
    pub fn recap(&self, host: &str) -> serde_json::Value {
        self.events()
            .into_iter()
            .rev()
            .find_map(|event| event.get("recap").and_then(|r| r.get(host)).cloned())
            .unwrap_or_else(|| panic!("no recap for {host} in:\n{}", self.all_output()))
    }

    pub fn changed_steps(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| e.get("status").and_then(|s| s.as_str()) == Some("changed"))
            .filter_map(|e| e.get("step").and_then(|s| s.as_str()).map(str::to_string))
            .collect()
    }

    #[track_caller]
    pub fn assert_status(&self, expected: i32) -> &Run {
        assert_eq!(
            self.status(),
            expected,
            "unexpected exit status; output:\n{}",
            self.all_output()
        );
        self
    }
}

/// Runs the masrun binary from the repository root with `args`.
pub fn masrun<S: AsRef<str>>(args: &[S]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_masrun"))
        .args(args.iter().map(|a| a.as_ref()))
        .current_dir(repo_root())
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .output()
        .expect("masrun runs");
    Run { output }
}

/// The example inventory's host.
pub const HOST: &str = "matrix.example.com";
