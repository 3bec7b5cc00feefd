//! Tests of `HostVars` as the run uses it: layered inventory variables resolved lazily, and the
//! error messages an operator reads.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use super::source::{Layer, Origin, RawVar, VarSource};
use super::{HostVars, VarError};

fn origin(layer: Layer, file: &str, line: usize) -> Origin {
    Origin {
        layer,
        file: Some(PathBuf::from(file)),
        line: Some(line),
    }
}

/// Builds one layer from `file`, giving each variable the line of its position (1-based).
fn layer(kind: Layer, file: &str, vars: &[(&str, Value)]) -> VarSource {
    vars.iter()
        .enumerate()
        .map(|(index, (name, value))| {
            let raw = RawVar {
                value: value.clone(),
                origin: origin(kind, file, index + 1),
            };
            (name.to_string(), raw)
        })
        .collect()
}

fn host_vars(vars: &[(&str, Value)]) -> HostVars {
    HostVars::new(
        "matrix.example.com",
        vec![layer(
            Layer::HostVars,
            "inventory/host_vars/matrix.example.com/vars.yml",
            vars,
        )],
        Vec::new(),
    )
}

fn error_text(result: Result<Value, VarError>) -> String {
    match result {
        Ok(value) => panic!("expected an error, got {value}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn derived_mas_secrets_from_generic_secret() {
    let vars = host_vars(&[
        ("matrix_homeserver_generic_secret_key", json!("abc")),
        (
            "matrix_authentication_service_config_database_password",
            json!(
                "{{ (matrix_homeserver_generic_secret_key ~ ':mas.db') | hash('sha512') | to_uuid }}"
            ),
        ),
        (
            "matrix_authentication_service_config_matrix_secret",
            json!(
                "{{ (matrix_homeserver_generic_secret_key + ':mas.hs.secret') | hash('sha512') | to_uuid }}"
            ),
        ),
        ("domain_uuid", json!("{{ 'example.com' | to_uuid }}")),
    ]);
    assert_eq!(
        vars.get("matrix_authentication_service_config_database_password")
            .unwrap(),
        json!("c38e18e7-ebaa-5887-9c64-1d0a673d88c7")
    );
    assert_eq!(
        vars.get("matrix_authentication_service_config_matrix_secret")
            .unwrap(),
        json!("00cff613-35e2-5a46-8257-c6342fc4b7fb")
    );
    assert_eq!(
        vars.get("domain_uuid").unwrap(),
        json!("ae780c3a-a3ab-53c2-bfb4-098da300b3fe")
    );
}

#[test]
fn host_vars_override_default_used_by_others() {
    let defaults = layer(
        Layer::Defaults,
        "stdlib/defaults/mas.yml",
        &[
            ("matrix_base_data_path", json!("/matrix")),
            (
                "mas_base_path",
                json!("{{ matrix_base_data_path }}/matrix-authentication-service"),
            ),
            ("mas_config_path", json!("{{ mas_base_path }}/config")),
        ],
    );
    let host = layer(
        Layer::HostVars,
        "inventory/host_vars/matrix.example.com/vars.yml",
        &[("matrix_base_data_path", json!("/srv/matrix"))],
    );
    let vars = HostVars::new("matrix.example.com", vec![defaults, host], Vec::new());
    assert_eq!(
        vars.get("mas_config_path").unwrap(),
        json!("/srv/matrix/matrix-authentication-service/config")
    );
}

#[test]
fn later_layers_take_precedence() {
    let layers = vec![
        layer(
            Layer::Defaults,
            "stdlib/defaults/mas.yml",
            &[("x", json!({"a": 1})), ("only_default", json!("d"))],
        ),
        layer(
            Layer::InventoryGroupVars,
            "inventory/hosts",
            &[("x", json!(2)), ("y", json!(2))],
        ),
        layer(
            Layer::GroupVars,
            "inventory/group_vars/all.yml",
            &[("x", json!(3)), ("y", json!(3))],
        ),
        layer(
            Layer::InventoryHostVars,
            "inventory/hosts",
            &[("x", json!(4))],
        ),
        layer(
            Layer::HostVars,
            "inventory/host_vars/h/vars.yml",
            &[("x", json!({"b": 2}))],
        ),
    ];
    let vars = HostVars::new("h", layers, Vec::new());
    assert_eq!(vars.host(), "h");
    assert_eq!(
        vars.get("x").unwrap(),
        json!({"b": 2}),
        "maps are replaced, not merged"
    );
    assert_eq!(
        vars.origin("x").unwrap(),
        origin(Layer::HostVars, "inventory/host_vars/h/vars.yml", 1)
    );
    assert_eq!(vars.get("y").unwrap(), json!(3));
    assert_eq!(
        vars.origin("y").unwrap(),
        origin(Layer::GroupVars, "inventory/group_vars/all.yml", 2)
    );
    assert_eq!(vars.get("only_default").unwrap(), json!("d"));
    assert_eq!(vars.origin("only_default").unwrap().layer, Layer::Defaults);
}

#[test]
fn single_expression_keeps_native_type() {
    let vars = host_vars(&[
        ("port", json!(8080)),
        ("flag", json!("yes")),
        ("port_copy", json!("{{ port }}")),
        ("port_text", json!("{{ port }}/tcp")),
        ("flag_bool", json!("{{ flag | bool }}")),
        ("spaced", json!("  {{ port + 1 }}\n")),
        ("none_value", json!("{{ none }}")),
        ("if_without_else", json!("{{ 'x' if port == 1 }}")),
        ("block_scalar", json!("{{ flag }}\n")),
    ]);
    assert_eq!(vars.get("port_copy").unwrap(), json!(8080));
    assert_eq!(vars.get("port_text").unwrap(), json!("8080/tcp"));
    assert_eq!(vars.get("flag_bool").unwrap(), json!(true));
    assert_eq!(vars.get("spaced").unwrap(), json!(8081));
    assert_eq!(vars.get("none_value").unwrap(), Value::Null);
    assert_eq!(vars.get("if_without_else").unwrap(), json!(""));
    assert_eq!(vars.get("block_scalar").unwrap(), json!("yes\n"));
}

#[test]
fn mixed_template_results_read_like_ansible() {
    let vars = host_vars(&[
        ("enabled", json!(true)),
        ("a", json!("x")),
        ("b", json!(2)),
        ("bool_text", json!("{{ enabled }}{{ '' }}")),
        ("list_text", json!("['{{ a }}', {{ b }}]")),
        ("map_text", json!("{\"{{ a }}\": {{ b }}}")),
        ("plain_text", json!("{{ a }}-{{ b }}")),
    ]);
    assert_eq!(vars.get("bool_text").unwrap(), json!(true));
    assert_eq!(vars.get("list_text").unwrap(), json!(["x", 2]));
    assert_eq!(vars.get("map_text").unwrap(), json!({"x": 2}));
    assert_eq!(vars.get("plain_text").unwrap(), json!("x-2"));
}

#[test]
fn single_expression_yields_lists_and_maps() {
    let vars = host_vars(&[
        (
            "key_management_list",
            json!([
                {"config": {"kid": "default-rsa", "key_file": "/keys/rsa-2048.priv.pem"}, "key_file": "rsa-2048.priv.pem"},
                {"config": {"kid": "default-ecdsa-p256", "key_file": "/keys/ecdsa-p256.priv.pem"}, "key_file": "ecdsa-p256.priv.pem"},
            ]),
        ),
        (
            "secrets_keys",
            json!("{{ key_management_list | map(attribute='config') | list }}"),
        ),
        (
            "resources",
            json!("{{ ['discovery', 'human'] + (['adminapi'] if admin else []) }}"),
        ),
        ("admin", json!(true)),
        (
            "as_map",
            json!("{{ {'kid': secrets_keys[0].kid, 'count': secrets_keys | length} }}"),
        ),
    ]);
    assert_eq!(
        vars.get("secrets_keys").unwrap(),
        json!([
            {"kid": "default-rsa", "key_file": "/keys/rsa-2048.priv.pem"},
            {"kid": "default-ecdsa-p256", "key_file": "/keys/ecdsa-p256.priv.pem"},
        ])
    );
    assert_eq!(
        vars.get("resources").unwrap(),
        json!(["discovery", "human", "adminapi"])
    );
    assert_eq!(
        vars.get("as_map").unwrap(),
        json!({"kid": "default-rsa", "count": 2})
    );
}

#[test]
fn nested_strings_in_lists_and_maps_are_rendered() {
    let vars = host_vars(&[
        ("base", json!("/matrix")),
        ("n", json!(1)),
        ("key", json!("dynamic")),
        (
            "nested",
            json!({
                "path": "{{ base }}/mas",
                "items": ["{{ base }}", 7, {"deep": "{{ n + 1 }}", "list": "{{ [n] }}"}],
                "{{ key }}_name": "value",
            }),
        ),
    ]);
    assert_eq!(
        vars.get("nested").unwrap(),
        json!({
            "path": "/matrix/mas",
            "items": ["/matrix", 7, {"deep": 2, "list": [1]}],
            "dynamic_name": "value",
        })
    );
}

#[test]
fn unsafe_values_render_literally() {
    let vars = host_vars(&[
        ("password", json!("{% raw %}p{{a}}ss{% endraw %}")),
        ("list_like", json!("{% raw %}[1, 2]{% endraw %}")),
        ("copy", json!("{{ password }}")),
    ]);
    assert_eq!(vars.get("password").unwrap(), json!("p{{a}}ss"));
    assert_eq!(vars.get("list_like").unwrap(), json!("[1, 2]"));
    assert_eq!(vars.get("copy").unwrap(), json!("p{{a}}ss"));
}

#[test]
fn results_are_memoised_until_set() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("value.j2");
    std::fs::write(&template, "one").unwrap();
    let vars = HostVars::new(
        "h",
        vec![layer(
            Layer::HostVars,
            "inventory/host_vars/h/vars.yml",
            &[
                ("from_file", json!("{{ lookup('template', 'value.j2') }}")),
                ("other", json!(1)),
            ],
        )],
        vec![dir.path().to_path_buf()],
    );
    assert_eq!(vars.get("from_file").unwrap(), json!("one"));

    std::fs::write(&template, "two").unwrap();
    assert_eq!(
        vars.get("from_file").unwrap(),
        json!("one"),
        "the second read must come from the memo"
    );

    vars.set(
        "other",
        json!(2),
        origin(Layer::Builtin, "scripts/setup.rhai", 1),
    );
    assert_eq!(
        vars.get("from_file").unwrap(),
        json!("two"),
        "set() must forget memoised results"
    );
}

#[test]
fn set_overrides_with_literal_value() {
    let vars = host_vars(&[
        ("password", json!("old")),
        ("dsn", json!("postgres://mas:{{ password }}@db")),
    ]);
    assert_eq!(vars.get("dsn").unwrap(), json!("postgres://mas:old@db"));

    let fact_origin = origin(Layer::Builtin, "scripts/setup.rhai", 12);
    vars.set("password", json!("n{{e}}w"), fact_origin.clone());
    assert_eq!(vars.get("password").unwrap(), json!("n{{e}}w"));
    assert_eq!(vars.get("dsn").unwrap(), json!("postgres://mas:n{{e}}w@db"));
    assert_eq!(vars.origin("password").unwrap(), fact_origin);
    assert_eq!(vars.raw("password").unwrap().value, json!("n{{e}}w"));

    vars.set(
        "brand_new",
        json!([1]),
        origin(Layer::Builtin, "scripts/setup.rhai", 13),
    );
    assert_eq!(vars.get("brand_new").unwrap(), json!([1]));
}

#[test]
fn undefined_error_names_chain_and_origin() {
    let vars = host_vars(&[
        ("b_other", json!(1)),
        ("mas_hostname_value", json!("matrix.example.com")),
        ("a", json!("{{ b }}")),
        ("b", json!("https://{{ mas_hostname_valeu }}/")),
    ]);
    let text = error_text(vars.get("a"));
    assert!(
        text.starts_with("variable 'mas_hostname_valeu' is undefined"),
        "{text}"
    );
    assert!(
        text.contains(
            "while resolving 'a' (set at inventory/host_vars/matrix.example.com/vars.yml:3) -> \
             'b' (set at inventory/host_vars/matrix.example.com/vars.yml:4) -> 'mas_hostname_valeu'"
        ),
        "{text}"
    );
    assert!(
        text.contains("did you mean 'mas_hostname_value'?"),
        "{text}"
    );
}

#[test]
fn undefined_attribute_is_named() {
    let vars = host_vars(&[
        ("config", json!({"http": {}})),
        ("issuer", json!("{{ config.http.issuer }}/x")),
    ]);
    let text = error_text(vars.get("issuer"));
    assert!(
        text.starts_with("'config.http.issuer' is undefined"),
        "{text}"
    );
    assert!(text.contains("while resolving 'issuer' (set at"), "{text}");
}

#[test]
fn undefined_without_definition() {
    let vars = host_vars(&[("present", json!(1))]);
    assert_eq!(
        error_text(vars.get("absent")),
        "variable 'absent' is undefined"
    );
    assert_eq!(vars.try_get("absent").unwrap(), None);
    assert_eq!(vars.try_get("present").unwrap(), Some(json!(1)));
}

#[test]
fn undefined_reference_counts_as_undefined() {
    let vars = host_vars(&[
        ("broken", json!("{{ missing }}")),
        ("with_default", json!("{{ broken | default('fallback') }}")),
        ("is_defined", json!("{{ broken is defined }}")),
        (
            "via_lookup",
            json!("{{ lookup('vars', 'broken', default='none set') }}"),
        ),
    ]);
    assert_eq!(vars.get("with_default").unwrap(), json!("fallback"));
    assert_eq!(vars.get("is_defined").unwrap(), json!(false));
    assert_eq!(vars.get("via_lookup").unwrap(), json!("none set"));
    assert!(vars.try_get("broken").is_err());
}

#[test]
fn cycle_error_lists_path_and_origins() {
    let vars = host_vars(&[
        ("a", json!("{{ b }}/x")),
        ("b", json!("{{ c | default('') }}")),
        ("c", json!("{{ a }}")),
    ]);
    let text = error_text(vars.get("a"));
    assert!(
        text.starts_with("variable 'a' refers to itself: a -> b -> c -> a"),
        "{text}"
    );
    assert!(
        text.contains("'a' is set at inventory/host_vars/matrix.example.com/vars.yml:1"),
        "{text}"
    );
    assert!(
        text.contains("'b' is set at inventory/host_vars/matrix.example.com/vars.yml:2"),
        "{text}"
    );
    assert!(
        text.contains("'c' is set at inventory/host_vars/matrix.example.com/vars.yml:3"),
        "{text}"
    );

    let from_b = error_text(vars.get("b"));
    assert!(
        from_b.starts_with("variable 'b' refers to itself: b -> c -> a -> b"),
        "{from_b}"
    );
}

#[test]
fn self_reference_is_a_cycle() {
    let vars = host_vars(&[("a", json!("{{ a }}"))]);
    assert!(error_text(vars.get("a")).starts_with("variable 'a' refers to itself: a -> a"));
}

#[test]
fn template_error_names_variable_and_text() {
    let vars = host_vars(&[
        ("x", json!("v")),
        ("bad_filter", json!("{{ x | no_such_filter }}")),
        ("bad_syntax", json!("prefix {{ x ")),
        ("user", json!("{{ bad_filter }}")),
        ("db_password", json!("p{{ss")),
        ("wants_password", json!("{{ db_password | default('') }}")),
    ]);
    let text = error_text(vars.get("bad_filter"));
    assert!(
        text.starts_with(
            "failed to render variable 'bad_filter' (set at inventory/host_vars/matrix.example.com/vars.yml:2): unknown filter"
        ),
        "{text}"
    );
    assert!(
        text.contains("template: {{ x | no_such_filter }}"),
        "{text}"
    );

    let syntax = error_text(vars.get("bad_syntax"));
    assert!(syntax.contains("syntax error"), "{syntax}");
    assert!(syntax.contains("template: prefix {{ x "), "{syntax}");

    let nested = error_text(vars.get("user"));
    assert!(
        nested.contains("while resolving 'user' (set at"),
        "{nested}"
    );
    assert!(nested.contains("-> 'bad_filter' (set at"), "{nested}");

    let secret = error_text(vars.get("wants_password"));
    assert!(
        secret.contains("failed to render variable 'db_password'"),
        "{secret}"
    );
    assert!(
        !secret.contains("p{{ss"),
        "a secret's text must not be shown: {secret}"
    );
}

#[test]
fn lookup_template_renders_with_host_vars() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/config.yaml.j2"),
        "database:\n  password: {{ db_password | to_json }}\n{% if extra_enabled %}\nextra: true\n{% endif %}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("templates/broken.j2"),
        "x: {{ not_defined_anywhere }}\n",
    )
    .unwrap();

    let vars = HostVars::new(
        "h",
        vec![layer(
            Layer::Defaults,
            "stdlib/defaults/mas.yml",
            &[
                ("db_password", json!("s\"cret")),
                ("extra_enabled", json!(true)),
                (
                    "configuration_yaml",
                    json!("{{ lookup('template', 'templates/config.yaml.j2') }}"),
                ),
                (
                    "configuration",
                    json!("{{ configuration_yaml | from_yaml | combine({'extra': false}) }}"),
                ),
                (
                    "broken_yaml",
                    json!("{{ lookup('template', 'templates/broken.j2') }}"),
                ),
                (
                    "missing_file",
                    json!("{{ lookup('template', 'templates/nope.j2') }}"),
                ),
            ],
        )],
        vec![
            PathBuf::from("/nonexistent-masrun-templates"),
            dir.path().to_path_buf(),
        ],
    );
    assert_eq!(
        vars.get("configuration_yaml").unwrap(),
        json!("database:\n  password: \"s\\\"cret\"\nextra: true\n")
    );
    assert_eq!(
        vars.get("configuration").unwrap(),
        json!({"database": {"password": "s\"cret"}, "extra": false})
    );

    let broken = error_text(vars.get("broken_yaml"));
    assert!(
        broken.starts_with("variable 'not_defined_anywhere' is undefined"),
        "{broken}"
    );
    assert!(
        broken.contains("while resolving 'broken_yaml' (set at stdlib/defaults/mas.yml:5) -> template 'templates/broken.j2' -> 'not_defined_anywhere'"),
        "{broken}"
    );

    let missing = error_text(vars.get("missing_file"));
    assert!(
        missing.contains(
            "template 'templates/nope.j2' was not found in /nonexistent-masrun-templates"
        ),
        "{missing}"
    );
}

#[test]
fn render_str_with_extra_vars() {
    let vars = host_vars(&[("greeting", json!("hello")), ("name", json!("host value"))]);
    let extra = json!({"name": "extra value"});
    let rendered = vars
        .render_str(
            "{{ greeting }} {{ name }}\n{% for i in range(2) %}\n{{ i }}\n{% endfor %}\n",
            "greet.j2",
            Some(&extra),
        )
        .unwrap();
    assert_eq!(rendered, "hello extra value\n0\n1\n");

    let error = vars
        .render_str("{{ greting }}\n", "greet.j2", None)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("variable 'greting' is undefined"),
        "{error}"
    );
    assert!(
        error.contains("while resolving template 'greet.j2' -> 'greting'"),
        "{error}"
    );
    assert!(error.contains("did you mean 'greeting'?"), "{error}");

    let not_a_map = vars
        .render_str("x", "greet.j2", Some(&json!([1])))
        .unwrap_err()
        .to_string();
    assert!(
        not_a_map.contains("the extra variables must be a map"),
        "{not_a_map}"
    );
}

#[test]
fn eval_expression_returns_native_values() {
    let vars = host_vars(&[("n", json!(2)), ("items", json!(["a", "b"]))]);
    assert_eq!(vars.eval_expression("n * 3").unwrap(), json!(6));
    assert_eq!(
        vars.eval_expression("items | join(',')").unwrap(),
        json!("a,b")
    );
    assert_eq!(vars.eval_expression("'x'.upper()").unwrap(), json!("X"));
    let error = vars
        .eval_expression("itemz | length")
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("variable 'itemz' is undefined"),
        "{error}"
    );
    assert!(error.contains("did you mean 'items'?"), "{error}");
}

#[test]
fn varnames_and_vars_lookups() {
    let vars = host_vars(&[
        (
            "matrix_authentication_service_container_image_name_prefix",
            json!("old"),
        ),
        ("matrix_authentication_service_enabled", json!(true)),
        (
            "renamed",
            json!(
                "{{ query('varnames', '^matrix_authentication_service_container_image_name_prefix$') }}"
            ),
        ),
        (
            "all_mas",
            json!("{{ lookup('varnames', 'matrix_authentication_service_') }}"),
        ),
        (
            "by_name",
            json!("{{ lookup('vars', 'matrix_authentication_service_' ~ 'enabled') }}"),
        ),
        (
            "empty_check",
            json!("{{ lookup('vars', 'unset_name', default='') | string | length == 0 }}"),
        ),
    ]);
    assert_eq!(
        vars.get("renamed").unwrap(),
        json!(["matrix_authentication_service_container_image_name_prefix"])
    );
    assert_eq!(
        vars.get("all_mas").unwrap(),
        json!(
            "matrix_authentication_service_container_image_name_prefix,matrix_authentication_service_enabled"
        )
    );
    assert_eq!(vars.get("by_name").unwrap(), json!(true));
    assert_eq!(vars.get("empty_check").unwrap(), json!(true));
}

#[test]
fn secrets_include_nested_client_secret() {
    let vars = host_vars(&[
        (
            "matrix_homeserver_generic_secret_key",
            json!("generic-secret-value"),
        ),
        (
            "matrix_authentication_service_config_database_password",
            json!("{{ matrix_homeserver_generic_secret_key }}-db"),
        ),
        (
            "matrix_authentication_service_config_captcha_secret_key",
            json!(""),
        ),
        ("short_token", json!("abc")),
        (
            "matrix_authentication_service_config_upstream_oauth2_providers",
            json!([{"id": "01H8PKNWKKRPCBW4YGH1RWV279", "client_id": "mas", "client_secret": "{{ 'upstream-' ~ 'secret' }}"}]),
        ),
        ("matrix_domain", json!("example.com")),
        ("broken_password", json!("{{ undefined_name }}")),
    ]);
    let secrets = vars.secrets();
    assert_eq!(
        secrets,
        vec![
            "generic-secret-value-db".to_string(),
            "generic-secret-value".to_string(),
            "{{ undefined_name }}".to_string(),
            "upstream-secret".to_string(),
            "undefined_name".to_string(),
        ]
    );
}

#[test]
fn secrets_include_raw_text_of_failing_variable() {
    let vars = host_vars(&[(
        "matrix_authentication_service_config_upstream_oauth2_providers",
        json!([{"client_id": "mas", "client_secret": "CLIENTSECRETabc{%def"}]),
    )]);
    assert_eq!(vars.secrets(), vec!["CLIENTSECRETabc{%def".to_string()]);
}

#[test]
fn secrets_include_undefined_name_inside_secret() {
    let vars = host_vars(&[(
        "providers",
        json!([{"client_id": "mas", "client_secret": "CLIENTabc{{ xyzzysecretpart }}"}]),
    )]);
    assert_eq!(
        vars.secrets(),
        vec![
            "CLIENTabc{{ xyzzysecretpart }}".to_string(),
            "xyzzysecretpart".to_string()
        ]
    );
}

#[test]
fn secrets_exclude_misspelled_variable_name() {
    let vars = host_vars(&[
        ("matrix_domain", json!("example.com")),
        ("backup_password", json!("{{ matrix_domian }}-pw")),
    ]);
    assert_eq!(vars.secrets(), vec!["{{ matrix_domian }}-pw".to_string()]);
}

#[test]
fn render_error_under_secret_key_hides_template() {
    let vars = host_vars(&[(
        "providers",
        json!([{"client_id": "mas", "client_secret": "CLIENTSECRETabc{%def"}]),
    )]);
    let text = error_text(vars.get("providers"));
    assert!(text.contains("'providers'"), "names the variable: {text}");
    assert!(
        text.contains("syntax error"),
        "keeps the error kind: {text}"
    );
    assert!(
        !text.contains("CLIENTSECRET"),
        "template text hidden: {text}"
    );
    assert!(
        !text.contains("unknown statement"),
        "engine detail hidden: {text}"
    );
    assert!(text.contains("!unsafe"), "tells how to quote it: {text}");
}

#[test]
fn render_error_at_other_key_shows_template() {
    let vars = host_vars(&[("providers", json!([{"client_id": "mas{%def"}]))]);
    let text = error_text(vars.get("providers"));
    assert!(
        text.contains("template: mas{%def"),
        "shows the template: {text}"
    );
    assert!(
        text.contains("unknown statement def"),
        "shows the detail: {text}"
    );
}

#[test]
fn concurrent_gets_share_memo_without_deadlock() {
    let mut chain: Vec<(String, Value)> = vec![("v0".to_string(), json!(0))];
    for index in 1..60 {
        chain.push((
            format!("v{index}"),
            json!(format!("{{{{ v{} + 1 }}}}", index - 1)),
        ));
    }
    chain.push(("cycle_a".to_string(), json!("{{ cycle_b }}")));
    chain.push(("cycle_b".to_string(), json!("{{ cycle_a }}")));
    let borrowed: Vec<(&str, Value)> = chain
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect();
    let vars = host_vars(&borrowed);

    let (sender, receiver) = mpsc::channel();
    for worker in 0..8 {
        let vars = vars.clone();
        let sender = sender.clone();
        thread::spawn(move || {
            let mut results = Vec::new();
            for step in 0..60 {
                let index = (step * 7 + worker * 13) % 60;
                results.push((index, vars.get(&format!("v{index}")).unwrap()));
            }
            let cycle = vars.get(if worker % 2 == 0 {
                "cycle_a"
            } else {
                "cycle_b"
            });
            sender.send((results, cycle.is_err())).unwrap();
        });
    }
    drop(sender);

    for _ in 0..8 {
        let (results, cycle_failed) = receiver
            .recv_timeout(Duration::from_secs(30))
            .expect("a worker thread did not finish: resolution deadlocked or panicked");
        for (index, value) in results {
            assert_eq!(value, json!(index), "v{index}");
        }
        assert!(cycle_failed, "a cycle must fail in every thread");
    }
}

#[test]
fn names_are_sorted() {
    let vars = host_vars(&[("b", json!(1)), ("a", json!(2)), ("c", json!(3))]);
    assert_eq!(vars.names(), vec!["a", "b", "c"]);
    assert!(vars.contains("a"));
    assert!(!vars.contains("d"));
}

#[test]
fn deep_chain_resolves_on_small_stack() {
    let depth = 300;
    let mut chain: Vec<(String, Value)> = vec![("v0".to_string(), json!(0))];
    for index in 1..depth {
        chain.push((
            format!("v{index}"),
            json!(format!("{{{{ v{} + 1 }}}}", index - 1)),
        ));
    }
    let borrowed: Vec<(&str, Value)> = chain
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect();
    let vars = host_vars(&borrowed);

    // 2 MiB is the default stack of spawned threads, including tokio's blocking pool.
    let worker = thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || vars.get("v299"))
        .unwrap();
    assert_eq!(worker.join().unwrap().unwrap(), json!(299));
}
