//! The file, template and command primitives, the inventory and the error frames, driven
//! through small task files in a temporary project with the local connection.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use support::{Run, masrun};

/// A throwaway project: inventory/hosts, host_vars/, scripts/ and files/.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(hosts: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("inventory/host_vars")).unwrap();
        std::fs::write(dir.path().join("inventory/hosts"), hosts).unwrap();
        Project { dir }
    }

    fn local() -> Project {
        Project::new("[servers]\nlocalhost ansible_connection=local\n")
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs a task file with `--output json` and the given extra arguments.
    fn run(&self, script: &str, extra: &[&str]) -> Run {
        let task = self.write("scripts/task.rhai", script);
        let inventory = self.path().join("inventory/hosts");
        let mut args: Vec<String> = vec![
            "-i".into(),
            inventory.display().to_string(),
            "--output".into(),
            "json".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(task.display().to_string());
        masrun(&args)
    }
}

/// The task file's `print` output (events without a step).
fn messages(run: &Run) -> Vec<String> {
    run.events()
        .into_iter()
        .filter(|e| e.get("step").is_none())
        .filter_map(|e| {
            e.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .filter(|m| !m.is_empty())
        .collect()
}

fn statuses(run: &Run) -> Vec<String> {
    run.events()
        .into_iter()
        .filter_map(|e| e.get("status").and_then(|s| s.as_str()).map(str::to_string))
        .collect()
}

#[test]
fn directory_create_then_unchanged_then_mode_fix() {
    let project = Project::local();
    let target = project.path().join("out/a/b");
    let script = format!(
        r#"file::directory(#{{ path: "{}", mode: "0750" }});"#,
        target.display()
    );

    let first = project.run(&script, &[]);
    first.assert_status(0);
    assert_eq!(statuses(&first), ["changed"]);
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777,
        0o750
    );

    let second = project.run(&script, &[]);
    assert_eq!(statuses(&second), ["ok"]);

    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o777)).unwrap();
    let third = project.run(&script, &[]);
    assert_eq!(statuses(&third), ["changed"]);
    assert!(
        third.stdout().contains("mode 0777 -> 0750"),
        "{}",
        third.stdout()
    );
}

#[test]
fn content_writes_atomically_and_reports_diff() {
    let project = Project::local();
    let dir = project.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("f.txt");
    let script = |text: &str| {
        format!(
            r#"file::content(#{{ path: "{}", content: "{text}\n", mode: "0640" }});"#,
            file.display()
        )
    };

    project.run(&script("one"), &[]).assert_status(0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "one\n");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777,
        0o640
    );

    let changed = project.run(&script("two"), &["--diff"]);
    changed.assert_status(0);
    assert!(
        changed.stdout().contains(r#"-one\n+two"#),
        "diff in output: {}",
        changed.stdout()
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "two\n");

    let unchanged = project.run(&script("two"), &[]);
    assert_eq!(statuses(&unchanged), ["ok"]);

    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "f.txt")
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

#[test]
fn check_mode_reports_without_writing() {
    let project = Project::local();
    let file = project.path().join("f.txt");
    let script = format!(
        r#"file::content(#{{ path: "{}", content: "x" }});
           command::run(#{{ argv: ["touch", "{}.touched"] }});"#,
        file.display(),
        file.display()
    );
    let run = project.run(&script, &["--check"]);
    run.assert_status(0);
    assert_eq!(statuses(&run), ["changed", "changed"]);
    assert!(!file.exists());
    assert!(!project.path().join("f.txt.touched").exists());
}

#[test]
fn copy_absent_stat_and_read() {
    let project = Project::local();
    project.write("files/greeting.txt", "hello\n");
    let target = project.path().join("copied.txt");
    let script = format!(
        r#"file::copy(#{{ src: "greeting.txt", path: "{t}", mode: "0600" }});
           let s = file::stat("{t}");
           print(`${{s.kind}} ${{s.mode}} ${{s.size}}`);
           print(file::read("{t}"));
           file::absent(#{{ path: "{t}" }});
           print(`${{file::stat("{t}").exists}} ${{file::read("{t}") == ()}}`);"#,
        t = target.display()
    );
    let run = project.run(&script, &[]);
    run.assert_status(0);
    assert_eq!(messages(&run), ["file 0600 6", "hello\n", "false true"]);
    assert!(!target.exists());
}

#[test]
fn command_creates_stdin_and_failure() {
    let project = Project::local();
    let marker = project.path().join("marker");
    let script = format!(
        r#"let r = command::run(#{{ argv: ["cat"], stdin: "from stdin", read_only: true }});
           print(r.stdout);
           let g = command::run(#{{ argv: ["touch", "{m}"], creates: "{m}" }});
           print(`${{g.changed}}`);
           let i = command::run(#{{ argv: ["sh", "-c", "echo oops >&2; exit 3"], ignore_errors: true }});
           print(`${{i.rc}} ${{i.stderr.trim_end()}}`);
           command::run(#{{ argv: ["sh", "-c", "echo broken >&2; exit 4"] }});
           print("not reached");"#,
        m = marker.display()
    )
    .replace("i.stderr.trim_end()", "i.stderr");
    std::fs::write(&marker, "").unwrap();
    let run = project.run(&script, &[]);
    run.assert_status(1);
    let output = run.stdout();
    assert_eq!(
        messages(&run)[..3],
        ["from stdin".to_string(), "false".into(), "3 oops\n".into()]
    );
    assert!(
        output.contains("sh exited with status 4: broken"),
        "{output}"
    );
    assert!(!output.contains("not reached"));
}

#[test]
fn unknown_option_is_bad_input() {
    let project = Project::local();
    let run = project.run(r#"file::directory(#{ pth: "/tmp/x" });"#, &[]);
    run.assert_status(2);
    assert!(
        run.stdout().contains("unknown field `pth`"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stdout().contains("file::directory: invalid options:"),
        "{}",
        run.stdout()
    );
    assert!(!run.stdout().contains("Syntax error"), "{}", run.stdout());
}

#[test]
fn syntax_error_shows_caret() {
    let project = Project::local();
    let run = project.run("let x = ;\n", &["--output", "human"]);
    run.assert_status(2);
    let stderr = run.stderr();
    assert!(stderr.contains("task.rhai:1:"), "{stderr}");
    assert!(stderr.contains("1 | let x = ;"), "{stderr}");
    assert!(stderr.contains('^'), "{stderr}");
}

#[test]
fn inventory_precedence_and_yaml_booleans() {
    let project = Project::new(
        "[servers]\nlocalhost ansible_connection=local inline=from-inline\n\n[servers:vars]\ngroup_ini=from-ini\ninline=from-group\n",
    );
    project.write(
        "inventory/group_vars/all.yml",
        "group_all: from-all\ngroup_ini: from-all\n",
    );
    project.write(
        "inventory/host_vars/localhost/vars.yml",
        "bare: yes\nquoted: 'yes'\nupper: OFF\noctal: 0750\nhost_only: from-host\ninline: from-host-vars\n",
    );
    let extra = project.write("extra.yml", "from_file: 'x'\nhost_only: from-extra-file\n");
    let script = r#"
        for name in ["group_all", "group_ini", "inline", "host_only", "from_file", "bare", "quoted", "upper", "octal", "cli"] {
            print(`${name}=${vars[name]} (${type_of(vars[name])})`);
        }"#;
    let run = project.run(
        script,
        &["-e", &format!("@{}", extra.display()), "-e", "cli=1"],
    );
    run.assert_status(0);
    assert_eq!(
        messages(&run),
        [
            "group_all=from-all (string)",
            "group_ini=from-all (string)",
            "inline=from-host-vars (string)",
            "host_only=from-extra-file (string)",
            "from_file=x (string)",
            "bare=true (bool)",
            "quoted=yes (string)",
            "upper=false (bool)",
            "octal=488 (i64)",
            "cli=1 (string)",
        ]
    );
}

#[test]
fn printed_secrets_are_masked() {
    let project = Project::local();
    project.write(
        "inventory/host_vars/localhost/vars.yml",
        "my_api_password: 'hunter2-secret'\nproviders:\n  - client_secret: 'nested-secret-value'\n",
    );
    let run = project.run(
        r#"print(vars.my_api_password); print(vars.providers[0].client_secret); print("done");"#,
        &["--output", "human"],
    );
    run.assert_status(0);
    let output = run.all_output();
    assert!(!output.contains("hunter2-secret"), "{output}");
    assert!(!output.contains("nested-secret-value"), "{output}");
    assert!(output.contains("********"), "{output}");
    assert!(output.contains("done"), "{output}");
}

#[test]
fn limit_selects_hosts_and_rejects_unknown() {
    let project = Project::new(
        "[a]\nlocalhost ansible_connection=local\n[b]\nother ansible_connection=local\n",
    );
    let run = project.run(r#"print(host);"#, &["-l", "b"]);
    run.assert_status(0);
    assert_eq!(messages(&run), ["other"]);

    let run = project.run(r#"print(host);"#, &["-l", "nosuchhost"]);
    run.assert_status(2);
    assert!(
        run.all_output().contains("nosuchhost"),
        "{}",
        run.all_output()
    );
}

/// An inventory warning reaches the JSON stream, with the file and both lines.
#[test]
fn duplicate_key_warning_in_json() {
    let project = Project::local();
    project.write(
        "inventory/host_vars/localhost/vars.yml",
        "domain: one.example\nother: x\ndomain: two.example\n",
    );
    let run = project.run(r#"print(vars.domain);"#, &[]);
    run.assert_status(0);
    let warning = run
        .events()
        .into_iter()
        .find_map(|event| {
            event
                .get("warning")
                .and_then(|w| w.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no warning event:\n{}", run.stdout()));
    assert!(warning.contains("vars.yml:3:1"), "{warning}");
    assert!(
        warning.contains("duplicate key \"domain\" (first set on line 1)"),
        "{warning}"
    );
    assert_eq!(messages(&run), ["two.example"]);
}

/// A typo in a host's connection settings is bad input: no host is contacted, so the other
/// hosts do not run either, and the message names the inventory line.
#[test]
fn invalid_connection_settings_are_bad_input() {
    let cases = [
        (
            "ansible_connection=winrm",
            "is not supported; use ssh or local",
        ),
        (
            "ansible_host=127.0.0.1 ansible_port=abc",
            "ansible_port: must be a TCP port",
        ),
        (
            "ansible_host=127.0.0.1 ansible_port=0",
            "ansible_port: must be a TCP port",
        ),
        (
            "ansible_host=127.0.0.1 ansible_ssh_private_key_file=/nonexistent/id_ed25519",
            "/nonexistent/id_ed25519 does not exist",
        ),
    ];
    for (settings, needle) in cases {
        let project = Project::new(&format!(
            "[a]\nremote {settings}\nlocalhost ansible_connection=local\n"
        ));
        let run = project.run(r#"print(host);"#, &[]);
        run.assert_status(2);
        let output = run.all_output();
        assert!(output.contains(needle), "{settings}: {output}");
        assert!(output.contains("hosts:2"), "{settings}: the line: {output}");
        assert!(
            messages(&run).is_empty(),
            "{settings}: a host ran: {output}"
        );
    }
}

/// A one-route HTTP server on loopback that answers `status` with `body`, starting after
/// `delay`.
fn serve_once_ready(status: u16, body: &'static str, delay: std::time::Duration) -> u16 {
    use std::io::{Read, Write};
    let port = support::synapse::free_port();
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 2048];
            let _ = stream.read(&mut buffer);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn http_request_waits_and_reads_json() {
    let project = Project::local();
    let port = serve_once_ready(
        200,
        r#"{"versions": ["v1.11"]}"#,
        std::time::Duration::from_millis(1500),
    );
    let script = format!(
        r#"let r = http::request(#{{ url: "http://127.0.0.1:{port}/_matrix/client/versions", wait: 20 }});
           print(`${{r.status}} ${{r.json.versions[0]}} ${{r.changed}}`);"#
    );
    let run = project.run(&script, &["--check"]);
    run.assert_status(0);
    assert_eq!(messages(&run), ["200 v1.11 false"]);
}

#[test]
fn http_unexpected_status_fails_step() {
    let project = Project::local();
    let port = serve_once_ready(503, "down for maintenance", std::time::Duration::ZERO);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let script = format!(r#"http::request(#{{ url: "http://127.0.0.1:{port}/health" }});"#);
    let run = project.run(&script, &[]);
    run.assert_status(1);
    let output = run.stdout();
    assert!(output.contains("returned 503 (expected [200])"), "{output}");
    assert!(output.contains("down for maintenance"), "{output}");

    let script = format!(
        r#"let r = http::request(#{{ url: "http://127.0.0.1:{port}/health", expect: [200, 503] }});
           print(`${{r.status}}`);"#
    );
    let run = project.run(&script, &[]);
    run.assert_status(0);
    assert_eq!(messages(&run), ["503"]);
}

#[test]
fn http_write_methods_skip_in_check_mode() {
    let project = Project::local();
    let run = project.run(
        r#"let r = http::request(#{ url: "http://127.0.0.1:9/x", method: "POST", body: "{}" }); print(`${r.changed}`);"#,
        &["--check"],
    );
    run.assert_status(0);
    assert_eq!(messages(&run), ["true"]);
    assert!(run.stdout().contains("would send POST"), "{}", run.stdout());
}
