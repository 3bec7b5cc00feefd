//! Whether a REPL entry is complete: the prompt keeps reading lines while a bracket, a
//! backtick string, a block comment or a `"…"` string continued with a trailing backslash is
//! still open, or after a `///` doc comment. It only scans delimiters; the Rhai parser reports
//! every other mistake.

/// Returns whether `text` ends inside an open bracket, string or block comment, so Enter
/// should start a new line of the same entry instead of running it.
///
/// A closing bracket that matches nothing makes the entry complete, so the parser can report
/// it. A `"…"` string that reaches a line end without a backslash is complete for the same
/// reason: Rhai does not allow a raw line break inside one.
pub fn is_incomplete(text: &str) -> bool {
    // A doc comment must be followed by its function, so the entry goes on.
    let last_line = text.lines().last().unwrap_or_default().trim_start();
    if last_line.starts_with("///") && !last_line.starts_with("////") {
        return true;
    }

    let mut open: Vec<Open> = Vec::new();
    let mut chars = text.chars().peekable();

    while let Some(c) = chars.next() {
        if open.last() == Some(&Open::Backtick) {
            match c {
                '`' => {
                    open.pop();
                }
                '\\' => {
                    chars.next();
                }
                '$' if chars.peek() == Some(&'{') => {
                    chars.next();
                    open.push(Open::Interpolation);
                }
                _ => {}
            }
            continue;
        }

        match c {
            '(' => open.push(Open::Paren),
            '[' => open.push(Open::Bracket),
            '{' => open.push(Open::Brace),
            ')' | ']' | '}' => {
                let expected = match c {
                    ')' => Open::Paren,
                    ']' => Open::Bracket,
                    _ => Open::Brace,
                };
                let closes = open.last() == Some(&expected)
                    || (c == '}' && open.last() == Some(&Open::Interpolation));
                if !closes {
                    return false;
                }
                open.pop();
            }
            '`' => open.push(Open::Backtick),
            '"' => match scan_string(&mut chars) {
                StringEnd::Closed => {}
                StringEnd::Continued => return true,
                StringEnd::Broken => return false,
            },
            '\'' => skip_char_literal(&mut chars),
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                if !skip_block_comment(&mut chars) {
                    return true;
                }
            }
            _ => {}
        }
    }
    !open.is_empty()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    Paren,
    Bracket,
    Brace,
    Backtick,
    /// `${` inside a backtick string, closed by `}`.
    Interpolation,
}

enum StringEnd {
    Closed,
    /// The text ends inside the string right after a line-continuing backslash.
    Continued,
    /// A raw line break or the end of the text, which the parser reports.
    Broken,
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn scan_string(chars: &mut Chars<'_>) -> StringEnd {
    while let Some(c) = chars.next() {
        match c {
            '"' => return StringEnd::Closed,
            '\\' => match chars.next() {
                Some('\n') if chars.peek().is_none() => return StringEnd::Continued,
                Some(_) => {}
                None => return StringEnd::Continued,
            },
            '\n' => return StringEnd::Broken,
            _ => {}
        }
    }
    StringEnd::Broken
}

fn skip_char_literal(chars: &mut Chars<'_>) {
    while let Some(c) = chars.next() {
        match c {
            '\'' | '\n' => return,
            '\\' => {
                chars.next();
            }
            _ => {}
        }
    }
}

/// Skips a block comment, which nests in Rhai. Returns false when the text ends inside it.
fn skip_block_comment(chars: &mut Chars<'_>) -> bool {
    let mut depth = 1;
    while let Some(c) = chars.next() {
        if c == '*' && chars.peek() == Some(&'/') {
            chars.next();
            depth -= 1;
            if depth == 0 {
                return true;
            }
        } else if c == '/' && chars.peek() == Some(&'*') {
            chars.next();
            depth += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::is_incomplete;

    #[test]
    fn complete_entries() {
        for text in [
            "",
            "1 + 1",
            "let m = #{a: [1, 2], b: (3)};",
            r#"print("(")"#,
            "let c = '{';",
            "// an open ( in a comment",
            "/* ( */ 1",
            "`a ${ #{x: 1}.x } b`",
        ] {
            assert!(!is_incomplete(text), "{text:?} is complete");
        }
    }

    #[test]
    fn open_brackets_continue() {
        for text in [
            "let m = #{",
            "fn f(x) {\n  x +",
            "[1, 2,\n",
            "command::run(#{argv: [",
        ] {
            assert!(is_incomplete(text), "{text:?} is incomplete");
        }
    }

    #[test]
    fn open_strings_continue() {
        assert!(is_incomplete("let s = `line one\n"));
        assert!(is_incomplete("`a ${ f(1"));
        assert!(is_incomplete("let s = \"abc\\\n"));
        assert!(is_incomplete("/* still a comment"));
    }

    #[test]
    fn doc_comment_waits_for_function() {
        assert!(is_incomplete("/// Doubles a number."));
        assert!(!is_incomplete(
            "/// Doubles a number.\nfn double(n) { n * 2 }"
        ));
        assert!(!is_incomplete("// a plain comment"));
    }

    #[test]
    fn mistakes_go_to_parser() {
        assert!(!is_incomplete("let x = 1)"), "unmatched closer");
        assert!(!is_incomplete("(]"), "mismatched closer");
        assert!(!is_incomplete("let s = \"abc"), "unterminated plain string");
        assert!(
            !is_incomplete("\"abc\ndef\""),
            "line break in a plain string"
        );
    }
}
