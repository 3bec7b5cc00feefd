//! The `systemd`, `container` and `postgres` primitives on a real systemd host: a Debian 12
//! node booted with systemd-nspawn (see tests/support/node.rs), with podman, the docker client
//! against podman's API socket, and PostgreSQL. masrun runs on the host and reaches the node
//! over SSH, so the systemd and container steps are commands over SSH and the postgres steps
//! use a direct-streamlocal channel to the node's socket. Each test checks the first change, the unchanged second run,
//! check mode and the failure messages against what the node's own tools report.

mod support;

use serde_json::{Value, json};
use support::node::{self, Node, POSTGRES_SUPERUSER, TEST_IMAGE};

fn node() -> &'static Node {
    node::shared()
}

/// Counts the step messages that mention a daemon-reload.
fn daemon_reloads(run: &support::Run) -> usize {
    run.events()
        .iter()
        .filter_map(|e| e.get("message").and_then(Value::as_str))
        .filter(|m| m.contains("daemon-reload"))
        .count()
}

fn systemctl_property(unit: &str, property: &str) -> String {
    node()
        .sh(&format!(
            "systemctl show --property={property} --value {unit}"
        ))
        .trim()
        .to_string()
}

const SLEEPER_TEMPLATE: &str = "\
[Unit]
Description=masrun test sleeper {{ sleeper_label }}

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
";

const SLEEPER_TASK: &str = r#"
let unit = "masrun-test-sleeper.service";
systemd::unit(#{ src: "test/sleeper.service.j2", path: `/etc/systemd/system/${unit}` });
systemd::enable(#{ unit: unit });
systemd::start(#{ unit: unit, settle: 0.5 });
print("status=" + json::encode(systemd::status(unit)));
"#;

#[test]
fn unit_installed_reloaded_started_once() {
    let node = node();
    let project = node.project("sleeper", &json!({"sleeper_label": "one"}));
    project.write("stdlib/templates/test/sleeper.service.j2", SLEEPER_TEMPLATE);
    let task = project.task("sleeper", SLEEPER_TASK);
    let unit_step = "systemd.unit masrun-test-sleeper.service";
    let enable_step = "systemd.enable masrun-test-sleeper.service";
    let start_step = "systemd.start masrun-test-sleeper.service";

    let first = node.masrun(&project, &task, &[]);
    first.assert_status(0);
    assert_eq!(first.step_status(unit_step), "changed");
    assert_eq!(first.step_message(enable_step), "daemon-reload, enabled");
    assert_eq!(first.step_message(start_step), "started");
    assert_eq!(daemon_reloads(&first), 1, "{}", first.all_output());
    let status = first.printed("status=");
    assert_eq!(status["is_active"], true);
    assert_eq!(status["is_enabled"], true);
    assert!(status["main_pid"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(
        node.sh("systemctl is-active masrun-test-sleeper.service")
            .trim(),
        "active"
    );
    assert_eq!(
        node.sh("systemctl is-enabled masrun-test-sleeper.service")
            .trim(),
        "enabled"
    );
    assert_eq!(
        node.sh("stat -c '%a %U %G' /etc/systemd/system/masrun-test-sleeper.service")
            .trim(),
        "644 root root"
    );

    let second = node.masrun(&project, &task, &[]);
    second.assert_status(0);
    assert_eq!(
        second.recap(&project.host)["changed"],
        0,
        "{}",
        second.all_output()
    );
    assert_eq!(daemon_reloads(&second), 0);

    // Check mode: the unit would change and be reloaded, but nothing happens.
    project.set_vars(&json!({"sleeper_label": "two"}));
    let check = node.masrun(&project, &task, &["--check", "--diff"]);
    check.assert_status(0);
    assert_eq!(check.step_status(unit_step), "changed");
    let diff = check.step(unit_step)["diff"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        diff.contains("+Description=masrun test sleeper two"),
        "{diff}"
    );
    assert_eq!(check.step_message(enable_step), "daemon-reload");
    assert!(
        node.sh("cat /etc/systemd/system/masrun-test-sleeper.service")
            .contains("sleeper one"),
        "check mode changed the unit file"
    );

    let changed = node.masrun(&project, &task, &[]);
    changed.assert_status(0);
    assert_eq!(changed.step_status(unit_step), "changed");
    assert_eq!(daemon_reloads(&changed), 1, "{}", changed.all_output());
    assert_eq!(changed.step_status(start_step), "ok");
    assert_eq!(
        systemctl_property("masrun-test-sleeper.service", "Description"),
        "masrun test sleeper two"
    );
    assert_eq!(
        systemctl_property("masrun-test-sleeper.service", "NeedDaemonReload"),
        "no"
    );
}

const RESTART_TASK: &str = r#"
let unit = "masrun-test-restart.service";
systemd::unit(#{ path: `/etc/systemd/system/${unit}`, content: "[Service]\nExecStart=/bin/sleep infinity\n" });
let config = file::content(#{ path: "/etc/masrun-test-restart.conf", content: vars.restart_config });
systemd::restart(#{ unit: unit, if_changed: [[config]], settle: 0.5 });
print("pid=" + systemd::main_pid(unit));
"#;

#[test]
fn restart_only_when_dependency_changed() {
    let node = node();
    let project = node.project("restart", &json!({"restart_config": "a=1\n"}));
    let task = project.task("restart", RESTART_TASK);
    let step = "systemd.restart masrun-test-restart.service";
    let pid = |run: &support::Run| run.printed("pid=").as_u64().unwrap();

    let first = node.masrun(&project, &task, &[]);
    first.assert_status(0);
    assert_eq!(first.step_message(step), "daemon-reload, started");
    let first_pid = pid(&first);
    assert!(first_pid > 0);

    let same = node.masrun(&project, &task, &[]);
    same.assert_status(0);
    assert_eq!(same.step_status(step), "ok");
    assert_eq!(same.step_message(step), "no restart necessary");
    assert_eq!(pid(&same), first_pid);

    project.set_vars(&json!({"restart_config": "a=2\n"}));
    let check = node.masrun(&project, &task, &["--check"]);
    check.assert_status(0);
    assert_eq!(check.step_message(step), "would restart");
    assert_eq!(pid(&check), first_pid, "check mode restarted the unit");

    let changed = node.masrun(&project, &task, &[]);
    changed.assert_status(0);
    assert_eq!(changed.step_message(step), "restarted");
    let restarted_pid = pid(&changed);
    assert_ne!(restarted_pid, first_pid);

    // An inactive unit starts even when nothing it depends on changed.
    node.sh("systemctl stop masrun-test-restart.service");
    let stopped = node.masrun(&project, &task, &[]);
    stopped.assert_status(0);
    assert_eq!(stopped.step_message(step), "started");
    assert_ne!(pid(&stopped), restarted_pid);
}

const FAILING_TASK: &str = r#"
let units = #{
    "masrun-test-crash.service": "[Service]\nExecStart=/bin/sh -c 'echo masrun-crash-marker >&2; exit 3'\n",
    "masrun-test-pre.service": "[Service]\nExecStartPre=/bin/sh -c 'echo masrun-pre-marker; exit 1'\nExecStart=/bin/sleep infinity\n",
    "masrun-test-image.service": "[Service]\nExecStartPre=-/usr/local/bin/docker rm masrun-test-image\nExecStartPre=/usr/local/bin/docker create --name masrun-test-image localhost/masrun-test/absent:1\nExecStart=/usr/local/bin/docker start --attach masrun-test-image\n",
};
for unit in units.keys() {
    systemd::unit(#{ path: `/etc/systemd/system/${unit}`, content: units[unit] });
}
for unit in units.keys() {
    try {
        systemd::start(#{ unit: unit, settle: 3 });
    } catch (error) {
        print(`error ${unit}=` + json::encode(error.to_string()));
    }
}
print("reload_needed=" + systemd::daemon_reload_if_needed().changed);
let failed = systemd::wait(#{ unit: "masrun-test-crash.service", state: "failed", timeout: 10 });
print("waited=" + json::encode(failed.state.active_state));
try {
    systemd::wait(#{ unit: "masrun-test-pre.service", timeout: 5 });
} catch (error) {
    print("wait_error=" + json::encode(error.to_string()));
}
"#;

#[test]
fn failing_unit_reports_journal() {
    let node = node();
    let _storage = node.lock_containers();
    let project = node.project("failing", &json!({}));
    let task = project.task("failing", FAILING_TASK);

    let run = node.masrun(&project, &task, &[]);
    run.assert_status(0);
    let error = |unit: &str| -> String {
        run.printed(&format!("error {unit}="))
            .as_str()
            .unwrap()
            .to_string()
    };

    let crash = error("masrun-test-crash.service");
    assert!(crash.contains("failed right after it started"), "{crash}");
    assert!(
        crash.contains("masrun-crash-marker"),
        "the journal line: {crash}"
    );
    assert!(
        crash.contains("journalctl --unit masrun-test-crash.service"),
        "{crash}"
    );
    assert!(crash.contains(&project.host), "the host: {crash}");

    let pre = error("masrun-test-pre.service");
    assert!(pre.contains("failed to start"), "{pre}");
    assert!(pre.contains("masrun-pre-marker"), "the journal line: {pre}");

    // A container unit whose image is missing: the journal carries docker's own message.
    let image = error("masrun-test-image.service");
    assert!(image.contains("failed to start"), "{image}");
    assert!(
        image.contains("localhost/masrun-test/absent:1"),
        "docker's message: {image}"
    );

    assert_eq!(
        run.step_status("systemd.start masrun-test-crash.service"),
        "failed"
    );
    // The first start reloaded units for all three new unit files, so nothing is left to do.
    assert_eq!(run.printed("reload_needed="), false);
    for unit in ["masrun-test-crash", "masrun-test-pre", "masrun-test-image"] {
        assert_eq!(
            systemctl_property(&format!("{unit}.service"), "NeedDaemonReload"),
            "no",
            "{unit}"
        );
    }
    assert_eq!(run.printed("waited="), "failed");
    let wait_error = run.printed("wait_error=").as_str().unwrap().to_string();
    assert!(
        wait_error.contains("failed instead of becoming active"),
        "{wait_error}"
    );
}

const LIFECYCLE_TASK: &str = r#"
let unit = "masrun-test-cycle.service";
let path = `/etc/systemd/system/${unit}`;
let results = #{};
results.unit = systemd::unit(#{ path: path, content: "[Service]\nExecStart=/bin/sh -c 'echo cycle-marker; exec sleep infinity'\n[Install]\nWantedBy=multi-user.target\n" }).changed;
results.start = systemd::start(#{ unit: unit, settle: 0.5 }).changed;
results.active = systemd::is_active(unit);
results.enabled_before = systemd::is_enabled(unit);
results.journal = systemd::journal(unit, 20);
results.stop = systemd::stop(#{ unit: unit }).changed;
results.stop_again = systemd::stop(#{ unit: unit }).changed;
results.disable_disabled = systemd::disable(#{ unit: unit }).changed;
results.enable = systemd::enable(#{ unit: unit }).changed;
results.enable_again = systemd::enable(#{ unit: unit }).changed;
results.enabled_after = systemd::is_enabled(unit);
results.disable = systemd::disable(#{ unit: unit }).changed;
results.reload_inactive = systemd::reload(#{ unit: unit }).msg;
results.remove = systemd::remove_unit(#{ path: path }).changed;
results.remove_again = systemd::remove_unit(#{ path: path }).changed;
results.daemon_reload = systemd::daemon_reload_if_needed().changed;
results.exists_after = systemd::status(unit).exists;
print("results=" + json::encode(results));
"#;

#[test]
fn unit_lifecycle_and_queries() {
    let node = node();
    let project = node.project("cycle", &json!({}));
    let task = project.task("cycle", LIFECYCLE_TASK);

    let run = node.masrun(&project, &task, &[]);
    run.assert_status(0);
    let results = run.printed("results=");
    for (key, expected) in [
        ("unit", json!(true)),
        ("start", json!(true)),
        ("active", json!(true)),
        ("enabled_before", json!(false)),
        ("stop", json!(true)),
        ("stop_again", json!(false)),
        ("disable_disabled", json!(false)),
        ("enable", json!(true)),
        ("enable_again", json!(false)),
        ("enabled_after", json!(true)),
        ("disable", json!(true)),
        ("reload_inactive", json!("started")),
        ("remove", json!(true)),
        ("remove_again", json!(false)),
        ("daemon_reload", json!(true)),
        ("exists_after", json!(false)),
    ] {
        assert_eq!(results[key], expected, "{key} in {results}");
    }
    let journal = results["journal"].as_array().unwrap();
    assert!(
        journal
            .iter()
            .any(|line| line.as_str().unwrap().contains("cycle-marker")),
        "journal lines: {journal:?}"
    );
    let exists = node.exec(
        &[
            "test",
            "-e",
            "/etc/systemd/system/masrun-test-cycle.service",
        ],
        None,
    );
    assert!(!exists.status.success(), "the unit file is gone");
    assert_eq!(
        systemctl_property("masrun-test-cycle.service", "LoadState"),
        "not-found"
    );
}

#[test]
fn check_mode_installs_nothing() {
    let node = node();
    let project = node.project("checkmode", &json!({"sleeper_label": "check"}));
    project.write("stdlib/templates/test/sleeper.service.j2", SLEEPER_TEMPLATE);
    let task = project.task(
        "check",
        &SLEEPER_TASK.replace("masrun-test-sleeper", "masrun-test-checkonly"),
    );

    let run = node.masrun(&project, &task, &["--check"]);
    run.assert_status(0);
    assert_eq!(
        run.step_message("systemd.enable masrun-test-checkonly.service"),
        "daemon-reload, would enable"
    );
    assert_eq!(
        run.step_message("systemd.start masrun-test-checkonly.service"),
        "would start"
    );
    let exists = node.exec(
        &[
            "test",
            "-e",
            "/etc/systemd/system/masrun-test-checkonly.service",
        ],
        None,
    );
    assert!(!exists.status.success(), "check mode wrote the unit file");
    assert_eq!(
        systemctl_property("masrun-test-checkonly.service", "LoadState"),
        "not-found"
    );
}

/// Both engines, each through its own client: the docker code path uses the real docker
/// client against podman's API socket.
const RUNTIMES: [&str; 2] = ["docker", "podman"];

const IMAGE_TASK: &str = r#"
let present = container::image(#{ image: TEST_IMAGE });
print("present=" + json::encode(present));
try {
    let missing = container::image(#{ image: "localhost/masrun-test/absent:1" });
    print("local_missing=" + json::encode(missing));
} catch (error) {
    print("local_error=" + json::encode(error.to_string()));
}
try {
    container::image(#{ image: "registry.example.invalid/masrun/none:1", retries: 2, delay: 0 });
} catch (error) {
    print("pull_error=" + json::encode(error.to_string()));
}
"#;

#[test]
fn images_local_and_pull_failure() {
    let node = node();
    let _storage = node.lock_containers();
    for runtime in RUNTIMES {
        let project = node.project(
            &format!("image-{runtime}"),
            &json!({"masrun_container_runtime": runtime}),
        );
        let task = project.task(
            "image",
            &IMAGE_TASK.replace("TEST_IMAGE", &format!("{TEST_IMAGE:?}")),
        );

        let run = node.masrun(&project, &task, &[]);
        run.assert_status(0);
        let present = run.printed("present=");
        assert_eq!(present["changed"], false, "{runtime}: {present}");
        let expected_id = node.sh(&format!(
            "podman image inspect --format '{{{{.Id}}}}' {TEST_IMAGE}"
        ));
        assert!(
            present["image_id"]
                .as_str()
                .unwrap()
                .ends_with(expected_id.trim()),
            "{runtime}: {present} vs {expected_id}"
        );

        let local = run.printed("local_error=").as_str().unwrap().to_string();
        assert!(
            local.contains("localhost/masrun-test/absent:1"),
            "{runtime}: {local}"
        );
        assert!(local.contains("built or imported"), "{runtime}: {local}");

        let pull = run.printed("pull_error=").as_str().unwrap().to_string();
        assert!(
            pull.contains("registry.example.invalid/masrun/none:1"),
            "{runtime}: {pull}"
        );
        assert!(pull.contains("after 2 attempt(s)"), "{runtime}: {pull}");
        assert!(
            pull.contains(&format!("{runtime} pull output:")),
            "{runtime}: {pull}"
        );
        // The engine's own words about the unreachable registry.
        assert!(pull.contains("example.invalid"), "{runtime}: {pull}");
        let engine_part = pull.split("pull output:").nth(1).unwrap_or_default();
        assert!(
            engine_part.trim().len() > 10,
            "{runtime}: the engine's message: {pull}"
        );

        // Check mode reports the missing local image instead of failing.
        let check = node.masrun(&project, &task, &["--check"]);
        check.assert_status(0);
        let missing = check.printed("local_missing=");
        assert_eq!(missing["changed"], true, "{runtime}: {missing}");
    }
}

/// Imports a busybox image whose root file system also holds `/version` with `version`, and
/// pushes it to the node's registry as `image`, without keeping it locally.
fn push_version(node: &Node, image: &str, version: &str) {
    node.sh(&format!(
        "set -e
root=$(mktemp -d)
mkdir \"$root/bin\"
cp /bin/busybox \"$root/bin/\"
echo {version} > \"$root/version\"
tar -C \"$root\" -c . | podman import - localhost/masrun-test/push:{version} >/dev/null
podman push --quiet --tls-verify=false localhost/masrun-test/push:{version} docker://{image}
podman rmi localhost/masrun-test/push:{version} >/dev/null
rm -rf \"$root\""
    ));
}

#[test]
fn image_pulled_from_registry() {
    let node = node();
    let _storage = node.lock_containers();
    for runtime in RUNTIMES {
        // localhost:5000 is a registry, unlike localhost/, so masrun pulls from it.
        let image = format!("localhost:5000/masrun/pulled-{runtime}:1");
        push_version(node, &image, "one");
        let project = node.project(
            &format!("pull-{runtime}"),
            &json!({"masrun_container_runtime": runtime}),
        );
        let task = project.task(
            "pull",
            &format!(
                r#"
let pulled = container::image(#{{ image: "{image}", retries: 1, delay: 0 }});
print("pulled=" + json::encode(pulled));
let kept = container::image(#{{ image: "{image}", pull: "missing" }});
print("kept=" + json::encode(kept.changed));
"#
            ),
        );
        let step = format!("container.image {image}");
        let local_id = |node: &Node| {
            node.exec(
                &["podman", "image", "inspect", "--format", "{{.Id}}", &image],
                None,
            )
        };

        let check = node.masrun(&project, &task, &["--check"]);
        check.assert_status(0);
        assert_eq!(check.step_message(&step), "would pull", "{runtime}");
        assert!(
            !local_id(node).status.success(),
            "{runtime}: check mode pulled"
        );

        let first = node.masrun(&project, &task, &[]);
        first.assert_status(0);
        let pulled = first.printed("pulled=");
        assert_eq!(pulled["changed"], true, "{runtime}: {pulled}");
        assert_eq!(pulled["msg"], "pulled", "{runtime}: {pulled}");
        let first_id = String::from_utf8_lossy(&local_id(node).stdout)
            .trim()
            .to_string();
        assert!(
            pulled["image_id"].as_str().unwrap().ends_with(&first_id),
            "{runtime}: {pulled} vs {first_id}"
        );
        assert_eq!(first.printed("kept="), false, "{runtime}");

        let second = node.masrun(&project, &task, &[]);
        second.assert_status(0);
        assert_eq!(second.printed("pulled=")["changed"], false, "{runtime}");

        // A moved tag is picked up, as the playbook's pull on every install does.
        push_version(node, &image, "two");
        let moved = node.masrun(&project, &task, &[]);
        moved.assert_status(0);
        let pulled = moved.printed("pulled=");
        assert_eq!(pulled["msg"], "pulled a newer image", "{runtime}: {pulled}");
        let version = node.sh(&format!(
            "podman run --rm {image} /bin/busybox cat /version"
        ));
        assert_eq!(version.trim(), "two", "{runtime}");
    }
}

#[test]
fn network_created_once() {
    let node = node();
    let _storage = node.lock_containers();
    for runtime in RUNTIMES {
        let network = format!("masrun-test-net-{runtime}");
        let project = node.project(
            &format!("network-{runtime}"),
            &json!({"masrun_container_runtime": runtime}),
        );
        let task = project.task(
            "network",
            &format!(r#"container::network(#{{ network: "{network}" }});"#),
        );
        let step = format!("container.network {network}");

        let check = node.masrun(&project, &task, &["--check"]);
        check.assert_status(0);
        assert_eq!(check.step_message(&step), "would create");
        let exists = node.exec(&["podman", "network", "exists", &network], None);
        assert!(!exists.status.success(), "check mode created {network}");

        let first = node.masrun(&project, &task, &[]);
        first.assert_status(0);
        assert_eq!(first.step_message(&step), "created (bridge driver)");
        let exists = node.exec(&["podman", "network", "exists", &network], None);
        assert!(exists.status.success(), "{network} exists");

        let second = node.masrun(&project, &task, &[]);
        second.assert_status(0);
        assert_eq!(second.step_status(&step), "ok");
    }
}

/// Returns a unit that runs a long-lived container the way the MAS unit does. systemd sees it
/// started once the container runs, because podman notifies systemd through conmon.
fn app_unit(container: &str) -> String {
    format!(
        "[Service]\nType=notify\nNotifyAccess=all\n\
         ExecStartPre=-/usr/bin/podman rm --force {container}\n\
         ExecStart=/usr/bin/podman run --rm --sdnotify=conmon --name {container} {TEST_IMAGE} sh -c 'echo app-started; exec sleep 1000'\n\
         ExecStop=/usr/bin/podman stop --time 1 {container}\n"
    )
}

const APP_TASK: &str = r#"
let container = CONTAINER;
systemd::unit(#{ path: `/etc/systemd/system/${container}.service`, content: UNIT });
systemd::start(#{ unit: `${container}.service`, settle: 0 });
print("state=" + json::encode(container::state(container)));
print("missing=" + json::encode(container::state("masrun-test-none")));

let echoed = container::exec(#{ container: container, argv: ["cat"], stdin: "masrun-stdin-text" });
print("echoed=" + json::encode(echoed.stdout));
let env = container::exec(#{
    container: container,
    argv: ["sh", "-c", "echo $MASRUN_TEST_VALUE"],
    env: #{ MASRUN_TEST_VALUE: "from-env" },
    read_only: true,
});
print("env=" + json::encode([env.stdout, env.changed]));
let failed = container::exec(#{ container: container, argv: ["sh", "-c", "echo oops >&2; exit 4"], ignore_errors: true });
print("failed=" + json::encode([failed.rc, failed.stderr]));
try {
    container::exec(#{ container: container, argv: ["sh", "-c", "echo exec-broke >&2; exit 5"] });
} catch (error) {
    print("exec_error=" + json::encode(error.to_string()));
}
print("logs=" + json::encode(container::logs(container, 10)));

let ran = container::run(#{
    image: TEST_IMAGE,
    argv: ["cat", "/data/input.txt"],
    mounts: [#{ src: DATA, dst: "/data", read_only: true }],
    extra_arguments: ["--cap-drop=ALL"],
});
print("ran=" + json::encode(ran.stdout));
try {
    container::run(#{
        image: TEST_IMAGE,
        argv: ["sh", "-c", "echo x > /data/new.txt"],
        mounts: [#{ src: DATA, dst: "/data", read_only: true }],
    });
} catch (error) {
    print("read_only_error=" + json::encode(error.to_string()));
}
"#;

#[test]
fn exec_run_state_and_logs() {
    let node = node();
    let _storage = node.lock_containers();
    for runtime in RUNTIMES {
        let container = format!("masrun-test-app-{runtime}");
        let project = node.project(
            &format!("app-{runtime}"),
            &json!({"masrun_container_runtime": runtime}),
        );
        project.write("data/input.txt", "mounted-input\n");
        let data = project.path().join("data").display().to_string();
        let task = project.task(
            "app",
            &APP_TASK
                .replace("CONTAINER", &format!("{container:?}"))
                .replace("UNIT", &format!("{:?}", app_unit(&container)))
                .replace("TEST_IMAGE", &format!("{TEST_IMAGE:?}"))
                .replace("DATA", &format!("{data:?}")),
        );

        let run = node.masrun(&project, &task, &[]);
        run.assert_status(0);
        let state = run.printed("state=");
        assert_eq!(state["exists"], true, "{runtime}: {state}");
        assert_eq!(state["running"], true, "{runtime}: {state}");
        assert_eq!(state["image"], TEST_IMAGE, "{runtime}: {state}");
        assert_eq!(
            run.printed("missing="),
            json!({"exists": false, "running": false})
        );
        assert_eq!(run.printed("echoed="), "masrun-stdin-text");
        assert_eq!(run.printed("env="), json!(["from-env\n", false]));
        assert_eq!(run.printed("failed="), json!([4, "oops\n"]));
        let exec_error = run.printed("exec_error=").as_str().unwrap().to_string();
        assert!(exec_error.contains("exec-broke"), "{runtime}: {exec_error}");
        assert!(
            exec_error.contains("exit status 5"),
            "{runtime}: {exec_error}"
        );
        let logs = run.printed("logs=");
        assert!(
            logs["stdout"].as_str().unwrap().contains("app-started"),
            "{runtime}: {logs}"
        );
        assert_eq!(run.printed("ran="), "mounted-input\n");
        let read_only_error = run
            .printed("read_only_error=")
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            read_only_error.contains("Read-only file system"),
            "{runtime}: {read_only_error}"
        );
        assert!(!project.path().join("data/new.txt").exists());
        let leftovers = node.sh("podman ps --all --format '{{.Names}}'");
        assert!(
            !leftovers.contains("masrun-run-"),
            "{runtime}: one-off containers remain: {leftovers}"
        );

        // Check mode runs read-only commands only.
        let check = node.masrun(&project, &task, &["--check"]);
        check.assert_status(0);
        assert_eq!(check.printed("echoed="), Value::Null);
        assert_eq!(check.printed("env="), json!(["from-env\n", false]));
        assert_eq!(check.printed("ran="), Value::Null);
        node.sh(&format!("systemctl stop {container}.service"));
    }
}

#[test]
fn postgres_in_node_through_socket() {
    let node = node();
    let project = node.project(
        "postgres",
        &json!({
            "postgres_connection_username": POSTGRES_SUPERUSER,
            "postgres_connection_password": node.postgres_password(),
            "postgres_connection_port": 5432,
            "postgres_db_name": "postgres",
            "masrun_postgres_connection_socket_dir": "/var/run/postgresql",
            "mas_db_pw": "node-role-password",
        }),
    );
    let task = project.task(
        "db",
        r#"
let role = postgres::ensure_role(#{ role: "matrix_authentication_service", password: vars.mas_db_pw });
let db = postgres::ensure_database(#{ database: "matrix_authentication_service", owner: "matrix_authentication_service" });
print("changed=" + json::encode([role.changed, db.changed]));
"#,
    );

    let first = node.masrun(&project, &task, &[]);
    first.assert_status(0);
    assert_eq!(first.printed("changed="), json!([true, true]));
    let properties = node.sh(
        "runuser -u postgres -- psql -tAc \"SELECT pg_get_userbyid(datdba), datcollate FROM pg_database WHERE datname = 'matrix_authentication_service'\"",
    );
    assert_eq!(properties.trim(), "matrix_authentication_service|C");

    let second = node.masrun(&project, &task, &[]);
    second.assert_status(0);
    assert_eq!(second.printed("changed="), json!([false, false]));
}
