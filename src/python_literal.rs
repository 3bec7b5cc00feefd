//! The subset of Python's `ast.literal_eval` that Ansible applies to values in INI hosts files
//! and to the rendered text of templates. So `port=8448` in a hosts file is an integer,
//! `enabled=True` a boolean and, in a `[group:vars]` section, `names=['a', 'b']` a list. A
//! template that renders to `['a', 'b']` gives a list too.
//!
//! The parser reads `int` in every Python form (`1_000`, `0x1F`, `0o17`, `0b11`) with one
//! sign, `float`, `True`, `False` and `None`. It reads string and bytes literals with their
//! escapes and prefixes, and concatenates adjacent ones. Lists, tuples and sets become JSON
//! arrays, and dicts become JSON objects with keys as their JSON text. Anything else, such as
//! names, f-strings, complex numbers, expressions or integers beyond 64 bits, is not a literal
//! here, and the caller keeps the value as a string.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Number, Value};

/// Parses `text` as a Python literal, or returns `None` when `ast.literal_eval` would reject
/// it (or when the literal has no JSON form, such as an integer beyond 64 bits).
pub(crate) fn parse_python_literal(text: &str) -> Option<Value> {
    let mut parser = LiteralParser {
        chars: text.chars().collect(),
        position: 0,
    };
    let value = parser.parse_expression()?;
    parser.skip_whitespace();
    (parser.position == parser.chars.len()).then_some(value)
}

struct LiteralParser {
    chars: Vec<char>,
    position: usize,
}

impl LiteralParser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.position + offset).copied()
    }

    /// Skips spaces, tabs, form feeds and line breaks, which rendered templates have inside
    /// brackets. NOTE: Python rejects a line break outside brackets (`'a'\n'b'`), but this
    /// parser accepts it.
    fn skip_whitespace(&mut self) {
        while self
            .peek()
            .is_some_and(|c| matches!(c, ' ' | '\t' | '\u{c}' | '\n' | '\r'))
        {
            self.position += 1;
        }
    }

    /// Consumes `expected` after optional whitespace and returns whether it was there.
    fn consume(&mut self, expected: char) -> bool {
        self.skip_whitespace();
        if self.peek() == Some(expected) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn parse_expression(&mut self) -> Option<Value> {
        self.skip_whitespace();
        match self.peek()? {
            '[' => {
                self.position += 1;
                self.parse_items(']').map(Value::Array)
            }
            '(' => {
                self.position += 1;
                self.parse_parenthesized()
            }
            '{' => {
                self.position += 1;
                self.parse_braced()
            }
            '+' | '-' => {
                let negative = self.peek() == Some('-');
                self.position += 1;
                self.skip_whitespace();
                self.parse_number(negative)
            }
            c if c.is_ascii_digit() || c == '.' => self.parse_number(false),
            c if c == '\'' || c == '"' || c.is_alphabetic() || c == '_' => self.parse_word(),
            _ => None,
        }
    }

    /// Parses comma-separated expressions up to `close`, allowing a trailing comma.
    fn parse_items(&mut self, close: char) -> Option<Vec<Value>> {
        let mut items = Vec::new();
        loop {
            if self.consume(close) {
                return Some(items);
            }
            items.push(self.parse_expression()?);
            if self.consume(close) {
                return Some(items);
            }
            if !self.consume(',') {
                return None;
            }
        }
    }

    /// Parses after `(`: `()` and `(a, ...)` are tuples, `(a)` is just `a`.
    fn parse_parenthesized(&mut self) -> Option<Value> {
        if self.consume(')') {
            return Some(Value::Array(Vec::new()));
        }
        let first = self.parse_expression()?;
        if self.consume(')') {
            return Some(first);
        }
        if !self.consume(',') {
            return None;
        }
        let mut items = vec![first];
        items.extend(self.parse_items(')')?);
        Some(Value::Array(items))
    }

    /// Parses after `{`: a dict, or a set, which becomes a list as in Ansible.
    fn parse_braced(&mut self) -> Option<Value> {
        if self.consume('}') {
            return Some(Value::Object(Map::new()));
        }
        let first = self.parse_expression()?;
        if !self.consume(':') {
            let mut items = vec![first];
            if !self.consume('}') {
                if !self.consume(',') {
                    return None;
                }
                items.extend(self.parse_items('}')?);
            }
            return Some(Value::Array(items));
        }

        let mut object = Map::new();
        let mut key = first;
        loop {
            let value = self.parse_expression()?;
            object.insert(key_text(key), value);
            if self.consume('}') {
                return Some(Value::Object(object));
            }
            if !self.consume(',') {
                return None;
            }
            if self.consume('}') {
                return Some(Value::Object(object));
            }
            key = self.parse_expression()?;
            if !self.consume(':') {
                return None;
            }
        }
    }

    /// Parses a name (`True`, `False`, `None`) or a string literal with an optional prefix,
    /// concatenating adjacent string literals as Python does.
    fn parse_word(&mut self) -> Option<Value> {
        let start = self.position;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.position += 1;
        }
        let word: String = self.chars[start..self.position].iter().collect();
        match (word.as_str(), self.peek()) {
            ("True", _) => return Some(Value::Bool(true)),
            ("False", _) => return Some(Value::Bool(false)),
            ("None", _) => return Some(Value::Null),
            (_, Some('\'' | '"')) => {}
            _ => return None,
        }

        let mut text = String::new();
        let mut bytes_literal = None;
        self.position = start;
        loop {
            let (part, is_bytes) = self.parse_string_literal()?;
            if *bytes_literal.get_or_insert(is_bytes) != is_bytes {
                // Python rejects mixing bytes and str literals.
                return None;
            }
            text.push_str(&part);

            self.skip_whitespace();
            let next_is_string = matches!(self.peek(), Some('\'' | '"'))
                || (self.peek().is_some_and(|c| c.is_ascii_alphabetic())
                    && self.string_prefix_length().is_some());
            if !next_is_string {
                return Some(Value::String(text));
            }
        }
    }

    /// Returns the length of a string prefix (`r`, `b`, `u`, `rb`, `br` in any case) at the
    /// current position when a quote follows it.
    fn string_prefix_length(&self) -> Option<usize> {
        let mut length = 0;
        while self
            .peek_at(length)
            .is_some_and(|c| c.is_ascii_alphabetic())
        {
            length += 1;
        }
        matches!(self.peek_at(length), Some('\'' | '"')).then_some(length)
    }

    /// Parses one string or bytes literal and returns its text and whether it was bytes.
    fn parse_string_literal(&mut self) -> Option<(String, bool)> {
        let prefix_length = self.string_prefix_length()?;
        let prefix: String = self.chars[self.position..self.position + prefix_length]
            .iter()
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let (raw, is_bytes) = match prefix.as_str() {
            "" | "u" => (false, false),
            "r" => (true, false),
            "b" => (false, true),
            "rb" | "br" => (true, true),
            // f-strings are expressions, and other prefixes are invalid.
            _ => return None,
        };
        self.position += prefix_length;

        let quote = self.peek()?;
        let triple = self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote);
        self.position += if triple { 3 } else { 1 };

        let mut content = Vec::new();
        loop {
            let c = self.peek()?;
            if c == quote
                && (!triple || (self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote)))
            {
                self.position += if triple { 3 } else { 1 };
                break;
            }
            if c == '\\' {
                let escaped = self.peek_at(1)?;
                self.position += 2;
                if raw {
                    content.extend(['\\', escaped]);
                } else {
                    self.decode_escape(escaped, is_bytes, &mut content)?;
                }
                continue;
            }
            if is_bytes && !c.is_ascii() {
                return None;
            }
            content.push(c);
            self.position += 1;
        }

        let text = if is_bytes {
            // Ansible decodes bytes values as UTF-8 text, so each char below stands for a byte.
            let bytes: Vec<u8> = content.iter().map(|&c| c as u32 as u8).collect();
            String::from_utf8(bytes).ok()?
        } else {
            content.into_iter().collect()
        };
        Some((text, is_bytes))
    }

    /// Decodes the escape `\<escaped>`, whose backslash and first char are already consumed.
    /// Bytes literals push one char per byte value.
    fn decode_escape(
        &mut self,
        escaped: char,
        is_bytes: bool,
        content: &mut Vec<char>,
    ) -> Option<()> {
        let simple = match escaped {
            '\n' => return Some(()),
            '\\' => Some('\\'),
            '\'' => Some('\''),
            '"' => Some('"'),
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            _ => None,
        };
        if let Some(c) = simple {
            content.push(c);
            return Some(());
        }

        match escaped {
            '0'..='7' => {
                let mut digits = String::from(escaped);
                while digits.len() < 3 && self.peek().is_some_and(|c| c.is_digit(8)) {
                    digits.push(self.peek()?);
                    self.position += 1;
                }
                let code = u32::from_str_radix(&digits, 8).ok()?;
                let code = if is_bytes { code & 0xff } else { code };
                content.push(char::from_u32(code)?);
            }
            'x' => content.push(self.read_hex_escape(2)?),
            'u' if !is_bytes => content.push(self.read_hex_escape(4)?),
            'U' if !is_bytes => content.push(self.read_hex_escape(8)?),
            // `\N{NAME}` needs the Unicode name table, so the whole value stays a string.
            'N' if !is_bytes => return None,
            other => content.extend(['\\', other]),
        }
        Some(())
    }

    fn read_hex_escape(&mut self, digits: usize) -> Option<char> {
        let hex: String = self
            .chars
            .get(self.position..self.position + digits)?
            .iter()
            .collect();
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.position += digits;
        char::from_u32(u32::from_str_radix(&hex, 16).ok()?)
    }

    fn parse_number(&mut self, negative: bool) -> Option<Value> {
        let start = self.position;
        while let Some(c) = self.peek() {
            let exponent_sign = (c == '+' || c == '-')
                && matches!(
                    self.chars.get(self.position.wrapping_sub(1)),
                    Some('e' | 'E')
                )
                && self.position > start;
            if c.is_alphanumeric() || c == '_' || c == '.' || exponent_sign {
                self.position += 1;
            } else {
                break;
            }
        }
        let token: String = self.chars[start..self.position].iter().collect();
        number_value(&token, negative)
    }
}

/// Converts a Python number token (without its sign) to a JSON number.
fn number_value(token: &str, negative: bool) -> Option<Value> {
    static DECIMAL: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^(?:0(?:_?0)*|[1-9](?:_?[0-9])*)$").expect("valid regex"));
    static PREFIXED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^0(?:[xX](?:_?[0-9a-fA-F])+|[oO](?:_?[0-7])+|[bB](?:_?[01])+)$")
            .expect("valid regex")
    });
    static FLOAT: LazyLock<Regex> = LazyLock::new(|| {
        let digits = r"[0-9](?:_?[0-9])*";
        Regex::new(&format!(
            r"^(?:(?:{digits})?\.{digits}|{digits}\.|{digits})(?:[eE][+-]?{digits})?$"
        ))
        .expect("valid regex")
    });

    let cleaned = token.replace('_', "");
    if DECIMAL.is_match(token) || PREFIXED.is_match(token) {
        let (radix, digits) = match cleaned.get(..2).map(str::to_ascii_lowercase).as_deref() {
            Some("0x") => (16, &cleaned[2..]),
            Some("0o") => (8, &cleaned[2..]),
            Some("0b") => (2, &cleaned[2..]),
            _ => (10, cleaned.as_str()),
        };
        let magnitude = i128::from_str_radix(digits, radix).ok()?;
        let value = if negative { -magnitude } else { magnitude };
        let number = match u64::try_from(value) {
            Ok(unsigned) => Number::from(unsigned),
            Err(_) => Number::from(i64::try_from(value).ok()?),
        };
        return Some(Value::Number(number));
    }

    // A float token needs a dot or an exponent, so plain digits with leading zeros such as
    // `0750` (a SyntaxError in Python 3) are rejected by the checks above and here.
    if FLOAT.is_match(token) && (token.contains('.') || token.contains(['e', 'E'])) {
        let magnitude: f64 = cleaned.parse().ok()?;
        let value = if negative { -magnitude } else { magnitude };
        return Number::from_f64(value).map(Value::Number);
    }
    None
}

/// Converts a dict key to a JSON object key: strings as they are, other values as JSON text.
fn key_text(key: Value) -> String {
    match key {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn literal(text: &str) -> Option<Value> {
        parse_python_literal(text)
    }

    #[test]
    fn integers_all_python_forms() {
        let cases = [
            ("0", json!(0)),
            ("42", json!(42)),
            ("-42", json!(-42)),
            ("+7", json!(7)),
            ("- 3", json!(-3)),
            ("1_000", json!(1000)),
            ("0x1F", json!(31)),
            ("0X_ff", json!(255)),
            ("0o17", json!(15)),
            ("0b101", json!(5)),
            ("00", json!(0)),
            ("-9223372036854775808", json!(i64::MIN)),
            ("18446744073709551615", json!(u64::MAX)),
        ];
        for (text, expected) in cases {
            assert_eq!(literal(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn integers_invalid_forms_rejected() {
        for text in [
            "0750",
            "1__0",
            "1_",
            "_1",
            "0x",
            "0o8",
            "12abc",
            "--1",
            "1 2",
            "18446744073709551616",
        ] {
            assert_eq!(literal(text), None, "{text}");
        }
    }

    #[test]
    fn floats_python_forms() {
        let cases = [
            ("1.5", json!(1.5)),
            ("-0.25", json!(-0.25)),
            (".5", json!(0.5)),
            ("5.", json!(5.0)),
            ("1e3", json!(1000.0)),
            ("1.5E-3", json!(0.0015)),
            ("0750.5", json!(750.5)),
            ("1_0.5", json!(10.5)),
        ];
        for (text, expected) in cases {
            assert_eq!(literal(text), Some(expected), "{text}");
        }
        for text in ["1.2.3", "1e", "inf", "nan", "1e999", "1j", "."] {
            assert_eq!(literal(text), None, "{text}");
        }
    }

    #[test]
    fn constants_true_false_none() {
        assert_eq!(literal("True"), Some(json!(true)));
        assert_eq!(literal("False"), Some(json!(false)));
        assert_eq!(literal("None"), Some(Value::Null));
        for text in ["true", "false", "yes", "none", "TRUE", "Truey"] {
            assert_eq!(literal(text), None, "{text}");
        }
    }

    #[test]
    fn strings_quotes_and_escapes() {
        let cases = [
            ("'abc'", "abc"),
            ("\"abc\"", "abc"),
            ("'03#pa33w0rd'", "03#pa33w0rd"),
            ("'it\\'s'", "it's"),
            ("\"tab\\there\"", "tab\there"),
            ("'\\x41\\u00e9\\U0001F389'", "Aé🎉"),
            ("'\\101'", "A"),
            ("'\\d'", "\\d"),
            ("r'\\d\\n'", "\\d\\n"),
            ("u'text'", "text"),
            ("b'bytes'", "bytes"),
            ("'''triple ' quoted'''", "triple ' quoted"),
            ("'a' 'b' \"c\"", "abc"),
            ("''", ""),
        ];
        for (text, expected) in cases {
            assert_eq!(literal(text), Some(json!(expected)), "{text}");
        }
    }

    #[test]
    fn strings_invalid_rejected() {
        for text in [
            "'unterminated",
            "f'{x}'",
            "'a' b'c'",
            "x'a'",
            "'\\N{DASH}'",
            "'a'b",
            "abc",
        ] {
            assert_eq!(literal(text), None, "{text}");
        }
    }

    #[test]
    fn containers_lists_tuples_dicts_sets() {
        assert_eq!(literal("[1, 'two', True]"), Some(json!([1, "two", true])));
        assert_eq!(literal("[]"), Some(json!([])));
        assert_eq!(literal("[1, 2,]"), Some(json!([1, 2])));
        assert_eq!(literal("(1, 2)"), Some(json!([1, 2])));
        assert_eq!(literal("(1,)"), Some(json!([1])));
        assert_eq!(literal("()"), Some(json!([])));
        assert_eq!(literal("(5)"), Some(json!(5)));
        assert_eq!(
            literal("{'a': 1, 'b': [None]}"),
            Some(json!({"a": 1, "b": [null]}))
        );
        assert_eq!(literal("{}"), Some(json!({})));
        assert_eq!(
            literal("{1: 'x', True: 'y',}"),
            Some(json!({"1": "x", "true": "y"}))
        );
        assert_eq!(literal("{'a', 'b'}"), Some(json!(["a", "b"])));
        assert_eq!(literal("{'solo'}"), Some(json!(["solo"])));
    }

    #[test]
    fn whitespace_python_forms() {
        assert_eq!(literal("[\n  1,\r\n\t2,\u{c}\n]\n"), Some(json!([1, 2])));
        assert_eq!(literal("{'a':\n 1}"), Some(json!({"a": 1})));
        assert_eq!(literal("[1,\u{a0}2]"), None);
    }

    #[test]
    fn containers_invalid_rejected() {
        for text in [
            "[1, 2",
            "[1 2]",
            "{'a' 1}",
            "{'a': }",
            "[x]",
            "(1 2)",
            "{'a': 1,,}",
            "[1] 2",
        ] {
            assert_eq!(literal(text), None, "{text}");
        }
    }
}
