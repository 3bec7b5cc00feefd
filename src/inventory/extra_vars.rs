//! `-e` (`--extra-vars`) arguments in Ansible's three forms: `key=value` pairs, `@file`
//! references to YAML or JSON files, and inline JSON or YAML flow mappings.

use std::path::Path;

use serde_json::Value;

use super::InventoryError;
use crate::vars::source::{Layer, Origin, RawVar, VarSource};
use crate::yaml;

/// Parses `-e` arguments in command-line order, so a later argument overrides an earlier one.
///
/// - `key=value key2="two words"` sets string values, as Ansible's `key=value` form does.
///   Words split at whitespace outside quotes and outside Jinja `{{ }}`, `{% %}` and `{# #}`
///   blocks. Quotes group words and are removed. A backslash escapes the next character,
///   except inside single quotes.
/// - `@vars.yml` reads a YAML or JSON file relative to `cwd`, recording each key's line.
/// - `{"key": 1}` or `{key: yes}` is read as YAML, so values keep their types.
///
/// Every key must be a valid variable name.
pub fn parse_extra_vars(values: &[String], cwd: &Path) -> Result<VarSource, InventoryError> {
    let mut vars = VarSource::new();
    for argument in values {
        vars.extend(parse_argument(argument, cwd)?);
    }
    Ok(vars)
}

fn parse_argument(argument: &str, cwd: &Path) -> Result<VarSource, InventoryError> {
    let invalid = |message: String| InventoryError::ExtraVars {
        argument: argument.to_string(),
        message,
    };
    let text = argument.trim();
    if text.is_empty() {
        return Ok(VarSource::new());
    }

    if let Some(file) = text.strip_prefix('@') {
        if file.is_empty() {
            return Err(invalid("missing file name after '@'".to_string()));
        }
        return Ok(yaml::load_vars_file(&cwd.join(file), Layer::ExtraVars)?);
    }

    if text.starts_with('{') {
        let mut vars = yaml::parse_vars_str(text, None, Layer::ExtraVars)
            .map_err(|error| invalid(error.to_string()))?;
        // Lines of a command-line argument would mislead in an origin.
        for var in vars.values_mut() {
            var.origin.line = None;
        }
        return Ok(vars);
    }
    if text.starts_with('[') {
        return Err(invalid(
            "expected a mapping such as {\"name\": \"value\"}, found a list".to_string(),
        ));
    }
    if text.starts_with(['/', '.']) && !text.contains('=') {
        return Err(invalid(format!(
            "to read variables from the file {text}, write -e @{text}"
        )));
    }

    let mut vars = VarSource::new();
    for word in split_words(text).map_err(invalid)? {
        let Some((name, value)) = word.split_once('=') else {
            return Err(invalid(format!(
                "expected key=value, found {word:?} (quote values that contain spaces)"
            )));
        };
        if !is_variable_name(name) {
            return Err(invalid(format!(
                "invalid variable name {name:?}: use letters, digits and '_', not starting \
                 with a digit"
            )));
        }
        let origin = Origin {
            layer: Layer::ExtraVars,
            file: None,
            line: None,
        };
        vars.insert(
            name.to_string(),
            RawVar {
                value: Value::String(value.to_string()),
                origin,
            },
        );
    }
    Ok(vars)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits `key=value` text into words, keeping Jinja blocks whole and removing quotes.
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut current: Option<String> = None;
    let mut index = 0;

    while index < chars.len() {
        let c = chars[index];
        index += 1;
        match c {
            c if c.is_whitespace() => words.extend(current.take()),
            '\'' => {
                let word = current.get_or_insert_with(String::new);
                loop {
                    let Some(&quoted) = chars.get(index) else {
                        return Err("unterminated ' quote".to_string());
                    };
                    index += 1;
                    if quoted == '\'' {
                        break;
                    }
                    word.push(quoted);
                }
            }
            '"' => {
                let word = current.get_or_insert_with(String::new);
                loop {
                    let Some(&quoted) = chars.get(index) else {
                        return Err("unterminated \" quote".to_string());
                    };
                    index += 1;
                    match quoted {
                        '"' => break,
                        '\\' if matches!(chars.get(index), Some('"' | '\\')) => {
                            word.push(chars[index]);
                            index += 1;
                        }
                        other => word.push(other),
                    }
                }
            }
            '\\' => {
                let escaped = chars
                    .get(index)
                    .ok_or("the text ends with a backslash that escapes nothing")?;
                current.get_or_insert_with(String::new).push(*escaped);
                index += 1;
            }
            '{' if matches!(chars.get(index), Some('{' | '%' | '#')) => {
                let close = match chars[index] {
                    '{' => '}',
                    other => other,
                };
                let start = index - 1;
                let end = (index + 1..chars.len().saturating_sub(1))
                    .find(|&position| chars[position] == close && chars[position + 1] == '}')
                    .ok_or_else(|| {
                        format!("unterminated Jinja block starting with {{{}", chars[index])
                    })?;
                current
                    .get_or_insert_with(String::new)
                    .extend(&chars[start..end + 2]);
                index = end + 2;
            }
            c => current.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(current);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn extra(values: &[&str], cwd: &Path) -> Result<VarSource, InventoryError> {
        let values: Vec<String> = values.iter().map(|value| value.to_string()).collect();
        parse_extra_vars(&values, cwd)
    }

    fn extra_ok(values: &[&str]) -> VarSource {
        extra(values, Path::new("/nonexistent"))
            .unwrap_or_else(|error| panic!("{values:?}: {error}"))
    }

    fn extra_error(values: &[&str]) -> String {
        match extra(values, Path::new("/nonexistent")) {
            Ok(vars) => panic!("expected an error for {values:?}, got {vars:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn key_values_are_strings() {
        let vars = extra_ok(&["port=8080 enabled=true mode=0750 name=matrix empty="]);
        assert_eq!(vars["port"].value, json!("8080"));
        assert_eq!(vars["enabled"].value, json!("true"));
        assert_eq!(vars["mode"].value, json!("0750"));
        assert_eq!(vars["name"].value, json!("matrix"));
        assert_eq!(vars["empty"].value, json!(""));
        let origin = &vars["port"].origin;
        assert_eq!(origin.layer, Layer::ExtraVars);
        assert_eq!(origin.file, None);
        assert_eq!(origin.line, None);
    }

    #[test]
    fn key_values_quoting() {
        let vars = extra_ok(&[
            r#"a="two words" b='single "kept"' c=x\ y d="esc \"q\" \\ \n" e=pre'fix'post f=a=b"#,
        ]);
        assert_eq!(vars["a"].value, json!("two words"));
        assert_eq!(vars["b"].value, json!("single \"kept\""));
        assert_eq!(vars["c"].value, json!("x y"));
        assert_eq!(vars["d"].value, json!("esc \"q\" \\ \\n"));
        assert_eq!(vars["e"].value, json!("prefixpost"));
        assert_eq!(vars["f"].value, json!("a=b"));
    }

    #[test]
    fn key_values_keep_jinja_blocks() {
        let vars = extra_ok(&[
            "msg={{ greeting | default('hi there') }} x={% if a %}y{% endif %} c={# note #}",
        ]);
        assert_eq!(
            vars["msg"].value,
            json!("{{ greeting | default('hi there') }}")
        );
        assert_eq!(vars["x"].value, json!("{% if a %}y{% endif %}"));
        assert_eq!(vars["c"].value, json!("{# note #}"));
    }

    #[test]
    fn key_values_invalid_rejected() {
        let cases = [
            ("justaword", "expected key=value"),
            ("a=1 stray", "expected key=value"),
            ("=value", "invalid variable name \"\""),
            ("1abc=x", "invalid variable name"),
            ("my-var=x", "invalid variable name"),
            ("a='open", "unterminated ' quote"),
            ("a=\"open", "unterminated \" quote"),
            ("a={{ open", "unterminated Jinja block"),
            ("a=x\\", "backslash"),
            ("[1, 2]", "found a list"),
            ("./vars.yml", "write -e @./vars.yml"),
            ("/etc/vars.yml", "write -e @/etc/vars.yml"),
            ("@", "missing file name"),
        ];
        for (argument, expected) in cases {
            let message = extra_error(&[argument]);
            assert!(message.contains(expected), "{argument}: {message}");
            assert!(
                message.contains("invalid extra variables"),
                "{argument}: {message}"
            );
        }
    }

    #[test]
    fn json_and_yaml_mappings_keep_types() {
        let vars = extra_ok(&[r#"{"port": 8080, "names": ["a", "b"], "nested": {"on": true}}"#]);
        assert_eq!(vars["port"].value, json!(8080));
        assert_eq!(vars["names"].value, json!(["a", "b"]));
        assert_eq!(vars["nested"].value, json!({"on": true}));
        assert_eq!(vars["port"].origin.line, None);
        assert_eq!(vars["port"].origin.file, None);

        let vars = extra_ok(&["{enabled: yes, mode: 0750, name: 'x y'}"]);
        assert_eq!(vars["enabled"].value, json!(true));
        assert_eq!(vars["mode"].value, json!(488));
        assert_eq!(vars["name"].value, json!("x y"));
    }

    #[test]
    fn json_invalid_rejected() {
        let message = extra_error(&["{\"a\": 1,"]);
        assert!(message.contains("invalid extra variables"), "{message}");
    }

    #[test]
    fn file_reference_records_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("extra.yml"),
            "# extra\nmatrix_domain: example.org\nport: 443\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("extra.json"), "{\"port\": 8443}\n").expect("write");

        let values = ["@extra.yml".to_string(), "@extra.json".to_string()];
        let vars = parse_extra_vars(&values, dir.path()).expect("valid");
        assert_eq!(vars["matrix_domain"].value, json!("example.org"));
        assert_eq!(vars["matrix_domain"].origin.line, Some(2));
        assert_eq!(
            vars["matrix_domain"].origin.file.as_deref(),
            Some(dir.path().join("extra.yml").as_path())
        );
        assert_eq!(vars["port"].value, json!(8443));
        assert_eq!(
            vars["port"].origin.file.as_deref(),
            Some(dir.path().join("extra.json").as_path())
        );
        assert_eq!(vars["port"].origin.layer, Layer::ExtraVars);
    }

    #[test]
    fn file_reference_missing_names_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let values = ["@absent.yml".to_string()];
        let error = parse_extra_vars(&values, dir.path()).expect_err("missing file");
        assert!(error.to_string().contains("absent.yml"), "{error}");
    }

    #[test]
    fn later_arguments_override() {
        let vars = extra_ok(&["a=1 b=1", "{\"b\": 2, \"c\": 2}", "c=3", "", "   "]);
        assert_eq!(vars["a"].value, json!("1"));
        assert_eq!(vars["b"].value, json!(2));
        assert_eq!(vars["c"].value, json!("3"));
        assert_eq!(vars.len(), 3);
    }
}
