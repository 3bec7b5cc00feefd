//! The `file::yaml_edit` primitive: sets and removes keys in a YAML file that masrun does not
//! otherwise own (Synapse's homeserver.yaml), keeping every other key, the comments and the
//! layout. The edit goes through a lossless syntax tree (yaml-edit), and the result is checked
//! against the intended data before anything is written.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;
use serde_json::Value;
use yaml_edit::{Document, Mapping, ScalarValue, YamlValue};

use super::file::{impl_attrs, write_content};
use super::{IdSpec, ModeSpec, Outcome, PrimitiveError, Result};
use crate::run::host::HostContext;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YamlEditOptions {
    pub path: PathBuf,
    /// A map merged into the document: nested maps merge key by key, any other value replaces
    /// what is there.
    #[serde(default)]
    pub set: Option<Value>,
    /// Dotted key paths to remove (`experimental_features.msc3861`). A map left empty by a
    /// removal is removed too.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Start from an empty document when the file does not exist, instead of failing.
    #[serde(default)]
    pub create: bool,
    #[serde(default)]
    pub mode: Option<ModeSpec>,
    #[serde(default)]
    pub owner: Option<IdSpec>,
    #[serde(default)]
    pub group: Option<IdSpec>,
    #[serde(default)]
    pub name: Option<String>,
}

impl_attrs!(YamlEditOptions);

pub fn edit(ctx: &HostContext, options: &YamlEditOptions) -> Result<Outcome> {
    let path = &options.path;
    let current = super::file::read(ctx, path)?;
    let text = match current {
        Some(text) => text,
        None if options.create => String::new(),
        None => {
            return Err(PrimitiveError::Failed(format!(
                "{} does not exist",
                path.display()
            )));
        }
    };
    let set = match &options.set {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => {
            return Err(PrimitiveError::InvalidOption(format!(
                "set must be a map, got {other}"
            )));
        }
    };

    let edited = apply_edits(&text, &set, &options.remove)
        .map_err(|message| PrimitiveError::Failed(format!("{}: {message}", path.display())))?;
    verify_edit(&text, &edited, &set, &options.remove)
        .map_err(|message| PrimitiveError::Failed(format!("{}: {message}", path.display())))?;
    write_content(ctx, path, edited.as_bytes(), &options.attrs())
}

/// Applies `set` and `remove` to the YAML text and returns the new text.
fn apply_edits(
    text: &str,
    set: &serde_json::Map<String, Value>,
    remove: &[String],
) -> std::result::Result<String, String> {
    let document = if text.trim().is_empty() {
        Document::from_str("{}").map_err(|e| e.to_string())?
    } else {
        Document::from_str(text).map_err(|error| format!("invalid YAML: {error}"))?
    };
    let root = document
        .as_mapping()
        .ok_or_else(|| "the top level is not a mapping".to_string())?;

    merge_into(&root, set);
    for dotted in remove {
        let keys: Vec<&str> = dotted.split('.').collect();
        remove_path(&root, &keys);
    }

    let mut edited = document.to_string();
    if text.trim().is_empty() && edited.starts_with("{}") {
        edited = edited.trim_start_matches("{}").trim_start().to_string();
    }
    // A file that only lacks its final newline is left as it is, so a no-op edit changes
    // nothing and restarts nothing.
    if edited != text && !edited.is_empty() && !edited.ends_with('\n') {
        edited.push('\n');
    }
    Ok(edited)
}

fn merge_into(mapping: &Mapping, set: &serde_json::Map<String, Value>) {
    for (key, value) in set {
        if let Value::Object(nested) = value
            && let Some(existing) = mapping.get_mapping(key.as_str())
        {
            merge_into(&existing, nested);
            continue;
        }
        mapping.set(key.as_str(), to_yaml(value));
    }
}

/// Removes the key at `keys` and returns whether `mapping` is now empty.
fn remove_path(mapping: &Mapping, keys: &[&str]) -> bool {
    match keys {
        [] => false,
        [last] => {
            mapping.remove(*last);
            mapping.is_empty()
        }
        [first, rest @ ..] => {
            if let Some(nested) = mapping.get_mapping(*first)
                && remove_path(&nested, rest)
            {
                mapping.remove(*first);
            }
            mapping.is_empty()
        }
    }
}

/// Strings are written double-quoted, so a value such as `yes` or `0750` stays a string for
/// a YAML 1.1 reader like PyYAML, which Synapse uses.
fn to_yaml(value: &Value) -> YamlValue {
    match value {
        Value::Null => YamlValue::Scalar(ScalarValue::null()),
        Value::Bool(flag) => YamlValue::Scalar(ScalarValue::from(*flag)),
        Value::Number(number) => YamlValue::Scalar(ScalarValue::plain(number.to_string())),
        Value::String(text) => YamlValue::Scalar(ScalarValue::double_quoted(text.clone())),
        Value::Array(items) => YamlValue::Sequence(items.iter().map(to_yaml).collect()),
        Value::Object(map) => YamlValue::Mapping(
            map.iter()
                .map(|(key, value)| (key.clone(), to_yaml(value)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// Checks that the edited text reads back as exactly the old data with the edits applied, so
/// a flaw in the lossless editor can never change another setting.
fn verify_edit(
    old_text: &str,
    new_text: &str,
    set: &serde_json::Map<String, Value>,
    remove: &[String],
) -> std::result::Result<(), String> {
    let parse =
        |text: &str| crate::yaml::parse_value_unmarked(text).map_err(|error| error.to_string());
    let mut expected = match parse(old_text)? {
        Value::Null => Value::Object(serde_json::Map::new()),
        value => value,
    };
    expected = crate::vars::combine_values(&expected, &Value::Object(set.clone()));
    for dotted in remove {
        let keys: Vec<&str> = dotted.split('.').collect();
        remove_value(&mut expected, &keys);
    }
    let actual = match parse(new_text)? {
        Value::Null => Value::Object(serde_json::Map::new()),
        value => value,
    };
    if actual == expected {
        Ok(())
    } else {
        Err("the edited file would not read back as intended; nothing was written".into())
    }
}

fn remove_value(value: &mut Value, keys: &[&str]) -> bool {
    let Value::Object(map) = value else {
        return false;
    };
    match keys {
        [] => false,
        [last] => {
            map.shift_remove(*last);
            map.is_empty()
        }
        [first, rest @ ..] => {
            if let Some(nested) = map.get_mut(*first)
                && remove_value(nested, rest)
            {
                map.shift_remove(*first);
            }
            map.is_empty()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOMESERVER: &str = "# Synapse configuration\nserver_name: \"example.test\"\n\n# Password settings\npassword_config:\n  # the pepper stays\n  pepper: abc\n  enabled: true\n\nexperimental_features:\n  msc3861:\n    enabled: true\n    issuer: http://old/\n\n# trailing comment\nreport_stats: false\n";

    fn edit(text: &str, set: Value, remove: &[&str]) -> String {
        let set = set.as_object().unwrap().clone();
        let remove: Vec<String> = remove.iter().map(|s| s.to_string()).collect();
        let edited = apply_edits(text, &set, &remove).unwrap();
        verify_edit(text, &edited, &set, &remove).unwrap();
        edited
    }

    #[test]
    fn edit_keeps_comments_and_other_keys() {
        let edited = edit(
            HOMESERVER,
            json!({
                "password_config": {"enabled": false},
                "matrix_authentication_service": {"enabled": true, "endpoint": "http://mas:8080/", "secret": "s3cr\"et: #x"},
            }),
            &["experimental_features.msc3861"],
        );
        assert!(edited.contains("# Synapse configuration\n"), "{edited}");
        assert!(
            edited.contains("  # the pepper stays\n  pepper: abc\n  enabled: false\n"),
            "{edited}"
        );
        assert!(
            edited.contains("# trailing comment\nreport_stats: false\n"),
            "{edited}"
        );
        assert!(!edited.contains("msc3861"), "{edited}");
        assert!(
            !edited.contains("experimental_features"),
            "an emptied map is removed: {edited}"
        );
        let data = crate::yaml::parse_value_unmarked(&edited).unwrap();
        assert_eq!(
            data["matrix_authentication_service"]["secret"],
            "s3cr\"et: #x"
        );
    }

    #[test]
    fn edit_is_idempotent() {
        let set = json!({"matrix_authentication_service": {"enabled": true, "secret": "x"}});
        let once = edit(HOMESERVER, set.clone(), &[]);
        let twice = edit(&once, set, &[]);
        assert_eq!(once, twice);
    }

    #[test]
    fn no_op_edit_keeps_missing_final_newline() {
        let text = "server_name: example.test\n# vim:ft=yaml";
        let edited = edit(text, json!({}), &["matrix_authentication_service"]);
        assert_eq!(edited, text);
    }

    #[test]
    fn strings_stay_strings_for_yaml_1_1() {
        let edited = edit("a: 1\n", json!({"flag": "yes", "mode": "0750"}), &[]);
        let data = crate::yaml::parse_value_unmarked(&edited).unwrap();
        assert_eq!(data["flag"], "yes");
        assert_eq!(data["mode"], "0750");
    }

    #[test]
    fn remove_of_missing_key_changes_nothing() {
        let edited = edit(
            HOMESERVER,
            json!({}),
            &["nothing.here", "matrix_authentication_service"],
        );
        assert_eq!(edited, HOMESERVER);
    }

    #[test]
    fn empty_document_gets_keys() {
        let edited = edit("", json!({"a": {"b": true}}), &[]);
        assert_eq!(
            crate::yaml::parse_value_unmarked(&edited).unwrap(),
            json!({"a": {"b": true}})
        );
    }
}
