//! The REPL's meta-commands: lines that start with `:` and act on the session instead of
//! being evaluated as Rhai (`:help`, `:hosts`, `:host`, `:vars`, `:check`, `:load`, `:quit`).

use serde_json::Value;

use super::display::Printer;
use super::help;
use super::session::Session;
use crate::engine::suggest;
use crate::report::redact::MASK;
use crate::vars::is_secret_name;

pub struct MetaCommand {
    pub name: &'static str,
    pub usage: &'static str,
    pub description: &'static str,
}

pub const COMMANDS: &[MetaCommand] = &[
    MetaCommand {
        name: "help",
        usage: ":help [NAME]",
        description: "Lists the primitives and functions, or shows a module or function in full.",
    },
    MetaCommand {
        name: "hosts",
        usage: ":hosts",
        description: "Lists the session's hosts and their connections; * marks the targets.",
    },
    MetaCommand {
        name: "host",
        usage: ":host NAME|PATTERN|all",
        description: "Runs the following entries on the hosts an inventory pattern selects.",
    },
    MetaCommand {
        name: "vars",
        usage: ":vars [PATTERN]",
        description: "Shows resolved variables whose names contain PATTERN or match it as a glob (* ?), secrets masked.",
    },
    MetaCommand {
        name: "check",
        usage: ":check on|off",
        description: "Turns check mode on or off: primitives then only report what they would change.",
    },
    MetaCommand {
        name: "load",
        usage: ":load [--check] FILE|TASK [ARGS...]",
        description: "Runs a task file in the session's scope: its validate() first, then its body; --check runs it in check mode.",
    },
    MetaCommand {
        name: "quit",
        usage: ":quit",
        description: "Ends the session, as Ctrl-D does.",
    },
];

/// Whether the session goes on after a meta-command.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// Runs one meta-command line (with its leading `:`).
pub fn run(session: &mut Session, printer: &Printer, line: &str) -> Flow {
    let line = line.trim().trim_start_matches(':');
    let (command, argument) = line
        .split_once(char::is_whitespace)
        .map_or((line, ""), |(command, argument)| (command, argument.trim()));

    match command {
        "help" | "h" | "?" => show_help(session, printer, argument),
        "hosts" => show_hosts(session, printer),
        "host" => switch_host(session, printer, argument),
        "vars" => show_vars(session, printer, argument),
        "check" => switch_check(session, printer, argument),
        "load" => super::load(session, printer, argument),
        "quit" | "q" | "exit" => return Flow::Quit,
        _ => {
            let names = COMMANDS.iter().map(|c| c.name);
            let hint = match suggest(command, names) {
                Some(name) => format!("did you mean :{name}? "),
                None => String::new(),
            };
            printer.error(
                None,
                None,
                &format!("unknown command :{command}; {hint}type :help for the list"),
            );
        }
    }
    Flow::Continue
}

fn show_help(session: &Session, printer: &Printer, topic: &str) {
    let docs = session.with_docs_engine(help::function_docs);
    if topic.is_empty() {
        let mut text = String::from(
            "Entries are Rhai, evaluated on every target host with the task files' \
             primitives and the constants `host`, `check_mode` and `vars`.\n\
             vars.NAME or vars[\"NAME\"] reads a host variable, rendered. \
             :help NAME shows a module or function in full, with its options.\n",
        );
        text.push_str(&help::overview(&docs));
        text.push_str("\nMeta-commands\n");
        let width = COMMANDS.iter().map(|c| c.usage.len()).max().unwrap_or(0);
        for command in COMMANDS {
            let usage = command.usage;
            text.push_str(&format!("  {usage:<width$}  {}\n", command.description));
        }
        printer.note(&text);
        return;
    }

    if let Some(command) = COMMANDS
        .iter()
        .find(|command| topic.trim_start_matches(':') == command.name && topic.starts_with(':'))
    {
        printer.note(&format!("{}\n    {}", command.usage, command.description));
        return;
    }
    match help::topic(&docs, topic) {
        Some(text) => printer.note(&text),
        None => {
            let names: Vec<String> = docs.iter().map(|doc| doc.qualified_name()).collect();
            let hint = match suggest(topic, names.iter().map(String::as_str)) {
                Some(name) => format!("; did you mean {name}?"),
                None => String::new(),
            };
            printer.error(
                None,
                None,
                &format!("no function or module {topic:?}{hint}"),
            );
        }
    }
}

fn show_hosts(session: &Session, printer: &Printer) {
    let width = session
        .hosts()
        .iter()
        .map(|host| host.name.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for host in session.hosts() {
        let marker = if session.is_target(&host.name) {
            '*'
        } else {
            ' '
        };
        let state = match (&host.down, host.is_connected()) {
            (_, true) => "connected".to_string(),
            (Some(reason), false) => format!("unreachable: {reason}"),
            (None, false) => "not connected yet".to_string(),
        };
        text.push_str(&format!("{marker} {:<width$}  {state}\n", host.name));
    }
    printer.note(&text);
}

fn switch_host(session: &mut Session, printer: &Printer, pattern: &str) {
    if pattern.is_empty() {
        let names: Vec<&str> = session.targets().map(|host| host.name.as_str()).collect();
        printer.note(&format!("entries run on {}", names.join(", ")));
        return;
    }
    match session.select_targets(pattern) {
        Ok(names) => printer.note(&format!("entries now run on {}", names.join(", "))),
        Err(message) => {
            printer.error(None, None, &message);
            return;
        }
    }
    for (host, message) in session.connect_targets() {
        printer.unreachable(&host, &format!("{message}{}", super::RETRY_HINT));
    }
}

fn switch_check(session: &mut Session, printer: &Printer, argument: &str) {
    let check = match argument {
        "" => {
            let state = if session.check_mode() { "on" } else { "off" };
            printer.note(&format!("check mode is {state}"));
            return;
        }
        "on" | "true" | "yes" => true,
        "off" | "false" | "no" => false,
        other => {
            printer.error(
                None,
                None,
                &format!("expected :check on or :check off, got {other:?}"),
            );
            return;
        }
    };
    session.set_check_mode(check);
    let message = if check {
        "check mode on: primitives report what they would change and change nothing"
    } else {
        "check mode off: primitives change the hosts"
    };
    printer.note(message);
}

fn show_vars(session: &Session, printer: &Printer, pattern: &str) {
    let matcher = match NameMatcher::new(pattern) {
        Ok(matcher) => matcher,
        Err(message) => {
            printer.error(None, None, &message);
            return;
        }
    };
    let several = session.targets().count() > 1;
    for host in session.targets() {
        let mut text = String::new();
        for name in host.vars.names().into_iter().filter(|n| matcher.matches(n)) {
            let value = match host.vars.get(&name) {
                Ok(_) if is_secret_name(&name) => MASK.to_string(),
                Ok(Value::String(text)) => format!("{text:?}"),
                Ok(value) => value.to_string(),
                Err(error) => {
                    let first_line = error.to_string();
                    let first_line = first_line.lines().next().unwrap_or_default().to_string();
                    format!("(error: {first_line})")
                }
            };
            text.push_str(&format!("{name} = {value}\n"));
        }
        if text.is_empty() {
            text = format!("no variable matches {pattern:?}");
        }
        printer.labelled(several.then_some(host.name.as_str()), &text);
    }
}

/// A `:vars` pattern: a glob when it has `*`, `?` or `[`, else a substring.
enum NameMatcher {
    All,
    Substring(String),
    Glob(regex::Regex),
}

impl NameMatcher {
    fn new(pattern: &str) -> Result<NameMatcher, String> {
        if pattern.is_empty() {
            return Ok(NameMatcher::All);
        }
        if !pattern.contains(['*', '?', '[']) {
            return Ok(NameMatcher::Substring(pattern.to_string()));
        }
        let mut expression = String::from("^");
        for c in pattern.chars() {
            match c {
                '*' => expression.push_str(".*"),
                '?' => expression.push('.'),
                '[' | ']' => expression.push(c),
                c => expression.push_str(&regex::escape(&c.to_string())),
            }
        }
        expression.push('$');
        regex::Regex::new(&expression)
            .map(NameMatcher::Glob)
            .map_err(|error| format!("invalid pattern {pattern:?}: {error}"))
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            NameMatcher::All => true,
            NameMatcher::Substring(part) => name.contains(part.as_str()),
            NameMatcher::Glob(regex) => regex.is_match(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NameMatcher;

    #[test]
    fn substring_and_glob() {
        let substring = NameMatcher::new("secret").unwrap();
        assert!(substring.matches("matrix_homeserver_generic_secret_key"));
        assert!(!substring.matches("matrix_domain"));

        let glob = NameMatcher::new("matrix_*_port").unwrap();
        assert!(glob.matches("matrix_authentication_service_container_http_port"));
        assert!(!glob.matches("matrix_port_enabled"));

        let one = NameMatcher::new("matrix_domai?").unwrap();
        assert!(one.matches("matrix_domain"));
    }
}
