//! `masrun setup` with the local connection against the example inventory, relocated into a
//! temporary root: files, modes, idempotence, check mode, diffs, and the rendering and
//! validation regressions operators have hit with MAS deployments.

mod support;

use std::path::Path;

use support::{HOST, TEST_UID, TestRoot, mas_schema_path, masrun};

fn config(root: &TestRoot) -> serde_json::Value {
    serde_yaml_ng::from_str(&root.read("config/config.yaml")).expect("config.yaml parses")
}

#[test]
fn setup_writes_playbook_layout() {
    let root = TestRoot::new();
    root.setup(&[]).assert_status(0);

    let mas = root.mas();
    for dir in ["", "bin", "config", "data", "data/keys"] {
        let path = mas.join(dir);
        assert!(path.is_dir(), "{} is a directory", path.display());
        assert_eq!(root.mode(&path), 0o750, "mode of {}", path.display());
        assert_eq!(
            root.owner(&path),
            (TEST_UID, TEST_UID),
            "owner of {}",
            path.display()
        );
    }
    for key in ["rsa-2048", "ecdsa-p256", "ecdsa-p384", "ecdsa-k256"] {
        let path = mas.join(format!("data/keys/{key}.priv.pem"));
        let pem = std::fs::read_to_string(&path).expect("key exists");
        assert!(pem.contains("PRIVATE KEY"), "{key} is a PEM private key");
        assert_eq!(root.mode(&path), 0o600, "mode of {key}");
        assert_eq!(root.owner(&path), (TEST_UID, TEST_UID), "owner of {key}");
    }
    let files = [
        ("config/config.yaml", 0o640),
        ("config/env", 0o640),
        ("config/labels", 0o644),
        ("bin/mas-cli", 0o755),
        ("bin/register-user", 0o755),
    ];
    for (file, mode) in files {
        let path = mas.join(file);
        assert_eq!(root.mode(&path), mode, "mode of {file}");
        assert_eq!(root.owner(&path), (TEST_UID, TEST_UID), "owner of {file}");
    }
    let unit = root
        .unit_dir()
        .join("matrix-authentication-service.service");
    assert_eq!(root.mode(&unit), 0o644);
    assert_eq!(root.owner(&unit), (0, 0));
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        unit_text.contains("ExecStart="),
        "unit has ExecStart:\n{unit_text}"
    );
    assert!(
        unit_text.contains(&format!("{}/config/config.yaml", mas.display())),
        "unit mounts the relocated config:\n{unit_text}"
    );
}

#[test]
fn config_validates_against_mas_schema() {
    let root = TestRoot::new();
    root.setup(&[]).assert_status(0);

    let schema_path = mas_schema_path();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&schema_path)
            .unwrap_or_else(|e| panic!("MAS schema {}: {e}", schema_path.display())),
    )
    .unwrap();
    // Formats stay unchecked, as MAS's own deserializer does: `database.host` is the
    // socket directory `/run-postgres`, which the schema's `hostname` format would reject.
    let validator = jsonschema::options()
        .should_validate_formats(false)
        .build(&schema)
        .expect("schema compiles");
    let instance = config(&root);
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "config.yaml violates the MAS schema:\n{}",
        errors.join("\n")
    );
}

#[test]
fn config_has_public_urls_and_derived_secrets() {
    let root = TestRoot::new();
    root.setup(&["-e", "matrix_homeserver_generic_secret_key=abc"])
        .assert_status(0);

    let config = config(&root);
    assert_eq!(
        config["http"]["public_base"],
        "https://matrix.example.com/auth/"
    );
    assert_eq!(config["http"]["issuer"], "https://matrix.example.com/auth/");
    assert_eq!(
        config["database"]["password"],
        "c38e18e7-ebaa-5887-9c64-1d0a673d88c7"
    );
    assert_eq!(
        config["matrix"]["secret"],
        "00cff613-35e2-5a46-8257-c6342fc4b7fb"
    );
    assert_eq!(config["matrix"]["homeserver"], "example.com");
    assert_eq!(config["database"]["host"], "/run-postgres");
}

#[test]
fn second_run_changes_nothing() {
    let root = TestRoot::new();
    let first = root.setup(&[]);
    first.assert_status(0);
    assert!(first.recap(HOST)["changed"].as_u64().unwrap() > 0);

    let second = root.setup(&[]);
    second.assert_status(0);
    assert_eq!(
        second.recap(HOST)["changed"],
        0,
        "second run changed: {:?}",
        second.changed_steps()
    );
}

#[test]
fn check_mode_changes_nothing() {
    let root = TestRoot::new();
    let run = root.setup(&["--check"]);
    run.assert_status(0);
    assert!(
        run.recap(HOST)["changed"].as_u64().unwrap() > 0,
        "check mode reports changes"
    );
    assert!(
        !root.base().exists(),
        "check mode created {}",
        root.base().display()
    );
    assert!(
        !root.unit_dir().exists(),
        "check mode created the unit directory"
    );
}

#[test]
fn one_variable_changes_only_dependent_files() {
    let root = TestRoot::new();
    root.setup(&[]).assert_status(0);

    let run = root.setup(&[
        "-e",
        "matrix_authentication_service_config_account_password_change_allowed=false",
    ]);
    run.assert_status(0);
    let changed = run.changed_steps();
    assert_eq!(changed.len(), 1, "changed steps: {changed:?}");
    assert!(
        changed[0].ends_with("config/config.yaml"),
        "changed steps: {changed:?}"
    );

    let run = root.setup(&[
        "-e",
        "matrix_authentication_service_config_account_password_change_allowed=false",
        "-e",
        "matrix_authentication_service_container_network=other-net",
    ]);
    run.assert_status(0);
    let changed = run.changed_steps();
    assert!(
        changed
            .iter()
            .any(|s| s.ends_with("matrix-authentication-service.service")),
        "the unit changes with the network: {changed:?}"
    );
    assert!(
        !changed.iter().any(|s| s.ends_with("config.yaml")),
        "config.yaml does not depend on the container network: {changed:?}"
    );
}

#[test]
fn diff_masks_secrets() {
    let root = TestRoot::new();
    let run = root.setup(&[
        "--diff",
        "--check",
        "-e",
        "matrix_homeserver_generic_secret_key=abc",
    ]);
    run.assert_status(0);
    let output = run.all_output();
    assert!(output.contains("+++ b"), "diff shown:\n{output}");
    assert!(output.contains("********"), "secrets masked:\n{output}");
    for secret in [
        "c38e18e7-ebaa-5887-9c64-1d0a673d88c7",
        "00cff613-35e2-5a46-8257-c6342fc4b7fb",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        assert!(
            !output.contains(secret),
            "secret {secret} leaked:\n{output}"
        );
    }
}

/// Runs `masrun setup` with human output, relocated into `root` like [`TestRoot::setup`].
fn setup_human(root: &TestRoot, extra: &[&str]) -> support::Run {
    let mut args = root.extra_vars();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("setup".into());
    masrun(&args)
}

/// Asserts that no secret appears anywhere in a run's stdout or stderr.
#[track_caller]
fn assert_not_printed(run: &support::Run, secrets: &[&str]) {
    let output = run.all_output();
    for secret in secrets {
        assert!(
            !output.contains(secret),
            "secret {secret:?} leaked:\n{output}"
        );
    }
}

/// Builds the `-e` JSON that replaces the example's upstream provider by one with `client_secret`.
fn provider_with_secret(client_secret: serde_json::Value) -> String {
    serde_json::json!({
        "matrix_authentication_service_config_upstream_oauth2_providers": [{
            "id": "01HFVBY12TMNTYTBV8W921M5FA",
            "issuer": "https://sso.example.com/",
            "client_id": "matrix-authentication-service",
            "client_secret": client_secret,
            "token_endpoint_auth_method": "client_secret_post",
        }]
    })
    .to_string()
}

/// A Synapse configuration with secrets of its own, which masrun edits in place.
const HOMESERVER_YAML: &str = "\
server_name: example.com
database:
  name: psycopg2
  args:
    user: synapse
    password: synapse-db-password-0001
    database: synapse
macaroon_secret_key: \"macaroon-secret-0002\"
registration_shared_secret: 'registration-secret-0003'
form_secret: form-secret-0004
matrix_authentication_service:
  enabled: true
  endpoint: http://matrix-authentication-service:8080/auth/
  secret: old-shared-secret-0005
";

#[test]
fn diff_masks_deployed_secrets() {
    let root = TestRoot::new();
    let synapse_config = root.base().join("synapse/config");
    std::fs::create_dir_all(&synapse_config).unwrap();
    std::fs::write(synapse_config.join("homeserver.yaml"), HOMESERVER_YAML).unwrap();
    let synapse_secrets = [
        "synapse-db-password-0001",
        "macaroon-secret-0002",
        "registration-secret-0003",
        "form-secret-0004",
        "old-shared-secret-0005",
    ];

    let first = setup_human(&root, &["--diff"]);
    first.assert_status(0);
    assert!(
        first.all_output().contains("homeserver.yaml"),
        "homeserver.yaml edited:\n{}",
        first.all_output()
    );
    assert_not_printed(&first, &synapse_secrets);

    let deployed = config(&root);
    let deployed_secrets: Vec<String> = [
        &deployed["database"]["password"],
        &deployed["matrix"]["secret"],
        &deployed["secrets"]["encryption"],
        &deployed["upstream_oauth2"]["providers"][0]["client_secret"],
    ]
    .iter()
    .map(|value| value.as_str().expect("a deployed secret").to_string())
    .collect();
    let mut old_secrets: Vec<&str> = deployed_secrets.iter().map(String::as_str).collect();
    old_secrets.extend(synapse_secrets);

    let new_encryption = "b".repeat(64);
    let changes = [
        "--check".to_string(),
        "--diff".to_string(),
        "-e".to_string(),
        "matrix_homeserver_generic_secret_key=rotated-generic-secret-0123456789".to_string(),
        "-e".to_string(),
        "masrun_allow_encryption_secret_change=true".to_string(),
        "-e".to_string(),
        format!("matrix_authentication_service_config_secrets_encryption={new_encryption}"),
        "-e".to_string(),
        provider_with_secret("rotated-client-secret".into()),
    ];
    let changes: Vec<&str> = changes.iter().map(String::as_str).collect();

    let human = setup_human(&root, &changes);
    human.assert_status(0);
    let output = human.all_output();
    for line in [
        "-  password: ********",
        "+  password: ********",
        "-  encryption: ********",
        "-    client_secret: ********",
        "-  secret: ********",
    ] {
        assert!(output.contains(line), "diff has {line:?}:\n{output}");
    }
    assert_not_printed(&human, &old_secrets);

    let json = root.setup(&changes);
    json.assert_status(0);
    assert!(
        json.stdout().contains("+++ b"),
        "diff shown:\n{}",
        json.stdout()
    );
    assert_not_printed(&json, &old_secrets);
}

#[test]
fn diff_masks_multiline_escaped_and_numeric_secrets() {
    let cases = [
        (
            serde_json::json!("CLIENTsec\nCLIENTLINE2 more"),
            vec!["CLIENTsec", "CLIENTLINE2 more"],
        ),
        (serde_json::json!("ctl\u{7}BELLx"), vec!["BELLx"]),
        (serde_json::json!(987654321987_u64), vec!["987654321987"]),
    ];
    for (secret, pieces) in cases {
        let provider = provider_with_secret(secret.clone());
        let root = TestRoot::new();
        let args = ["--check", "--diff", "-e", &provider];

        // setup rejects a client_secret that is not a string, without printing it.
        let expected = if secret.is_number() { 2 } else { 0 };
        let human = setup_human(&root, &args);
        human.assert_status(expected);
        if expected == 0 {
            assert!(
                human.all_output().contains("client_secret: "),
                "diff shows the provider:\n{}",
                human.all_output()
            );
        }
        assert_not_printed(&human, &pieces);

        let json = root.setup(&args);
        json.assert_status(expected);
        assert_not_printed(&json, &pieces);
        assert!(
            json.stdout()
                .lines()
                .all(|line| serde_json::from_str::<serde_json::Value>(line).is_ok()),
            "every line of {secret} is JSON:\n{}",
            json.stdout()
        );

        let expression = "vars.matrix_authentication_service_config_upstream_oauth2_providers";
        let eval = masrun(&["-e", &provider, "eval", expression]);
        eval.assert_status(0);
        assert!(
            eval.stdout().contains("client_secret: "),
            "{}",
            eval.stdout()
        );
        assert_not_printed(&eval, &pieces);

        let eval_json = masrun(&["-e", &provider, "eval", "--output", "json", expression]);
        eval_json.assert_status(0);
        assert_eq!(
            eval_json.events()[0]["result"][0]["client_secret"],
            "********",
            "{}",
            eval_json.stdout()
        );
        assert_not_printed(&eval_json, &pieces);
    }
}

#[test]
fn short_secret_masked_at_its_key() {
    let provider = provider_with_secret("yes".into());
    let root = TestRoot::new();
    let run = setup_human(&root, &["--check", "--diff", "-e", &provider]);
    run.assert_status(0);
    let output = run.all_output();
    assert!(
        output.contains("+    client_secret: '********'"),
        "diff masks the value:\n{output}"
    );
    assert!(!output.contains("client_secret: 'yes'"), "{output}");

    let eval = masrun(&[
        "-e",
        &provider,
        "eval",
        "vars.matrix_authentication_service_config_upstream_oauth2_providers",
    ]);
    eval.assert_status(0);
    assert!(
        eval.stdout().contains("client_secret: '********'"),
        "{}",
        eval.stdout()
    );

    let eval_json = masrun(&[
        "-e",
        &provider,
        "eval",
        "--output",
        "json",
        "vars.matrix_authentication_service_config_upstream_oauth2_providers",
    ]);
    eval_json.assert_status(0);
    assert_eq!(
        eval_json.events()[0]["result"][0]["client_secret"],
        "********",
        "{}",
        eval_json.stdout()
    );
}

#[test]
fn render_error_hides_jinja_in_secrets() {
    let nested = provider_with_secret("CLIENTSECRETabc{%def".into());
    let cases = [
        (nested.as_str(), "CLIENTSECRETabc"),
        (
            "matrix_homeserver_generic_secret_key='GENSECRETabc{{def'",
            "GENSECRETabc",
        ),
    ];
    for (variable, secret) in cases {
        let root = TestRoot::new();
        let human = setup_human(&root, &["--check", "-e", variable]);
        human.assert_status(2);
        let output = human.all_output();
        assert!(output.contains("failed to render"), "{output}");
        assert!(
            output.contains("!unsafe"),
            "tells how to quote it:\n{output}"
        );
        assert_not_printed(&human, &[secret]);

        let json = root.setup(&["--check", "-e", variable]);
        json.assert_status(2);
        assert_not_printed(&json, &[secret]);
    }
}

#[test]
fn undefined_name_inside_secret_hidden() {
    let provider = provider_with_secret("CLIENTabc{{ xyzzysecretpart }}".into());
    let pieces = ["CLIENTabc", "xyzzysecretpart"];
    let root = TestRoot::new();

    let human = setup_human(&root, &["--check", "-e", &provider]);
    human.assert_status(2);
    assert!(
        human.all_output().contains("is undefined"),
        "{}",
        human.all_output()
    );
    assert_not_printed(&human, &pieces);

    let json = root.setup(&["--check", "-e", &provider]);
    json.assert_status(2);
    assert_not_printed(&json, &pieces);

    let eval = masrun(&[
        "-e",
        &provider,
        "eval",
        "vars.matrix_authentication_service_config_upstream_oauth2_providers",
    ]);
    eval.assert_status(2);
    assert_not_printed(&eval, &pieces);
}

#[test]
fn task_help_prints_doc_comment() {
    let run = masrun(&["setup", "--help"]);
    run.assert_status(0);
    assert!(
        run.stdout()
            .contains("Install or update Matrix Authentication Service")
    );
}

#[test]
fn unknown_task_is_bad_input() {
    let run = masrun(&["no-such-task"]);
    run.assert_status(2);
    assert!(
        run.stderr().contains("task 'no-such-task' not found"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("setup"),
        "lists available tasks: {}",
        run.stderr()
    );
}

/// Asserts that a run stopped at validation: exit 2, nothing written.
#[track_caller]
fn assert_rejected(root: &TestRoot, run: &support::Run, needles: &[&str]) {
    run.assert_status(2);
    let output = run.all_output();
    for needle in needles {
        assert!(
            output.contains(needle),
            "output lacks {needle:?}:\n{output}"
        );
    }
    assert!(
        !root.base().exists(),
        "nothing may be written: {} exists",
        root.base().display()
    );
    assert!(
        !Path::new(&root.unit_dir()).exists(),
        "nothing may be written: unit dir exists"
    );
}

// Field regressions. Each test is named for the behaviour it pins; the comment cites the
// public report it comes from.

/// element-hq/matrix-authentication-service#2126: a readable provider id made MAS refuse its config.
#[test]
fn provider_id_must_be_ulid() {
    let root = TestRoot::new();
    let run = root.setup(&[
        "-e",
        r#"{"matrix_authentication_service_config_upstream_oauth2_providers": [{"id": "keycloak", "issuer": "https://sso.example.com/realms/example", "client_id": "matrix", "client_secret": "example-secret", "token_endpoint_auth_method": "client_secret_post"}]}"#,
    ]);
    assert_rejected(
        &root,
        &run,
        &[
            "matrix_authentication_service_config_upstream_oauth2_providers",
            "[0].id",
            "keycloak",
            "ULID",
        ],
    );
}

/// spantaleev/matrix-docker-ansible-deploy PR#48: a quote or backtick in a secret broke the YAML.
#[test]
fn secrets_with_quotes_round_trip() {
    let root = TestRoot::new();
    let password = "p\"ss`w#rd: x";
    let email_password = "!example{secret}";
    let matrix_secret = "line1\\nline2";
    let extra = serde_json::json!({
        "matrix_authentication_service_config_database_password": password,
        "matrix_authentication_service_config_email_password": email_password,
        "matrix_authentication_service_config_email_username": "mailer",
        "matrix_authentication_service_config_matrix_secret": matrix_secret,
    });
    root.setup(&["-e", &extra.to_string()]).assert_status(0);

    let config = config(&root);
    assert_eq!(config["database"]["password"], password);
    assert_eq!(config["email"]["password"], email_password);
    assert_eq!(config["matrix"]["secret"], matrix_secret);
}

/// MDAD validate_config.yml checks only the length; MAS needs 64 hex characters (32 bytes).
#[test]
fn encryption_secret_must_be_64_hex() {
    for value in ["changeme", &format!("zz{}", "0".repeat(62))] {
        let root = TestRoot::new();
        let run = root.setup(&[
            "-e",
            &format!("matrix_authentication_service_config_secrets_encryption={value}"),
        ]);
        assert_rejected(
            &root,
            &run,
            &[
                "matrix_authentication_service_config_secrets_encryption",
                "64 hexadecimal",
                "openssl rand -hex 32",
            ],
        );
    }
}

/// element-hq/matrix-authentication-service#4977: a changed encryption secret makes stored
/// data unreadable, so setup refuses to change it on a deployed host.
#[test]
fn encryption_secret_change_is_refused() {
    let root = TestRoot::new();
    root.setup(&[]).assert_status(0);
    let before = root.read("config/config.yaml");

    let other = "f".repeat(64);
    let run = root.setup(&[
        "-e",
        &format!("matrix_authentication_service_config_secrets_encryption={other}"),
    ]);
    run.assert_status(2);
    assert!(
        run.all_output()
            .contains("matrix_authentication_service_config_secrets_encryption")
    );
    assert_eq!(
        root.read("config/config.yaml"),
        before,
        "config.yaml unchanged"
    );
}

/// element-hq/matrix-authentication-service#2256: a prefix with a trailing slash broke MAS URLs.
#[test]
fn path_prefix_trailing_slash_is_rejected() {
    let root = TestRoot::new();
    let run = root.setup(&["-e", "matrix_authentication_service_path_prefix=/auth/"]);
    assert_rejected(
        &root,
        &run,
        &["matrix_authentication_service_path_prefix", "got", "/auth/"],
    );
}

/// element-hq/matrix-authentication-service#2800: issuer without the trailing slash broke clients.
#[test]
fn issuer_has_one_trailing_slash_and_override_warns() {
    let root = TestRoot::new();
    let run = root.setup(&[
        "-e",
        "matrix_authentication_service_hostname=auth.example.com matrix_authentication_service_path_prefix=/",
        "-e",
        r#"{"matrix_authentication_service_configuration_extension_yaml": "http:\n  issuer: https://auth.example.com\n"}"#,
    ]);
    run.assert_status(0);
    assert!(
        run.all_output().contains("overrides http.issuer"),
        "warning about the issuer override:\n{}",
        run.all_output()
    );
    let config = config(&root);
    assert_eq!(config["http"]["public_base"], "https://auth.example.com/");
}

/// spantaleev/matrix-docker-ansible-deploy#4536: migrated non-ASCII passwords need normalisation.
#[test]
fn bcrypt_scheme_keeps_unicode_normalization() {
    let root = TestRoot::new();
    root.setup(&[
        "-e",
        "matrix_authentication_service_migration_in_progress=true",
    ])
    .assert_status(0);
    let schemes = config(&root)["passwords"]["schemes"].clone();
    assert_eq!(schemes[0]["version"], 1);
    assert_eq!(schemes[0]["algorithm"], "bcrypt");
    assert_eq!(schemes[0]["unicode_normalization"], true);
    assert_eq!(schemes[1]["version"], 2);
    assert_eq!(schemes[1]["algorithm"], "argon2id");

    let root = TestRoot::new();
    let run = root.setup(&[
        "-e",
        r#"{"matrix_authentication_service_config_passwords_schemes": [{"version": 1, "algorithm": "bcrypt"}, {"version": 2, "algorithm": "argon2id"}]}"#,
    ]);
    run.assert_status(0);
    assert!(
        run.all_output().contains("unicode_normalization"),
        "warning names the missing option:\n{}",
        run.all_output()
    );
}

/// element-hq/matrix-authentication-service PR#4353: the Synapse pepper must be scheme 1's secret.
#[test]
fn synapse_pepper_becomes_bcrypt_secret() {
    let root = TestRoot::new();
    root.setup(&["-e", "matrix_synapse_password_config_pepper=example-pepper"])
        .assert_status(0);
    assert_eq!(
        config(&root)["passwords"]["schemes"][0]["secret"],
        "example-pepper"
    );

    let root = TestRoot::new();
    let run = root.setup(&[
        "-e",
        "matrix_synapse_password_config_pepper=example-pepper",
        "-e",
        r#"{"matrix_authentication_service_config_passwords_schemes": [{"version": 1, "algorithm": "bcrypt", "unicode_normalization": true}, {"version": 2, "algorithm": "argon2id"}]}"#,
    ]);
    run.assert_status(0);
    let output = run.all_output();
    assert!(
        output.contains("matrix_synapse_password_config_pepper"),
        "{output}"
    );
    assert!(
        output.contains("matrix_authentication_service_config_passwords_schemes"),
        "{output}"
    );
}

/// spantaleev/matrix-docker-ansible-deploy#4349: Synapse refuses registration with delegated auth.
#[test]
fn synapse_registration_with_mas_is_rejected() {
    let root = TestRoot::new();
    let run = root.setup(&["-e", "matrix_synapse_enable_registration=true"]);
    assert_rejected(
        &root,
        &run,
        &[
            "matrix_synapse_enable_registration",
            "matrix_authentication_service_config_account_password_registration_enabled",
        ],
    );
}

/// element-hq/matrix-authentication-service#1505: blackhole email leaves users stuck at verification.
#[test]
fn blackhole_email_with_required_email_warns() {
    let root = TestRoot::new();
    let run = root.setup(&[
        "-e",
        "exim_relay_enabled=false matrix_authentication_service_config_email_transport=blackhole",
        "-e",
        r#"{"matrix_authentication_service_config_account_password_registration_enabled": true, "matrix_authentication_service_config_account_password_registration_email_required": true, "matrix_authentication_service_config_account_password_recovery_enabled": true}"#,
    ]);
    run.assert_status(0);
    let output = run.all_output();
    assert!(
        output.contains(
            "matrix_authentication_service_config_account_password_registration_email_required"
        ),
        "{output}"
    );
    assert!(
        output.contains("matrix_authentication_service_config_account_password_recovery_enabled"),
        "{output}"
    );
    assert!(output.contains("mas-cli manage verify-email"), "{output}");
}

/// element-hq/matrix-authentication-service#2780: an unknown top-level key is a typo MAS rejects.
#[test]
fn unknown_extension_key_suggests_known_key() {
    let root = TestRoot::new();
    let run = root.setup(&[
        "-e",
        r#"{"matrix_authentication_service_configuration_extension_yaml": "client:\n  - client_id: 0000000000000000000SYNAPSE\n"}"#,
    ]);
    let output = run.all_output();
    assert!(output.contains("unknown top-level key client"), "{output}");
    assert!(output.contains("did you mean clients?"), "{output}");
}

#[test]
fn validation_error_names_file_and_line() {
    let root = TestRoot::new();
    let vars = root.path().join("bad.yml");
    std::fs::write(
        &vars,
        "# bad values\nmatrix_authentication_service_config_email_transport: sendmail\n",
    )
    .unwrap();
    let run = root.setup(&["-e", &format!("@{}", vars.display())]);
    assert_rejected(
        &root,
        &run,
        &[
            &format!("{}:2", vars.display()),
            "matrix_authentication_service_config_email_transport",
            "blackhole, smtp, aws_ses",
        ],
    );
}

#[test]
fn misspelt_variable_gets_suggestion() {
    let root = TestRoot::new();
    let run = root.setup(&[
        "--check",
        "-e",
        "matrix_authentication_service_config_email_tranport=smtp",
    ]);
    run.assert_status(0);
    let output = run.all_output();
    assert!(
        output.contains("matrix_authentication_service_config_email_tranport"),
        "{output}"
    );
    assert!(
        output.contains("did you mean matrix_authentication_service_config_email_transport?"),
        "{output}"
    );
}

#[test]
fn undefined_variable_names_chain() {
    let root = TestRoot::new();
    let run = root.setup(&[
        "-e",
        "matrix_server_fqn_matrix={{ matrix_nonexistent_domain }}",
    ]);
    assert_rejected(
        &root,
        &run,
        &["matrix_nonexistent_domain", "matrix_server_fqn_matrix"],
    );
}

#[test]
fn mas_cli_wrapper_keeps_arguments_whole() {
    let root = TestRoot::new();
    root.setup(&[]).assert_status(0);

    // A recording `docker` on PATH prints each argument it receives on its own line.
    let fake_bin = root.path().join("fake-bin");
    std::fs::create_dir(&fake_bin).unwrap();
    let recorder = fake_bin.join("docker");
    std::fs::write(
        &recorder,
        "#!/bin/sh\nfor arg in \"$@\"; do printf '%s\\n' \"$arg\"; done\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &recorder,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!("{}:{}", fake_bin.display(), std::env::var("PATH").unwrap());

    let output = std::process::Command::new(root.mas().join("bin/mas-cli"))
        .args([
            "manage",
            "set-display-name",
            "alice",
            "Alice in *Wonderland*",
        ])
        .env("PATH", &path)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let arguments: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        arguments,
        [
            "exec",
            "matrix-authentication-service",
            "mas-cli",
            "manage",
            "set-display-name",
            "alice",
            "Alice in *Wonderland*"
        ]
    );

    let output = std::process::Command::new(root.mas().join("bin/mas-cli"))
        .env("PATH", &path)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&output.stdout).ends_with("mas-cli\nhelp\n"),
        "no arguments runs help"
    );
}

#[test]
fn migration_omits_compat_layer_labels() {
    let root = TestRoot::new();
    root.setup(&[]).assert_status(0);
    let labels = root.read("config/labels");
    assert!(
        labels.contains("_internalmatrix-authentication-service-public-compatibility-layer.rule=")
    );
    assert!(
        labels
            .contains("_internalmatrix-authentication-service-internal-compatibility-layer.rule=")
    );
    assert!(labels.contains(
        "PathRegexp(`^/_matrix/client/(?P<version>([^/]+))/(?P<endpoint>(login|logout|refresh))`)"
    ));

    root.setup(&[
        "-e",
        "matrix_authentication_service_migration_in_progress=true",
    ])
    .assert_status(0);
    let labels = root.read("config/labels");
    assert!(
        !labels.contains("compatibility-layer"),
        "compat routers omitted while migrating:\n{labels}"
    );
    assert!(
        labels.contains("traefik.http.routers.matrix-authentication-service.rule="),
        "main router stays"
    );
}

#[test]
fn podman_runtime_changes_unit() {
    let root = TestRoot::new();
    root.setup(&["-e", "masrun_container_runtime=podman"])
        .assert_status(0);
    let unit = std::fs::read_to_string(
        root.unit_dir()
            .join("matrix-authentication-service.service"),
    )
    .unwrap();
    assert!(unit.contains("/usr/bin/env podman create"), "{unit}");
    assert!(
        !unit.contains("docker"),
        "no docker in a podman unit:\n{unit}"
    );
}

/// MDAD's MAS guide and MAS's syn2mas checks: password providers stop working once MAS handles
/// logins, so their users are locked out.
#[test]
fn password_providers_block_delegation() {
    let providers = "matrix_synapse_ext_password_provider_ldap_enabled=true \
                     matrix_synapse_ext_password_provider_shared_secret_auth_enabled=true";
    let root = TestRoot::new();
    let run = root.setup(&["-e", providers]);
    assert_rejected(
        &root,
        &run,
        &[
            "matrix_synapse_ext_password_provider_ldap_enabled",
            "matrix_synapse_ext_password_provider_shared_secret_auth_enabled",
            "upstream provider",
        ],
    );

    // During a migration Synapse keeps its own login, providers included.
    let migrating = TestRoot::new();
    let run = migrating.setup(&[
        "-e",
        providers,
        "-e",
        "matrix_authentication_service_migration_in_progress=true",
    ]);
    run.assert_status(0);
}

/// element-hq/matrix-authentication-service#2780: Synapse and MAS held different shared secrets,
/// so every token introspection got a 401.
#[test]
fn shared_secret_mismatch_is_rejected() {
    let root = TestRoot::new();
    let run = root.setup(&[
        "-e",
        "matrix_authentication_service_config_matrix_secret=Zm9vYmFy+/==",
        "-e",
        "matrix_synapse_matrix_authentication_service_secret=c29tZXRoaW5nIGVsc2U=",
    ]);
    assert_rejected(
        &root,
        &run,
        &[
            "matrix_synapse_matrix_authentication_service_secret",
            "matrix_authentication_service_config_matrix_secret",
            "401",
        ],
    );
    let output = run.all_output();
    assert!(!output.contains("Zm9vYmFy"), "a secret leaked: {output}");
    assert!(
        !output.contains("c29tZXRoaW5nIGVsc2U="),
        "a secret leaked: {output}"
    );

    // One variable feeds both sides, whatever characters the secret has.
    let shared = TestRoot::new();
    let run = shared.setup(&[
        "-e",
        "matrix_authentication_service_config_matrix_secret=Zm9vYmFy+/==",
    ]);
    run.assert_status(0);
    assert_eq!(config(&shared)["matrix"]["secret"], "Zm9vYmFy+/==");
}

/// A mistyped option after the task name once reached the task as an argument, and setup ran
/// for real instead of in check mode.
#[test]
fn mistyped_option_after_task_is_rejected() {
    let root = TestRoot::new();
    for typo in [&["--chekc"][..], &["--check", "typo-arg"][..]] {
        let mut args: Vec<String> = vec!["--output".into(), "json".into()];
        args.extend(root.extra_vars());
        args.push("setup".into());
        args.extend(typo.iter().map(|word| word.to_string()));
        let run = support::masrun(&args);
        assert_rejected(&root, &run, &["Usage: masrun"]);
    }
    let run = support::masrun(&["setup", "--chekc"]);
    assert!(
        run.all_output().contains("did you mean --check?"),
        "{}",
        run.all_output()
    );
}

/// Ansible reads a misspelt boolean as false; for matrix_authentication_service_enabled that
/// meant removing MAS.
#[test]
fn misspelt_boolean_is_rejected() {
    for value in [r#""ture""#, r#""yes please""#, "[true]"] {
        let root = TestRoot::new();
        let run = root.setup(&[
            "-e",
            &format!(r#"{{"matrix_authentication_service_enabled": {value}}}"#),
        ]);
        assert_rejected(
            &root,
            &run,
            &[
                "matrix_authentication_service_enabled",
                "must be true or false",
            ],
        );
    }
    let root = TestRoot::new();
    let run = root.setup(&["-e", "matrix_authentication_service_enabled=Yes"]);
    run.assert_status(0);
}

/// Characters outside the Basic Multilingual Plane were escaped as surrogate pairs, which the
/// YAML reader of the configuration rejects.
#[test]
fn emoji_in_provider_name_renders() {
    let root = TestRoot::new();
    let providers = serde_json::json!({
        "matrix_authentication_service_config_upstream_oauth2_providers": [{
            "id": "01HFVBY12TMNTYTBV8W921M5FA",
            "issuer": "https://sso.example.com/",
            "human_name": "Example SSO 🔑",
            "client_id": "matrix-authentication-service",
            "client_secret": "example-client-secret",
            "token_endpoint_auth_method": "client_secret_post",
        }]
    });
    let run = root.setup(&["-e", &providers.to_string()]);
    run.assert_status(0);
    let config = config(&root);
    assert_eq!(
        config["upstream_oauth2"]["providers"][0]["human_name"],
        "Example SSO 🔑"
    );
}

/// A ULID's first character is 0 to 7 (a ULID is 128 bits), and MAS's schema takes upper case.
#[test]
fn provider_id_overflow_and_case() {
    let cases = [
        ("81HFVBY12TMNTYTBV8W921M5FA", "the first 0 to 7"),
        (
            "01hfvby12tmntytbv8w921m5fa",
            "upper case only: 01HFVBY12TMNTYTBV8W921M5FA",
        ),
    ];
    for (id, needle) in cases {
        let root = TestRoot::new();
        let providers = serde_json::json!({
            "matrix_authentication_service_config_upstream_oauth2_providers": [{
                "id": id,
                "issuer": "https://sso.example.com/",
                "client_id": "matrix",
                "client_secret": "example-secret",
                "token_endpoint_auth_method": "client_secret_post",
            }]
        });
        let run = root.setup(&["-e", &providers.to_string()]);
        assert_rejected(&root, &run, &[id, needle]);
    }
}

/// YAML reads bare `yes` as a boolean and `0750` as a number; MAS rejects such values only when
/// it starts, so validation names them first.
#[test]
fn wrong_types_are_rejected() {
    let cases = [
        (
            r#"{"matrix_authentication_service_config_upstream_oauth2_providers": "not a list"}"#,
            "must be a list of maps",
        ),
        (
            r#"{"matrix_authentication_service_config_database_port": "abc"}"#,
            "must be a port number from 1 to 65535",
        ),
        (
            r#"{"matrix_authentication_service_config_database_username": 488}"#,
            "must be a string (got 488)",
        ),
        (
            r#"{"matrix_authentication_service_config_upstream_oauth2_providers": [{"id": "01HFVBY12TMNTYTBV8W921M5FA", "issuer": "https://sso.example.com/", "client_id": "x", "client_secret": 987654321987, "token_endpoint_auth_method": "client_secret_post"}]}"#,
            "[0].client_secret must be a string (got a value of type i64)",
        ),
    ];
    for (vars, needle) in cases {
        let root = TestRoot::new();
        let run = root.setup(&["-e", vars]);
        assert_rejected(&root, &run, &[needle]);
        assert!(
            !run.all_output().contains("987654321987"),
            "a secret leaked: {}",
            run.all_output()
        );
    }
}

/// An error about a variable derived in masrun's defaults names the operator's variable it
/// came from, since that is where the fix goes.
#[test]
fn derived_variable_error_names_source() {
    let root = TestRoot::new();
    let run = root.setup(&["-e", r#"{"matrix_domain": ["example.com"]}"#]);
    assert_rejected(
        &root,
        &run,
        &[
            "matrix_authentication_service_hostname",
            "it is derived from matrix_domain (set at the command line (-e))",
        ],
    );
}
