//! `masrun repl` driven through a pseudo-terminal as an operator types at it, and `masrun eval`
//! called as shell scripts call it. The tests cover bindings that persist, multi-line entries,
//! completion, errors that keep the session, Ctrl-C stopping a command on the host, check mode
//! and masked secrets.
//!
//! Every test names its host through a [`Target`]. Today that is the example inventory's host
//! over the local connection; a target backed by an sshd on loopback fits the same tests,
//! since its commands run in this machine's process table too.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rexpect::session::{Options, PtySession, spawn_with_options};

use support::{HOST, masrun, repo_root};

/// How long one expectation waits for output before the test fails with what it saw.
const EXPECT_TIMEOUT_MS: u64 = 20_000;

/// The inventory and host the REPL connects to.
struct Target {
    inventory: PathBuf,
    host: String,
    /// Keeps a generated inventory's directory alive.
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    /// Returns the example inventory's host, managed over the local connection.
    fn local() -> Target {
        Target {
            inventory: repo_root().join("inventory/hosts"),
            host: HOST.to_string(),
            _dir: None,
        }
    }

    /// Writes an inventory of its own with `hosts_file` as its hosts file. The project's
    /// stdlib is found through the installed copy (the source tree).
    fn with_hosts(hosts_file: &str, host: &str) -> Target {
        let dir = tempfile::tempdir().expect("temporary directory");
        let inventory = dir.path().join("inventory/hosts");
        std::fs::create_dir_all(inventory.parent().unwrap()).unwrap();
        std::fs::write(&inventory, hosts_file).unwrap();
        Target {
            inventory,
            host: host.to_string(),
            _dir: Some(dir),
        }
    }

    fn prompt(&self) -> String {
        format!("{}> ", self.host)
    }

    /// Returns whether a process whose command line contains `pattern` runs on the host.
    fn has_process(&self, pattern: &str) -> bool {
        let status = Command::new("pgrep")
            .args(["-f", pattern])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("pgrep runs");
        status.success()
    }

    /// Waits until `has_process(pattern)` is `running`, for at most `limit`.
    fn wait_for_process(&self, pattern: &str, running: bool, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.has_process(pattern) == running {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.has_process(pattern) == running
    }
}

/// A running `masrun repl` in a pseudo-terminal, with its own history directory.
struct Repl {
    session: PtySession,
    prompt: String,
    state_dir: PathBuf,
    _state: Option<tempfile::TempDir>,
}

impl Repl {
    fn start(target: &Target, options: &[&str]) -> Repl {
        let state = tempfile::tempdir().expect("temporary directory");
        let state_dir = state.path().to_path_buf();
        let mut repl = Repl::start_with_state(target, options, &state_dir);
        repl._state = Some(state);
        repl
    }

    fn start_with_state(target: &Target, options: &[&str], state_dir: &Path) -> Repl {
        let mut command = Command::new(env!("CARGO_BIN_EXE_masrun"));
        command
            .arg("repl")
            .arg("-i")
            .arg(&target.inventory)
            .args(options)
            .current_dir(repo_root())
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .env("TERM", "xterm")
            .env("XDG_STATE_HOME", state_dir);
        let session = spawn_with_options(
            command,
            Options::new()
                .timeout_ms(Some(EXPECT_TIMEOUT_MS))
                .strip_ansi_escape_codes(true),
        )
        .expect("masrun repl starts in a pseudo-terminal");
        let mut repl = Repl {
            session,
            prompt: target.prompt(),
            state_dir: state_dir.to_path_buf(),
            _state: None,
        };
        repl.expect(&repl.prompt.clone());
        repl
    }

    /// Types `keys` without pressing Enter.
    fn type_keys(&mut self, keys: &str) {
        self.session.send(keys).expect("write to the terminal");
        self.session.flush().expect("flush the terminal");
    }

    /// Types a line and presses Enter.
    fn enter(&mut self, line: &str) {
        self.type_keys(&format!("{line}\r"));
    }

    fn control(&mut self, key: char) {
        self.session
            .send_control(key)
            .expect("write to the terminal");
    }

    /// Waits for `text` and returns the output before it.
    #[track_caller]
    fn expect(&mut self, text: &str) -> String {
        match self.session.exp_string(text) {
            Ok(before) => before,
            Err(error) => panic!("expected {text:?} from masrun repl: {error}"),
        }
    }

    /// Waits for the regular expression and returns the output before it and the match.
    #[track_caller]
    fn expect_prompt(&mut self) -> String {
        let prompt = self.prompt.clone();
        self.expect(&prompt)
    }

    /// Runs one entry and returns what it printed before the next prompt.
    #[track_caller]
    fn run(&mut self, line: &str) -> String {
        self.enter(line);
        // The echo of the entry ends with the Enter's line break; the output follows it.
        self.expect("\n");
        self.expect_prompt()
    }

    /// Leaves with Ctrl-D and returns the exit status.
    fn quit(mut self) -> i32 {
        self.control('d');
        self.session.exp_eof().expect("masrun repl exits on Ctrl-D");
        // rexpect does not re-export nix's WaitStatus; its Debug form is `Exited(Pid(N), CODE)`.
        let status = format!("{:?}", self.session.process().wait());
        status
            .strip_prefix("Ok(Exited(")
            .and_then(|rest| rest.rsplit_once(", "))
            .and_then(|(_, code)| code.trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("masrun repl did not exit normally: {status}"))
    }
}

/// Returns a number no other test run uses, to find this test's processes on the host.
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}{:09}", std::process::id(), nanos)
}

#[test]
fn bindings_functions_imports_persist() {
    let target = Target::local();
    let mut repl = Repl::start(&target, &[]);

    assert_eq!(repl.run("let answer = 40;").trim(), "");
    assert_eq!(repl.run("answer + 2").trim(), "42");

    repl.run("fn double(n) { n * 2 }");
    repl.run("fn quadruple(n) { double(double(n)) }");
    assert_eq!(repl.run("quadruple(answer) + 1").trim(), "161");

    repl.run(r#"import "mas" as mas;"#);
    assert_eq!(
        repl.run("mas::prefix()").trim(),
        "matrix_authentication_service_"
    );

    assert_eq!(repl.quit(), 0);
}

#[test]
fn multi_line_entry_continues() {
    let target = Target::local();
    let mut repl = Repl::start(&target, &[]);

    // Enter inside an open map or list continues the entry instead of running it.
    repl.enter("let service = #{");
    repl.enter(r#"  name: "multi","#);
    repl.enter("  ports: [8080,");
    repl.enter("          8081]");
    repl.enter("};");
    // Every key redraws the entry with its prompt, so a prompt does not mark the end of a
    // multi-line entry: the output of the next entry does.
    repl.enter(r#""typed-" + "through""#);
    let output = repl.expect("typed-through");
    assert!(
        !output.contains("error"),
        "no error while typing:\n{output}"
    );
    repl.expect_prompt();

    let output = repl.run("service");
    assert!(
        output.contains("name: multi\r\nports:\r\n- 8080\r\n- 8081"),
        "the map prints as YAML:\n{output}"
    );

    // A backtick string spans lines too.
    repl.enter("let text = `first");
    repl.enter("second`;");
    repl.enter("text.len() * 1000");
    repl.expect("12000");
    repl.expect_prompt();
    repl.quit();
}

#[test]
fn tab_completes_names() {
    let target = Target::local();
    let mut repl = Repl::start(&target, &["-e", "repl_completion_probe=completed-4451"]);

    // A unique prefix of a host variable completes in full.
    repl.type_keys("vars.repl_completion_pr\t");
    repl.expect("vars.repl_completion_probe");
    repl.enter("");
    repl.expect("completed-4451");
    repl.expect_prompt();

    // A module lists its functions on a second Tab, then the line is shown again.
    repl.type_keys("file::\t\t");
    let redrawn = format!("{}file::", repl.prompt);
    let listing = repl.expect(&redrawn);
    for function in ["absent", "attributes", "content", "read", "stat"] {
        assert!(
            listing.contains(function),
            "{function} listed in:\n{listing}"
        );
    }
    repl.control('u');
    repl.enter("");
    repl.expect_prompt();

    // Meta-commands complete, and so does a function name after :help.
    repl.type_keys(":he\t");
    repl.expect(":help ");
    repl.type_keys("file::st\t");
    repl.expect("file::stat");
    repl.enter("");
    let help = repl.expect_prompt();
    assert!(help.contains("file::stat(path: String) -> Map"), "{help}");
    assert!(help.contains("exists, kind, mode"), "{help}");
    repl.quit();
}

#[test]
fn errors_keep_session() {
    let target = Target::local();
    let mut repl = Repl::start(&target, &[]);

    let output = repl.run("let broken = ;");
    assert!(output.contains("syntax error"), "{output}");
    assert!(output.contains("<input-1>:1:14"), "the position: {output}");
    assert!(
        output.contains("1 | let broken = ;"),
        "the source line: {output}"
    );

    let output = repl.run("vars.no_such_variable_here");
    assert!(output.contains("no_such_variable_here"), "{output}");
    assert!(output.contains("undefined"), "{output}");

    let output = repl.run(r#"let marker = "9321"; fail("custom failure " + marker)"#);
    assert!(output.contains("error: custom failure 9321"), "{output}");

    // A failing function of an earlier entry shows that entry's line.
    repl.run(r#"fn broken_sum() { 1 + "a" * 2 }"#);
    let output = repl.run("broken_sum()");
    assert!(
        output.contains(r#"fn broken_sum() { 1 + "a" * 2 }"#),
        "{output}"
    );
    assert!(output.contains("in call to broken_sum"), "{output}");

    assert_eq!(repl.run("6 * 7").trim(), "42");
    assert_eq!(repl.quit(), 0);
}

#[test]
fn ctrl_c_stops_remote_command() {
    let target = Target::local();
    let mut repl = Repl::start(&target, &[]);

    // The terminal's SIGINT reaches the command too: it stops either way.
    let duration = format!("30.{}", unique_suffix());
    let pattern = format!("sleep {duration}");
    repl.enter(&format!(
        r#"command::run(#{{argv: ["sleep", "{duration}"]}})"#
    ));
    assert!(
        target.wait_for_process(&pattern, true, Duration::from_secs(10)),
        "the command started on the host"
    );
    let interrupted_at = Instant::now();
    repl.control('c');
    repl.expect("error: interrupted");
    assert!(
        interrupted_at.elapsed() < Duration::from_secs(10),
        "the entry ended well before the command's 30 s"
    );
    assert!(
        target.wait_for_process(&pattern, false, Duration::from_secs(2)),
        "the command is gone from the host"
    );
    repl.expect_prompt();
    assert_eq!(repl.run("6 * 7").trim(), "42");

    // In a session of its own the command gets no SIGINT from the terminal, as a command
    // run over SSH does not: only dropping the transport's future stops it.
    let duration = format!("30.{}", unique_suffix());
    let pattern = format!("sleep {duration}");
    repl.enter(&format!(
        r#"command::run(#{{argv: ["setsid", "sleep", "{duration}"]}})"#
    ));
    assert!(
        target.wait_for_process(&pattern, true, Duration::from_secs(10)),
        "the command started on the host"
    );
    repl.control('c');
    repl.expect("error: interrupted");
    assert!(
        target.wait_for_process(&pattern, false, Duration::from_secs(2)),
        "the command is gone from the host"
    );
    repl.expect_prompt();

    // A script that never calls a primitive stops too.
    repl.enter("let spins = 0; loop { spins += 1; }");
    std::thread::sleep(Duration::from_millis(300));
    repl.control('c');
    repl.expect("error: interrupted");
    repl.expect_prompt();
    assert_eq!(repl.run("6 * 7").trim(), "42");
    assert_eq!(repl.quit(), 0);
}

#[test]
fn check_mode_reports_without_writing() {
    let target = Target::local();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.txt");
    let write = format!(
        r#"file::content(#{{path: "{}", content: "hello\n"}})"#,
        file.display()
    );
    let mut repl = Repl::start(&target, &[]);

    repl.enter(":check on");
    repl.prompt = format!("{} (check)> ", target.host);
    let output = repl.expect_prompt();
    assert!(output.contains("check mode on"), "{output}");
    assert_eq!(repl.run("check_mode").trim(), "true");

    let output = repl.run(&write);
    assert!(output.contains("changed: true"), "{output}");
    assert!(output.contains("+hello"), "the diff of the write: {output}");
    assert!(!file.exists(), "check mode wrote {}", file.display());

    repl.enter(":check off");
    repl.prompt = target.prompt();
    repl.expect_prompt();
    let output = repl.run(&write);
    assert!(output.contains("changed: true"), "{output}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello\n");

    let output = repl.run(&write);
    assert!(
        output.contains("changed: false"),
        "a second write changes nothing: {output}"
    );
    repl.quit();
}

#[test]
fn prefetch_lasts_one_entry() {
    let target = Target::local();
    let mut repl = Repl::start(&target, &[]);
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("note.txt");
    std::fs::write(&path, "before").unwrap();

    repl.run(&format!(r#"file::prefetch(["{}"])"#, path.display()));
    // The operator changes the file between two entries; the next entry must see it.
    std::fs::write(&path, "after").unwrap();
    let output = repl.run(&format!(r#"file::read("{}")"#, path.display()));
    assert!(output.contains("after"), "file::read printed {output:?}");
    assert!(!output.contains("before"), "file::read printed {output:?}");

    assert_eq!(repl.quit(), 0);
}

#[test]
fn secrets_masked_in_output() {
    let target = Target::local();
    let secret = "example-postgres-password-replace-me";
    let mut repl = Repl::start(&target, &[]);

    let output = repl.run("vars.postgres_connection_password");
    assert_eq!(output.trim(), "********");

    let output = repl.run(":vars postgres_connection");
    assert!(
        output.contains("postgres_connection_password = ********"),
        "{output}"
    );

    // The secret goes to the command on stdin and comes back on its stdout.
    let output =
        repl.run(r#"command::run(#{argv: ["cat"], stdin: vars.postgres_connection_password})"#);
    assert!(output.contains("********"), "{output}");
    assert!(
        !output.contains(secret),
        "the secret was printed:\n{output}"
    );
    repl.quit();
}

#[test]
fn history_survives_sessions() {
    let target = Target::local();
    let state = tempfile::tempdir().unwrap();

    let mut repl = Repl::start_with_state(&target, &[], state.path());
    assert_eq!(repl.run("40 + 2").trim(), "42");
    // A leading space keeps the entry out of the history.
    repl.run(" 1000 + 337");
    assert_eq!(repl.quit(), 0);

    let history = repl_history(state.path());
    let mode = std::fs::metadata(&history).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode of {}", history.display());
    let text = std::fs::read_to_string(&history).unwrap();
    assert!(text.contains("40 + 2"), "{text}");
    assert!(
        !text.contains("1337") && !text.contains("1000 + 337"),
        "{text}"
    );

    let mut repl = Repl::start_with_state(&target, &[], state.path());
    // Up recalls the previous session's entry.
    repl.type_keys("\x1b[A");
    repl.expect("40 + 2");
    repl.enter("");
    repl.expect("42");
    repl.expect_prompt();
    assert_eq!(repl.state_dir, state.path());
    repl.quit();
}

fn repl_history(state_dir: &Path) -> PathBuf {
    state_dir.join("masrun/history")
}

#[test]
fn several_hosts_label_results() {
    let target = Target::with_hosts(
        "[matrix_servers]\n\
         alpha ansible_connection=local matrix_domain=alpha.test\n\
         beta ansible_connection=local matrix_domain=beta.test\n",
        "2 hosts",
    );
    let mut repl = Repl::start(&target, &[]);

    let output = repl.run(r#"host + "-probe""#);
    assert!(output.contains("alpha | alpha-probe"), "{output}");
    assert!(output.contains("beta | beta-probe"), "{output}");

    // Each host keeps its own bindings.
    repl.run("let domain = vars.matrix_domain;");
    let output = repl.run(r#"domain + "!""#);
    assert!(output.contains("alpha | alpha.test!"), "{output}");
    assert!(output.contains("beta | beta.test!"), "{output}");

    let output = repl.run(":hosts");
    assert!(output.contains("* alpha  connected"), "{output}");

    repl.enter(":host beta");
    repl.expect("entries now run on beta");
    repl.prompt = "beta> ".into();
    repl.expect_prompt();
    let output = repl.run(r#"host + "-probe""#);
    assert_eq!(
        output.trim(),
        "beta-probe",
        "one host prints without a label"
    );
    assert_eq!(repl.quit(), 0);
}

#[test]
fn unreachable_host_keeps_session() {
    // Port 1 on loopback refuses connections, so the host is unreachable whatever transport
    // serves ansible_connection=ssh.
    let target = Target::with_hosts(
        "[matrix_servers]\n\
         up ansible_connection=local\n\
         down ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh\n",
        "2 hosts",
    );
    let mut repl = Repl::start(&target, &[]);

    let output = repl.run(r#"host + "-probe""#);
    assert!(output.contains("up | up-probe"), "{output}");
    assert!(output.contains("unreachable down | "), "{output}");
    assert!(
        output.contains("connects again at the next entry"),
        "{output}"
    );

    let output = repl.run(":hosts");
    assert!(output.contains("* up    connected"), "{output}");
    assert!(output.contains("* down  unreachable: "), "{output}");

    repl.enter(":host up");
    repl.prompt = "up> ".into();
    repl.expect_prompt();
    assert_eq!(repl.run("6 * 7").trim(), "42");
    assert_eq!(repl.quit(), 0);
}

#[test]
fn eval_prints_json() {
    let run = masrun(&[
        "eval",
        "--output",
        "json",
        r#"#{domain: vars.matrix_domain, ports: [1, 2]}"#,
    ]);
    run.assert_status(0);
    let events = run.events();
    assert_eq!(events.len(), 1, "one result line:\n{}", run.stdout());
    assert_eq!(events[0]["host"], HOST);
    assert_eq!(events[0]["result"]["domain"], "example.com");
    assert_eq!(events[0]["result"]["ports"], serde_json::json!([1, 2]));
}

#[test]
fn eval_prints_text() {
    let run = masrun(&[
        "eval",
        r#"command::run(#{argv: ["echo", "from the host"]})"#,
    ]);
    run.assert_status(0);
    assert_eq!(
        run.stdout(),
        "from the host\n",
        "stdout has the command's output only"
    );

    let run = masrun(&[
        "eval",
        "-l",
        HOST,
        "vars.matrix_authentication_service_hostname",
    ]);
    run.assert_status(0);
    assert_eq!(run.stdout(), "matrix.example.com\n");

    let run = masrun(&["eval", "vars.postgres_connection_password"]);
    assert_eq!(run.stdout(), "********\n");
}

#[test]
fn eval_exit_statuses() {
    let syntax = masrun(&["eval", "1 +"]);
    syntax.assert_status(2);
    assert!(
        syntax.stderr().contains("syntax error"),
        "{}",
        syntax.stderr()
    );

    masrun(&["eval", "vars.no_such_variable_here"]).assert_status(2);
    masrun(&["eval", r#"fail("stop here")"#]).assert_status(1);
    masrun(&["eval", r#"command::run(#{argv: ["false"]})"#]).assert_status(1);

    // Port 1 on loopback refuses connections, so the host is unreachable whatever transport
    // serves ansible_connection=ssh.
    let target = Target::with_hosts(
        "[matrix_servers]\n\
         up ansible_connection=local\n\
         down ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh\n",
        "2 hosts",
    );
    let inventory = target.inventory.display().to_string();
    let run = masrun(&["eval", "-i", &inventory, "--output", "json", "host"]);
    run.assert_status(3);
    let events = run.events();
    let up = events
        .iter()
        .find(|e| e["host"] == "up")
        .expect("a result for up");
    assert_eq!(up["result"], "up");
    let down = events
        .iter()
        .find(|e| e["host"] == "down")
        .expect("a line for down");
    assert_eq!(down["status"], "unreachable");
}

#[test]
fn repl_help_describes_command() {
    let run = masrun(&["repl", "--help"]);
    run.assert_status(0);
    let help = run.stdout();
    assert!(help.contains("Usage: masrun repl"), "{help}");
    assert!(help.contains(":help"), "{help}");
    assert!(help.contains("--limit"), "{help}");
}

/// The REPL on a host reached through a real sshd on loopback: entries run on the host over
/// the session's one connection, bindings persist, and Ctrl-C stops a remote command.
#[test]
fn repl_over_ssh_runs_on_host() {
    let sshd = support::sshd::Sshd::start();
    let known_hosts_dir = tempfile::tempdir().unwrap();
    let known_hosts = known_hosts_dir.path().join("known_hosts");
    std::fs::write(&known_hosts, sshd.known_hosts_line()).unwrap();
    let target = Target::with_hosts(
        &format!("[servers]\nsshhost {}\n", sshd.inventory_vars()),
        "sshhost",
    );
    let known_hosts_arg = known_hosts.display().to_string();
    let mut repl = Repl::start(&target, &["--known-hosts", &known_hosts_arg]);

    // Short entries: a line wider than the terminal wraps, and the wrap looks like output.
    repl.run(r#"let r = command::run(#{argv: ["id", "-un"], read_only: true});"#);
    assert_eq!(repl.run("let who = r.stdout; who").trim(), "root");
    assert_eq!(repl.run("who.len()").trim(), "5", "the binding persists");

    let duration = format!("30.{}", unique_suffix());
    let pattern = format!("sleep {duration}");
    repl.enter(&format!(
        r#"command::run(#{{argv: ["sleep", "{duration}"]}})"#
    ));
    assert!(
        target.wait_for_process(&pattern, true, Duration::from_secs(10)),
        "the command started on the host"
    );
    repl.control('c');
    repl.expect("error: interrupted");
    assert!(
        target.wait_for_process(&pattern, false, Duration::from_secs(5)),
        "the command is gone from the host"
    );
    repl.expect_prompt();
    repl.run(r#"let e = command::run(#{argv: ["echo", "again"], read_only: true});"#);
    assert_eq!(repl.run("e.stdout").trim(), "again");
    assert_eq!(repl.quit(), 0);
}
