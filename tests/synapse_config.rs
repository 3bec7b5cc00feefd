//! Wiring a real Synapse (from PyPI) to MAS: masrun edits its homeserver.yaml in place or
//! writes a drop-in file, keeps everything else, and Synapse starts with the result.

mod support;

use std::path::PathBuf;

use support::synapse::{Synapse, free_port, generate_config};
use support::{HOST, TestRoot};

/// A test root with a Synapse configuration where the example inventory expects it.
struct Homeserver {
    root: TestRoot,
    config: PathBuf,
    port: u16,
}

impl Homeserver {
    fn new() -> Homeserver {
        let root = TestRoot::new();
        let port = free_port();
        let config = generate_config(&root.base().join("synapse/config"), "example.com", port);
        Homeserver { root, config, port }
    }

    fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap()
    }

    fn config_data(&self) -> serde_json::Value {
        serde_yaml_ng::from_str(&self.config_text()).unwrap()
    }

    fn append(&self, text: &str) {
        let current = self.config_text();
        std::fs::write(&self.config, format!("{current}\n{text}")).unwrap();
    }
}

#[test]
fn in_place_edit_delegates_and_keeps_comments() {
    let hs = Homeserver::new();
    let before = hs.config_text();
    hs.root
        .setup(&["-e", "matrix_homeserver_generic_secret_key=abc"])
        .assert_status(0);

    let after = hs.config_text();
    for line in before
        .lines()
        .filter(|l| l.starts_with('#') || l.starts_with("server_name"))
    {
        assert!(after.contains(line), "line kept: {line}\n{after}");
    }
    let data = hs.config_data();
    let block = &data["matrix_authentication_service"];
    assert_eq!(block["enabled"], true);
    assert_eq!(
        block["endpoint"],
        "http://matrix-authentication-service:8080/auth/"
    );
    assert_eq!(block["secret"], "00cff613-35e2-5a46-8257-c6342fc4b7fb");
    assert_eq!(data["password_config"]["enabled"], false);
    assert_eq!(data["experimental_features"]["msc4108_enabled"], true);
    assert_eq!(
        data["registration_shared_secret"],
        serde_yaml_ng::from_str::<serde_json::Value>(&before).unwrap()["registration_shared_secret"]
    );

    let synapse = Synapse::start(&[&hs.config], hs.port);
    let (status, _) = synapse.get("/_matrix/client/v3/login").unwrap();
    assert_ne!(status, 200, "Synapse no longer serves its own login");

    let second = hs
        .root
        .setup(&["-e", "matrix_homeserver_generic_secret_key=abc"]);
    second.assert_status(0);
    assert_eq!(
        second.recap(HOST)["changed"],
        0,
        "{:?}",
        second.changed_steps()
    );
}

#[test]
fn msc3861_block_is_removed() {
    let hs = Homeserver::new();
    hs.append("experimental_features:\n  msc3861:\n    enabled: true\n    issuer: http://old-mas/\n  msc3266_enabled: true\n");
    hs.root.setup(&[]).assert_status(0);

    let data = hs.config_data();
    assert!(
        data["experimental_features"].get("msc3861").is_none(),
        "{}",
        hs.config_text()
    );
    assert_eq!(
        data["experimental_features"]["msc3266_enabled"], true,
        "other features kept"
    );
    Synapse::start(&[&hs.config], hs.port);
}

#[test]
fn conflicting_synapse_setting_is_rejected() {
    let hs = Homeserver::new();
    hs.append("enable_registration: true\n");
    let before = hs.config_text();
    let line = before
        .lines()
        .position(|l| l.starts_with("enable_registration"))
        .unwrap()
        + 1;

    let run = hs.root.setup(&[]);
    run.assert_status(2);
    let output = run.all_output();
    assert!(
        output.contains(&format!(
            "{}:{line}: enable_registration",
            hs.config.display()
        )),
        "{output}"
    );
    assert!(
        output
            .contains("matrix_authentication_service_config_account_password_registration_enabled"),
        "{output}"
    );
    assert_eq!(hs.config_text(), before, "homeserver.yaml unchanged");
    assert!(!hs.root.mas().exists(), "nothing installed");
}

#[test]
fn migration_keeps_synapse_login_then_switches() {
    let hs = Homeserver::new();
    hs.root
        .setup(&[
            "-e",
            "matrix_authentication_service_migration_in_progress=true",
        ])
        .assert_status(0);
    let data = hs.config_data();
    assert!(
        data.get("matrix_authentication_service").is_none(),
        "no MAS block while migrating"
    );
    // Synapse's default: password login stays on without an explicit setting.
    assert!(
        data.get("password_config").is_none(),
        "password_config written for nothing: {data:?}"
    );
    assert!(
        data.get("experimental_features").is_none()
            || data["experimental_features"]
                .get("msc4108_enabled")
                .is_none()
    );
    {
        let synapse = Synapse::start(&[&hs.config], hs.port);
        let (status, body) = synapse.get("/_matrix/client/v3/login").unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("m.login.password"), "{body}");
    }

    hs.root.setup(&[]).assert_status(0);
    let data = hs.config_data();
    assert_eq!(data["matrix_authentication_service"]["enabled"], true);
    assert_eq!(data["password_config"]["enabled"], false);
    assert_eq!(data["experimental_features"]["msc4108_enabled"], true);
}

#[test]
fn drop_in_leaves_homeserver_yaml_alone() {
    let hs = Homeserver::new();
    hs.append("password_config:\n  pepper: example-pepper\n");
    let before = hs.config_text();
    hs.root
        .setup(&[
            "-e",
            "masrun_synapse_config_method=drop-in",
            "-e",
            "matrix_synapse_password_config_pepper=example-pepper",
        ])
        .assert_status(0);
    assert_eq!(hs.config_text(), before, "homeserver.yaml untouched");

    let drop_in = hs
        .root
        .base()
        .join("synapse/config/conf.d/matrix-authentication-service.yaml");
    let data: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&drop_in).unwrap()).unwrap();
    assert_eq!(data["matrix_authentication_service"]["enabled"], true);
    assert_eq!(data["password_config"]["enabled"], false);
    assert_eq!(
        data["password_config"]["pepper"], "example-pepper",
        "the drop-in keeps the live pepper"
    );
    Synapse::start(&[&hs.config, &drop_in], hs.port);
}

#[test]
fn disabling_mas_hands_login_back() {
    let hs = Homeserver::new();
    hs.root.setup(&[]).assert_status(0);
    assert!(
        hs.config_data()
            .get("matrix_authentication_service")
            .is_some()
    );

    hs.root
        .setup(&["-e", "matrix_authentication_service_enabled=false"])
        .assert_status(0);
    let data = hs.config_data();
    assert!(
        data.get("matrix_authentication_service").is_none(),
        "{}",
        hs.config_text()
    );
    assert_eq!(data["password_config"]["enabled"], true);
    Synapse::start(&[&hs.config], hs.port);
}

/// Synapse checks every access token with MAS once it delegates: an unknown token gets 401
/// when MAS responds, and 503 when MAS is unreachable.
#[test]
fn synapse_checks_tokens_with_mas() {
    use support::synapse::{MasStandIn, http_get_with_token};

    let hs = Homeserver::new();
    let mas_port_placeholder = free_port();
    let run = |web_port: u16| {
        hs.root.setup(&[
            "-e",
            &format!("matrix_synapse_matrix_authentication_service_endpoint=http://127.0.0.1:{web_port}/auth/"),
        ])
    };
    run(mas_port_placeholder).assert_status(0);
    let stand_in = MasStandIn::start(&hs.root.mas().join("config/config.yaml"), hs.root.path());
    run(stand_in.web_port).assert_status(0);

    let synapse = Synapse::start(&[&hs.config], hs.port);
    let (status, body) =
        http_get_with_token(hs.port, "/_matrix/client/v3/account/whoami", "not-a-token").unwrap();
    assert_eq!(status, 401, "{body}\n{}", synapse.log_text());
    assert!(body.contains("M_UNKNOWN_TOKEN"), "{body}");

    drop(stand_in);
    let (status, body) = http_get_with_token(
        hs.port,
        "/_matrix/client/v3/account/whoami",
        "another-token",
    )
    .unwrap();
    assert_eq!(status, 503, "MAS unreachable: {body}");
}

/// element-hq/matrix-authentication-service#5216, with Synapse on SQLite: setup counts its users
/// with the host's sqlite3 and refuses to delegate logins to a MAS that has none.
#[test]
fn sqlite_users_block_delegation() {
    use support::postgres::{Cluster, SUPERUSER};

    let hs = Homeserver::new();
    {
        let _synapse = Synapse::start(&[&hs.config], hs.port);
        let register = support::synapse::venv().join("bin/register_new_matrix_user");
        let output = std::process::Command::new(register)
            .args(["--config"])
            .arg(&hs.config)
            .args([
                "--user",
                "alice",
                "--password",
                "alice-password",
                "--no-admin",
            ])
            .arg(format!("http://127.0.0.1:{}", hs.port))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "register_new_matrix_user: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let before = hs.config_text();

    // MAS's side: an empty server, so its database does not exist yet.
    let cluster = Cluster::start();
    let postgres = serde_json::json!({
        "masrun_manage_services": true,
        "postgres_connection_username": SUPERUSER,
        "postgres_connection_password": cluster.password,
        "postgres_connection_port": cluster.port,
        "postgres_db_name": "postgres",
        "masrun_postgres_connection_socket_dir": cluster.socket_dir().display().to_string(),
    })
    .to_string();
    let run = hs.root.setup(&["-e", &postgres]);
    run.assert_status(2);
    let output = run.all_output();
    assert!(output.contains("1 local user(s)"), "{output}");
    assert!(output.contains("masrun_mas_fresh_start"), "{output}");
    assert_eq!(hs.config_text(), before, "homeserver.yaml changed");
    assert!(!hs.root.mas().exists(), "MAS files were written");

    // Files only, as in the example inventory: SQLite is still counted, and MAS cannot hold
    // users that syn2mas never read.
    let files_only = hs.root.setup(&[]);
    files_only.assert_status(2);
    let output = files_only.all_output();
    assert!(output.contains("1 local user(s)"), "{output}");
    assert!(output.contains("synapse_port_db"), "{output}");
    assert_eq!(hs.config_text(), before, "homeserver.yaml changed");
}

/// Where masrun does not manage the database server, it cannot count the users of a Synapse on
/// PostgreSQL, and warns instead of staying silent.
#[test]
fn unmanaged_postgres_users_warn() {
    let hs = Homeserver::new();
    let text = hs.config_text();
    let start = text.find("database:\n").unwrap();
    let end = start + text[start..].find("\nlog_config").unwrap();
    let postgres = "database:\n  name: psycopg2\n  args:\n    user: synapse\n    database: synapse_main\n    host: db.invalid";
    std::fs::write(
        &hs.config,
        format!("{}{postgres}{}", &text[..start], &text[end..]),
    )
    .unwrap();

    let run = hs.root.setup(&[]);
    run.assert_status(0);
    let output = run.all_output();
    assert!(
        output.contains("cannot check that Synapse's users in synapse_main"),
        "{output}"
    );
}
