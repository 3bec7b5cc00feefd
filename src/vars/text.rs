//! Ansible's string filters and tests that the template engine lacks: digests and `to_uuid`,
//! shell quoting, Python-style regular expressions, Base64 and path names.

use minijinja::value::{Kwargs, Rest, Value};
use minijinja::{Error, ErrorKind};
use regex::{Regex, RegexBuilder};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use uuid::Uuid;

/// The namespace Ansible's `to_uuid` filter uses when none is given. The `to_uuid` tests
/// below check it against values that Ansible produced.
const ANSIBLE_UUID_NAMESPACE: Uuid = Uuid::from_u128(0x361E6D51_FAEC_444A_9079_341386DA8E2E);

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

/// Returns the text Python's `str()` gives for a scalar, and `''` for none.
pub(crate) fn python_text(value: &Value) -> String {
    if value.is_none() {
        return String::new();
    }
    match value.as_str() {
        Some(text) => text.to_string(),
        None => value.to_string(),
    }
}

/// `hash(hashtype='sha1')`: the lowercase hex digest of the UTF-8 text.
pub fn hash(value: &Value, hashtype: Option<&str>) -> Result<String, Error> {
    let data = python_text(value);
    let digest = match hashtype.unwrap_or("sha1") {
        "sha1" => hex(&Sha1::digest(data.as_bytes())),
        "sha256" => hex(&Sha256::digest(data.as_bytes())),
        "sha512" => hex(&Sha512::digest(data.as_bytes())),
        other => {
            return Err(invalid(format!(
                "hash type '{other}' is not supported; use sha1, sha256 or sha512"
            )));
        }
    };
    Ok(digest)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `to_uuid(namespace=...)`: the version 5 UUID of the text, in Ansible's namespace unless
/// another is given.
pub fn to_uuid(value: &Value, namespace: Option<&str>) -> Result<String, Error> {
    let namespace = match namespace {
        Some(text) => Uuid::parse_str(text)
            .map_err(|err| invalid(format!("invalid UUID namespace '{text}': {err}")))?,
        None => ANSIBLE_UUID_NAMESPACE,
    };
    Ok(Uuid::new_v5(&namespace, python_text(value).as_bytes()).to_string())
}

/// `quote`: quotes text for a POSIX shell like Python's `shlex.quote`.
pub fn quote(value: &Value) -> String {
    shell_quote(&python_text(value))
}

pub fn shell_quote(text: &str) -> String {
    if text.is_empty() {
        return "''".to_string();
    }
    let safe = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if safe {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', "'\"'\"'"))
}

fn build_regex(pattern: &str, kwargs: &Kwargs) -> Result<Regex, Error> {
    let ignorecase = kwargs.get::<Option<bool>>("ignorecase")?.unwrap_or(false);
    let multiline = kwargs.get::<Option<bool>>("multiline")?.unwrap_or(false);
    RegexBuilder::new(pattern)
        .case_insensitive(ignorecase)
        .multi_line(multiline)
        .build()
        .map_err(|err| invalid(format!("invalid regular expression '{pattern}': {err}")))
}

/// Rewrites a Python replacement string (`\1`, `\g<1>`, `\g<name>`) into the `regex` crate's
/// syntax (`${1}`, `${name}`), escaping `$`.
fn python_replacement(replacement: &str) -> String {
    let mut out = String::new();
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(digit) if digit.is_ascii_digit() => {
                    let mut group = String::new();
                    while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                        group.push(d);
                        chars.next();
                        if group.len() == 2 {
                            break;
                        }
                    }
                    out.push_str(&format!("${{{group}}}"));
                }
                Some('g') => {
                    chars.next();
                    if chars.peek() == Some(&'<') {
                        chars.next();
                        let name: String = chars.by_ref().take_while(|c| *c != '>').collect();
                        out.push_str(&format!("${{{name}}}"));
                    } else {
                        out.push_str("\\g");
                    }
                }
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                Some('t') => {
                    chars.next();
                    out.push('\t');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            other => out.push(other),
        }
    }
    out
}

/// `regex_replace(pattern, replacement='', ignorecase=False, multiline=False, count=0)`.
pub fn regex_replace(
    value: &Value,
    pattern: &str,
    replacement: Option<&str>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let regex = build_regex(pattern, &kwargs)?;
    let count = kwargs.get::<Option<usize>>("count")?.unwrap_or(0);
    kwargs.assert_all_used()?;
    let replacement = python_replacement(replacement.unwrap_or(""));
    Ok(regex
        .replacen(&python_text(value), count, replacement.as_str())
        .into_owned())
}

/// `regex_search(pattern, '\\1', '\\g<name>', ignorecase=False, multiline=False)`: the first
/// match, or the listed groups of it, or none when nothing matches.
pub fn regex_search(
    value: &Value,
    pattern: &str,
    groups: Rest<String>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let regex = build_regex(pattern, &kwargs)?;
    kwargs.assert_all_used()?;
    let text = python_text(value);
    let Some(captures) = regex.captures(&text) else {
        return Ok(Value::from(()));
    };
    if groups.is_empty() {
        return Ok(Value::from(captures.get(0).map_or("", |m| m.as_str())));
    }

    let mut items = Vec::new();
    for group in groups.iter() {
        let found = if let Some(name) = group
            .strip_prefix("\\g<")
            .and_then(|rest| rest.strip_suffix('>'))
        {
            captures.name(name)
        } else if let Some(Ok(index)) = group.strip_prefix('\\').map(str::parse::<usize>) {
            captures.get(index)
        } else {
            return Err(invalid(format!(
                "regex_search: unknown argument '{group}'; use '\\\\1' or '\\\\g<name>'"
            )));
        };
        items.push(found.map_or(Value::from(()), |m| Value::from(m.as_str())));
    }
    Ok(Value::from(items))
}

/// `regex_findall(pattern, ignorecase=False, multiline=False)`: every match, or the groups of
/// every match when the pattern has groups, like Python's `re.findall`.
pub fn regex_findall(value: &Value, pattern: &str, kwargs: Kwargs) -> Result<Value, Error> {
    let regex = build_regex(pattern, &kwargs)?;
    kwargs.assert_all_used()?;
    let text = python_text(value);
    let groups = regex.captures_len() - 1;
    let mut items = Vec::new();
    for captures in regex.captures_iter(&text) {
        let group_text = |index: usize| Value::from(captures.get(index).map_or("", |m| m.as_str()));
        items.push(match groups {
            0 => group_text(0),
            1 => group_text(1),
            _ => Value::from((1..=groups).map(group_text).collect::<Vec<_>>()),
        });
    }
    Ok(Value::from(items))
}

/// `regex_escape`: escapes the characters Python's `re.escape` escapes (Python 3.7 and later).
pub fn regex_escape(value: &Value, re_type: Option<&str>) -> Result<String, Error> {
    if let Some(kind) = re_type.filter(|kind| *kind != "python") {
        return Err(invalid(format!(
            "regex_escape: re_type '{kind}' is not supported; use 'python'"
        )));
    }
    let mut out = String::new();
    for c in python_text(value).chars() {
        if "()[]{}?*+-|^$\\.&~# \t\n\r\u{b}\u{c}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(out)
}

/// Returns whether the pattern matches at the start of the text, like Python's `re.match`.
/// This is the `match` test.
pub fn is_match(value: &Value, pattern: &str, kwargs: Kwargs) -> Result<bool, Error> {
    let anchored = format!("^(?:{pattern})");
    let regex = build_regex(&anchored, &kwargs)?;
    kwargs.assert_all_used()?;
    Ok(regex.is_match(&python_text(value)))
}

/// Returns whether the pattern matches anywhere in the text, like Python's `re.search`.
/// This is the `search` test.
pub fn is_search(value: &Value, pattern: &str, kwargs: Kwargs) -> Result<bool, Error> {
    let regex = build_regex(pattern, &kwargs)?;
    kwargs.assert_all_used()?;
    Ok(regex.is_match(&python_text(value)))
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `b64encode`: standard Base64 with padding of the UTF-8 text.
pub fn b64encode(value: &Value) -> String {
    let bytes = python_text(value).into_bytes();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let block = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let bits = u32::from(block[0]) << 16 | u32::from(block[1]) << 8 | u32::from(block[2]);
        for index in 0..4 {
            if index <= chunk.len() {
                out.push(char::from(
                    BASE64_ALPHABET[(bits >> (18 - 6 * index) & 0x3f) as usize],
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `b64decode`: decodes standard or URL-safe Base64 into UTF-8 text. Like Python's
/// `base64.b64decode`, characters outside the alphabet (such as line breaks) are skipped.
pub fn b64decode(value: &Value) -> Result<String, Error> {
    let text = python_text(value);
    let mut sextets = Vec::with_capacity(text.len());
    for byte in text.bytes() {
        let sextet = match byte {
            b'=' => break,
            b'-' => 62,
            b'_' => 63,
            other => match BASE64_ALPHABET.iter().position(|c| *c == other) {
                Some(position) => position as u32,
                None => continue,
            },
        };
        sextets.push(sextet);
    }
    if sextets.len() % 4 == 1 {
        return Err(invalid(
            "b64decode: the input is not valid Base64 (its length is wrong)",
        ));
    }

    let mut bytes = Vec::with_capacity(sextets.len() * 3 / 4);
    for chunk in sextets.chunks(4) {
        let bits = chunk.iter().enumerate().fold(0u32, |acc, (index, sextet)| {
            acc | sextet << (18 - 6 * index)
        });
        let produced = chunk.len() - 1;
        for index in 0..produced {
            bytes.push((bits >> (16 - 8 * index)) as u8);
        }
    }
    String::from_utf8(bytes).map_err(|_| invalid("b64decode: the decoded bytes are not UTF-8 text"))
}

/// `basename`: the part after the last `/`, like Python's `os.path.basename`.
pub fn basename(value: &Value) -> String {
    let path = python_text(value);
    match path.rfind('/') {
        Some(index) => path[index + 1..].to_string(),
        None => path,
    }
}

/// `dirname`: the part before the last `/`, like Python's `os.path.dirname`.
pub fn dirname(value: &Value) -> String {
    let path = python_text(value);
    let Some(index) = path.rfind('/') else {
        return String::new();
    };
    let head = &path[..=index];
    if head.chars().all(|c| c == '/') {
        head.to_string()
    } else {
        head.trim_end_matches('/').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_kwargs() -> Kwargs {
        Kwargs::from_iter(std::iter::empty::<(&str, Value)>())
    }

    fn text(value: &str) -> Value {
        Value::from(value)
    }

    #[test]
    fn to_uuid_matches_ansible() {
        assert_eq!(
            to_uuid(&text("example.com"), None).unwrap(),
            "ae780c3a-a3ab-53c2-bfb4-098da300b3fe"
        );
    }

    #[test]
    fn derived_mas_secrets_match_playbook() {
        let database = hash(&text("abc:mas.db"), Some("sha512")).unwrap();
        assert_eq!(
            to_uuid(&Value::from(database), None).unwrap(),
            "c38e18e7-ebaa-5887-9c64-1d0a673d88c7"
        );
        let homeserver = hash(&text("abc:mas.hs.secret"), Some("sha512")).unwrap();
        assert_eq!(
            to_uuid(&Value::from(homeserver), None).unwrap(),
            "00cff613-35e2-5a46-8257-c6342fc4b7fb"
        );
    }

    #[test]
    fn hash_digests() {
        assert_eq!(
            hash(&text("abc"), None).unwrap(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hash(&text("abc"), Some("sha256")).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(
            hash(&text("abc"), Some("md5"))
                .unwrap_err()
                .to_string()
                .contains("not supported")
        );
    }

    #[test]
    fn shell_quote_like_shlex() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("plain-word_1.2/x"), "plain-word_1.2/x");
        assert_eq!(shell_quote("two words"), "'two words'");
        assert_eq!(shell_quote("it's"), "'it'\"'\"'s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn regex_replace_uses_python_groups() {
        let replaced = regex_replace(
            &text("matrix.example.com"),
            r"^(\w+)\.(?P<rest>.*)$",
            Some(r"\g<rest>/\1$"),
            no_kwargs(),
        )
        .unwrap();
        assert_eq!(replaced, "example.com/matrix$");
        let once = regex_replace(
            &text("a-a-a"),
            "a",
            Some("b"),
            Kwargs::from_iter([("count", Value::from(1))]),
        )
        .unwrap();
        assert_eq!(once, "b-a-a");
    }

    #[test]
    fn regex_search_returns_match_groups_or_none() {
        let none = no_kwargs();
        assert_eq!(
            regex_search(&text("v1.23.0"), r"\d+\.\d+", Rest(vec![]), none).unwrap(),
            Value::from("1.23")
        );
        let groups = regex_search(
            &text("v1.23.0"),
            r"(\d+)\.(?P<minor>\d+)",
            Rest(vec!["\\2".into(), "\\g<minor>".into()]),
            no_kwargs(),
        )
        .unwrap();
        assert_eq!(groups, Value::from(vec!["23", "23"]));
        assert!(
            regex_search(&text("abc"), r"\d", Rest(vec![]), no_kwargs())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn regex_escape_like_python() {
        assert_eq!(regex_escape(&text("a.b*c d"), None).unwrap(), r"a\.b\*c\ d");
    }

    #[test]
    fn match_is_anchored_search_is_not() {
        assert!(is_match(&text("abc"), "ab", no_kwargs()).unwrap());
        assert!(!is_match(&text("xabc"), "ab", no_kwargs()).unwrap());
        assert!(is_search(&text("xabc"), "ab", no_kwargs()).unwrap());
        assert!(
            is_search(
                &text("XABC"),
                "ab",
                Kwargs::from_iter([("ignorecase", Value::from(true))])
            )
            .unwrap()
        );
    }

    #[test]
    fn base64_round_trip() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("héllo", "aMOpbGxv"),
        ] {
            assert_eq!(b64encode(&text(plain)), encoded);
            assert_eq!(b64decode(&text(encoded)).unwrap(), plain);
        }
        assert_eq!(b64decode(&text("Zm9v\nYmFy")).unwrap(), "foobar");
        assert!(b64decode(&text("Z")).is_err());
    }

    #[test]
    fn path_parts_like_os_path() {
        assert_eq!(basename(&text("/matrix/mas/config.yaml")), "config.yaml");
        assert_eq!(basename(&text("dir/")), "");
        assert_eq!(dirname(&text("/matrix/mas/config.yaml")), "/matrix/mas");
        assert_eq!(dirname(&text("/config.yaml")), "/");
        assert_eq!(dirname(&text("config.yaml")), "");
    }
}
