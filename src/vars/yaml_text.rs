//! YAML text for the `to_yaml` and `to_nice_yaml` filters, written the way PyYAML (which
//! Ansible uses) writes it. Strings that YAML 1.1 would read as another type (`yes`, `010`) are
//! quoted, keys are sorted, and a block sequence under a key starts at the key's indentation.
//! The `from_yaml` filter reads YAML with [`crate::yaml`].

use serde_json::{Map, Value as Json};

use crate::yaml::{pyyaml_float_text, reads_as_non_string};

/// The `yaml.dump` arguments that the filters expose.
#[derive(Clone, Debug)]
pub struct YamlLayout {
    pub indent: usize,
    pub sort_keys: bool,
    /// PyYAML's `default_flow_style=None`: a list or map whose items are all scalars is
    /// written on one line (`[a, b]`). When false, every collection is in block style.
    pub flow_leaves: bool,
}

/// Writes `value` as a YAML document in `layout`, ending with a newline.
///
/// NOTE: unlike PyYAML, long strings are not folded at 80 columns, and strings with line
/// breaks are written double-quoted with `\n` escapes. Both read back to the same data.
pub fn dump_yaml(value: &Json, layout: &YamlLayout) -> String {
    let mut out = String::new();
    match value {
        Json::Array(items) if !items.is_empty() && !is_flow(value, layout) => {
            write_block_sequence(&mut out, items, 0, "", layout);
        }
        Json::Object(map) if !map.is_empty() && !is_flow(value, layout) => {
            write_block_mapping(&mut out, map, 0, "", layout);
        }
        Json::Array(_) | Json::Object(_) => {
            out.push_str(&flow_text(value, layout));
            out.push('\n');
        }
        scalar => {
            let text = scalar_text(scalar, false);
            let plain = !text.starts_with(['\'', '"']);
            out.push_str(&text);
            out.push('\n');
            // PyYAML ends a document that is a single plain scalar with an explicit end marker.
            if plain {
                out.push_str("...\n");
            }
        }
    }
    out
}

fn is_flow(value: &Json, layout: &YamlLayout) -> bool {
    if !layout.flow_leaves {
        return false;
    }
    match value {
        Json::Array(items) => items.iter().all(is_scalar),
        Json::Object(map) => map.values().all(is_scalar),
        _ => false,
    }
}

fn is_scalar(value: &Json) -> bool {
    !matches!(value, Json::Array(_) | Json::Object(_))
}

fn sorted_entries<'a>(
    map: &'a Map<String, Json>,
    layout: &YamlLayout,
) -> Vec<(&'a String, &'a Json)> {
    let mut entries: Vec<_> = map.iter().collect();
    if layout.sort_keys {
        entries.sort_by(|a, b| a.0.cmp(b.0));
    }
    entries
}

/// Writes a block mapping whose keys start at `column`. The first key follows `first_prefix`
/// (for a map inside a list item, the `-` and its padding) instead of plain indentation.
fn write_block_mapping(
    out: &mut String,
    map: &Map<String, Json>,
    column: usize,
    first_prefix: &str,
    layout: &YamlLayout,
) {
    for (index, (key, value)) in sorted_entries(map, layout).into_iter().enumerate() {
        if index == 0 {
            out.push_str(first_prefix);
        } else {
            out.push_str(&" ".repeat(column));
        }
        out.push_str(&scalar_text(&Json::String(key.clone()), false));
        out.push(':');
        write_block_value(out, value, column, layout, true);
    }
}

fn write_block_sequence(
    out: &mut String,
    items: &[Json],
    column: usize,
    first_prefix: &str,
    layout: &YamlLayout,
) {
    for (index, item) in items.iter().enumerate() {
        let line_prefix = if index == 0 {
            first_prefix.to_string()
        } else {
            " ".repeat(column)
        };
        let item_prefix = format!(
            "{line_prefix}-{}",
            " ".repeat(layout.indent.saturating_sub(1).max(1))
        );
        match item {
            Json::Object(map) if !map.is_empty() && !is_flow(item, layout) => {
                write_block_mapping(
                    out,
                    map,
                    column + item_prefix.len() - line_prefix.len(),
                    &item_prefix,
                    layout,
                );
            }
            Json::Array(inner) if !inner.is_empty() && !is_flow(item, layout) => {
                write_block_sequence(
                    out,
                    inner,
                    column + item_prefix.len() - line_prefix.len(),
                    &item_prefix,
                    layout,
                );
            }
            other => {
                out.push_str(&line_prefix);
                out.push('-');
                write_block_value(out, other, column, layout, false);
            }
        }
    }
}

/// Writes the value after `key:` or `-`, on the same line when it is a scalar or a flow
/// collection, else on the following lines.
fn write_block_value(
    out: &mut String,
    value: &Json,
    column: usize,
    layout: &YamlLayout,
    after_key: bool,
) {
    match value {
        Json::Object(map) if !map.is_empty() && !is_flow(value, layout) => {
            out.push('\n');
            let child = column + layout.indent;
            write_block_mapping(out, map, child, &" ".repeat(child), layout);
        }
        Json::Array(items) if !items.is_empty() && !is_flow(value, layout) => {
            out.push('\n');
            // PyYAML writes a list under a key at the key's own indentation.
            let child = if after_key {
                column
            } else {
                column + layout.indent
            };
            write_block_sequence(out, items, child, &" ".repeat(child), layout);
        }
        Json::Array(_) | Json::Object(_) => {
            out.push(' ');
            out.push_str(&flow_text(value, layout));
            out.push('\n');
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar, false));
            out.push('\n');
        }
    }
}

fn flow_text(value: &Json, layout: &YamlLayout) -> String {
    match value {
        Json::Array(items) => {
            let parts: Vec<String> = items.iter().map(|item| flow_text(item, layout)).collect();
            format!("[{}]", parts.join(", "))
        }
        Json::Object(map) => {
            let parts: Vec<String> = sorted_entries(map, layout)
                .into_iter()
                .map(|(key, item)| {
                    format!(
                        "{}: {}",
                        scalar_text(&Json::String(key.clone()), true),
                        flow_text(item, layout)
                    )
                })
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        scalar => scalar_text(scalar, true),
    }
}

/// Writes a scalar: plain when PyYAML and [`crate::yaml`] would read it back as the same string,
/// else single-quoted, else double-quoted with escapes (for line breaks and control characters).
/// Floats get the dot and signed exponent that PyYAML needs to read them as floats.
fn scalar_text(value: &Json, in_flow: bool) -> String {
    let text = match value {
        Json::Null => return "null".to_string(),
        Json::Bool(b) => return b.to_string(),
        Json::Number(n) if n.is_f64() => return pyyaml_float_text(&n.to_string()),
        Json::Number(n) => return n.to_string(),
        Json::String(text) => text,
        Json::Array(_) | Json::Object(_) => {
            unreachable!("collections are written by the block or flow writers")
        }
    };
    if text.chars().any(needs_double_quotes) {
        return double_quoted(text);
    }
    if can_be_plain(text, in_flow) {
        return text.clone();
    }
    format!("'{}'", text.replace('\'', "''"))
}

fn needs_double_quotes(c: char) -> bool {
    (c.is_control() && c != ' ') || matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}')
}

fn can_be_plain(text: &str, in_flow: bool) -> bool {
    if reads_as_non_string(text) {
        return false;
    }
    if text.starts_with(' ')
        || text.ends_with(' ')
        || text.starts_with("---")
        || text.starts_with("...")
    {
        return false;
    }

    let mut chars = text.chars();
    let first = chars.next().unwrap_or(' ');
    let second = chars.next();
    let first_is_indicator = match first {
        '-' | '?' | ':' => second.is_none_or(|c| c == ' ') || (in_flow && first != '-'),
        ',' | '[' | ']' | '{' | '}' | '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%'
        | '@' | '`' => true,
        _ => false,
    };
    if first_is_indicator || text.contains(": ") || text.contains(" #") || text.ends_with(':') {
        return false;
    }
    !(in_flow && text.contains([',', '[', ']', '{', '}', ':']))
}

/// Writes `text` as a YAML double-quoted scalar, escaping what YAML cannot show plainly.
pub fn double_quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            c if needs_double_quotes(c) => {
                let code = c as u32;
                if code <= 0xff {
                    out.push_str(&format!("\\x{code:02X}"));
                } else {
                    out.push_str(&format!("\\u{code:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_value;
    use serde_json::json;

    fn nice(indent: usize) -> YamlLayout {
        YamlLayout {
            indent,
            sort_keys: true,
            flow_leaves: false,
        }
    }

    #[test]
    fn nice_layout_with_indent_4() {
        let value = json!({
            "secrets": {"encryption": "abc", "keys": [{"kid": "rsa", "key_file": "/keys/rsa.pem"}]},
            "http": {"trusted_proxies": ["10.0.0.0/10", "::1/128"], "empty": []},
            "a": true,
        });
        let expected = "\
a: true
http:
    empty: []
    trusted_proxies:
    - 10.0.0.0/10
    - ::1/128
secrets:
    encryption: abc
    keys:
    -   key_file: /keys/rsa.pem
        kid: rsa
";
        assert_eq!(dump_yaml(&value, &nice(4)), expected);
    }

    #[test]
    fn nice_layout_with_indent_2() {
        let value = json!({"list": [{"b": 1, "a": [1, 2]}, "x"]});
        let expected = "list:\n- a:\n  - 1\n  - 2\n  b: 1\n- x\n";
        assert_eq!(dump_yaml(&value, &nice(2)), expected);
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        let value = json!([
            "yes",
            "010",
            "1.5",
            "",
            "a: b",
            "- x",
            "it's",
            "line\nbreak",
            "null",
            "~",
            "plain text",
            "2024-01-02"
        ]);
        let expected = "- 'yes'\n- '010'\n- '1.5'\n- ''\n- 'a: b'\n- '- x'\n- it's\n- \"line\\nbreak\"\n- 'null'\n- '~'\n- plain text\n- '2024-01-02'\n";
        assert_eq!(dump_yaml(&value, &nice(2)), expected);
        for item in value.as_array().unwrap() {
            let text = dump_yaml(&json!({ "k": item }), &nice(2));
            assert_eq!(
                parse_value(&text).unwrap(),
                json!({ "k": item }),
                "round trip of {text}"
            );
        }
    }

    #[test]
    fn dump_round_trips_tricky_values() {
        let flow = YamlLayout {
            indent: 2,
            sort_keys: false,
            flow_leaves: true,
        };
        for layout in [nice(2), nice(4), flow] {
            for value in crate::yaml::tests::round_trip_cases() {
                let written = dump_yaml(&value, &layout);
                let read = parse_value(&written).unwrap_or_else(|error| {
                    panic!("re-parse failed for {value}: {error}\n{written}")
                });
                assert_eq!(read, value, "{layout:?} written as:\n{written}");
            }
        }
    }

    #[test]
    fn floats_in_pyyaml_form() {
        assert_eq!(dump_yaml(&json!([1e20]), &nice(2)), "- 1.0e+20\n");
        assert_eq!(dump_yaml(&json!([1.5e-7]), &nice(2)), "- 1.5e-7\n");
        assert_eq!(dump_yaml(&json!([2.5]), &nice(2)), "- 2.5\n");
    }

    #[test]
    fn flow_leaves_like_default_flow_style_none() {
        let layout = YamlLayout {
            indent: 2,
            sort_keys: true,
            flow_leaves: true,
        };
        let value = json!({"b": [1, "a,b"], "a": {"x": {"y": 1}}});
        assert_eq!(
            dump_yaml(&value, &layout),
            "a:\n  x: {y: 1}\nb: [1, 'a,b']\n"
        );
        assert_eq!(dump_yaml(&json!({"k": "v"}), &layout), "{k: v}\n");
    }

    #[test]
    fn scalar_document_has_end_marker() {
        assert_eq!(dump_yaml(&json!("text"), &nice(2)), "text\n...\n");
        assert_eq!(dump_yaml(&json!("yes"), &nice(2)), "'yes'\n");
    }
}
