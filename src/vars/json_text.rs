//! JSON text in the layout of Python's `json.dumps`, which Ansible's `to_json` and
//! `to_nice_json` filters call, so that rendered files match what the playbook writes.

use serde_json::Value as Json;

/// The `json.dumps` arguments that the filters expose.
#[derive(Clone, Debug)]
pub struct JsonLayout {
    /// Spaces per nesting level, or `None` for everything on one line.
    pub indent: Option<usize>,
    pub sort_keys: bool,
    /// Escape every non-ASCII character as `\uXXXX`, Python's default.
    pub ensure_ascii: bool,
    pub item_separator: String,
    pub key_separator: String,
}

impl JsonLayout {
    /// Python's defaults: one line, `", "` between items and `": "` after keys.
    pub fn compact() -> JsonLayout {
        JsonLayout {
            indent: None,
            sort_keys: false,
            ensure_ascii: true,
            item_separator: ", ".to_string(),
            key_separator: ": ".to_string(),
        }
    }

    /// Ansible's `to_nice_json` defaults: four spaces, sorted keys, `","` between items.
    pub fn nice() -> JsonLayout {
        JsonLayout {
            indent: Some(4),
            sort_keys: true,
            ensure_ascii: true,
            item_separator: ",".to_string(),
            key_separator: ": ".to_string(),
        }
    }
}

/// Writes `value` as JSON text in `layout`.
pub fn dump_json(value: &Json, layout: &JsonLayout) -> String {
    let mut out = String::new();
    write_value(&mut out, value, layout, 0);
    out
}

fn write_value(out: &mut String, value: &Json, layout: &JsonLayout, depth: usize) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(&n.to_string()),
        Json::String(text) => write_string(out, text, layout.ensure_ascii),
        Json::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                write_separator(out, index, layout, depth + 1);
                write_value(out, item, layout, depth + 1);
            }
            write_closing_indent(out, layout, depth);
            out.push(']');
        }
        Json::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut entries: Vec<(&String, &Json)> = map.iter().collect();
            if layout.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                write_separator(out, index, layout, depth + 1);
                write_string(out, key, layout.ensure_ascii);
                out.push_str(&layout.key_separator);
                write_value(out, item, layout, depth + 1);
            }
            write_closing_indent(out, layout, depth);
            out.push('}');
        }
    }
}

fn write_separator(out: &mut String, index: usize, layout: &JsonLayout, depth: usize) {
    if index > 0 {
        match layout.indent {
            // With an indent, Python ends the line after the separator, so its trailing
            // space (if any) is dropped.
            Some(_) => out.push_str(layout.item_separator.trim_end()),
            None => out.push_str(&layout.item_separator),
        }
    }
    if let Some(indent) = layout.indent {
        out.push('\n');
        out.push_str(&" ".repeat(indent * depth));
    }
}

fn write_closing_indent(out: &mut String, layout: &JsonLayout, depth: usize) {
    if let Some(indent) = layout.indent {
        out.push('\n');
        out.push_str(&" ".repeat(indent * depth));
    }
}

fn write_string(out: &mut String, text: &str, ensure_ascii: bool) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            // Python escapes a character outside the Basic Multilingual Plane as a surrogate
            // pair, which YAML readers reject, and config.yaml goes through one. Such a
            // character stays as it is: JSON allows it, and the text stays readable.
            c if ensure_ascii && !c.is_ascii() && (c as u32) <= 0xFFFF => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_layout_matches_python() {
        let value = json!({"b": [1, "x"], "a": {"k": null, "t": true}});
        assert_eq!(
            dump_json(&value, &JsonLayout::compact()),
            r#"{"b": [1, "x"], "a": {"k": null, "t": true}}"#
        );
    }

    #[test]
    fn nice_layout_matches_python() {
        let value = json!({"b": [1, []], "a": {}});
        let expected = "{\n    \"a\": {},\n    \"b\": [\n        1,\n        []\n    ]\n}";
        assert_eq!(dump_json(&value, &JsonLayout::nice()), expected);
    }

    #[test]
    fn strings_are_escaped_like_python_but_astral() {
        let value = json!("a\"b\\c\nd\u{1}é😀");
        assert_eq!(
            dump_json(&value, &JsonLayout::compact()),
            r#""a\"b\\c\nd\u0001\u00e9😀""#
        );
        let layout = JsonLayout {
            ensure_ascii: false,
            ..JsonLayout::compact()
        };
        assert_eq!(dump_json(&json!("é"), &layout), "\"é\"");
    }
}
