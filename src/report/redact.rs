//! The redactor: every byte masrun prints passes through it, so a secret value that reached a
//! message, a diff or a command's output is masked before it leaves the process.

use std::sync::RwLock;

/// The text that replaces a secret in output.
pub const MASK: &str = "********";

/// Secrets shorter than this are not masked: masking `no` or `1` would garble every line
/// while protecting nothing.
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
    /// give it, since a rendered file or a JSON event shows the escaped form.
    pub fn add(&self, secret: &str) {
        if secret.chars().count() < MIN_SECRET_LEN {
            return;
        }
        let mut spellings = vec![secret.to_string()];
        let json = serde_json::to_string(secret).unwrap_or_default();
        spellings.push(json.trim_matches('"').to_string());
        spellings.push(secret.replace('\'', "''"));

        let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        for spelling in spellings {
            if spelling.chars().count() >= MIN_SECRET_LEN && !secrets.contains(&spelling) {
                secrets.push(spelling);
            }
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
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
