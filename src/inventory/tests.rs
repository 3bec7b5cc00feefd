//! Tests of the loaded inventory against realistic inventory directories in temporary
//! directories: host and group queries, variable layer order, `--limit` selection and
//! load errors.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;
use tempfile::TempDir;

use super::ini::UNGROUPED;
use super::*;

/// A hosts file with a nested group tree, as a larger matrix-docker-ansible-deploy setup
/// might split its servers.
const NESTED_HOSTS: &str = "\
# Matrix servers of example.com
[all:vars]
level=all_ini
ansible_user=deploy

[matrix_servers:children]
homeservers
auth_servers

[homeservers]
hs1.example.com level=host_inline ansible_host=192.0.2.11
hs2.example.com

[auth_servers]
mas1.example.com:2222
hs1.example.com

[homeservers:vars]
level=homeservers_ini

[matrix_servers:vars]
level=matrix_servers_ini

[auth_servers:vars]
level=auth_servers_ini

[monitoring]
mon.example.com

[empty]
";

/// Writes `files` (path relative to the inventory directory, content) and returns the
/// temporary directory and the hosts file path.
fn inventory_dir(hosts: &str, files: &[(&str, &str)]) -> (TempDir, PathBuf) {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("inventory");
    fs::create_dir_all(&dir).expect("create inventory dir");
    let hosts_file = dir.join("hosts");
    fs::write(&hosts_file, hosts).expect("write hosts");
    for (path, content) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().expect("parent")).expect("create parent");
        fs::write(path, content).expect("write vars file");
    }
    (temp, hosts_file)
}

fn load(hosts_file: &Path) -> Inventory {
    Inventory::load(hosts_file).unwrap_or_else(|error| panic!("load failed: {error}"))
}

fn nested_inventory() -> (TempDir, Inventory) {
    let files = [
        (
            "group_vars/all/00-base.yml",
            "level: all_file_base\nmatrix_domain: example.com\n",
        ),
        (
            "group_vars/all/10-overrides.yml",
            "level: all_file_overrides\n",
        ),
        (
            "group_vars/matrix_servers.yml",
            "level: matrix_servers_file\n",
        ),
        ("group_vars/homeservers.yml", "level: homeservers_file\n"),
        (
            "group_vars/auth_servers/vars.yml",
            "# MAS settings\nlevel: auth_servers_file\n",
        ),
        ("group_vars/monitoring.yml", "level: monitoring_file\n"),
        (
            "host_vars/hs1.example.com/vars.yml",
            "level: hs1_file\nmatrix_mas_enabled: yes\n",
        ),
        ("host_vars/localhost.yml", "level: localhost_file\n"),
    ];
    let (temp, hosts_file) = inventory_dir(NESTED_HOSTS, &files);
    let inventory = load(&hosts_file);
    (temp, inventory)
}

fn names(hosts: &[&Host]) -> Vec<String> {
    hosts.iter().map(|host| host.name.clone()).collect()
}

fn select(inventory: &Inventory, limit: &str) -> Vec<String> {
    match inventory.select(Some(limit)) {
        Ok(hosts) => names(&hosts),
        Err(error) => panic!("limit {limit:?} failed: {error}"),
    }
}

fn select_error(inventory: &Inventory, limit: &str) -> String {
    match inventory.select(Some(limit)) {
        Ok(hosts) => panic!(
            "expected an error for {limit:?}, selected {:?}",
            names(&hosts)
        ),
        Err(InventoryError::Limit { pattern, message }) => {
            assert_eq!(pattern, limit);
            message
        }
        Err(other) => panic!("expected a limit error for {limit:?}, got {other}"),
    }
}

/// Returns each layer's `level` value and the layer kind of its origin.
fn level_labels(layers: &[VarSource]) -> Vec<(String, Layer)> {
    layers
        .iter()
        .map(|layer| {
            let var = &layer["level"];
            (
                var.value.as_str().expect("string level").to_string(),
                var.origin.layer,
            )
        })
        .collect()
}

#[test]
fn matrix_playbook_inventory_loads() {
    let hosts =
        "[matrix_servers]\nmatrix.example.com ansible_host=192.0.2.10 ansible_ssh_user=root\n";
    let files = [(
        "host_vars/matrix.example.com/vars.yml",
        "---\nmatrix_domain: example.com\nmatrix_homeserver_implementation: synapse\n\
         matrix_authentication_service_enabled: true\n",
    )];
    let (_temp, hosts_file) = inventory_dir(hosts, &files);
    let inventory = load(&hosts_file);

    assert_eq!(inventory.dir(), hosts_file.parent().expect("parent"));
    assert_eq!(inventory.hosts_file(), hosts_file);
    assert_eq!(names(&inventory.hosts()), ["matrix.example.com"]);
    assert!(
        inventory.warnings().is_empty(),
        "{:?}",
        inventory.warnings()
    );

    let host = inventory.host("matrix.example.com").expect("host");
    assert_eq!(host.vars["ansible_host"].value, json!("192.0.2.10"));
    assert_eq!(host.line, Some(2));
    assert!(!host.implicit);

    let layers = inventory.layers_for("matrix.example.com");
    assert_eq!(layers.len(), 2);
    assert_eq!(
        layers[0]["ansible_ssh_user"].origin.layer,
        Layer::InventoryHostVars
    );
    let mas = &layers[1]["matrix_authentication_service_enabled"];
    assert_eq!(mas.value, json!(true));
    assert_eq!(mas.origin.layer, Layer::HostVars);
    assert_eq!(mas.origin.line, Some(4));
    let expected_file = hosts_file
        .parent()
        .expect("parent")
        .join("host_vars/matrix.example.com/vars.yml");
    assert_eq!(mas.origin.file.as_deref(), Some(expected_file.as_path()));
}

#[test]
fn hosts_in_file_order() {
    let (_temp, inventory) = nested_inventory();
    assert_eq!(
        names(&inventory.hosts()),
        [
            "hs1.example.com",
            "hs2.example.com",
            "mas1.example.com",
            "mon.example.com"
        ]
    );
    assert!(inventory.host("missing.example.com").is_none());
}

#[test]
fn host_port_from_pattern() {
    let (_temp, inventory) = nested_inventory();
    let mas = inventory.host("mas1.example.com").expect("host");
    assert_eq!(mas.vars["ansible_port"].value, json!(2222));
}

#[test]
fn groups_of_nested_host() {
    let (_temp, inventory) = nested_inventory();
    assert_eq!(
        inventory.groups_of("hs1.example.com"),
        ["all", "matrix_servers", "auth_servers", "homeservers"]
    );
    assert_eq!(
        inventory.groups_of("mon.example.com"),
        ["all", "monitoring"]
    );
    assert!(inventory.groups_of("missing.example.com").is_empty());
    assert_eq!(inventory.groups_of("localhost"), ["all"]);
}

#[test]
fn group_hosts_for_groups_variable() {
    let (_temp, inventory) = nested_inventory();
    let groups = inventory.group_hosts();
    let group_names: Vec<&String> = groups.keys().collect();
    assert_eq!(
        group_names,
        [
            "all",
            "auth_servers",
            "empty",
            "homeservers",
            "matrix_servers",
            "monitoring",
            "ungrouped"
        ]
    );
    assert_eq!(
        groups["all"],
        [
            "hs1.example.com",
            "hs2.example.com",
            "mas1.example.com",
            "mon.example.com"
        ]
    );
    assert_eq!(
        groups["matrix_servers"],
        ["hs1.example.com", "hs2.example.com", "mas1.example.com"]
    );
    assert_eq!(
        groups["auth_servers"],
        ["hs1.example.com", "mas1.example.com"]
    );
    assert!(groups["empty"].is_empty());
    assert!(groups[UNGROUPED].is_empty());
}

#[test]
fn layers_follow_ansible_precedence() {
    let (_temp, inventory) = nested_inventory();
    let layers = inventory.layers_for("hs1.example.com");
    let expected = [
        ("all_ini", Layer::InventoryGroupVars),
        ("matrix_servers_ini", Layer::InventoryGroupVars),
        ("auth_servers_ini", Layer::InventoryGroupVars),
        ("homeservers_ini", Layer::InventoryGroupVars),
        ("all_file_base", Layer::GroupVars),
        ("all_file_overrides", Layer::GroupVars),
        ("matrix_servers_file", Layer::GroupVars),
        ("auth_servers_file", Layer::GroupVars),
        ("homeservers_file", Layer::GroupVars),
        ("host_inline", Layer::InventoryHostVars),
        ("hs1_file", Layer::HostVars),
    ];
    let expected: Vec<(String, Layer)> = expected
        .iter()
        .map(|(label, layer)| (label.to_string(), *layer))
        .collect();
    assert_eq!(level_labels(&layers), expected);

    let layer_kinds: Vec<Layer> = layers
        .iter()
        .map(|layer| layer["level"].origin.layer)
        .collect();
    let mut sorted = layer_kinds.clone();
    sorted.sort();
    assert_eq!(layer_kinds, sorted, "layer kinds must never decrease");
}

#[test]
fn layers_record_origins() {
    let (temp, inventory) = nested_inventory();
    let layers = inventory.layers_for("hs1.example.com");
    let dir = temp.path().join("inventory");

    let all_ini = &layers[0]["level"].origin;
    assert_eq!(all_ini.file.as_deref(), Some(dir.join("hosts").as_path()));
    assert_eq!(all_ini.line, Some(3));

    let auth_file = &layers[7]["level"].origin;
    assert_eq!(
        auth_file.file.as_deref(),
        Some(dir.join("group_vars/auth_servers/vars.yml").as_path())
    );
    assert_eq!(auth_file.line, Some(2));

    let inline = &layers[9]["level"].origin;
    assert_eq!(inline.line, Some(11));
}

#[test]
fn layers_skip_empty_and_unrelated() {
    let (_temp, inventory) = nested_inventory();
    let labels: Vec<String> = level_labels(&inventory.layers_for("hs2.example.com"))
        .into_iter()
        .map(|(label, _)| label)
        .collect();
    assert_eq!(
        labels,
        [
            "all_ini",
            "matrix_servers_ini",
            "homeservers_ini",
            "all_file_base",
            "all_file_overrides",
            "matrix_servers_file",
            "homeservers_file",
        ]
    );
    assert!(inventory.layers_for("missing.example.com").is_empty());
}

#[test]
fn layers_for_implicit_localhost() {
    let (_temp, inventory) = nested_inventory();
    let layers = inventory.layers_for("localhost");
    let levels: Vec<Option<&str>> = layers
        .iter()
        .map(|layer| layer.get("level").and_then(|var| var.value.as_str()))
        .collect();
    assert_eq!(
        levels,
        [
            Some("all_ini"),
            Some("all_file_base"),
            Some("all_file_overrides"),
            None,
            Some("localhost_file")
        ]
    );
    assert_eq!(layers[3]["ansible_connection"].value, json!("local"));
}

#[test]
fn select_without_limit_is_every_host() {
    let (_temp, inventory) = nested_inventory();
    let all = inventory.select(None).expect("hosts");
    assert_eq!(names(&all), names(&inventory.hosts()));
}

#[test]
fn select_names_groups_and_all() {
    let (_temp, inventory) = nested_inventory();
    assert_eq!(select(&inventory, "hs2.example.com"), ["hs2.example.com"]);
    assert_eq!(
        select(&inventory, "matrix_servers"),
        ["hs1.example.com", "hs2.example.com", "mas1.example.com"]
    );
    assert_eq!(select(&inventory, "all").len(), 4);
    assert_eq!(select(&inventory, "*").len(), 4);
    assert_eq!(select(&inventory, "monitoring"), ["mon.example.com"]);
}

#[test]
fn select_unions_in_file_order() {
    let (_temp, inventory) = nested_inventory();
    assert_eq!(
        select(&inventory, "mon.example.com,hs1.example.com"),
        ["hs1.example.com", "mon.example.com"]
    );
    assert_eq!(
        select(&inventory, "monitoring:auth_servers"),
        ["hs1.example.com", "mas1.example.com", "mon.example.com"]
    );
    assert_eq!(
        select(&inventory, "empty,hs2.example.com"),
        ["hs2.example.com"]
    );
}

#[test]
fn select_intersection_and_exclusion() {
    let (_temp, inventory) = nested_inventory();
    assert_eq!(
        select(&inventory, "homeservers:&auth_servers"),
        ["hs1.example.com"]
    );
    assert_eq!(
        select(&inventory, "matrix_servers:!auth_servers"),
        ["hs2.example.com"]
    );
    assert_eq!(select(&inventory, "!monitoring").len(), 3);
    assert_eq!(
        select(&inventory, "&homeservers"),
        ["hs1.example.com", "hs2.example.com"]
    );
    assert_eq!(
        select(&inventory, "!auth_servers,&matrix_servers"),
        ["hs2.example.com"]
    );
    assert_eq!(
        select(&inventory, "all,!hs1.example.com,!mon*"),
        ["hs2.example.com", "mas1.example.com"]
    );
}

#[test]
fn select_globs_and_regexes() {
    let (_temp, inventory) = nested_inventory();
    assert_eq!(select(&inventory, "*.example.com").len(), 4);
    assert_eq!(
        select(&inventory, "hs?.example.com"),
        ["hs1.example.com", "hs2.example.com"]
    );
    assert_eq!(
        select(&inventory, "hs*"),
        ["hs1.example.com", "hs2.example.com"]
    );
    assert_eq!(
        select(&inventory, "*servers"),
        ["hs1.example.com", "hs2.example.com", "mas1.example.com"]
    );
    assert_eq!(select(&inventory, "~^mas"), ["mas1.example.com"]);
    assert_eq!(
        select(&inventory, "~(hs2|mon)"),
        ["hs2.example.com", "mon.example.com"]
    );
    assert_eq!(
        select(&inventory, "~auth"),
        ["hs1.example.com", "mas1.example.com"]
    );
}

#[test]
fn select_subscripts() {
    let (_temp, inventory) = nested_inventory();
    assert_eq!(select(&inventory, "homeservers[0]"), ["hs1.example.com"]);
    assert_eq!(select(&inventory, "homeservers[-1]"), ["hs2.example.com"]);
    assert_eq!(
        select(&inventory, "matrix_servers[1:2]"),
        ["hs2.example.com", "mas1.example.com"]
    );
    assert_eq!(
        select(&inventory, "matrix_servers[1:]"),
        ["hs2.example.com", "mas1.example.com"]
    );
    let message = select_error(&inventory, "homeservers[5]");
    assert!(message.contains("has no host at index 5"), "{message}");
    let message = select_error(&inventory, "homeservers[3:4]");
    assert!(message.contains("selects no host"), "{message}");
}

#[test]
fn select_implicit_localhost() {
    let (_temp, inventory) = nested_inventory();
    let selected = inventory
        .select(Some("localhost"))
        .expect("implicit localhost");
    assert_eq!(names(&selected), ["localhost"]);
    assert!(selected[0].implicit);
    assert_eq!(selected[0].vars["ansible_connection"].value, json!("local"));
    assert_eq!(selected[0].line, None);

    assert_eq!(
        select(&inventory, "localhost,hs1.example.com"),
        ["hs1.example.com", "localhost"]
    );
    assert!(!select(&inventory, "all").contains(&"localhost".to_string()));
    assert!(!select(&inventory, "*").contains(&"localhost".to_string()));
    assert!(
        inventory
            .hosts()
            .iter()
            .all(|host| host.name != "localhost")
    );
    let message = select_error(&inventory, "local*");
    assert!(message.contains("matches no host or group"), "{message}");
}

#[test]
fn select_listed_localhost() {
    let (_temp, hosts_file) = inventory_dir(
        "[local]\nlocalhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n",
        &[],
    );
    let inventory = load(&hosts_file);
    let selected = inventory
        .select(Some("localhost"))
        .expect("listed localhost");
    assert!(!selected[0].implicit);
    assert_eq!(selected[0].line, Some(2));
    assert_eq!(inventory.groups_of("localhost"), ["all", "local"]);
}

#[test]
fn select_unknown_pattern_lists_names() {
    let (_temp, inventory) = nested_inventory();
    let message = select_error(&inventory, "homeservrs");
    assert!(message.contains("\"homeservrs\""), "{message}");
    assert!(message.contains("matches no host or group"), "{message}");
    assert!(
        message.contains("Did you mean \"homeservers\"?"),
        "{message}"
    );
    assert!(
        message.contains(
            "Known hosts: hs1.example.com, hs2.example.com, mas1.example.com, mon.example.com."
        ),
        "{message}"
    );
    assert!(
        message.contains("Known groups: all, auth_servers, empty, homeservers"),
        "{message}"
    );

    let message = select_error(&inventory, "matrix_servers:!nothing");
    assert!(message.contains("\"nothing\""), "{message}");
    assert!(!message.contains("Did you mean"), "{message}");
}

#[test]
fn select_empty_results_rejected() {
    let (_temp, inventory) = nested_inventory();
    let message = select_error(&inventory, "homeservers:!homeservers");
    assert!(message.contains("selects no hosts"), "{message}");
    let message = select_error(&inventory, "empty");
    assert!(message.contains("selects no hosts"), "{message}");
    let message = select_error(&inventory, " , ");
    assert!(message.contains("contains no pattern"), "{message}");
    let message = select_error(&inventory, "all:!");
    assert!(message.contains("empty '&' or '!' term"), "{message}");
}

#[test]
fn select_invalid_regex_rejected() {
    let (_temp, inventory) = nested_inventory();
    let message = select_error(&inventory, "~web(");
    assert!(message.contains("invalid regular expression"), "{message}");
}

#[test]
fn select_empty_inventory_rejected() {
    let (_temp, hosts_file) = inventory_dir("# no hosts yet\n[matrix_servers]\n", &[]);
    let inventory = load(&hosts_file);
    let error = inventory.select(None).expect_err("no hosts");
    assert!(error.to_string().contains("lists no hosts"), "{error}");
    assert_eq!(select(&inventory, "localhost"), ["localhost"]);
}

#[test]
fn ungrouped_hosts_and_group_vars() {
    let hosts = "loose.example.com\n[web]\nweb.example.com\n";
    let files = [("group_vars/ungrouped.yml", "only_ungrouped: 1\n")];
    let (_temp, hosts_file) = inventory_dir(hosts, &files);
    let inventory = load(&hosts_file);
    assert_eq!(
        inventory.groups_of("loose.example.com"),
        ["all", "ungrouped"]
    );
    assert_eq!(select(&inventory, "ungrouped"), ["loose.example.com"]);
    let layers = inventory.layers_for("loose.example.com");
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["only_ungrouped"].value, json!(1));
    assert!(inventory.layers_for("web.example.com").is_empty());
}

#[test]
fn warnings_for_unmatched_files_and_duplicates() {
    let files = [
        ("group_vars/matrix_server.yml", "a: 1\n"),
        ("group_vars/homeservers.yml", "a: 1\na: 2\n"),
        ("host_vars/ghost.example.com/vars.yml", "a: 1\n"),
        ("host_vars/localhost.yml", "a: 1\n"),
        ("group_vars/.hidden.yml", "a: 1\n"),
    ];
    let (_temp, hosts_file) = inventory_dir(NESTED_HOSTS, &files);
    let inventory = load(&hosts_file);
    let warnings = inventory.warnings();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains("homeservers.yml:2:1: duplicate key \"a\"")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains("group_vars/matrix_server.yml matches no group")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains("host_vars/ghost.example.com matches no host")),
        "{warnings:?}"
    );
}

#[test]
fn load_errors_name_the_file() {
    let temp = tempfile::tempdir().expect("tempdir");
    let missing = temp.path().join("hosts");
    let error = Inventory::load(&missing).expect_err("missing");
    assert!(matches!(error, InventoryError::Read { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("failed to read {}", missing.display())),
        "{error}"
    );

    let error = Inventory::load(temp.path()).expect_err("directory");
    assert!(matches!(error, InventoryError::NotAFile { .. }), "{error}");
    assert!(
        error.to_string().contains("expects the INI hosts file"),
        "{error}"
    );
}

#[test]
fn load_rejects_children_cycle() {
    let (_temp, hosts_file) = inventory_dir("[a:children]\nb\n\n[b:children]\na\n", &[]);
    let error = Inventory::load(&hosts_file).expect_err("cycle");
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!("{}:5: ", hosts_file.display())),
        "{shown}"
    );
    assert!(shown.contains("a -> b -> a"), "{shown}");
}

#[test]
fn load_rejects_invalid_vars_yaml() {
    let files = [(
        "group_vars/all.yml",
        "matrix_domain: example.com\nbroken: [1, 2\n",
    )];
    let (_temp, hosts_file) = inventory_dir("[matrix_servers]\nmatrix.example.com\n", &files);
    let error = Inventory::load(&hosts_file).expect_err("invalid YAML");
    let InventoryError::Yaml(yaml_error) = &error else {
        panic!("expected a YAML error, got {error}");
    };
    let expected = hosts_file
        .parent()
        .expect("parent")
        .join("group_vars/all.yml");
    assert_eq!(yaml_error.file.as_deref(), Some(expected.as_path()));
    assert!(yaml_error.line >= 2, "{error}");
}

#[test]
fn load_rejects_vault_values() {
    let files = [(
        "host_vars/matrix.example.com/vault.yml",
        "secret: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  3132\n",
    )];
    let (_temp, hosts_file) = inventory_dir("[matrix_servers]\nmatrix.example.com\n", &files);
    let error = Inventory::load(&hosts_file).expect_err("vault");
    assert!(error.to_string().contains("Ansible Vault"), "{error}");
}

#[test]
fn extra_vars_reexported() {
    let values = vec!["matrix_domain=example.org".to_string()];
    let vars = parse_extra_vars(&values, Path::new("/")).expect("valid");
    assert_eq!(vars["matrix_domain"].value, json!("example.org"));
}

#[test]
fn inventory_dir_of_paths() {
    assert_eq!(inventory_dir_of(Path::new("hosts")), Path::new("."));
    assert_eq!(
        inventory_dir_of(Path::new("inventory/hosts")),
        Path::new("inventory")
    );
    assert_eq!(
        inventory_dir_of(Path::new("/srv/matrix/inventory/hosts")),
        Path::new("/srv/matrix/inventory")
    );
}
