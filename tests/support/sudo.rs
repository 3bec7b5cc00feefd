//! Non-root login accounts with sudo rules, for the tests of `ansible_become` through sudo.
//! Each [`SudoLogin`] creates a user with a unique name, a home in a temporary directory and a
//! drop-in under `/etc/sudoers.d/` (checked with `visudo -cf` before it is installed), and
//! removes all three on drop. Existing users and sudoers files are never touched.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Accounts created by this test binary so far, to keep names unique between tests that run
/// at the same time.
static CREATED: AtomicUsize = AtomicUsize::new(0);

/// A user that may log in over SSH with the test client key and run commands as any user
/// with sudo.
pub struct SudoLogin {
    pub name: String,
    /// The password sudo requests, or `None` for a NOPASSWD rule.
    pub password: Option<String>,
    sudoers: PathBuf,
    _home: tempfile::TempDir,
}

impl SudoLogin {
    /// Creates a user whose sudo rule needs no password.
    pub fn without_password() -> SudoLogin {
        SudoLogin::create("nopw", None)
    }

    /// Creates a user whose sudo rule requires the user's password.
    pub fn with_password() -> SudoLogin {
        let password = format!("pw-{}", ulid::Ulid::new().to_string().to_lowercase());
        SudoLogin::create("pw", Some(password))
    }

    fn create(kind: &str, password: Option<String>) -> SudoLogin {
        assert!(
            PathBuf::from("/usr/bin/sudo").exists(),
            "/usr/bin/sudo is missing; tests/run.sh installs the sudo package"
        );
        let serial = CREATED.fetch_add(1, Ordering::SeqCst);
        let name = format!("masrun-{kind}-{}-{serial}", std::process::id());

        let home = tempfile::tempdir().expect("temporary home directory");
        run(Command::new("useradd").args([
            "--home-dir",
            &home.path().display().to_string(),
            "--no-create-home",
            "--shell",
            "/bin/sh",
            "--user-group",
            &name,
        ]));
        let login = SudoLogin {
            name,
            password,
            sudoers: PathBuf::new(),
            _home: home,
        };
        run(Command::new("chown").args([
            &format!("{0}:{0}", login.name),
            &login._home.path().display().to_string(),
        ]));
        // useradd leaves the password field as "!", which sshd without PAM reads as a locked
        // account and rejects even for key logins. "*" allows key logins and no password.
        match &login.password {
            Some(password) => {
                let mut chpasswd = Command::new("chpasswd")
                    .stdin(Stdio::piped())
                    .spawn()
                    .expect("chpasswd starts");
                std::io::Write::write_all(
                    chpasswd.stdin.as_mut().unwrap(),
                    format!("{}:{password}\n", login.name).as_bytes(),
                )
                .unwrap();
                assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
            }
            None => run(Command::new("usermod").args(["--password", "*", &login.name])),
        }
        login.install_sudoers()
    }

    /// Writes the sudo rule to a temporary file, checks it with `visudo -cf`, and only then
    /// installs it, because a broken file under /etc/sudoers.d breaks sudo for everyone.
    fn install_sudoers(mut self) -> SudoLogin {
        let tag = if self.password.is_some() {
            ""
        } else {
            "NOPASSWD: "
        };
        let rule = format!("{} ALL=(ALL:ALL) {tag}ALL\n", self.name);
        let draft = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(draft.path(), &rule).unwrap();
        run(Command::new("visudo").arg("-cf").arg(draft.path()));

        // sudo ignores files under /etc/sudoers.d whose names contain a dot.
        let target = PathBuf::from("/etc/sudoers.d").join(&self.name);
        std::fs::write(&target, &rule).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o440)).unwrap();
        self.sudoers = target;
        run(Command::new("visudo").arg("-c"));
        self
    }
}

impl Drop for SudoLogin {
    fn drop(&mut self) {
        if !self.sudoers.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.sudoers);
        }
        // The test's sshd, and with it every session of this user, is stopped before this
        // runs, because the test declares the login first.
        let status = Command::new("userdel").arg(&self.name).status();
        if !matches!(status, Ok(status) if status.success()) {
            eprintln!("userdel {} failed: {status:?}", self.name);
        }
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("the command starts");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
