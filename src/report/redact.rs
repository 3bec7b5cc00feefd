//! The redactor: every byte masrun prints passes through it, so a secret value that reached a
//! message, a diff or a command's output is masked before it leaves the process.

use std::sync::RwLock;

use super::secret_lines::is_secret_key;

/// The text that replaces a secret in output.
pub const MASK: &str = "********";

/// Secrets shorter than this are not masked by their text: masking `no`, `yes` or `1`
/// wherever they appear would garble every line while protecting nothing, since a value that
/// short can be guessed anyway. Diffs still mask such values at secret keys by position
/// ([`super::secret_lines`]).
const MIN_SECRET_LEN: usize = 4;

#[derive(Debug, Default)]
pub struct Redactor {
    /// Secret spellings, longest first so a secret that contains another is masked whole.
    secrets: RwLock<Vec<String>>,
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Adds a secret value, together with the escaped spellings that JSON and YAML writers
    /// give it, since a rendered file or a JSON event shows the escaped form. Each line of a
    /// multi-line secret is added too, because a YAML block scalar writes the lines apart.
    pub fn add(&self, secret: &str) {
        if secret.chars().count() < MIN_SECRET_LEN {
            return;
        }
        let mut spellings = vec![secret.to_string()];
        let json = serde_json::to_string(secret).unwrap_or_default();
        spellings.push(json.trim_matches('"').to_string());
        spellings.push(secret.replace('\'', "''"));
        let yaml = crate::vars::yaml_double_quoted(secret);
        spellings.push(yaml.trim_matches('"').to_string());
        spellings.extend(yaml_writer_spellings(secret));
        spellings.extend(secret.lines().map(str::to_string));

        let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        for spelling in spellings {
            if spelling.chars().count() >= MIN_SECRET_LEN && !secrets.contains(&spelling) {
                secrets.push(spelling);
            }
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Masks a unified diff. Every line is masked as [`Redactor::redact`] does. A removed
    /// line is also masked when the added line at the same position of its change contains
    /// a secret, because the removed line then most likely shows that secret's old value,
    /// which this redactor does not know.
    pub fn redact_diff(&self, diff: &str) -> String {
        let lines: Vec<&str> = diff.split_inclusive('\n').collect();
        let mut output = String::with_capacity(diff.len());
        let mut in_hunk = false;
        let mut index = 0;
        while index < lines.len() {
            let line = lines[index];
            in_hunk = in_hunk || line.starts_with("@@");
            if !(in_hunk && line.starts_with('-')) {
                output.push_str(&self.redact(line));
                index += 1;
                continue;
            }

            let removed_start = index;
            while index < lines.len() && lines[index].starts_with('-') {
                index += 1;
            }
            let added_start = index;
            while index < lines.len() && lines[index].starts_with('+') {
                index += 1;
            }
            let added = &lines[added_start..index];
            for (position, removed) in lines[removed_start..added_start].iter().enumerate() {
                let counterpart = added.get(position).map(|line| &line[1..]);
                let removed = match counterpart.and_then(|line| self.mask_like(&removed[1..], line))
                {
                    Some(masked) => format!("-{masked}"),
                    None => removed.to_string(),
                };
                output.push_str(&self.redact(&removed));
            }
            for line in added {
                output.push_str(&self.redact(line));
            }
        }
        output
    }

    /// Masks `old` where its counterpart `new` contains a secret: the text between the part
    /// before the secret and the part after it, when `old` has both, or else all of `old`
    /// after its indentation. Returns `None` when `new` contains no secret.
    fn mask_like(&self, old: &str, new: &str) -> Option<String> {
        let (start, end) = self.first_secret(new)?;
        let (before, after) = (&new[..start], &new[end..]);
        if old.len() >= before.len() + after.len()
            && old.starts_with(before)
            && old.ends_with(after)
        {
            return Some(format!("{before}{MASK}{after}"));
        }
        let indent = old.len() - old.trim_start().len();
        let ending = if old.ends_with('\n') { "\n" } else { "" };
        Some(format!("{}{MASK}{ending}", &old[..indent]))
    }

    /// Returns the byte range of the earliest secret in `text`.
    fn first_secret(&self, text: &str) -> Option<(usize, usize)> {
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        secrets
            .iter()
            .filter_map(|secret| text.find(secret.as_str()).map(|at| (at, at + secret.len())))
            .min_by_key(|(start, end)| (*start, std::cmp::Reverse(*end)))
    }

    /// Masks every string, key and number of a JSON value. A masked number becomes the string
    /// [`MASK`], so the event stays valid JSON where masking its text would not. Strings and
    /// numbers under a secret key ([`is_secret_key`]) are masked whatever their text, as
    /// diffs mask them by position.
    pub fn redact_json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(text) => Value::String(self.redact(text)),
            Value::Number(number) => {
                let text = number.to_string();
                if self.redact(&text) == text {
                    value.clone()
                } else {
                    Value::String(MASK.to_string())
                }
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redact_json(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(key, item)| {
                        let item = if is_secret_key(key) {
                            mask_scalars(item)
                        } else {
                            self.redact_json(item)
                        };
                        (self.redact(key), item)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        let mut output = text.to_string();
        for secret in secrets.iter() {
            if output.contains(secret.as_str()) {
                output = output.replace(secret.as_str(), MASK);
            }
        }
        output
    }
}

/// Replaces every string and number inside `value` with [`MASK`].
fn mask_scalars(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(_) | Value::Number(_) => Value::String(MASK.to_string()),
        Value::Array(items) => Value::Array(items.iter().map(mask_scalars).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| (key.clone(), mask_scalars(item)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Returns the spellings of `secret` in serde_yaml_ng's output, which `eval` and the REPL
/// print: the inside of its quotes, or each line of its block scalar.
fn yaml_writer_spellings(secret: &str) -> Vec<String> {
    let written = serde_yaml_ng::to_string(secret).unwrap_or_default();
    let written = written.trim_end_matches('\n');
    if written.starts_with(['|', '>']) {
        return written
            .lines()
            .skip(1)
            .map(|line| line.trim_start().to_string())
            .collect();
    }
    vec![written.trim_matches(['"', '\'']).to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_plain_and_escaped_spellings() {
        let redactor = Redactor::new();
        redactor.add("p\"ss`w#rd: x");
        assert_eq!(
            redactor.redact("password: p\"ss`w#rd: x"),
            "password: ********"
        );
        assert_eq!(
            redactor.redact(r#"{"password":"p\"ss`w#rd: x"}"#),
            r#"{"password":"********"}"#
        );
    }

    #[test]
    fn masks_yaml_single_quoted_spelling() {
        let redactor = Redactor::new();
        redactor.add("it's-secret");
        assert_eq!(
            redactor.redact("secret: 'it''s-secret'"),
            "secret: '********'"
        );
    }

    #[test]
    fn masks_each_line_of_multiline_secret() {
        let redactor = Redactor::new();
        redactor.add("CLIENTsec\nCLIENTLINE2 more\nab");
        let block = "client_secret: |-\n  CLIENTsec\n  CLIENTLINE2 more\n  ab\n";
        assert_eq!(
            redactor.redact(block),
            "client_secret: |-\n  ********\n  ********\n  ab\n"
        );
    }

    #[test]
    fn masks_yaml_escaped_spellings() {
        let redactor = Redactor::new();
        redactor.add("ctl\u{7}BELLx");
        redactor.add("nel\u{85}x\u{2028}y");
        assert_eq!(
            redactor.redact(r#"client_secret: "ctl\aBELLx""#),
            r#"client_secret: "********""#
        );
        assert_eq!(
            redactor.redact(r#"a: "ctl\u0007BELLx""#),
            r#"a: "********""#
        );
        let libyaml = serde_yaml_ng::to_string("nel\u{85}x\u{2028}y").unwrap();
        let ours = crate::vars::yaml_double_quoted("nel\u{85}x\u{2028}y");
        for written in [libyaml.trim_end(), ours.as_str()] {
            assert_eq!(redactor.redact(written), "\"********\"", "{written}");
        }
    }

    #[test]
    fn diff_masks_old_value_beside_known_secret() {
        let redactor = Redactor::new();
        redactor.add("new-secret-value");
        let diff = "--- a/env\n+++ b/env\n@@ -1,2 +1,2 @@\n-URI=postgres://mas:old-value@db/mas\n-other old line\n+URI=postgres://mas:new-secret-value@db/mas\n+other new line\n context\n";
        assert_eq!(
            redactor.redact_diff(diff),
            "--- a/env\n+++ b/env\n@@ -1,2 +1,2 @@\n-URI=postgres://mas:********@db/mas\n-other old line\n+URI=postgres://mas:********@db/mas\n+other new line\n context\n"
        );
    }

    #[test]
    fn diff_masks_whole_old_line_when_shape_differs() {
        let redactor = Redactor::new();
        redactor.add("new-secret-value");
        let diff = "@@ -1 +1 @@\n-  x: old\n+  y: new-secret-value\n";
        assert_eq!(
            redactor.redact_diff(diff),
            "@@ -1 +1 @@\n-  ********\n+  y: ********\n"
        );
    }

    #[test]
    fn masks_numbers_in_json_as_strings() {
        let redactor = Redactor::new();
        redactor.add("987654321987");
        let value = serde_json::json!({"client_secret": 987654321987_u64, "port": 8080, "s": "x987654321987"});
        assert_eq!(
            redactor.redact_json(&value),
            serde_json::json!({"client_secret": MASK, "port": 8080, "s": "x********"})
        );
    }

    #[test]
    fn masks_json_values_at_secret_keys() {
        let redactor = Redactor::new();
        let value = serde_json::json!([{"client_id": "mas", "client_secret": "yes", "private_key": {"pem": "x", "bits": 2048, "ok": true}}]);
        assert_eq!(
            redactor.redact_json(&value),
            serde_json::json!([{"client_id": "mas", "client_secret": MASK, "private_key": {"pem": MASK, "bits": MASK, "ok": true}}])
        );
    }

    #[test]
    fn ignores_short_values() {
        let redactor = Redactor::new();
        redactor.add("no");
        assert_eq!(redactor.redact("no change"), "no change");
    }

    #[test]
    fn masks_longest_secret_first() {
        let redactor = Redactor::new();
        redactor.add("abcd");
        redactor.add("abcdefgh");
        assert_eq!(redactor.redact("x abcdefgh y"), "x ******** y");
    }
}
