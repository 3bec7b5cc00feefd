//! Secret variable names and map keys, and the collection of their resolved values, which the
//! run redacts from every line it prints or logs.

use serde_json::Value as Json;

/// Name endings of variables whose values are secret, for example
/// `matrix_authentication_service_config_database_password` or
/// `matrix_authentication_service_config_secrets_encryption`.
pub const SECRET_NAME_SUFFIXES: &[&str] = &[
    "_password",
    "_secret",
    "_secret_key",
    "_encryption",
    "_pepper",
    "_token",
    "_passphrase",
];

/// Variables whose values are secret although their names end otherwise.
pub const SECRET_NAMES: &[&str] = &[
    "matrix_homeserver_generic_secret_key",
    "ansible_become_pass",
    "ansible_sudo_pass",
];

/// Map keys whose values are secret wherever they appear inside a variable's value, for
/// example `client_secret` of an upstream OAuth 2.0 provider.
pub const SECRET_KEYS: &[&str] = &[
    "password",
    "secret",
    "client_secret",
    "secret_key",
    "encryption",
    "private_key",
    "token",
    "access_token",
];

/// Minimum length of a value worth redacting. Shorter values (such as `abc`) would also
/// match ordinary words in output.
pub const SECRET_MIN_LEN: usize = 4;

/// Returns whether a variable with this name contains a secret.
pub fn is_secret_name(name: &str) -> bool {
    SECRET_NAMES.contains(&name)
        || SECRET_NAME_SUFFIXES
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

/// Returns whether a map key marks a secret value (see [`SECRET_KEYS`]).
pub fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}

/// Adds every string and number of `value`, at any depth, to `out`. A number is added as
/// the text that YAML and JSON writers give it. Booleans and nulls are not secrets.
pub(crate) fn collect_all_strings(value: &Json, out: &mut Vec<String>) {
    match value {
        Json::String(text) => push_secret(text, out),
        Json::Number(number) => push_secret(&number.to_string(), out),
        Json::Array(items) => items.iter().for_each(|item| collect_all_strings(item, out)),
        Json::Object(map) => map.values().for_each(|item| collect_all_strings(item, out)),
        _ => {}
    }
}

/// Adds the strings found under secret-looking keys (see [`SECRET_KEYS`]) of maps inside
/// `value` to `out`.
pub(crate) fn collect_keyed_secrets(value: &Json, out: &mut Vec<String>) {
    match value {
        Json::Array(items) => items
            .iter()
            .for_each(|item| collect_keyed_secrets(item, out)),
        Json::Object(map) => {
            for (key, item) in map {
                if is_secret_key(key) {
                    collect_all_strings(item, out);
                } else {
                    collect_keyed_secrets(item, out);
                }
            }
        }
        _ => {}
    }
}

/// Adds `text` to `out` unless it is shorter than [`SECRET_MIN_LEN`].
pub(crate) fn push_secret(text: &str, out: &mut Vec<String>) {
    if text.chars().count() >= SECRET_MIN_LEN {
        out.push(text.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_names() {
        for name in [
            "matrix_authentication_service_config_database_password",
            "matrix_authentication_service_config_matrix_secret",
            "matrix_authentication_service_config_captcha_secret_key",
            "matrix_authentication_service_config_secrets_encryption",
            "matrix_synapse_password_config_pepper",
            "some_access_token",
            "backup_passphrase",
            "matrix_homeserver_generic_secret_key",
        ] {
            assert!(is_secret_name(name), "{name} should look secret");
        }
        for name in [
            "matrix_domain",
            "matrix_authentication_service_config_secrets_keys",
            "password_enabled",
        ] {
            assert!(!is_secret_name(name), "{name} should not look secret");
        }
    }

    #[test]
    fn numbers_at_secret_keys_are_secrets() {
        let value = json!({"client_secret": 987654321987_u64, "port": 8080, "token": true});
        let mut out = Vec::new();
        collect_keyed_secrets(&value, &mut out);
        assert_eq!(out, vec!["987654321987".to_string()]);
    }

    #[test]
    fn keyed_secrets_are_found_at_any_depth() {
        let value = json!({
            "providers": [{"client_id": "01H8PKNWKKRPCBW4YGH1RWV279", "client_secret": "s3cr3t-value"}],
            "token": "abc",
            "nested": {"private_key": {"pem": "-----BEGIN KEY-----"}},
        });
        let mut out = Vec::new();
        collect_keyed_secrets(&value, &mut out);
        assert_eq!(
            out,
            vec![
                "s3cr3t-value".to_string(),
                "-----BEGIN KEY-----".to_string()
            ]
        );
    }
}
