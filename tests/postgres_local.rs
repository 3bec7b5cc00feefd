//! The `postgres` primitive from the controller (`ansible_connection=local`) against a real
//! PostgreSQL cluster that each test starts on 127.0.0.1 and a Unix socket. The tests cover
//! roles and their passwords, databases, queries, row counts, existence checks, check mode,
//! and failure messages, which must never contain a password.

mod support;

use serde_json::{Value, json};
use support::postgres::{Cluster, SUPERUSER, uuid_like};
use support::project::Project;

const HOST: &str = "pg.example.test";

/// Builds host variables that point masrun at the cluster's socket as its superuser.
fn vars(cluster: &Cluster, extra: Value) -> Value {
    let mut vars = json!({
        "postgres_connection_username": SUPERUSER,
        "postgres_connection_password": cluster.password,
        "postgres_connection_port": cluster.port,
        "postgres_db_name": "postgres",
        "masrun_postgres_connection_socket_dir": cluster.socket_dir().display().to_string(),
    });
    vars.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    vars
}

#[track_caller]
fn assert_absent(run: &support::Run, secret: &str, what: &str) {
    assert!(
        !run.all_output().contains(secret),
        "{what} appears in the output:\n{}",
        run.all_output()
    );
}

const ROLE_AND_DATABASE: &str = r#"
let role = postgres::ensure_role(#{ role: "mas_test", password: vars.test_role_pw });
let database = postgres::ensure_database(#{ database: "mas_test_db", owner: "mas_test" });
print("results=" + json::encode([role.changed, database.changed]));
"#;

#[test]
fn role_and_database_created_once() {
    let cluster = Cluster::start();
    // The variable's name does not look secret, so only the primitive can keep it out of
    // the output.
    let first_password = format!("first-{}", uuid_like());
    let project = Project::new(
        HOST,
        &vars(&cluster, json!({"test_role_pw": first_password})),
    );
    let task = project.task("role", ROLE_AND_DATABASE);

    let first = project.run(&task, &[]);
    first.assert_status(0);
    assert_eq!(first.printed("results="), json!([true, true]));
    assert_eq!(
        first.step_message("postgres.ensure_role mas_test"),
        "created role"
    );
    assert_eq!(
        cluster.psql(
            "postgres",
            "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype \
             FROM pg_database WHERE datname = 'mas_test_db'"
        ),
        "mas_test|UTF8|C|C"
    );
    let login = cluster.psql_as(
        "mas_test",
        &first_password,
        "mas_test_db",
        "SELECT current_user",
    );
    assert!(
        login.status.success(),
        "mas_test cannot log in with its password: {}",
        String::from_utf8_lossy(&login.stderr)
    );
    assert_absent(&first, &first_password, "the role's password");

    let second = project.run(&task, &[]);
    second.assert_status(0);
    assert_eq!(second.printed("results="), json!([false, false]));
    assert_eq!(second.recap(HOST)["changed"], 0);

    // A new password: check mode reports it and leaves the old one in place.
    let second_password = format!("second-{}", uuid_like());
    project.set_vars(&vars(&cluster, json!({"test_role_pw": second_password})));
    let check = project.run(&task, &["--check"]);
    check.assert_status(0);
    assert_eq!(check.printed("results="), json!([true, false]));
    assert_eq!(
        check.step_message("postgres.ensure_role mas_test"),
        "changed the password"
    );
    let old_login = cluster.psql_as("mas_test", &first_password, "mas_test_db", "SELECT 1");
    assert!(
        old_login.status.success(),
        "check mode changed the password"
    );

    let changed = project.run(&task, &[]);
    changed.assert_status(0);
    assert_eq!(changed.printed("results="), json!([true, false]));
    let new_login = cluster.psql_as("mas_test", &second_password, "mas_test_db", "SELECT 1");
    assert!(new_login.status.success(), "the new password does not work");
    let old_login = cluster.psql_as("mas_test", &first_password, "mas_test_db", "SELECT 1");
    assert!(!old_login.status.success(), "the old password still works");
    assert_absent(&changed, &second_password, "the new password");
    assert_absent(&check, &second_password, "the new password in check mode");

    // The server saw SCRAM verifiers only, even with every statement logged.
    let log = cluster.log();
    assert!(
        log.contains("SCRAM-SHA-256$"),
        "statements are logged:\n{log}"
    );
    assert!(
        !log.contains(&first_password),
        "the server log has a password"
    );
    assert!(
        !log.contains(&second_password),
        "the server log has a password"
    );
}

#[test]
fn printed_role_password_is_masked() {
    let cluster = Cluster::start();
    let password = format!("shown-{}", uuid_like());
    let project = Project::new(HOST, &vars(&cluster, json!({"test_role_pw": password})));
    let task = project.task(
        "print",
        r#"
postgres::ensure_role(#{ role: "printed", password: vars.test_role_pw });
print("password=" + vars.test_role_pw);
"#,
    );

    let run = project.run(&task, &[]);
    run.assert_status(0);
    assert_absent(&run, &password, "the printed password");
    assert!(
        run.messages().iter().any(|m| m == "password=********"),
        "the password is masked: {:?}",
        run.messages()
    );
}

#[test]
fn wrong_superuser_password_is_reported() {
    let cluster = Cluster::start();
    let wrong = format!("wrong-{}", uuid_like());
    let mut host_vars = vars(&cluster, json!({}));
    host_vars["postgres_connection_password"] = json!(wrong);
    let project = Project::new(HOST, &host_vars);
    let task = project.task("exists", r#"postgres::exists(#{ role: "anyone" });"#);

    let run = project.run(&task, &[]);
    run.assert_status(1);
    let message = run.step_message("postgres.exists role anyone");
    assert!(
        message.contains("password authentication failed"),
        "the server's error: {message}"
    );
    assert!(message.contains(HOST), "the host: {message}");
    let socket = format!(
        "{}/.s.PGSQL.{}",
        cluster.socket_dir().display(),
        cluster.port
    );
    assert!(message.contains(&socket), "the socket: {message}");
    assert!(
        message.contains("database postgres"),
        "the database: {message}"
    );
    assert!(
        message.contains(&format!("role {SUPERUSER}")),
        "the role: {message}"
    );
    assert_absent(&run, &wrong, "the wrong password");
    assert_absent(&run, &cluster.password, "the right password");
}

#[test]
fn unreachable_server_names_target() {
    let cluster = Cluster::start();
    let closed_port = support::postgres::unused_port();
    let project = Project::new(HOST, &vars(&cluster, json!({})));
    let task = project.task(
        "closed",
        &format!(
            r#"postgres::exists(#{{ database: "postgres", connection: #{{ host: "127.0.0.1", port: {closed_port} }} }});"#
        ),
    );

    let run = project.run(&task, &[]);
    run.assert_status(1);
    let message = run.step_message("postgres.exists database postgres");
    assert!(
        message.contains(&format!("127.0.0.1:{closed_port}")),
        "the address: {message}"
    );
    assert!(
        message.to_lowercase().contains("connection refused"),
        "the error: {message}"
    );
}

const QUERIES: &str = r#"
let tcp = #{ host: "127.0.0.1" };
postgres::query(#{
    name: "create widgets",
    sql: "CREATE TABLE IF NOT EXISTS widgets (id int PRIMARY KEY, label text, data jsonb, tags text[])",
    connection: tcp,
});
let insert = "INSERT INTO widgets VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING";
let inserted = postgres::query(#{ sql: insert, params: [1, "one", #{ a: 1 }, ["x", "y"]], connection: tcp });
postgres::query(#{ sql: insert, params: [2, (), (), ()], connection: tcp });
print("inserted=" + json::encode(inserted.rows_affected));

let selected = postgres::query(#{
    sql: "SELECT id, label, data, tags, id > 1 AS later FROM widgets WHERE id >= $1 ORDER BY id",
    params: [1],
    read_only: true,
    connection: tcp,
});
print("rows=" + json::encode(selected.rows));

let counts = postgres::count_rows(#{ tables: ["widgets", "public.widgets", "missing_table"] });
print("counts=" + json::encode(counts.counts));
print("total=" + json::encode(counts.total));

print("exists=" + json::encode([
    postgres::exists(#{ table: "widgets" }).exists,
    postgres::exists(#{ table: "missing_table" }).exists,
    postgres::exists(#{ role: SUPER }).exists,
    postgres::exists(#{ role: "nobody_here" }).exists,
    postgres::exists(#{ database: "postgres" }).exists,
    postgres::exists(#{ database: "no_such_db" }).exists,
]));

try {
    postgres::query(#{ sql: "INSERT INTO widgets VALUES (9, 'nine')", read_only: true });
} catch (error) {
    print("read_only_error=" + json::encode(error.to_string()));
}
try {
    postgres::query(#{ sql: "SELECT now() AS started", read_only: true });
} catch (error) {
    print("type_error=" + json::encode(error.to_string()));
}
"#;

#[test]
fn queries_counts_and_existence() {
    let cluster = Cluster::start();
    let project = Project::new(HOST, &vars(&cluster, json!({})));
    let task = project.task(
        "queries",
        &QUERIES.replace("SUPER", &format!("{SUPERUSER:?}")),
    );

    let run = project.run(&task, &[]);
    run.assert_status(0);
    assert_eq!(run.printed("inserted="), json!(1));
    assert_eq!(
        run.printed("rows="),
        json!([
            {"id": 1, "label": "one", "data": {"a": 1}, "tags": ["x", "y"], "later": false},
            {"id": 2, "label": null, "data": null, "tags": null, "later": true},
        ])
    );
    assert_eq!(
        run.printed("counts="),
        json!({"widgets": 2, "public.widgets": 2, "missing_table": null})
    );
    assert_eq!(run.printed("total="), json!(4));
    assert_eq!(
        run.printed("exists="),
        json!([true, false, true, false, true, false])
    );
    let read_only_error = run.printed("read_only_error=");
    assert!(
        read_only_error
            .as_str()
            .unwrap()
            .contains("read-only transaction"),
        "{read_only_error}"
    );
    let type_error = run.printed("type_error=");
    assert!(
        type_error.as_str().unwrap().contains("started::text"),
        "the message suggests a cast: {type_error}"
    );
    assert_eq!(
        cluster.psql("postgres", "SELECT count(*) FROM widgets"),
        "2"
    );

    // Check mode runs read-only queries and skips the others.
    let check = project.run(&task, &["--check"]);
    check.assert_status(0);
    assert_eq!(check.step_status("create widgets"), "changed");
    assert_eq!(check.printed("counts=")["widgets"], 2);
    let before = cluster.psql("postgres", "SELECT count(*) FROM widgets");
    let check_insert = project.task(
        "check_insert",
        r#"postgres::query(#{ sql: "INSERT INTO widgets VALUES (3, 'three')" });"#,
    );
    project.run(&check_insert, &["--check"]).assert_status(0);
    assert_eq!(
        cluster.psql("postgres", "SELECT count(*) FROM widgets"),
        before
    );
}

#[test]
fn database_owner_fixed_collation_checked() {
    let cluster = Cluster::start();
    cluster.psql(
        "postgres",
        "CREATE ROLE owner_a; CREATE ROLE owner_b; \
         CREATE DATABASE owned OWNER owner_a TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'; \
         CREATE DATABASE legacy TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8';",
    );
    let project = Project::new(HOST, &vars(&cluster, json!({})));
    let owner = project.task(
        "owner",
        r#"postgres::ensure_database(#{ database: "owned", owner: "owner_b" });"#,
    );

    let check = project.run(&owner, &["--check"]);
    check.assert_status(0);
    assert_eq!(
        check.step_message("postgres.ensure_database owned"),
        "owner owner_a -> owner_b"
    );
    let owner_query = "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'owned'";
    assert_eq!(cluster.psql("postgres", owner_query), "owner_a");

    project.run(&owner, &[]).assert_status(0);
    assert_eq!(cluster.psql("postgres", owner_query), "owner_b");
    let again = project.run(&owner, &[]);
    again.assert_status(0);
    assert_eq!(again.step_status("postgres.ensure_database owned"), "ok");

    let legacy = project.task(
        "legacy",
        r#"postgres::ensure_database(#{ database: "legacy", owner: "owner_a" });"#,
    );
    let run = project.run(&legacy, &[]);
    run.assert_status(1);
    let message = run.step_message("postgres.ensure_database legacy");
    assert!(
        message.contains("LC_COLLATE C.UTF-8 (expected C)"),
        "the mismatch: {message}"
    );
    assert!(message.contains("recreating"), "the fix: {message}");
}

#[test]
fn role_password_checked_without_superuser() {
    let cluster = Cluster::start();
    let manager_password = format!("manager-{}", uuid_like());
    cluster.psql(
        "postgres",
        &format!("CREATE ROLE manager LOGIN CREATEROLE PASSWORD '{manager_password}'"),
    );
    let app_password = format!("app-{}", uuid_like());
    let mut host_vars = vars(&cluster, json!({"test_role_pw": app_password}));
    host_vars["postgres_connection_username"] = json!("manager");
    host_vars["postgres_connection_password"] = json!(manager_password);
    let project = Project::new(HOST, &host_vars);
    let task = project.task(
        "app",
        r#"postgres::ensure_role(#{ role: "app", password: vars.test_role_pw });"#,
    );

    let first = project.run(&task, &[]);
    first.assert_status(0);
    assert_eq!(first.step_status("postgres.ensure_role app"), "changed");

    // manager cannot read pg_authid, so masrun compares by logging in as app.
    let second = project.run(&task, &[]);
    second.assert_status(0);
    assert_eq!(second.step_status("postgres.ensure_role app"), "ok");

    let other_password = format!("other-{}", uuid_like());
    let mut changed_vars = host_vars.clone();
    changed_vars["test_role_pw"] = json!(other_password);
    project.set_vars(&changed_vars);
    let third = project.run(&task, &[]);
    third.assert_status(0);
    assert_eq!(
        third.step_message("postgres.ensure_role app"),
        "changed the password"
    );
    let login = cluster.psql_as("app", &other_password, "postgres", "SELECT 1");
    assert!(login.status.success(), "the new password works");
    assert_absent(&third, &other_password, "the new password");
}
