//! masrun over SSH against real OpenSSH servers the tests start themselves: setup converging
//! like the local run, host key verification, authentication failures, become, lost
//! connections, several hosts at once (some in network namespaces), and cancelled commands.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use support::sshd::{Netns, SshProject, Sshd, args, unused_port};
use support::sudo::SudoLogin;
use support::{HOST, Run, TEST_UID, TEST_USER, TestRoot};

/// Lists every path under `root` with its mode, owner, and contents with `root` replaced by
/// `ROOT`. Files under `data/keys` have no contents here, because the keys are random.
fn snapshot(root: &Path) -> BTreeMap<String, (u32, u32, u32, Option<String>)> {
    let mut entries = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            let contents = (meta.is_file() && !relative.contains("data/keys")).then(|| {
                std::fs::read_to_string(&path)
                    .unwrap()
                    .replace(&root.display().to_string(), "ROOT")
            });
            if meta.is_dir() {
                pending.push(path.clone());
            }
            entries.insert(
                relative,
                (meta.mode() & 0o7777, meta.uid(), meta.gid(), contents),
            );
        }
    }
    entries
}

fn unreachable_events(run: &Run) -> Vec<serde_json::Value> {
    run.events()
        .into_iter()
        .filter(|event| event["status"] == "unreachable")
        .collect()
}

fn setup_args(root: &TestRoot, extra: &[&str]) -> Vec<String> {
    let mut all = root.extra_vars();
    all.extend(extra.iter().map(|word| word.to_string()));
    all.push("setup".into());
    all
}

#[test]
fn setup_over_ssh_matches_local_run() {
    let local = TestRoot::new();
    local.setup(&[]).assert_status(0);

    let server = Sshd::start();
    let project = SshProject::new(&[(HOST, server.inventory_vars())]);
    project.trust(&[&server]);
    let remote = TestRoot::new();
    let first = project.run(&setup_args(&remote, &[]));
    first.assert_status(0);

    let expected = snapshot(local.path());
    let actual = snapshot(remote.path());
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        actual.keys().collect::<Vec<_>>(),
        "the same paths exist"
    );
    for (path, (mode, uid, gid, contents)) in &expected {
        let other = &actual[path];
        assert_eq!(*mode, other.0, "mode of {path}");
        assert_eq!((*uid, *gid), (other.1, other.2), "owner of {path}");
        assert_eq!(contents, &other.3, "contents of {path}");
    }

    let second = project.run(&setup_args(&remote, &[]));
    second.assert_status(0);
    let recap = second.recap(HOST);
    assert_eq!(
        recap["changed"],
        0,
        "second run changed: {:?}",
        second.changed_steps()
    );

    // setup prefetches the files and accounts its steps look at, and no step of a run that
    // changes nothing runs a command. So the run waits only to start SFTP (two), for the
    // account lookups (one command) and for the file prefetch (two bursts: stats and opens,
    // then reads and closes), and each step waits for nothing.
    let steps = recap["ok"].as_u64().unwrap();
    let round_trips = recap["round_trips"].as_u64().unwrap();
    assert!(steps > 10, "setup runs its steps: {recap}");
    assert!(
        round_trips <= 5,
        "{round_trips} round trips for {steps} unchanged steps"
    );
}

/// Writes a task file of steps of every common kind, which find nothing to change once they
/// have run: account, directories, a template, a copy, content, attributes, a guarded command
/// and a query command. Returns the task file's path.
fn steady_task(project: &SshProject, dir: &Path) -> String {
    let template = project.task("unit.conf.j2", "host={{ inventory_hostname }}\n");
    let source = project.task("blob.txt", &"0123456789abcdef\n".repeat(400));
    let task = project.task(
        "steady.rhai",
        &format!(
            r#"user::group(#{{ name: "{TEST_USER}", gid: {TEST_UID} }});
user::user(#{{ name: "{TEST_USER}", uid: {TEST_UID}, group: "{TEST_USER}" }});
file::directory(#{{ path: "{dir}", mode: "0750", owner: "{TEST_USER}", group: "{TEST_USER}" }});
file::directory(#{{ path: "{dir}/conf", mode: "0755" }});
template::file(#{{ src: "{template}", path: "{dir}/conf/unit.conf", mode: "0640" }});
file::copy(#{{ src: "{source}", path: "{dir}/blob.txt", mode: "0644" }});
file::content(#{{ path: "{dir}/conf/limits.conf", content: "nofile 1024\n", owner: "{TEST_USER}", group: "{TEST_USER}" }});
file::attributes(#{{ path: "{dir}/blob.txt", mode: "0644" }});
command::run(#{{ argv: ["touch", "{dir}/initialized"], creates: "{dir}/initialized" }});
command::run(#{{ argv: ["id", "-un"], read_only: true }});
"#,
            dir = dir.display(),
            template = template.display(),
            source = source.display(),
        ),
    );
    task.display().to_string()
}

#[test]
fn no_change_step_costs_one_round_trip() {
    support::ensure_test_user();
    let server = Sshd::start();
    let project = SshProject::new(&[(HOST, server.inventory_vars())]);
    project.trust(&[&server]);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("deployed");
    let task = steady_task(&project, &dir);

    project.run(std::slice::from_ref(&task)).assert_status(0);
    let second = project.run(&[task]);
    second.assert_status(0);
    let recap = second.recap(HOST);
    assert_eq!(
        recap["changed"],
        0,
        "second run changed: {:?}",
        second.changed_steps()
    );
    let steps = recap["ok"].as_u64().unwrap();
    assert_eq!(steps, 10, "every step ran: {recap}");

    // Starting the SFTP session waits twice: for its channel to open, then for the version
    // exchange. Every step after that waits once, for one burst of SFTP requests or for one
    // command, because the ids the account steps found are cached and each command's channel
    // was opened ahead.
    let round_trips = recap["round_trips"].as_u64().unwrap();
    assert!(
        round_trips <= steps + 2,
        "{round_trips} round trips for {steps} unchanged steps"
    );
}

/// Returns the status the JSON events report for the step named `name`.
fn step_status(run: &Run, name: &str) -> String {
    run.events()
        .iter()
        .find(|event| event["step"] == name)
        .and_then(|event| event["status"].as_str())
        .unwrap_or_else(|| panic!("no step {name} in:\n{}", run.all_output()))
        .to_string()
}

#[test]
fn prefetched_files_never_served_stale() {
    let server = Sshd::start();
    let project = SshProject::new(&[(HOST, server.inventory_vars())]);
    project.trust(&[&server]);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    for name in ["same.txt", "differs.txt", "written.txt"] {
        std::fs::write(dir.join(name), "old\n").unwrap();
    }
    // A command changes two prefetched files behind the cache's back, and a step writes the
    // third, so every later look at them must reach the host.
    let task = project.task(
        "stale.rhai",
        &format!(
            r#"file::prefetch(["{dir}/same.txt", "{dir}/differs.txt", "{dir}/written.txt"]);
command::run(#{{ name: "rewrite", argv: ["sh", "-c", "echo new > {dir}/same.txt; echo other > {dir}/differs.txt"] }});
file::content(#{{ name: "same after command", path: "{dir}/same.txt", content: "new\n" }});
file::content(#{{ name: "differs after command", path: "{dir}/differs.txt", content: "old\n" }});
file::content(#{{ name: "first write", path: "{dir}/written.txt", content: "first\n" }});
print("read=" + file::read("{dir}/written.txt"));
file::content(#{{ name: "write again", path: "{dir}/written.txt", content: "first\n" }});
"#,
            dir = dir.display(),
        ),
    );

    let run = project.run(&[task.display().to_string()]);
    run.assert_status(0);
    assert_eq!(step_status(&run, "same after command"), "ok");
    assert_eq!(step_status(&run, "differs after command"), "changed");
    assert_eq!(
        std::fs::read_to_string(dir.join("differs.txt")).unwrap(),
        "old\n"
    );
    assert_eq!(step_status(&run, "first write"), "changed");
    assert!(
        printed(&run).contains(&"read=first\n".to_string()),
        "file::read after the write: {:?}",
        printed(&run)
    );
    assert_eq!(step_status(&run, "write again"), "ok");
}

#[test]
fn prefetched_files_cost_no_round_trip() {
    let server = Sshd::start();
    let project = SshProject::new(&[(HOST, server.inventory_vars())]);
    project.trust(&[&server]);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("deployed");
    std::fs::create_dir(&dir).unwrap();
    let names: Vec<String> = (0..8).map(|index| format!("file{index}.txt")).collect();
    for name in &names {
        std::fs::write(dir.join(name), format!("{name}\n")).unwrap();
    }
    let paths: Vec<String> = names
        .iter()
        .map(|name| format!("\"{}/{name}\"", dir.display()))
        .collect();
    let mut source = format!("file::prefetch([{}]);\n", paths.join(", "));
    source.push_str(&format!(
        "file::directory(#{{ path: \"{}\" }});\n",
        dir.display()
    ));
    for name in &names {
        source.push_str(&format!(
            "file::content(#{{ path: \"{}/{name}\", content: \"{name}\\n\" }});\n",
            dir.display()
        ));
    }
    let task = project.task("prefetched.rhai", &source);

    let run = project.run(&[task.display().to_string()]);
    run.assert_status(0);
    let recap = run.recap(HOST);
    assert_eq!(recap["changed"], 0, "changed: {:?}", run.changed_steps());
    assert_eq!(recap["ok"], 9, "every step ran: {recap}");
    // Two waits start SFTP and two fetch the files; the nine steps find everything cached.
    assert_eq!(recap["round_trips"], 4, "{recap}");
}

#[test]
fn large_and_linked_files_read_whole() {
    let server = Sshd::start();
    let project = SshProject::new(&[(HOST, server.inventory_vars())]);
    project.trust(&[&server]);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // Longer than the chunks read ahead with the OPEN, and not a whole number of chunks.
    let large: String = (0..300_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let source = project.task("large.txt", &large);
    std::fs::write(dir.join("target.txt"), "through the link\n").unwrap();
    std::os::unix::fs::symlink(dir.join("target.txt"), dir.join("link.txt")).unwrap();
    let task = project.task(
        "large.rhai",
        &format!(
            r#"file::copy(#{{ src: "{source}", path: "{dir}/large.txt" }});
file::content(#{{ path: "{dir}/link.txt", content: "through the link\n" }});
let text = file::read("{dir}/link.txt");
print("read=" + text.len());
file::content(#{{ path: "{dir}/empty.txt", content: "" }});
"#,
            source = source.display(),
            dir = dir.display(),
        ),
    );

    project.run(&[task.display().to_string()]).assert_status(0);
    assert_eq!(
        std::fs::read_to_string(dir.join("large.txt")).unwrap(),
        large
    );
    let second = project.run(&[task.display().to_string()]);
    second.assert_status(0);
    assert_eq!(
        second.changed_steps(),
        Vec::<String>::new(),
        "the large file, the link and the empty file were read whole"
    );
    let messages: Vec<String> = second
        .events()
        .iter()
        .filter_map(|event| event["message"].as_str().map(str::to_string))
        .collect();
    assert!(messages.contains(&"read=17".to_string()), "{messages:?}");

    // One byte changed near the end is found.
    let mut changed = large.clone().into_bytes();
    changed[299_990] = b'!';
    std::fs::write(dir.join("large.txt"), &changed).unwrap();
    let third = project.run(&[task.display().to_string()]);
    third.assert_status(0);
    assert_eq!(
        third.changed_steps().len(),
        1,
        "{:?}",
        third.changed_steps()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("large.txt")).unwrap(),
        large
    );
}

#[test]
fn unknown_host_key_is_rejected_until_accepted() {
    let server = Sshd::start();
    let project = SshProject::new(&[(HOST, server.inventory_vars())]);
    let root = TestRoot::new();

    let run = project.run(&setup_args(&root, &[]));
    run.assert_status(3);
    let output = run.all_output();
    let name = format!("[127.0.0.1]:{}", server.port);
    assert!(output.contains("SHA256:"), "fingerprint shown:\n{output}");
    assert!(output.contains(&name), "host named:\n{output}");
    assert!(
        output.contains("--host-key-policy accept-new"),
        "way to accept shown:\n{output}"
    );
    assert!(
        output.contains(&server.host_key),
        "known_hosts line shown:\n{output}"
    );
    assert!(!root.base().exists(), "nothing changed on the host");
    assert_eq!(
        std::fs::read_to_string(project.known_hosts()).unwrap(),
        "",
        "strict policy records nothing"
    );

    let mut accept = vec!["--host-key-policy".to_string(), "accept-new".to_string()];
    accept.extend(setup_args(&root, &["--check"]));
    project.run(&accept).assert_status(0);
    let known = std::fs::read_to_string(project.known_hosts()).unwrap();
    assert_eq!(known, server.known_hosts_line(), "the key was recorded");

    project
        .run(&setup_args(&root, &["--check"]))
        .assert_status(0);
}

#[test]
fn changed_host_key_is_always_rejected() {
    let server = Sshd::start();
    let project = SshProject::new(&[(HOST, server.inventory_vars())]);
    let impostor = std::fs::read_to_string(server.client_key.with_extension("pub")).unwrap();
    let impostor: Vec<&str> = impostor.split_whitespace().take(2).collect();
    std::fs::write(
        project.known_hosts(),
        format!(
            "# managed by hand\n[127.0.0.1]:{} {}\n",
            server.port,
            impostor.join(" ")
        ),
    )
    .unwrap();
    let root = TestRoot::new();

    for policy in ["strict", "accept-new"] {
        let mut arguments = vec!["--host-key-policy".to_string(), policy.to_string()];
        arguments.extend(setup_args(&root, &[]));
        let run = project.run(&arguments);
        run.assert_status(3);
        let output = run.all_output();
        assert!(output.contains("HOST KEY VERIFICATION FAILED"), "{output}");
        assert!(output.contains("has changed"), "{output}");
        assert!(
            output.contains(&format!("{}:2", project.known_hosts().display())),
            "file and line named:\n{output}"
        );
        assert!(!root.base().exists(), "nothing changed on the host");
    }
    let known = std::fs::read_to_string(project.known_hosts()).unwrap();
    assert!(
        !known.contains(&server.host_key),
        "the new key was not recorded"
    );
}

#[test]
fn wrong_client_key_is_unreachable() {
    let server = Sshd::start();
    let other_key = server.dir.path().join("other_ed25519");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_key)
        .status()
        .unwrap();
    assert!(status.success());
    let vars = format!(
        "ansible_host=127.0.0.1 ansible_port={} ansible_ssh_user=root ansible_ssh_private_key_file={}",
        server.port,
        other_key.display()
    );
    let project = SshProject::new(&[(HOST, vars)]);
    project.trust(&[&server]);
    let root = TestRoot::new();

    let run = project.run(&setup_args(&root, &[]));
    run.assert_status(3);
    let events = unreachable_events(&run);
    assert_eq!(events.len(), 1, "{}", run.all_output());
    assert_eq!(events[0]["host"], HOST);
    let error = events[0]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "permission denied for root@127.0.0.1:{}",
            server.port
        )),
        "{error}"
    );
    assert!(error.contains(&other_key.display().to_string()), "{error}");
    assert!(!root.base().exists());
}

#[test]
fn become_runs_commands_and_files_as_user() {
    support::ensure_test_user();
    let server = Sshd::start();
    let vars = format!(
        "{} ansible_become=true ansible_become_user={TEST_USER}",
        server.inventory_vars()
    );
    let project = SshProject::new(&[(HOST, vars)]);
    project.trust(&[&server]);
    let work = tempfile::tempdir().unwrap();
    let owned = work.path().join("owned");
    std::fs::create_dir(&owned).unwrap();
    std::os::unix::fs::chown(&owned, Some(TEST_UID), Some(TEST_UID)).unwrap();
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let task = project.task(
        "become.rhai",
        &format!(
            r#"let who = command::run(#{{ argv: ["id", "-un"], read_only: true }}).stdout;
who.trim();
print("user=" + who);
let root = command::run(#{{ argv: ["id", "-un"], become_user: "root", read_only: true }}).stdout;
root.trim();
print("explicit=" + root);
file::content(#{{ path: "{}/note.txt", content: "written as the become user\n", mode: "0640" }});
"#,
            owned.display()
        ),
    );
    let run = project.run(&[task.display().to_string()]);
    run.assert_status(0);
    let messages: Vec<String> = run
        .events()
        .iter()
        .filter_map(|event| event["message"].as_str().map(str::to_string))
        .collect();
    assert!(
        messages.contains(&format!("user={TEST_USER}")),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"explicit=root".to_string()),
        "{messages:?}"
    );
    let note = std::fs::metadata(owned.join("note.txt")).unwrap();
    assert_eq!(note.uid(), TEST_UID, "SFTP wrote the file as {TEST_USER}");
    assert_eq!(note.mode() & 0o7777, 0o640);
}

/// Returns the lines a task printed with `print`, from the JSON events.
fn printed(run: &Run) -> Vec<String> {
    run.events()
        .iter()
        .filter_map(|event| event["message"].as_str().map(str::to_string))
        .collect()
}

/// Creates a work directory for the become tests: `root-only/` (root, 0755) and `owned/`
/// (the test account's), under a root 0755 directory every user can traverse.
fn become_work_dir() -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir(work.path().join("root-only")).unwrap();
    let owned = work.path().join("owned");
    std::fs::create_dir(&owned).unwrap();
    std::os::unix::fs::chown(&owned, Some(TEST_UID), Some(TEST_UID)).unwrap();
    work
}

/// Writes a task that prints who runs its commands (`user=`, and `explicit=` for a command
/// with `become_user` set to the test account) and writes files into `dir`.
fn become_task(project: &SshProject, dir: &Path) -> String {
    let task = project.task(
        "sudo.rhai",
        &format!(
            r#"let who = command::run(#{{ argv: ["id", "-un"], read_only: true }}).stdout;
who.trim();
print("user=" + who);
let other = command::run(#{{ argv: ["id", "-un"], become_user: "{TEST_USER}", read_only: true }}).stdout;
other.trim();
print("explicit=" + other);
file::content(#{{ path: "{dir}/root-only/root.conf", content: "written through sudo\n", mode: "0640" }});
file::content(#{{ path: "{dir}/root-only/chowned.conf", content: "chowned\n", mode: "0600", owner: "{TEST_USER}", group: "{TEST_USER}" }});
file::directory(#{{ path: "{dir}/root-only/sub", mode: "0750" }});
command::run(#{{ name: "hold the command open", argv: ["sleep", "1.{pid}3"] }});
"#,
            dir = dir.display(),
            pid = std::process::id(),
        ),
    );
    task.display().to_string()
}

/// Checks what [`become_task`] wrote as root into `dir`.
fn assert_written_as_root(dir: &Path) {
    let root_only = dir.join("root-only");
    let written = std::fs::metadata(root_only.join("root.conf")).unwrap();
    assert_eq!((written.uid(), written.gid()), (0, 0), "root.conf owner");
    assert_eq!(written.mode() & 0o7777, 0o640, "root.conf mode");
    assert_eq!(
        std::fs::read_to_string(root_only.join("root.conf")).unwrap(),
        "written through sudo\n"
    );
    let chowned = std::fs::metadata(root_only.join("chowned.conf")).unwrap();
    assert_eq!(
        (chowned.uid(), chowned.gid()),
        (TEST_UID, TEST_UID),
        "chowned.conf owner"
    );
    assert_eq!(chowned.mode() & 0o7777, 0o600, "chowned.conf mode");
    let sub = std::fs::metadata(root_only.join("sub")).unwrap();
    assert_eq!(sub.uid(), 0, "sub owner");
    assert_eq!(sub.mode() & 0o7777, 0o750, "sub mode");
}

#[test]
fn sudo_without_password_becomes_root() {
    support::ensure_test_user();
    let login = SudoLogin::without_password();
    let server = Sshd::start();
    let vars = format!(
        "{} ansible_become=true",
        server.inventory_vars_as(&login.name)
    );
    let project = SshProject::new(&[(HOST, vars)]);
    project.trust(&[&server]);
    let work = become_work_dir();
    let task = become_task(&project, work.path());

    let run = project.run(std::slice::from_ref(&task));
    run.assert_status(0);
    let lines = printed(&run);
    assert!(lines.contains(&"user=root".to_string()), "{lines:?}");
    assert!(
        lines.contains(&format!("explicit={TEST_USER}")),
        "{lines:?}"
    );
    assert_written_as_root(work.path());

    let again = project.run(&[task]);
    again.assert_status(0);
    assert_eq!(
        again.changed_steps(),
        vec!["hold the command open".to_string()],
        "only the command runs again"
    );
}

#[test]
fn sudo_become_user_owns_commands_and_files() {
    support::ensure_test_user();
    let login = SudoLogin::without_password();
    let server = Sshd::start();
    let vars = format!(
        "{} ansible_become=true ansible_become_user={TEST_USER}",
        server.inventory_vars_as(&login.name)
    );
    let project = SshProject::new(&[(HOST, vars)]);
    project.trust(&[&server]);
    let work = become_work_dir();
    let owned = work.path().join("owned");
    let task = project.task(
        "as-user.rhai",
        &format!(
            r#"let who = command::run(#{{ argv: ["id", "-un"], read_only: true }}).stdout;
who.trim();
print("user=" + who);
file::content(#{{ path: "{owned}/note.txt", content: "written as the become user\n", mode: "0640" }});
"#,
            owned = owned.display()
        ),
    );

    let run = project.run(&[task.display().to_string()]);
    run.assert_status(0);
    let lines = printed(&run);
    assert!(lines.contains(&format!("user={TEST_USER}")), "{lines:?}");
    let note = std::fs::metadata(owned.join("note.txt")).unwrap();
    assert_eq!(note.uid(), TEST_UID, "SFTP wrote the file as {TEST_USER}");
    assert_eq!(note.mode() & 0o7777, 0o640);

    // The become user cannot write where only root can.
    let denied = project.task(
        "denied.rhai",
        &format!(
            r#"file::content(#{{ path: "{}/root-only/x.conf", content: "x\n" }});"#,
            work.path().display()
        ),
    );
    let run = project.run(&[denied.display().to_string()]);
    run.assert_status(1);
    assert!(
        run.all_output().contains("ermission denied"),
        "{}",
        run.all_output()
    );
    assert!(!work.path().join("root-only/x.conf").exists());
}

#[test]
fn sudo_password_missing_names_variable() {
    let login = SudoLogin::with_password();
    let server = Sshd::start();
    let vars = format!(
        "{} ansible_become=true",
        server.inventory_vars_as(&login.name)
    );
    let project = SshProject::new(&[(HOST, vars)]);
    project.trust(&[&server]);
    let work = become_work_dir();
    let task = become_task(&project, work.path());

    let run = project.run(&[task]);
    run.assert_status(1);
    let output = run.all_output();
    assert!(
        output.contains("requires a password"),
        "the failure is named:\n{output}"
    );
    assert!(
        output.contains("ansible_become_password"),
        "the variable to set is named:\n{output}"
    );
    assert!(
        output.contains(&login.name),
        "the login is named:\n{output}"
    );
    assert!(
        !work.path().join("root-only/root.conf").exists(),
        "nothing was written"
    );
}

#[test]
fn command_become_user_uses_become_password() {
    let login = SudoLogin::with_password();
    let password = login.password.clone().unwrap();
    let server = Sshd::start();
    // No ansible_become: only the second command names another user.
    let project = SshProject::new(&[(HOST, server.inventory_vars_as(&login.name))]);
    project.trust(&[&server]);
    let task = project.task(
        "own-become.rhai",
        r#"let who = command::run(#{ argv: ["id", "-un"], read_only: true }).stdout;
who.trim();
print("user=" + who);
let other = command::run(#{ argv: ["id", "-un"], become_user: "root", read_only: true }).stdout;
other.trim();
print("explicit=" + other);
"#,
    );
    let task = task.display().to_string();

    let run = project.run(std::slice::from_ref(&task));
    run.assert_status(1);
    let lines = printed(&run);
    assert!(lines.contains(&format!("user={}", login.name)), "{lines:?}");
    let output = run.all_output();
    assert!(
        output.contains("requires a password") && output.contains("ansible_become_password"),
        "the variable to set is named:\n{output}"
    );

    let secrets = project.task(
        "become-secrets.yml",
        &format!("ansible_become_password: \"{password}\"\n"),
    );
    let run = project.run(&args(&["-e", &format!("@{}", secrets.display()), &task]));
    run.assert_status(0);
    let lines = printed(&run);
    assert!(lines.contains(&format!("user={}", login.name)), "{lines:?}");
    assert!(lines.contains(&"explicit=root".to_string()), "{lines:?}");
    assert!(!run.all_output().contains(&password));
}

/// Lists the processes whose command line or environment contains `needle`.
fn processes_containing(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        for file in ["cmdline", "environ"] {
            let Ok(bytes) = std::fs::read(entry.path().join(file)) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
            if text.contains(needle) {
                found.push(format!("{name} {file}: {text}"));
            }
        }
    }
    found
}

#[test]
fn sudo_password_stays_off_command_lines() {
    let login = SudoLogin::with_password();
    let password = login.password.clone().unwrap();
    let server = Sshd::start();
    let vars = format!(
        "{} ansible_become=true",
        server.inventory_vars_as(&login.name)
    );
    let project = SshProject::new(&[(HOST, vars)]);
    project.trust(&[&server]);
    let work = become_work_dir();
    let task = become_task(&project, work.path());
    // A vars file, so the password is not on masrun's own command line either.
    let secrets = project.task(
        "become-secrets.yml",
        &format!("ansible_become_password: \"{password}\"\n"),
    );

    let child = project
        .command(
            &[],
            &args(&["-vvv", "-e", &format!("@{}", secrets.display()), &task]),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let held_command = format!("sleep 1.{}3", std::process::id());
    let mut exposed = Vec::new();
    let mut sudo_seen = Vec::new();
    let mut scans = 0;
    while std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
    {
        exposed.extend(processes_containing(&password));
        sudo_seen.extend(
            processes_containing(&held_command)
                .into_iter()
                .filter(|process| process.contains("cmdline") && process.contains("sudo")),
        );
        scans += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let (run, _) = finish(child, Duration::from_secs(60));
    run.assert_status(0);
    assert!(scans > 10, "the processes were scanned while masrun ran");
    assert!(
        !sudo_seen.is_empty(),
        "a scan saw the command run through sudo (sudo -S reads the password)"
    );
    assert_eq!(
        exposed,
        Vec::<String>::new(),
        "the password is in no process"
    );
    assert!(
        !run.all_output().contains(&password),
        "the password is in no output"
    );
    let lines = printed(&run);
    assert!(lines.contains(&"user=root".to_string()), "{lines:?}");
    assert_written_as_root(work.path());

    // A wrong password is reported as such, and not printed either.
    let wrong = format!("{password}-wrong");
    let wrong_secrets = project.task(
        "wrong-secrets.yml",
        &format!("ansible_become_password: \"{wrong}\"\n"),
    );
    let task = become_task(&project, work.path());
    let run = project.run(&args(&[
        "-e",
        &format!("@{}", wrong_secrets.display()),
        &task,
    ]));
    run.assert_status(1);
    let output = run.all_output();
    assert!(
        output.contains("rejected ansible_become_password"),
        "{output}"
    );
    assert!(
        !output.contains(&wrong),
        "the wrong password is not printed"
    );
}

/// Polls `condition` every 50 ms until it is true or `limit` passes.
fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// Waits for a spawned masrun, killing it after `limit`.
fn finish(mut child: std::process::Child, limit: Duration) -> (Run, Duration) {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    (Run { output }, started.elapsed())
}

const SLOW_TASK: &str = r#"let dir = args[0];
file::content(#{ path: `${dir}/before.txt`, content: "before\n" });
if args.len() > 1 {
    command::run(#{ name: "wait on the host", argv: ["sleep", "30.0413"] });
}
file::content(#{ path: `${dir}/after.txt`, content: "after\n" });
"#;

#[test]
fn killed_server_is_unreachable_with_step() {
    let mut server = Sshd::start();
    let project = SshProject::new(&[(HOST, server.inventory_vars())]);
    project.trust(&[&server]);
    let task = project.task("slow.rhai", SLOW_TASK);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().display().to_string();

    let child = project
        .command(&[], &args(&[&task.display().to_string(), &dir, "slow"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || !server
            .sessions_running("sleep 30.0413")
            .is_empty()),
        "the slow step never started: {}",
        server.log()
    );
    server.kill();

    let (run, elapsed) = finish(child, Duration::from_secs(60));
    run.assert_status(3);
    assert!(elapsed < Duration::from_secs(45), "took {elapsed:?}");
    let events = unreachable_events(&run);
    assert_eq!(events.len(), 1, "{}", run.all_output());
    assert_eq!(events[0]["host"], HOST);
    let error = events[0]["error"].as_str().unwrap();
    assert!(error.contains("wait on the host"), "step named: {error}");
    assert!(
        error.contains(&format!("root@127.0.0.1:{}", server.port)),
        "{error}"
    );
    assert!(!work.path().join("after.txt").exists());

    server.restart();
    let run = project.run(&args(&[&task.display().to_string(), &dir]));
    run.assert_status(0);
    assert!(
        work.path().join("after.txt").exists(),
        "the next run converges"
    );
}

#[test]
fn down_host_does_not_stop_others() {
    let first = Sshd::start();
    let second = Sshd::start();
    let down_port = unused_port();
    let hosts = [
        ("one.example.com", first.inventory_vars()),
        (
            "down.example.com",
            format!(
                "ansible_host=127.0.0.1 ansible_port={down_port} ansible_user=root ansible_ssh_private_key_file={}",
                first.client_key.display()
            ),
        ),
        ("two.example.com", second.inventory_vars()),
    ];
    let project = SshProject::new(&hosts);
    project.trust(&[&first, &second]);
    let work = tempfile::tempdir().unwrap();
    let task = project.task(
        "each.rhai",
        &format!(
            "file::content(#{{ path: `{}/${{host_name()}}.txt`, content: \"hello\\n\" }});\n",
            work.path().display()
        ),
    );

    let run = project.run(&["--forks".into(), "2".into(), task.display().to_string()]);
    run.assert_status(3);
    for host in ["one.example.com", "two.example.com"] {
        let recap = run.recap(host);
        assert_eq!(recap["changed"], 1, "{host}: {recap}");
        assert_eq!(recap["unreachable"], 0, "{host}: {recap}");
        assert!(work.path().join(format!("{host}.txt")).exists());
    }
    let down = run.recap("down.example.com");
    assert_eq!(down["unreachable"], 1, "{down}");
    let events = unreachable_events(&run);
    assert_eq!(events.len(), 1);
    assert!(
        events[0]["error"]
            .as_str()
            .unwrap()
            .contains(&format!("root@127.0.0.1:{down_port}")),
        "{}",
        events[0]
    );
}

#[test]
fn cancelled_command_stops_on_host() {
    let server = Sshd::start();
    let project = SshProject::new(&[(HOST, server.inventory_vars())]);
    project.trust(&[&server]);
    let task = project.task("slow.rhai", SLOW_TASK);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().display().to_string();

    let child = project
        .command(&[], &args(&[&task.display().to_string(), &dir, "slow"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || !server
            .sessions_running("sleep 30.0413")
            .is_empty()),
        "the slow step never started: {}",
        server.log()
    );
    // SAFETY: kill has no memory effects; the PID is the child this test spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let (run, elapsed) = finish(child, Duration::from_secs(20));
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    run.assert_status(1);
    assert!(
        run.all_output().contains("interrupted"),
        "{}",
        run.all_output()
    );
    assert!(
        wait_until(Duration::from_secs(5), || server
            .sessions_running("sleep 30.0413")
            .is_empty()),
        "the cancelled sleep still runs on the host"
    );
    assert!(!work.path().join("after.txt").exists());
}

/// Two hosts in their own network namespaces, reached from masrun running in a third. The
/// ssh_config in HOME sets one-second keepalives, so cutting one host's link is noticed within
/// seconds while the other host finishes.
#[test]
fn namespaced_hosts_and_silent_link_loss() {
    let tag = std::process::id() % 10000;
    let client = Netns::create(&format!("masrun-c{tag}"));
    let host_a = Netns::create(&format!("masrun-a{tag}"));
    let host_b = Netns::create(&format!("masrun-b{tag}"));
    let (_, address_a) = client.link(&host_a, "10.231.1", &format!("mra{tag}"));
    let (_, address_b) = client.link(&host_b, "10.231.2", &format!("mrb{tag}"));
    let server_a = Sshd::start_in(&host_a, &address_a);
    let server_b = Sshd::start_in(&host_b, &address_b);

    let vars = |server: &Sshd| {
        format!(
            "ansible_host={} ansible_user=root ansible_ssh_private_key_file={}",
            server.address,
            server.client_key.display()
        )
    };
    let project = SshProject::new(&[
        ("a.example.com", vars(&server_a)),
        ("b.example.com", vars(&server_b)),
    ]);
    project.trust(&[&server_a, &server_b]);
    std::fs::write(
        project.home().join(".ssh/config"),
        "Host *\n  ServerAliveInterval 1\n  ServerAliveCountMax 2\n  ConnectTimeout 5\n",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let task = project.task(
        "ns.rhai",
        &format!(
            r#"let dir = "{}";
file::content(#{{ path: `${{dir}}/${{host_name()}}-1.txt`, content: "one\n" }});
if host_name() == "b.example.com" {{
    command::run(#{{ name: "wait on b", argv: ["sleep", "30.0413"] }});
}}
file::content(#{{ path: `${{dir}}/${{host_name()}}-2.txt`, content: "two\n" }});
"#,
            work.path().display()
        ),
    );

    let child = project
        .command(&client.prefix(), &[task.display().to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || !server_b
            .sessions_running("sleep 30.0413")
            .is_empty()),
        "host b never started its slow step"
    );
    // Packets to b now vanish without a reset: only the keepalives can notice.
    host_b.exec_checked(&["ip", "link", "set", &format!("mrb{tag}b"), "down"]);

    let (run, elapsed) = finish(child, Duration::from_secs(60));
    run.assert_status(3);
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    let a = run.recap("a.example.com");
    assert_eq!(a["changed"], 2, "{a}");
    assert_eq!(a["unreachable"], 0, "{a}");
    assert!(work.path().join("a.example.com-2.txt").exists());
    let b = run.recap("b.example.com");
    assert_eq!(b["unreachable"], 1, "{b}");
    let events = unreachable_events(&run);
    assert_eq!(events.len(), 1, "{}", run.all_output());
    assert_eq!(events[0]["host"], "b.example.com");
    let error = events[0]["error"].as_str().unwrap();
    assert!(error.contains("wait on b"), "step named: {error}");
    assert!(!work.path().join("b.example.com-2.txt").exists());
}

#[test]
fn proxy_jump_from_ssh_config() {
    let jump = Sshd::start();
    let target = Sshd::start();
    let vars = format!(
        "ansible_host=target-alias ansible_user=root ansible_ssh_private_key_file={}",
        target.client_key.display()
    );
    let project = SshProject::new(&[(HOST, vars)]);
    project.trust(&[&jump, &target]);
    std::fs::write(
        project.home().join(".ssh/config"),
        format!(
            "Host target-alias\n  HostName 127.0.0.1\n  Port {}\n  ProxyJump root@127.0.0.1:{}\n\
             Host 127.0.0.1\n  IdentityFile {}\n",
            target.port,
            jump.port,
            jump.client_key.display()
        ),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let task = project.task(
        "jump.rhai",
        &format!(
            "file::content(#{{ path: \"{}/jumped.txt\", content: \"through the jump host\\n\" }});\n",
            work.path().display()
        ),
    );

    let run = project.run(&["-vv".into(), task.display().to_string()]);
    run.assert_status(0);
    assert!(work.path().join("jumped.txt").exists());
    assert!(
        jump.log().contains("Accepted publickey for root"),
        "the jump host saw the login: {}",
        jump.log()
    );
    let stderr = run.stderr();
    assert!(
        stderr.contains(&format!("connecting to root@127.0.0.1:{}", jump.port)),
        "-vv names the jump host:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("offering key file {}", jump.client_key.display())),
        "-vv names the key offered:\n{stderr}"
    );
}

#[test]
fn encrypted_key_without_terminal_fails_clearly() {
    let server = Sshd::start();
    let locked = server.dir.path().join("locked_ed25519");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "correct horse", "-f"])
        .arg(&locked)
        .status()
        .unwrap();
    assert!(status.success());
    let vars = format!(
        "ansible_host=127.0.0.1 ansible_port={} ansible_user=root ansible_ssh_private_key_file={}",
        server.port,
        locked.display()
    );
    let project = SshProject::new(&[(HOST, vars)]);
    project.trust(&[&server]);
    let task = project.task("noop.rhai", "file::stat(\"/\");\n");

    let run = project.run(&[task.display().to_string()]);
    run.assert_status(3);
    let output = run.all_output();
    assert!(
        output.contains("is encrypted and there is no terminal to ask for its passphrase"),
        "{output}"
    );
    assert!(output.contains("ssh-add"), "{output}");
}
