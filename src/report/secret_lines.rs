//! Masking by position: the values at secret keys of configuration text (YAML, JSON and
//! `KEY=value` environment files) are replaced line by line, whatever their text. Diffs need
//! this because the old value of a secret on a host is not among the values that the
//! [`super::Redactor`] masks.

use super::redact::MASK;
use crate::vars::is_secret_name;
use crate::vars::secrets;

/// Returns whether a map key or environment variable name marks a secret value: a key of
/// [`secrets::SECRET_KEYS`] or a name that [`is_secret_name`] accepts, ignoring ASCII case.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    secrets::is_secret_key(&key) || is_secret_name(&key)
}

/// A secret key whose value may continue on the lines after it.
struct SecretBlock {
    /// Column of the key: more indented lines belong to its value.
    column: usize,
    /// The key line had no value, so a block sequence at the key's own column belongs to it.
    empty_value: bool,
}

/// Masks the value of every secret key in `lines`, keeping each line's ending.
///
/// A value on the key's line becomes [`MASK`] (inside the same quotes). Lines indented deeper
/// than a secret key, which carry a block scalar, a multi-line quoted string or a nested map,
/// become their indentation followed by [`MASK`].
/// NOTE: flow collections (`{password: x}` on one line) are not parsed, so a secret inside one
/// is masked only when the redactor has its text.
pub fn mask_secret_values(lines: &[&str]) -> Vec<String> {
    let mut masked = Vec::with_capacity(lines.len());
    let mut block: Option<SecretBlock> = None;
    for line in lines {
        let body = line.trim_end_matches(['\n', '\r']);
        let ending = &line[body.len()..];
        let indent = body.len() - body.trim_start_matches(' ').len();
        let content = &body[indent..];

        if let Some(secret) = &block {
            let continues = content.is_empty()
                || indent > secret.column
                || (secret.empty_value && indent == secret.column && content.starts_with('-'));
            if continues {
                let text = if content.is_empty() {
                    body.to_string()
                } else {
                    format!("{}{MASK}", &body[..indent])
                };
                masked.push(format!("{text}{ending}"));
                continue;
            }
            block = None;
        }

        match split_key_value(body) {
            Some(pair) if is_secret_key(pair.key) => {
                let value = body[pair.value_start..].trim();
                block = Some(SecretBlock {
                    column: pair.column,
                    empty_value: value.is_empty(),
                });
                if value.is_empty() || is_block_indicator(value) {
                    masked.push(line.to_string());
                } else {
                    let after_key = &body[pair.value_start..];
                    let spaces = after_key.len() - after_key.trim_start().len();
                    let key_part = &body[..pair.value_start + spaces];
                    masked.push(format!("{key_part}{}{ending}", mask_value(value)));
                }
            }
            _ => masked.push(line.to_string()),
        }
    }
    masked
}

/// A key found at the start of a line.
struct KeyValue<'a> {
    key: &'a str,
    /// Column of the key's first character (after indentation and `- ` markers).
    column: usize,
    /// Byte offset in the line where the value starts.
    value_start: usize,
}

/// Finds `key: value` (YAML or JSON, the key plain or quoted, after any `- ` markers) or
/// `KEY=value` (an environment file, optionally after `export `) at the start of `line`.
fn split_key_value(line: &str) -> Option<KeyValue<'_>> {
    let mut column = line.len() - line.trim_start_matches(' ').len();
    while line[column..].starts_with("- ") {
        column += 2;
        column += line[column..].len() - line[column..].trim_start_matches(' ').len();
    }
    let rest = &line[column..];

    if let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let close = rest[1..].find(quote)? + 1;
        let after = &rest[close + 1..];
        let separator = after.strip_prefix(':')?;
        if !(separator.is_empty() || separator.starts_with(' ')) {
            return None;
        }
        return Some(KeyValue {
            key: &rest[1..close],
            column,
            value_start: column + close + 2,
        });
    }

    let colon = rest
        .find(": ")
        .or_else(|| rest.strip_suffix(':').map(str::len));
    if let Some(colon) = colon {
        let key = &rest[..colon];
        if !key.is_empty() && !key.starts_with('#') && !key.contains(' ') {
            return Some(KeyValue {
                key,
                column,
                value_start: column + colon + 1,
            });
        }
    }

    let assignment = rest.strip_prefix("export ").unwrap_or(rest);
    let offset = rest.len() - assignment.len();
    let equals = assignment.find('=')?;
    let key = &assignment[..equals];
    let is_name = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    is_name.then_some(KeyValue {
        key,
        column,
        value_start: column + offset + equals + 1,
    })
}

/// Returns whether a YAML value is a block scalar header such as `|`, `|-` or `>2+`.
fn is_block_indicator(value: &str) -> bool {
    let header = value.split(" #").next().unwrap_or(value).trim_end();
    header.starts_with(['|', '>'])
        && header[1..]
            .chars()
            .all(|c| c == '-' || c == '+' || c.is_ascii_digit())
}

/// Replaces a value with [`MASK`], keeping its quotes and a trailing JSON comma.
fn mask_value(value: &str) -> String {
    let (value, comma) = match value.strip_suffix(',') {
        Some(inner) => (inner, ","),
        None => (value, ""),
    };
    match value.chars().next() {
        Some(quote @ ('"' | '\'')) if value.len() > 1 && value.ends_with(quote) => {
            format!("{quote}{MASK}{quote}{comma}")
        }
        _ => format!("{MASK}{comma}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(text: &str) -> String {
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        mask_secret_values(&lines).concat()
    }

    #[test]
    fn masks_yaml_values_at_secret_keys() {
        let text = "database:\n  host: db\n  password: df9a46e6-99c5\nmatrix:\n  secret: 'e7c8'\n";
        assert_eq!(
            mask(text),
            "database:\n  host: db\n  password: ********\nmatrix:\n  secret: '********'\n"
        );
    }

    #[test]
    fn masks_keys_in_list_items_and_suffixed_names() {
        let text = "- client_secret: \"abc\"\n  client_id: public\nmacaroon_secret_key: xyz\n";
        assert_eq!(
            mask(text),
            "- client_secret: \"********\"\n  client_id: public\nmacaroon_secret_key: ********\n"
        );
    }

    #[test]
    fn masks_block_scalar_lines() {
        let text =
            "  - client_secret: |-\n      CLIENTsec\n      CLIENTLINE2 more\n    scope: openid\n";
        assert_eq!(
            mask(text),
            "  - client_secret: |-\n      ********\n      ********\n    scope: openid\n"
        );
    }

    #[test]
    fn masks_nested_values_under_empty_secret_key() {
        let text = "private_key:\n  pem: BEGIN\n- item\nother: 1\n";
        assert_eq!(mask(text), "private_key:\n  ********\n********\nother: 1\n");
    }

    #[test]
    fn masks_json_and_env_lines() {
        let text = "  \"password\": \"hunter22\",\nMAS_DATABASE_PASSWORD=\"pw\"\nexport API_TOKEN=t0k3n\nHOME=/root\n";
        assert_eq!(
            mask(text),
            "  \"password\": \"********\",\nMAS_DATABASE_PASSWORD=\"********\"\nexport API_TOKEN=********\nHOME=/root\n"
        );
    }

    #[test]
    fn masks_short_and_numeric_values_by_position() {
        assert_eq!(
            mask("client_secret: 'yes'\ntoken: 987654321987\n"),
            "client_secret: '********'\ntoken: ********\n"
        );
    }

    #[test]
    fn keeps_values_at_other_keys() {
        let text = "token_endpoint_auth_method: client_secret_post\npasswords:\n  enabled: true\n";
        assert_eq!(mask(text), text);
    }

    #[test]
    fn keeps_line_without_ending() {
        assert_eq!(mask("password: abc"), "password: ********");
    }
}
