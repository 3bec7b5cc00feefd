//! `masrun setup` end to end on a real systemd host. The host is a Debian 12 node booted with
//! systemd-nspawn (see tests/support/node.rs) and reached over SSH. It runs PostgreSQL, podman
//! and a real Synapse from PyPI, which stores its data in PostgreSQL and runs as a systemd unit.
//!
//! MAS itself is the one stand-in (tests/stand-ins/mas): its binary and the shared libraries
//! it links are imported into podman as `localhost/masrun-test/mas:1`, with the real image's
//! entrypoint and working directory, and run by the unit that setup installs. The stand-in
//! keeps no data, so the tests play syn2mas's part by creating MAS's `users` table themselves.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use serde_json::{Value, json};
use support::node::{self, Node, POSTGRES_SUPERUSER};

const MAS_IMAGE: &str = "localhost/masrun-test/mas:1";
const MAS_UNIT: &str = "matrix-authentication-service.service";
const SYNAPSE_UNIT: &str = "matrix-synapse.service";
/// The container network is created by the tests with a fixed subnet, so that Synapse, which
/// runs on the node and not in a container, can reach MAS at a fixed address.
const MAS_ADDRESS: &str = "10.89.77.10";
const SERVER_NAME: &str = "node.test";
/// nginx's server block in the node includes the snippet that setup writes.
const NGINX_SNIPPET: &str = "/etc/nginx/snippets/matrix-authentication-service.conf";
const NGINX_URL: &str = "http://127.0.0.1:8000";

/// The deployment that the tests share: one Synapse with one local user, `alice`.
struct Deployment {
    node: &'static Node,
    synapse_config: PathBuf,
}

static DEPLOYMENT: OnceLock<Result<Deployment, String>> = OnceLock::new();
/// MAS's unit and container names are fixed, so one test at a time deploys it.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

fn deployment() -> (&'static Deployment, MutexGuard<'static, ()>) {
    let guard = EXCLUSIVE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let deployment = DEPLOYMENT.get_or_init(|| {
        // A failure here fails every test with its message, instead of repeating the set-up.
        std::panic::catch_unwind(|| {
            let node = node::shared();
            import_mas_stand_in(node);
            let synapse_config = start_synapse(node);
            start_nginx(node);
            node.sh("podman network exists matrix \
                 || podman network create --subnet 10.89.77.0/24 matrix >/dev/null");
            Deployment {
                node,
                synapse_config,
            }
        })
        .map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_default()
        })
    });
    match deployment {
        Ok(deployment) => (deployment, guard),
        Err(error) => panic!("the deployment could not be prepared: {error}"),
    }
}

/// Imports the MAS stand-in as a container image: its binary as `/usr/local/bin/mas-cli` and
/// every shared library `ldd` lists, at the same paths.
fn import_mas_stand_in(node: &Node) {
    let binary = Path::new(env!("CARGO_BIN_EXE_masrun"))
        .parent()
        .unwrap()
        .join("examples/mas-stand-in");
    assert!(
        binary.exists(),
        "MAS stand-in not built at {}; cargo test builds examples",
        binary.display()
    );
    let project = node.project("mas-image", &json!({}));
    let root = project.path().join("root");
    let target = root.join("usr/local/bin/mas-cli");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(&binary, &target).unwrap();

    let ldd = Command::new("ldd").arg(&binary).output().expect("ldd runs");
    assert!(ldd.status.success(), "ldd {}", binary.display());
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let library = line
            .split_whitespace()
            .find(|word| word.starts_with('/'))
            .map(PathBuf::from);
        let Some(library) = library else { continue };
        let copy = root.join(library.strip_prefix("/").unwrap());
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(&library, &copy)
            .unwrap_or_else(|e| panic!("copy {}: {e}", library.display()));
    }
    node.sh(&format!(
        "tar -C {root} -c . | podman import --change 'ENTRYPOINT [\"/usr/local/bin/mas-cli\"]' \
         --change 'WORKDIR /' - {MAS_IMAGE} >/dev/null",
        root = root.display()
    ));
}

/// Creates Synapse's database, generates its configuration for PostgreSQL, starts it as
/// `matrix-synapse.service` and registers `alice`. Returns the path of homeserver.yaml.
fn start_synapse(node: &Node) -> PathBuf {
    let project = node.project("synapse", &json!({}));
    let dir = project.path().join("config");
    let config = support::synapse::generate_config(&dir, SERVER_NAME, 8008);

    node.sh(&format!(
        "runuser -u postgres -- createdb --owner={POSTGRES_SUPERUSER} --encoding=UTF8 \
         --locale=C --template=template0 synapse"
    ));
    let text = std::fs::read_to_string(&config).unwrap();
    let sqlite = format!(
        "database:\n  name: sqlite3\n  args:\n    database: {}\n",
        dir.join("homeserver.db").display()
    );
    assert!(
        text.contains(&sqlite),
        "generated database section:\n{text}"
    );
    let postgres = format!(
        "database:\n  name: psycopg2\n  args:\n    user: {POSTGRES_SUPERUSER}\n    \
         password: {}\n    database: synapse\n    host: /var/run/postgresql\n    \
         cp_min: 1\n    cp_max: 5\n",
        node.postgres_password()
    );
    // Without a log config Synapse logs to stderr, which the journal keeps.
    let text: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with("log_config:"))
        .collect();
    std::fs::write(&config, text.join("\n").replace(&sqlite, &postgres)).unwrap();

    let venv = support::synapse::venv();
    let unit = format!(
        "[Unit]\nDescription=Synapse for masrun's tests\nAfter=postgresql.service\n\n\
         [Service]\nWorkingDirectory={dir}\n\
         ExecStart={python} -m synapse.app.homeserver -c {config}\n",
        dir = dir.display(),
        python = venv.join("bin/python").display(),
        config = config.display(),
    );
    node.exec(
        &[
            "sh",
            "-c",
            &format!("cat > /etc/systemd/system/{SYNAPSE_UNIT}"),
        ],
        Some(&unit),
    );
    node.sh(&format!(
        "systemctl daemon-reload && systemctl start {SYNAPSE_UNIT}"
    ));
    wait_for_synapse(node);

    node.sh(&format!(
        "{register} --config {config} --user alice --password alice-password --no-admin \
         http://127.0.0.1:8008 >/dev/null",
        register = venv.join("bin/register_new_matrix_user").display(),
        config = config.display(),
    ));
    config
}

/// Starts nginx with a server block on 127.0.0.1:8000 that includes the snippet, as an
/// operator does once. The snippet starts out empty, so nginx returns 404 until setup runs.
fn start_nginx(node: &Node) {
    node.sh(&format!(
        "mkdir -p /etc/nginx/snippets && touch {NGINX_SNIPPET} && rm -f /etc/nginx/sites-enabled/* \
         && printf 'server {{\\n  listen 127.0.0.1:8000;\\n  include {NGINX_SNIPPET};\\n}}\\n' \
            > /etc/nginx/sites-enabled/matrix \
         && nginx -t -q && systemctl restart nginx.service"
    ));
}

/// Fetches `path` through nginx in the node and returns the HTTP status and body.
fn through_nginx(node: &Node, path: &str, token: Option<&str>) -> (u16, String) {
    let header = token
        .map(|token| format!("--header 'Authorization: Bearer {token}'"))
        .unwrap_or_default();
    let output = node.sh(&format!(
        "curl --silent {header} --write-out '\\n%{{http_code}}' {NGINX_URL}{path}"
    ));
    let (body, status) = output.trim_end().rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_string())
}

/// Fetches `path` through nginx until the body contains `needle`, for up to 10 s: a reload
/// returns before nginx's old workers have finished, so the new routes apply a moment later.
fn route_serves(node: &Node, path: &str, needle: &str) -> (u16, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) = through_nginx(node, path, None);
        if body.contains(needle) || std::time::Instant::now() > deadline {
            return (status, body);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn wait_for_synapse(node: &Node) {
    let probe = node.exec(
        &[
            "curl",
            "--silent",
            "--fail",
            "--retry",
            "180",
            "--retry-delay",
            "1",
            "--retry-all-errors",
            "http://127.0.0.1:8008/_matrix/client/versions",
        ],
        None,
    );
    assert!(
        probe.status.success(),
        "Synapse did not start in the node:\n{}",
        node.sh(&format!(
            "journalctl --unit {SYNAPSE_UNIT} --no-pager -n 40 || true"
        ))
    );
}

/// Builds the host's variables: the playbook's names, pointed at what the node has.
fn vars(deployment: &Deployment, extra: Value) -> Value {
    let mut vars = json!({
        "matrix_domain": SERVER_NAME,
        "matrix_homeserver_implementation": "synapse",
        "matrix_homeserver_generic_secret_key": "node-generic-secret-0123456789abcdef0123456789abcdef01234567",
        "matrix_authentication_service_enabled": true,
        "matrix_authentication_service_config_secrets_encryption": "b1e924aed7669d86f0f610cdcad136ec4a73649c8d14bccdb1f657bf21bb8391",
        "matrix_authentication_service_container_image": MAS_IMAGE,
        "matrix_authentication_service_container_extra_arguments": [format!("--ip={MAS_ADDRESS}")],
        "matrix_authentication_service_systemd_required_services_list_auto": ["postgresql.service"],
        "matrix_homeserver_container_network": "matrix",
        "matrix_playbook_reverse_proxyable_services_additional_network": "",
        "exim_relay_enabled": false,
        "masrun_container_runtime": "podman",
        "masrun_matrix_authentication_service_start_timeout_seconds": 120,
        "postgres_connection_username": POSTGRES_SUPERUSER,
        "postgres_connection_password": deployment.node.postgres_password(),
        "postgres_connection_port": 5432,
        "postgres_db_name": "postgres",
        "postgres_run_path": "/var/run/postgresql",
        "masrun_postgres_connection_socket_dir": "/var/run/postgresql",
        "masrun_synapse_homeserver_config_path": deployment.synapse_config,
        "masrun_synapse_start_timeout_seconds": 180,
        "matrix_synapse_matrix_authentication_service_endpoint": format!("http://{MAS_ADDRESS}:8080/auth/"),
        "masrun_reverse_proxy": "nginx",
        "masrun_nginx_matrix_authentication_service_upstream": format!("http://{MAS_ADDRESS}:8080"),
        "masrun_nginx_synapse_upstream": "http://127.0.0.1:8008",
    });
    for (key, value) in extra.as_object().unwrap() {
        vars[key] = value.clone();
    }
    vars
}

fn setup_script() -> PathBuf {
    support::repo_root().join("scripts/setup.rhai")
}

fn main_pid(node: &Node, unit: &str) -> String {
    node.sh(&format!("systemctl show --property=MainPID --value {unit}"))
        .trim()
        .to_string()
}

fn homeserver_yaml(deployment: &Deployment) -> Value {
    let text = std::fs::read_to_string(&deployment.synapse_config).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

fn changed_count(run: &support::Run, host: &str) -> u64 {
    run.recap(host)["changed"].as_u64().unwrap()
}

/// element-hq/matrix-authentication-service#5216: MAS was enabled without migrating Synapse's
/// users, who then got "Localpart not available" at login.
#[test]
fn delegation_refused_until_users_migrated() {
    let (deployment, _guard) = deployment();
    let node = deployment.node;
    let before = std::fs::read_to_string(&deployment.synapse_config).unwrap();
    let project = node.project(
        "unmigrated",
        &vars(
            deployment,
            json!({
                "matrix_base_data_path": "/matrix-unmigrated",
                "matrix_authentication_service_config_database_database": "mas_unmigrated",
            }),
        ),
    );

    let run = node.masrun(&project, &setup_script(), &[]);
    run.assert_status(2);
    let output = run.all_output();
    assert!(output.contains("1 local user(s)"), "{output}");
    assert!(
        output.contains("matrix_authentication_service_migration_in_progress: true"),
        "{output}"
    );
    assert!(output.contains("masrun_mas_fresh_start"), "{output}");
    assert_eq!(
        std::fs::read_to_string(&deployment.synapse_config).unwrap(),
        before,
        "homeserver.yaml changed"
    );
    let installed = node.exec(
        &["test", "-e", "/matrix/matrix-authentication-service"],
        None,
    );
    assert!(
        !installed.status.success(),
        "MAS files were written:\n{}\n{output}",
        node.sh("find /matrix-unmigrated -maxdepth 3 -printf '%M %u %p\\n'")
    );

    // A deliberate fresh start passes validation; check mode keeps the node as it is.
    let fresh = node.masrun(
        &project,
        &setup_script(),
        &["--check", "-e", "masrun_mas_fresh_start=true"],
    );
    fresh.assert_status(0);
    assert!(
        !fresh.all_output().contains("local user(s)"),
        "{}",
        fresh.all_output()
    );
    assert_eq!(
        std::fs::read_to_string(&deployment.synapse_config).unwrap(),
        before
    );
}

/// The playbook's migration flow on a real host: install MAS beside Synapse's own login, run
/// again without restarting anything, change one MAS setting, switch Synapse over once the
/// users are in MAS, and remove MAS again.
#[test]
fn migration_to_delegation_and_back() {
    let (deployment, _guard) = deployment();
    let node = deployment.node;
    let migrating = vars(
        deployment,
        json!({"matrix_authentication_service_migration_in_progress": true}),
    );
    let project = node.project("lifecycle", &migrating);
    let host = project.host.clone();

    // Migration mode: MAS runs, Synapse keeps its own login.
    let synapse_pid = main_pid(node, SYNAPSE_UNIT);
    let first = node.masrun(&project, &setup_script(), &[]);
    first.assert_status(0);
    assert!(changed_count(&first, &host) > 0);
    assert_eq!(
        node.sh(&format!("systemctl is-active {MAS_UNIT}")).trim(),
        "active"
    );
    let discovery = node.sh(&format!(
        "curl --silent --fail http://{MAS_ADDRESS}:8080/auth/.well-known/openid-configuration"
    ));
    let discovery: Value = serde_json::from_str(&discovery).unwrap();
    assert_eq!(discovery["issuer"], "https://matrix.node.test/auth/");
    let databases = node.sh(
        "runuser -u postgres -- psql --tuples-only --no-align --command \
         \"SELECT datname || ' ' || pg_get_userbyid(datdba) || ' ' || datcollate FROM pg_database WHERE datname = 'matrix_authentication_service'\"",
    );
    assert_eq!(
        databases.trim(),
        "matrix_authentication_service matrix_authentication_service C"
    );
    assert_role_usable(node);
    let config = homeserver_yaml(deployment);
    assert!(
        config.get("matrix_authentication_service").is_none(),
        "{config:?}"
    );
    assert_eq!(
        main_pid(node, SYNAPSE_UNIT),
        synapse_pid,
        "Synapse was restarted: {:?}",
        first.changed_steps()
    );
    // No compatibility layer during the migration: Synapse serves its own login.
    let (status, flows) = route_serves(node, "/_matrix/client/v3/login", "m.login.password");
    assert_eq!(status, 200, "{flows}");
    assert!(flows.contains("m.login.password"), "{flows}");
    let (status, _) = through_nginx(node, "/auth/.well-known/openid-configuration", None);
    assert_eq!(status, 200, "MAS's own paths go to MAS");

    // A second run changes nothing and restarts nothing.
    let mas_pid = main_pid(node, MAS_UNIT);
    let second = node.masrun(&project, &setup_script(), &[]);
    second.assert_status(0);
    assert_eq!(
        changed_count(&second, &host),
        0,
        "{:?}",
        second.changed_steps()
    );
    assert_eq!(main_pid(node, MAS_UNIT), mas_pid, "MAS was restarted");
    assert_eq!(
        main_pid(node, SYNAPSE_UNIT),
        synapse_pid,
        "Synapse was restarted"
    );

    // One MAS setting restarts MAS, and only MAS.
    let mut changed = migrating.clone();
    changed["matrix_authentication_service_config_account_password_change_allowed"] = json!(false);
    project.set_vars(&changed);
    let third = node.masrun(&project, &setup_script(), &[]);
    third.assert_status(0);
    let steps = third.changed_steps();
    assert!(
        steps.iter().any(|step| step.contains("config.yaml")),
        "{steps:?}"
    );
    assert_ne!(
        main_pid(node, MAS_UNIT),
        mas_pid,
        "MAS kept running the old config"
    );
    assert_eq!(
        main_pid(node, SYNAPSE_UNIT),
        synapse_pid,
        "Synapse was restarted"
    );

    // What syn2mas leaves behind: Synapse's users in MAS's users table.
    node.sh(
        "runuser -u postgres -- psql --quiet --dbname=matrix_authentication_service --command \
         \"CREATE TABLE users (user_id uuid PRIMARY KEY, username text NOT NULL); \
           INSERT INTO users VALUES ('01890000-0000-7000-8000-000000000001', 'alice')\"",
    );

    // The switch: Synapse delegates logins to MAS and is restarted once.
    let mut delegating = changed.clone();
    delegating["matrix_authentication_service_migration_in_progress"] = json!(false);
    project.set_vars(&delegating);
    let switch = node.masrun(&project, &setup_script(), &[]);
    switch.assert_status(0);
    let config = homeserver_yaml(deployment);
    let block = &config["matrix_authentication_service"];
    assert_eq!(block["enabled"], true);
    assert_eq!(
        block["endpoint"],
        format!("http://{MAS_ADDRESS}:8080/auth/")
    );
    assert_eq!(config["password_config"]["enabled"], false);
    assert_eq!(config["experimental_features"]["msc4108_enabled"], true);
    let delegated_pid = main_pid(node, SYNAPSE_UNIT);
    assert_ne!(
        delegated_pid, synapse_pid,
        "Synapse still runs the old config"
    );
    // Synapse sends every token to MAS's introspection endpoint with the shared secret, and
    // the stand-in reports it inactive.
    let (status, whoami) = through_nginx(
        node,
        "/_matrix/client/v3/account/whoami",
        Some("not-a-token"),
    );
    assert_eq!(status, 401, "{whoami}");
    assert!(whoami.contains("M_UNKNOWN_TOKEN"), "{whoami}");
    // The compatibility layer now goes to MAS.
    let (status, flows) = route_serves(
        node,
        "/_matrix/client/v3/login",
        "delegated_oidc_compatibility",
    );
    assert_eq!(status, 200, "{flows}");
    assert!(
        flows.contains("org.matrix.msc3824.delegated_oidc_compatibility"),
        "{flows}"
    );

    let again = node.masrun(&project, &setup_script(), &[]);
    again.assert_status(0);
    assert_eq!(
        changed_count(&again, &host),
        0,
        "{:?}",
        again.changed_steps()
    );
    assert_eq!(main_pid(node, SYNAPSE_UNIT), delegated_pid);

    // Disabling MAS hands logins back to Synapse and removes MAS, keeping its database.
    let mut disabled = delegating.clone();
    disabled["matrix_authentication_service_enabled"] = json!(false);
    project.set_vars(&disabled);
    let removal = node.masrun(&project, &setup_script(), &[]);
    removal.assert_status(0);
    assert!(
        removal
            .all_output()
            .contains("its database matrix_authentication_service was kept"),
        "{}",
        removal.all_output()
    );
    let unit = node.exec(
        &["test", "-e", &format!("/etc/systemd/system/{MAS_UNIT}")],
        None,
    );
    assert!(!unit.status.success(), "the unit file remains");
    let files = node.exec(
        &["test", "-e", "/matrix/matrix-authentication-service"],
        None,
    );
    assert!(!files.status.success(), "MAS's directory remains");
    let remaining_users = node.sh(
        "runuser -u postgres -- psql --tuples-only --no-align --dbname=matrix_authentication_service \
         --command 'SELECT count(*) FROM users'",
    );
    assert_eq!(remaining_users.trim(), "1", "the database was not kept");
    let config = homeserver_yaml(deployment);
    assert!(
        config.get("matrix_authentication_service").is_none(),
        "{config:?}"
    );
    assert_eq!(config["password_config"]["enabled"], true);
    wait_for_synapse(node);
    let (status, flows) = route_serves(node, "/_matrix/client/v3/login", "m.login.password");
    assert_eq!(status, 200, "{flows}");
    assert!(flows.contains("m.login.password"), "{flows}");
    let (status, _) = through_nginx(node, "/auth/.well-known/openid-configuration", None);
    assert_eq!(status, 404, "nginx still routes to the removed MAS");
}

/// Connects to MAS's database as MAS's role, with the password from the deployed config.yaml
/// (derived from matrix_homeserver_generic_secret_key), passed in the environment.
fn assert_role_usable(node: &Node) {
    let config = node.sh("cat /matrix/matrix-authentication-service/config/config.yaml");
    let config: Value = serde_yaml_ng::from_str(&config).unwrap();
    let database = &config["database"];
    let password = database["password"].as_str().unwrap();
    let output = node
        .command(
            &[
                "psql",
                "--host=/var/run/postgresql",
                &format!("--username={}", database["username"].as_str().unwrap()),
                &format!("--dbname={}", database["database"].as_str().unwrap()),
                "--tuples-only",
                "--no-align",
                "--command=SELECT current_user",
            ],
            &[("PGPASSWORD", password)],
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "MAS's role cannot log in: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "matrix_authentication_service"
    );
}
