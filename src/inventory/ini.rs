//! The parser for Ansible's INI hosts file format: `[group]`, `[group:children]` and
//! `[group:vars]` sections, host lines with inline `key=value` variables, and comments.
//!
//! Host lines are split into words the way Ansible splits them, with Python's
//! `shlex.split(line, comments=True)`. Quotes group words and are removed, and a `#` outside
//! quotes starts a comment. Values are then read as Python literals, as Ansible does. One
//! difference is that a value written in quotes on a host line (`port="8448"`) stays a string,
//! where Ansible reads the integer.
//!
//! In `[group:vars]` sections the whole text after `=` is the value, and a ` #` outside quotes
//! starts a comment. That is another difference, because Ansible keeps such a comment in a
//! string value.

use std::path::Path;
use std::sync::LazyLock;

use indexmap::IndexMap;
use regex::Regex;
use serde_json::{Number, Value};

use super::InventoryError;
use super::host_pattern::expand_host_pattern;
use crate::python_literal::parse_python_literal;
use crate::vars::source::{Layer, Origin, RawVar, VarSource};

/// The group every host belongs to.
pub(super) const ALL: &str = "all";
/// The group of hosts that belong to no group other than `all`.
pub(super) const UNGROUPED: &str = "ungrouped";

/// The contents of a hosts file, before the group tree is resolved.
#[derive(Debug, Default)]
pub(super) struct HostsFile {
    /// Hosts in the order of their first line.
    pub hosts: IndexMap<String, HostEntry>,
    /// Groups in the order of their first mention, starting with `all` and `ungrouped`.
    pub groups: IndexMap<String, GroupEntry>,
}

#[derive(Debug)]
pub(super) struct HostEntry {
    /// 1-based line of the host's first definition; the tests check it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub line: usize,
    pub vars: VarSource,
}

#[derive(Debug, Default)]
pub(super) struct GroupEntry {
    /// Variables from `[group:vars]` sections.
    pub vars: VarSource,
    /// Hosts listed directly in `[group]` sections, in file order.
    pub hosts: Vec<String>,
    /// Child groups from `[group:children]` sections with the line of each entry.
    pub children: Vec<(String, usize)>,
    /// Whether a `[group]` or `[group:children]` section or a children entry defines the
    /// group. A group seen only in `[group:vars]` is undefined.
    pub defined: bool,
    /// 1-based line of the first `[group:vars]` header, for the undefined-group error.
    pub vars_line: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SectionKind {
    Hosts,
    Children,
    Vars,
}

/// Parses the text of a hosts file. `file` names the file in errors and variable origins.
pub(super) fn parse_hosts_file(text: &str, file: &Path) -> Result<HostsFile, InventoryError> {
    let mut parser = HostsParser {
        file,
        result: HostsFile::default(),
    };
    for name in [ALL, UNGROUPED] {
        parser.result.groups.insert(
            name.to_string(),
            GroupEntry {
                defined: true,
                ..GroupEntry::default()
            },
        );
    }

    // Editors on Windows may start the file with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    // Lines before the first section header are ungrouped hosts.
    let mut group = UNGROUPED.to_string();
    let mut kind = SectionKind::Hosts;
    for (index, raw_line) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line == "---" || line.starts_with("all:") {
            return Err(parser.error(
                line_number,
                "this looks like a YAML inventory, but masrun reads the INI format \
                 (for example `[matrix_servers]` followed by host lines)",
            ));
        }

        let section =
            parse_section_header(line).map_err(|message| parser.error(line_number, message))?;
        if let Some((name, section_kind)) = section {
            parser.open_section(&name, section_kind, line_number);
            group = name;
            kind = section_kind;
            continue;
        }

        let parsed = match kind {
            SectionKind::Hosts => parser.parse_host_line(&group, line, line_number),
            SectionKind::Vars => parser.parse_var_line(&group, line, line_number),
            SectionKind::Children => parser.parse_child_line(&group, line, line_number),
        };
        parsed.map_err(|message| parser.error(line_number, message))?;
    }

    if let Some((name, entry)) = parser
        .result
        .groups
        .iter()
        .find(|(_, entry)| !entry.defined)
    {
        let line = entry.vars_line.unwrap_or(0);
        return Err(parser.error(
            line,
            format!(
                "[{name}:vars] sets variables for the group {name:?}, which no [{name}] or \
                 [{name}:children] section and no children entry defines"
            ),
        ));
    }
    Ok(parser.result)
}

/// Parses a `[name]` or `[name:kind]` header. Returns `None` for lines that are not headers,
/// which include bracketed IPv6 host lines such as `[2001:db8::1]:22`.
fn parse_section_header(line: &str) -> Result<Option<(String, SectionKind)>, String> {
    // A group name is any run of characters other than whitespace, `:` and `]`, as in Ansible.
    static HEADER: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?$").expect("valid regex")
    });

    if !line.starts_with('[') {
        return Ok(None);
    }
    let Some(captures) = HEADER.captures(line) else {
        let without_comment = strip_trailing_comment(line);
        if without_comment.ends_with(']') {
            return Err(format!(
                "invalid section header {without_comment:?}: a group name cannot contain \
                 spaces, ':' or ']'"
            ));
        }
        return Ok(None);
    };

    let name = captures[1].to_string();
    let kind = match captures.get(2).map(|found| found.as_str()) {
        None | Some("hosts") => SectionKind::Hosts,
        Some("children") => SectionKind::Children,
        Some("vars") => SectionKind::Vars,
        Some(other) => {
            return Err(format!(
                "unknown section type {other:?} in [{name}:{other}] (use [{name}], \
                 [{name}:children] or [{name}:vars])"
            ));
        }
    };
    Ok(Some((name, kind)))
}

struct HostsParser<'a> {
    file: &'a Path,
    result: HostsFile,
}

impl HostsParser<'_> {
    fn error(&self, line: usize, message: impl Into<String>) -> InventoryError {
        InventoryError::Syntax {
            file: self.file.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    fn origin(&self, layer: Layer, line: usize) -> Origin {
        Origin {
            layer,
            file: Some(self.file.to_path_buf()),
            line: Some(line),
        }
    }

    fn group_entry(&mut self, name: &str) -> &mut GroupEntry {
        self.result.groups.entry(name.to_string()).or_default()
    }

    fn open_section(&mut self, name: &str, kind: SectionKind, line: usize) {
        let entry = self.group_entry(name);
        if kind == SectionKind::Vars {
            entry.vars_line.get_or_insert(line);
        } else {
            entry.defined = true;
        }
    }

    fn parse_host_line(
        &mut self,
        group: &str,
        line: &str,
        line_number: usize,
    ) -> Result<(), String> {
        let tokens = split_host_line(line)?;
        let Some((pattern, assignments)) = tokens.split_first() else {
            return Ok(());
        };
        let expanded = expand_host_pattern(&pattern.text)?;

        let mut vars = VarSource::new();
        for token in assignments {
            let Some(equals) = token.text.find('=') else {
                return Err(format!(
                    "expected key=value after the host name, found {:?} (quote values that \
                     contain spaces)",
                    token.text
                ));
            };
            let key = &token.text[..equals];
            if key.is_empty() {
                return Err(format!(
                    "missing variable name before '=' in {:?}",
                    token.text
                ));
            }
            let value = host_line_value(&token.text[equals + 1..], token.is_quoted_after(equals));
            let origin = self.origin(Layer::InventoryHostVars, line_number);
            vars.insert(key.to_string(), RawVar { value, origin });
        }

        for name in expanded.names {
            let host = self
                .result
                .hosts
                .entry(name.clone())
                .or_insert_with(|| HostEntry {
                    line: line_number,
                    vars: VarSource::new(),
                });
            if let Some(port) = expanded.port {
                let origin = Origin {
                    layer: Layer::InventoryHostVars,
                    file: Some(self.file.to_path_buf()),
                    line: Some(line_number),
                };
                let value = Value::Number(Number::from(port));
                host.vars
                    .insert("ansible_port".to_string(), RawVar { value, origin });
            }
            for (key, var) in &vars {
                host.vars.insert(key.clone(), var.clone());
            }

            let entry = self.group_entry(group);
            if !entry.hosts.contains(&name) {
                entry.hosts.push(name);
            }
        }
        Ok(())
    }

    fn parse_var_line(
        &mut self,
        group: &str,
        line: &str,
        line_number: usize,
    ) -> Result<(), String> {
        let line = strip_trailing_comment(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "expected key=value in [{group}:vars], found {line:?}"
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("missing variable name before '=' in {line:?}"));
        }
        if key.contains(char::is_whitespace) {
            return Err(format!(
                "invalid variable name {key:?}: names cannot contain spaces"
            ));
        }

        let text = value.trim();
        let value = parse_python_literal(text).unwrap_or_else(|| Value::String(text.to_string()));
        let origin = self.origin(Layer::InventoryGroupVars, line_number);
        self.group_entry(group)
            .vars
            .insert(key.to_string(), RawVar { value, origin });
        Ok(())
    }

    fn parse_child_line(
        &mut self,
        group: &str,
        line: &str,
        line_number: usize,
    ) -> Result<(), String> {
        let child = strip_trailing_comment(line);
        if child.is_empty() || child.contains(|c: char| c.is_whitespace() || c == ':' || c == ']') {
            return Err(format!(
                "expected one group name per line in [{group}:children], found {child:?}"
            ));
        }
        if child == ALL {
            return Err(format!(
                "[{group}:children] lists the group \"all\", which already contains every group"
            ));
        }

        // Ansible creates a child group that no section defines, so masrun does too.
        self.group_entry(child).defined = true;
        let parent = self.group_entry(group);
        if !parent.children.iter().any(|(name, _)| name == child) {
            parent.children.push((child.to_string(), line_number));
        }
        Ok(())
    }
}

/// Reads an inline host variable value like Ansible's `ast.literal_eval`, except that a
/// quoted value that would become a number, boolean or `None` stays a string.
fn host_line_value(text: &str, quoted: bool) -> Value {
    match parse_python_literal(text) {
        Some(Value::Number(_) | Value::Bool(_) | Value::Null) if quoted => {
            Value::String(text.to_string())
        }
        Some(value) => value,
        None => Value::String(text.to_string()),
    }
}

/// Removes a ` #` comment that starts outside quotes, and the whitespace before it.
fn strip_trailing_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (index, c) in line.char_indices() {
        match quote {
            Some(open) if c == open && previous != '\\' => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' && previous.is_whitespace() => return line[..index].trim_end(),
            None => {}
        }
        previous = c;
    }
    line
}

/// One word of a host line after quote removal.
#[derive(Debug, Default)]
struct LineToken {
    text: String,
    /// Byte offsets in `text` where a quoted part starts, including empty quoted parts.
    quoted_starts: Vec<usize>,
    /// Byte offset in `text` after the last quoted part seen so far.
    quoted_ends: Vec<usize>,
}

impl LineToken {
    /// Returns whether any part after byte offset `equals` was written in quotes.
    fn is_quoted_after(&self, equals: usize) -> bool {
        self.quoted_ends.iter().any(|&end| end > equals)
            || self.quoted_starts.iter().any(|&start| start > equals)
    }
}

/// Splits a host line into words like `shlex.split(line, comments=True)` in POSIX mode.
fn split_host_line(line: &str) -> Result<Vec<LineToken>, String> {
    let mut tokens = Vec::new();
    let mut current: Option<LineToken> = None;
    let mut chars = line.chars();

    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                tokens.extend(current.take());
            }
            '#' => break,
            '\'' | '"' => {
                let token = current.get_or_insert_with(LineToken::default);
                token.quoted_starts.push(token.text.len());
                read_quoted(c, &mut chars, &mut token.text)?;
                token.quoted_ends.push(token.text.len());
            }
            '\\' => {
                let token = current.get_or_insert_with(LineToken::default);
                let escaped = chars
                    .next()
                    .ok_or("the line ends with a backslash that escapes nothing")?;
                token.quoted_starts.push(token.text.len());
                token.text.push(escaped);
                token.quoted_ends.push(token.text.len());
            }
            c => current.get_or_insert_with(LineToken::default).text.push(c),
        }
    }
    tokens.extend(current);
    Ok(tokens)
}

/// Reads a quoted part up to its closing quote. In double quotes a backslash escapes only `"`
/// and `\`, as in POSIX shells. Single quotes have no escapes.
fn read_quoted(
    quote: char,
    chars: &mut std::str::Chars<'_>,
    text: &mut String,
) -> Result<(), String> {
    loop {
        let Some(c) = chars.next() else {
            return Err(format!("unterminated {quote} quote"));
        };
        if c == quote {
            return Ok(());
        }
        if quote == '"' && c == '\\' {
            match chars.clone().next() {
                Some(next @ ('"' | '\\')) => {
                    chars.next();
                    text.push(next);
                }
                _ => text.push('\\'),
            }
            continue;
        }
        text.push(c);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FILE: &str = "/srv/inventory/hosts";

    fn parse(text: &str) -> HostsFile {
        parse_hosts_file(text, Path::new(FILE))
            .unwrap_or_else(|error| panic!("parse failed: {error}"))
    }

    fn parse_error(text: &str) -> (usize, String) {
        match parse_hosts_file(text, Path::new(FILE)) {
            Ok(parsed) => panic!("expected an error, parsed {parsed:?}"),
            Err(InventoryError::Syntax {
                file,
                line,
                message,
            }) => {
                assert_eq!(file, Path::new(FILE));
                (line, message)
            }
            Err(other) => panic!("expected a syntax error, got {other}"),
        }
    }

    fn host_var(parsed: &HostsFile, host: &str, key: &str) -> Value {
        parsed.hosts[host].vars[key].value.clone()
    }

    fn group_var(parsed: &HostsFile, group: &str, key: &str) -> Value {
        parsed.groups[group].vars[key].value.clone()
    }

    #[test]
    fn matrix_playbook_hosts_file() {
        let text = "\
# To connect using a non-root user (and elevate to root with sudo later),
# replace `ansible_ssh_user=root` with something like this: ansible_ssh_user=username ansible_become=true ansible_become_user=root
#
# For improved Ansible performance, SSH pipelining is enabled by default in `ansible.cfg`.

[matrix_servers]
matrix.example.com ansible_host=192.0.2.10 ansible_ssh_user=root
";
        let parsed = parse(text);
        let hosts: Vec<&String> = parsed.hosts.keys().collect();
        assert_eq!(hosts, ["matrix.example.com"]);
        assert_eq!(
            host_var(&parsed, "matrix.example.com", "ansible_host"),
            json!("192.0.2.10")
        );
        assert_eq!(
            host_var(&parsed, "matrix.example.com", "ansible_ssh_user"),
            json!("root")
        );
        assert_eq!(
            parsed.groups["matrix_servers"].hosts,
            ["matrix.example.com"]
        );
        assert_eq!(parsed.hosts["matrix.example.com"].line, 7);
        let origin = &parsed.hosts["matrix.example.com"].vars["ansible_host"].origin;
        assert_eq!(origin.layer, Layer::InventoryHostVars);
        assert_eq!(origin.file.as_deref(), Some(Path::new(FILE)));
        assert_eq!(origin.line, Some(7));
    }

    #[test]
    fn comments_and_blank_lines_skipped() {
        let text = "\
# comment
; also a comment
   # indented comment

\t
[web] # trailing comment
web1 # host comment
web2 ansible_port=22# comment right after a value
web3 note='a # in quotes' other=\"x ; y\" ; # semicolon token is a comment marker only at line start
";
        let result = parse_hosts_file(text, Path::new(FILE));
        let Err(InventoryError::Syntax { line, message, .. }) = result else {
            panic!("expected a syntax error for the stray ';', got {result:?}");
        };
        assert_eq!(line, 9);
        assert!(message.contains("expected key=value"), "{message}");

        let parsed = parse(&text.replace(" ; # semicolon", " # semicolon"));
        assert_eq!(parsed.groups["web"].hosts, ["web1", "web2", "web3"]);
        assert_eq!(host_var(&parsed, "web2", "ansible_port"), json!(22));
        assert_eq!(host_var(&parsed, "web3", "note"), json!("a # in quotes"));
        assert_eq!(host_var(&parsed, "web3", "other"), json!("x ; y"));
    }

    #[test]
    fn windows_line_endings_and_bom() {
        let parsed =
            parse("\u{feff}[matrix_servers]\r\nmatrix.example.com ansible_host=192.0.2.10\r\n");
        assert_eq!(
            parsed.groups["matrix_servers"].hosts,
            ["matrix.example.com"]
        );
        assert_eq!(
            host_var(&parsed, "matrix.example.com", "ansible_host"),
            json!("192.0.2.10")
        );
    }

    #[test]
    fn hosts_before_sections_are_ungrouped() {
        let parsed = parse("first\nsecond ansible_host=192.0.2.2\n[group]\nthird\n");
        assert_eq!(parsed.groups[UNGROUPED].hosts, ["first", "second"]);
        assert_eq!(parsed.groups["group"].hosts, ["third"]);
        let hosts: Vec<&String> = parsed.hosts.keys().collect();
        assert_eq!(hosts, ["first", "second", "third"]);
    }

    #[test]
    fn implicit_groups_always_present() {
        let parsed = parse("");
        let groups: Vec<&String> = parsed.groups.keys().collect();
        assert_eq!(groups, [ALL, UNGROUPED]);
        assert!(parsed.hosts.is_empty());
    }

    #[test]
    fn host_values_python_literals() {
        let text = "[g]\nh count=3 neg=-2 ratio=0.5 on=True off=False none=None mode=0750 list=\"[1,'a']\" map=\"{'k': 1}\" word=yes hex=0x10 bare=[1,'a']\n";
        let parsed = parse(text);
        assert_eq!(host_var(&parsed, "h", "count"), json!(3));
        assert_eq!(host_var(&parsed, "h", "neg"), json!(-2));
        assert_eq!(host_var(&parsed, "h", "ratio"), json!(0.5));
        assert_eq!(host_var(&parsed, "h", "on"), json!(true));
        assert_eq!(host_var(&parsed, "h", "off"), json!(false));
        assert_eq!(host_var(&parsed, "h", "none"), Value::Null);
        assert_eq!(host_var(&parsed, "h", "mode"), json!("0750"));
        assert_eq!(host_var(&parsed, "h", "list"), json!([1, "a"]));
        assert_eq!(host_var(&parsed, "h", "map"), json!({"k": 1}));
        assert_eq!(host_var(&parsed, "h", "word"), json!("yes"));
        assert_eq!(host_var(&parsed, "h", "hex"), json!(16));
        // Quote removal happens before the literal is read, as with Ansible's shlex split.
        assert_eq!(host_var(&parsed, "h", "bare"), json!("[1,a]"));
    }

    #[test]
    fn host_values_quoted_stay_strings() {
        let text = "[g]\nh port=\"8448\" flag='True' empty=\"\" spaced=\"a b  c\" nested=\"'03#pa33w0rd'\" list=\"[1, 2]\" mixed=pre\"fix\"\n";
        let parsed = parse(text);
        assert_eq!(host_var(&parsed, "h", "port"), json!("8448"));
        assert_eq!(host_var(&parsed, "h", "flag"), json!("True"));
        assert_eq!(host_var(&parsed, "h", "empty"), json!(""));
        assert_eq!(host_var(&parsed, "h", "spaced"), json!("a b  c"));
        assert_eq!(host_var(&parsed, "h", "nested"), json!("03#pa33w0rd"));
        assert_eq!(host_var(&parsed, "h", "list"), json!([1, 2]));
        assert_eq!(host_var(&parsed, "h", "mixed"), json!("prefix"));
    }

    #[test]
    fn host_values_escapes_and_equals() {
        let text = "[g]\nh url=https://x.example/?a=b escaped=a\\ b dq=\"say \\\"hi\\\" \\n\"\n";
        let parsed = parse(text);
        assert_eq!(
            host_var(&parsed, "h", "url"),
            json!("https://x.example/?a=b")
        );
        assert_eq!(host_var(&parsed, "h", "escaped"), json!("a b"));
        assert_eq!(host_var(&parsed, "h", "dq"), json!("say \"hi\" \\n"));
    }

    #[test]
    fn host_lines_invalid_rejected() {
        let cases = [
            ("[g]\nh novalue\n", 2, "expected key=value"),
            ("[g]\nh =1\n", 2, "missing variable name"),
            ("[g]\nh x='open\n", 2, "unterminated ' quote"),
            ("\nh x=\"open\n", 2, "unterminated \" quote"),
            ("[g]\nweb[3:1]\n", 2, "greater than the end"),
            ("[g]\nhost:\n", 2, "followed by a port"),
            ("[g]\nh x=1 \\\n", 2, "backslash"),
            ("---\n[g]\n", 1, "YAML inventory"),
            ("all:\n  hosts:\n", 1, "YAML inventory"),
        ];
        for (text, line, expected) in cases {
            let (found_line, message) = parse_error(text);
            assert_eq!(found_line, line, "{text:?}: {message}");
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn host_ranges_and_ports() {
        let parsed = parse("[web]\nweb[01:03].example.com role=web\n[db]\ndb-[a:b]:2222\n");
        assert_eq!(
            parsed.groups["web"].hosts,
            [
                "web01.example.com",
                "web02.example.com",
                "web03.example.com"
            ]
        );
        assert_eq!(host_var(&parsed, "web02.example.com", "role"), json!("web"));
        assert_eq!(parsed.groups["db"].hosts, ["db-a", "db-b"]);
        assert_eq!(host_var(&parsed, "db-b", "ansible_port"), json!(2222));
    }

    #[test]
    fn host_port_overridden_by_inline_var() {
        let parsed = parse("[g]\nh:2222 ansible_port=2200\n");
        assert_eq!(host_var(&parsed, "h", "ansible_port"), json!(2200));
    }

    #[test]
    fn host_in_several_groups_merges_vars() {
        let parsed = parse("[a]\nh x=1 y=1\n[b]\nh y=2\n[a]\nh z=3\n");
        assert_eq!(host_var(&parsed, "h", "x"), json!(1));
        assert_eq!(host_var(&parsed, "h", "y"), json!(2));
        assert_eq!(parsed.hosts["h"].vars["y"].origin.line, Some(4));
        assert_eq!(host_var(&parsed, "h", "z"), json!(3));
        assert_eq!(parsed.hosts["h"].line, 2);
        assert_eq!(parsed.groups["a"].hosts, ["h"]);
        assert_eq!(parsed.groups["b"].hosts, ["h"]);
    }

    #[test]
    fn group_vars_sections() {
        let text = "\
[matrix_servers]
matrix

[matrix_servers:vars]
port = 8448
mode=0750
quoted='8448'
double=\"with spaces\" # comment
plain=some text here
hash=p#ss
spaced_hash=value # dropped comment
in_quotes='a # kept'
flag=True
empty=
list=['a', 'b']
";
        let parsed = parse(text);
        assert_eq!(group_var(&parsed, "matrix_servers", "port"), json!(8448));
        assert_eq!(group_var(&parsed, "matrix_servers", "mode"), json!("0750"));
        assert_eq!(
            group_var(&parsed, "matrix_servers", "quoted"),
            json!("8448")
        );
        assert_eq!(
            group_var(&parsed, "matrix_servers", "double"),
            json!("with spaces")
        );
        assert_eq!(
            group_var(&parsed, "matrix_servers", "plain"),
            json!("some text here")
        );
        assert_eq!(group_var(&parsed, "matrix_servers", "hash"), json!("p#ss"));
        assert_eq!(
            group_var(&parsed, "matrix_servers", "spaced_hash"),
            json!("value")
        );
        assert_eq!(
            group_var(&parsed, "matrix_servers", "in_quotes"),
            json!("a # kept")
        );
        assert_eq!(group_var(&parsed, "matrix_servers", "flag"), json!(true));
        assert_eq!(group_var(&parsed, "matrix_servers", "empty"), json!(""));
        assert_eq!(
            group_var(&parsed, "matrix_servers", "list"),
            json!(["a", "b"])
        );

        let origin = &parsed.groups["matrix_servers"].vars["port"].origin;
        assert_eq!(origin.layer, Layer::InventoryGroupVars);
        assert_eq!(origin.line, Some(5));
    }

    #[test]
    fn group_vars_all_section() {
        let parsed = parse("[all:vars]\nansible_user=deploy\n");
        assert_eq!(group_var(&parsed, ALL, "ansible_user"), json!("deploy"));
    }

    #[test]
    fn group_vars_invalid_lines_rejected() {
        let cases = [
            (
                "[g]\nh\n[g:vars]\nnovalue\n",
                4,
                "expected key=value in [g:vars]",
            ),
            ("[g]\nh\n[g:vars]\n=1\n", 4, "missing variable name"),
            ("[g]\nh\n[g:vars]\nmy var=1\n", 4, "cannot contain spaces"),
        ];
        for (text, line, expected) in cases {
            let (found_line, message) = parse_error(text);
            assert_eq!(found_line, line, "{text:?}");
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn group_vars_undefined_group_rejected() {
        let (line, message) = parse_error("[web]\nh\n\n[db:vars]\nport=5432\n");
        assert_eq!(line, 4);
        assert!(message.contains("[db:vars]"), "{message}");
        assert!(message.contains("no [db]"), "{message}");
    }

    #[test]
    fn group_vars_defined_later_accepted() {
        let parsed = parse("[db:vars]\nport=5432\n[db]\npg\n");
        assert_eq!(group_var(&parsed, "db", "port"), json!(5432));
        let parsed = parse("[db:vars]\nport=5432\n[servers:children]\ndb\n");
        assert!(parsed.groups["db"].defined);
    }

    #[test]
    fn children_sections() {
        let text =
            "[matrix_servers:children]\nhomeservers # comment\nauth\n\n[homeservers]\nsynapse1\n";
        let parsed = parse(text);
        let children: Vec<(&str, usize)> = parsed.groups["matrix_servers"]
            .children
            .iter()
            .map(|(name, line)| (name.as_str(), *line))
            .collect();
        assert_eq!(children, [("homeservers", 2), ("auth", 3)]);
        assert!(parsed.groups["auth"].defined);
        assert!(parsed.groups["auth"].hosts.is_empty());
        assert_eq!(parsed.groups["homeservers"].hosts, ["synapse1"]);
    }

    #[test]
    fn children_invalid_lines_rejected() {
        let cases = [
            ("[a:children]\nb c\n", 2, "one group name per line"),
            ("[a:children]\nb:vars\n", 2, "one group name per line"),
            ("[a:children]\nall\n", 2, "already contains every group"),
        ];
        for (text, line, expected) in cases {
            let (found_line, message) = parse_error(text);
            assert_eq!(found_line, line, "{text:?}");
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn sections_invalid_rejected() {
        let cases = [
            ("[web:hostvars]\n", 1, "unknown section type \"hostvars\""),
            ("[web servers]\n", 1, "invalid section header"),
            ("[web:vars:x]\n", 1, "invalid section header"),
            ("[]\n", 1, "invalid section header"),
        ];
        for (text, line, expected) in cases {
            let (found_line, message) = parse_error(text);
            assert_eq!(found_line, line, "{text:?}");
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn sections_hosts_suffix_and_reopen() {
        let parsed = parse("[web:hosts]\na\n[db]\nb\n[web]\nc\n");
        assert_eq!(parsed.groups["web"].hosts, ["a", "c"]);
        let groups: Vec<&String> = parsed.groups.keys().collect();
        assert_eq!(groups, [ALL, UNGROUPED, "web", "db"]);
    }

    #[test]
    fn ipv6_host_lines_not_headers() {
        let parsed = parse("[g]\n[2001:db8::1]:2222 name=v6\n2001:db8::2\n");
        assert_eq!(parsed.groups["g"].hosts, ["2001:db8::1", "2001:db8::2"]);
        assert_eq!(
            host_var(&parsed, "2001:db8::1", "ansible_port"),
            json!(2222)
        );
    }
}
