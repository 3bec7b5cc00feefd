//! Output of the REPL and `masrun eval`: results and errors as text, a command's result as its
//! stdout, maps and arrays as YAML, or one JSON object per host. With several hosts every line
//! carries its host. Everything passes through the run's [`Redactor`].

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use rhai::Dynamic;
use serde_json::{Value, json};

use crate::report::secret_lines::mask_secret_values;
use crate::report::{OutputFormat, Redactor};

pub struct Printer {
    format: OutputFormat,
    redactor: Arc<Redactor>,
    color: bool,
}

impl Printer {
    pub fn new(format: OutputFormat, redactor: Arc<Redactor>) -> Printer {
        let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Printer {
            format,
            redactor,
            color,
        }
    }

    /// Prints one host's result. `label` is the host name when several hosts evaluated the
    /// entry, `None` when one did.
    pub fn value(&self, host: &str, label: Option<&str>, value: &Dynamic) {
        if self.format == OutputFormat::Json {
            self.json(&json!({"host": host, "result": to_json(value)}));
            return;
        }
        if value.is_unit() {
            return;
        }
        match command_output(value) {
            Some(output) => {
                self.lines(label, &output.stdout, false);
                self.lines(label, &output.stderr, true);
                if output.rc != 0 {
                    self.lines(label, &format!("exit status {}", output.rc), true);
                }
            }
            None => self.lines(label, &render(value), false),
        }
    }

    /// Prints an error of one host, or of the entry itself when `host` is `None`.
    pub fn error(&self, host: Option<&str>, label: Option<&str>, message: &str) {
        if self.format == OutputFormat::Json {
            self.json(&json!({"host": host, "status": "failed", "error": message}));
            return;
        }
        let text = format!("{} {message}", self.paint("error:", "31;1"));
        self.lines(label, &text, true);
    }

    /// Reports a host that could not be reached or whose connection was lost.
    pub fn unreachable(&self, host: &str, message: &str) {
        if self.format == OutputFormat::Json {
            self.json(&json!({"host": host, "status": "unreachable", "error": message}));
            return;
        }
        let label = self.paint("unreachable", "31");
        self.lines(None, &format!("{label} {host} | {message}"), true);
    }

    /// Prints the REPL's own output (meta-commands, notices) to stdout.
    pub fn note(&self, text: &str) {
        self.lines(None, text, false);
    }

    /// Prints text to stdout, each line prefixed with `label | ` when there is a label.
    pub fn labelled(&self, label: Option<&str>, text: &str) {
        self.lines(label, text, false);
    }

    /// Prints `text`, each line prefixed with `label | ` when there is a label.
    fn lines(&self, label: Option<&str>, text: &str, to_stderr: bool) {
        if text.is_empty() {
            return;
        }
        let text = self.redactor.redact(text);
        let mut out = String::new();
        for line in text.strip_suffix('\n').unwrap_or(&text).split('\n') {
            match label {
                Some(label) => out.push_str(&format!("{label} | {line}\n")),
                None => out.push_str(&format!("{line}\n")),
            }
        }
        // A closed pipe (`masrun eval ... | head`) is not an error worth reporting.
        if to_stderr {
            let _ = std::io::stderr().lock().write_all(out.as_bytes());
        } else {
            let _ = std::io::stdout().lock().write_all(out.as_bytes());
        }
    }

    fn json(&self, value: &Value) {
        let value = self.redactor.redact_json(value);
        let line = self.redactor.redact(&value.to_string());
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }

    fn paint(&self, text: &str, code: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Converts a value to JSON. Values JSON cannot express, such as `vars` itself or a function pointer,
/// become their Rhai text.
pub fn to_json(value: &Dynamic) -> Value {
    rhai::serde::from_dynamic::<Value>(value).unwrap_or_else(|_| Value::String(value.to_string()))
}

/// Renders a value as the REPL shows it: strings and numbers as text, maps and arrays as YAML.
/// Values at secret keys of the YAML are masked by position, which also covers values too
/// short for the redactor to mask by their text.
pub fn render(value: &Dynamic) -> String {
    if value.is_string() {
        return value.to_string();
    }
    if value.is_map() || value.is_array() {
        let json = to_json(value);
        if json.is_object() || json.is_array() {
            let yaml = crate::yaml::to_yaml_string(&json);
            let lines: Vec<&str> = yaml.split_inclusive('\n').collect();
            return mask_secret_values(&lines).concat();
        }
    }
    value.to_string()
}

/// The output of `command::run`, which prints as the command's own output.
struct CommandOutput {
    rc: i64,
    stdout: String,
    stderr: String,
}

fn command_output(value: &Dynamic) -> Option<CommandOutput> {
    let map = value.read_lock::<rhai::Map>()?;
    let text = |key: &str| -> Option<String> {
        map.get(key)
            .and_then(|v| v.clone().into_immutable_string().ok())
            .map(|s| s.to_string())
    };
    Some(CommandOutput {
        rc: map.get("rc")?.as_int().ok()?,
        stdout: text("stdout")?,
        stderr: text("stderr")?,
    })
}

#[cfg(test)]
mod tests {
    use rhai::{Dynamic, Map};

    use super::{command_output, render};

    #[test]
    fn maps_render_as_yaml() {
        let mut map = Map::new();
        map.insert("name".into(), Dynamic::from("mas"));
        map.insert(
            "ports".into(),
            Dynamic::from_array(vec![Dynamic::from(8080_i64)]),
        );
        assert_eq!(
            render(&Dynamic::from_map(map)),
            "name: mas\nports:\n- 8080\n"
        );
    }

    #[test]
    fn maps_mask_values_at_secret_keys() {
        let mut map = Map::new();
        map.insert("client_id".into(), Dynamic::from("mas"));
        map.insert("client_secret".into(), Dynamic::from("yes"));
        assert_eq!(
            render(&Dynamic::from_map(map)),
            "client_id: mas\nclient_secret: '********'\n"
        );
    }

    #[test]
    fn strings_render_as_text() {
        assert_eq!(render(&Dynamic::from("a \"b\"\n")), "a \"b\"\n");
        assert_eq!(render(&Dynamic::from(42_i64)), "42");
    }

    #[test]
    fn command_result_is_output() {
        let mut map = Map::new();
        map.insert("changed".into(), Dynamic::TRUE);
        map.insert("rc".into(), Dynamic::from(0_i64));
        map.insert("stdout".into(), Dynamic::from("hello\n"));
        map.insert("stderr".into(), Dynamic::from(""));
        let output = command_output(&Dynamic::from_map(map)).expect("a command result");
        assert_eq!(output.stdout, "hello\n");
        assert_eq!(output.rc, 0);
    }
}
