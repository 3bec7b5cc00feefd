//! Host patterns on INI host lines: an optional `:port` suffix and `[start:end:step]` ranges
//! such as `web[01:03].example.com` or `db-[a:c]`, expanded the way Ansible expands them.

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;

/// Maximum number of host names one pattern may expand to. The limit stops a typo such as
/// `web[1:100000000]` from exhausting memory, and is far above any real inventory.
const MAX_EXPANDED_HOSTS: usize = 100_000;

/// Letters in the order Ansible's alphabetic ranges use (Python's `string.ascii_letters`).
const RANGE_LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A host pattern split into its host names and optional port.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ExpandedHosts {
    pub names: Vec<String>,
    pub port: Option<u16>,
}

/// Expands a host pattern into host names and the port given with `:port`, if any.
///
/// The port follows a host name or IPv4 address directly (`db:2222`), or a bracketed IPv6
/// address (`[2001:db8::1]:2222`). A bare IPv6 address cannot carry a port. The error is a
/// message for the caller to place at the line.
pub(super) fn expand_host_pattern(pattern: &str) -> Result<ExpandedHosts, String> {
    let (host, port) = split_port(pattern)?;
    if host.is_empty() {
        return Err(format!("missing host name in {pattern:?}"));
    }
    if host.ends_with(':') {
        return Err(format!(
            "invalid host pattern {pattern:?}: a ':' after the host name must be followed by a \
             port number"
        ));
    }
    if host.parse::<Ipv6Addr>().is_ok() {
        return Ok(ExpandedHosts {
            names: vec![host.to_string()],
            port,
        });
    }

    let mut names = Vec::new();
    expand_ranges(host, &mut names)
        .map_err(|message| format!("invalid host pattern {pattern:?}: {message}"))?;
    Ok(ExpandedHosts { names, port })
}

/// Splits `name:port` or `[address]:port` into the host part and the port.
fn split_port(pattern: &str) -> Result<(&str, Option<u16>), String> {
    static BRACKETED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\[([^\]]+)\]:([0-9]+)$").expect("valid regex"));
    // Host characters other than `:[]`, or whole `[...]` range expressions, then `:port`.
    static HOST_PORT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$").expect("valid regex")
    });

    let captures = BRACKETED
        .captures(pattern)
        .filter(|found| {
            let inner = &found[1];
            inner.parse::<Ipv6Addr>().is_ok() || !inner.contains(':')
        })
        .or_else(|| HOST_PORT.captures(pattern));
    let Some(captures) = captures else {
        return Ok((pattern, None));
    };

    let host = captures.get(1).map_or("", |found| found.as_str());
    let port_text = &captures[2];
    match port_text.parse::<u16>() {
        Ok(port) if port > 0 => Ok((host, Some(port))),
        _ => Err(format!(
            "invalid port {port_text:?} in {pattern:?}: expected 1 to 65535"
        )),
    }
}

/// Expands every `[start:end]` or `[start:end:step]` range in `pattern`, left to right, and
/// appends the resulting names to `names`.
fn expand_ranges(pattern: &str, names: &mut Vec<String>) -> Result<(), String> {
    let Some(open) = pattern.find('[') else {
        if pattern.contains(']') {
            return Err("found ']' without a matching '['".to_string());
        }
        names.push(pattern.to_string());
        return Ok(());
    };
    let Some(close) = pattern[open..].find(']').map(|offset| open + offset) else {
        return Err("found '[' without a closing ']'".to_string());
    };

    let head = &pattern[..open];
    let range = &pattern[open + 1..close];
    let tail = &pattern[close + 1..];
    for value in range_values(range)? {
        expand_ranges(&format!("{head}{value}{tail}"), names)?;
        if names.len() > MAX_EXPANDED_HOSTS {
            return Err(format!(
                "the ranges expand to more than {MAX_EXPANDED_HOSTS} hosts"
            ));
        }
    }
    Ok(())
}

/// Returns the values of one range body such as `01:10`, `a:f` or `1:9:2`.
fn range_values(range: &str) -> Result<Vec<String>, String> {
    let bounds: Vec<&str> = range.split(':').collect();
    if bounds.len() != 2 && bounds.len() != 3 {
        return Err(format!(
            "invalid range [{range}]: expected [start:end] or [start:end:step]"
        ));
    }
    // Ansible reads a missing start as 0.
    let start = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    if end.is_empty() {
        return Err(format!("invalid range [{range}]: missing end"));
    }
    let step = match bounds.get(2) {
        None => 1,
        Some(step) => match step.parse::<usize>() {
            Ok(step) if step > 0 => step,
            _ => {
                return Err(format!(
                    "invalid range [{range}]: the step must be a positive integer"
                ));
            }
        },
    };

    let is_number = |bound: &str| bound.bytes().all(|b| b.is_ascii_digit());
    let letter_index = |bound: &str| {
        let mut chars = bound.chars();
        match (chars.next(), chars.next()) {
            (Some(letter), None) => RANGE_LETTERS.find(letter),
            _ => None,
        }
    };

    if is_number(start) && is_number(end) {
        return number_range(range, start, end, step);
    }
    match (letter_index(start), letter_index(end)) {
        (Some(first), Some(last)) if first <= last => Ok(RANGE_LETTERS[first..=last]
            .chars()
            .step_by(step)
            .map(String::from)
            .collect()),
        (Some(_), Some(_)) => Err(format!(
            "invalid range [{range}]: {start:?} comes after {end:?}"
        )),
        _ => Err(format!(
            "invalid range [{range}]: start and end must both be numbers or both single letters"
        )),
    }
}

fn number_range(range: &str, start: &str, end: &str, step: usize) -> Result<Vec<String>, String> {
    // A leading zero on the start selects zero-padded names of the start's width.
    let width = if start.len() > 1 && start.starts_with('0') {
        if end.len() != start.len() {
            return Err(format!(
                "invalid range [{range}]: a zero-padded start and the end must have the same \
                 number of digits"
            ));
        }
        start.len()
    } else {
        0
    };

    let (Ok(first), Ok(last)) = (start.parse::<u64>(), end.parse::<u64>()) else {
        return Err(format!(
            "invalid range [{range}]: the numbers are too large"
        ));
    };
    if first > last {
        return Err(format!(
            "invalid range [{range}]: the start is greater than the end"
        ));
    }
    let count = (last - first) / step as u64 + 1;
    if count > MAX_EXPANDED_HOSTS as u64 {
        return Err(format!(
            "invalid range [{range}]: it expands to more than {MAX_EXPANDED_HOSTS} hosts"
        ));
    }
    Ok((first..=last)
        .step_by(step)
        .map(|value| format!("{value:0width$}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(pattern: &str) -> Vec<String> {
        match expand_host_pattern(pattern) {
            Ok(expanded) => expanded.names,
            Err(message) => panic!("expansion of {pattern:?} failed: {message}"),
        }
    }

    fn port(pattern: &str) -> Option<u16> {
        expand_host_pattern(pattern).expect("valid pattern").port
    }

    fn expansion_error(pattern: &str) -> String {
        match expand_host_pattern(pattern) {
            Ok(expanded) => panic!("expected an error for {pattern:?}, got {expanded:?}"),
            Err(message) => message,
        }
    }

    #[test]
    fn plain_names_unchanged() {
        assert_eq!(names("matrix.example.com"), ["matrix.example.com"]);
        assert_eq!(names("192.0.2.10"), ["192.0.2.10"]);
        assert_eq!(names("localhost"), ["localhost"]);
    }

    #[test]
    fn ranges_numeric_padded_and_stepped() {
        assert_eq!(
            names("web[01:03].example.com"),
            [
                "web01.example.com",
                "web02.example.com",
                "web03.example.com"
            ]
        );
        assert_eq!(names("node[1:3]"), ["node1", "node2", "node3"]);
        assert_eq!(names("node[8:11]"), ["node8", "node9", "node10", "node11"]);
        assert_eq!(names("node[0:10:5]"), ["node0", "node5", "node10"]);
        assert_eq!(names("node[:2]"), ["node0", "node1", "node2"]);
        assert_eq!(names("n[001:003]"), ["n001", "n002", "n003"]);
    }

    #[test]
    fn ranges_alphabetic() {
        assert_eq!(names("db-[a:c]"), ["db-a", "db-b", "db-c"]);
        assert_eq!(names("[x:z]host"), ["xhost", "yhost", "zhost"]);
        assert_eq!(names("h[a:e:2]"), ["ha", "hc", "he"]);
        assert_eq!(names("h[y:B]"), ["hy", "hz", "hA", "hB"]);
    }

    #[test]
    fn ranges_several_in_one_pattern() {
        assert_eq!(names("r[1:2]-[a:b]"), ["r1-a", "r1-b", "r2-a", "r2-b"]);
    }

    #[test]
    fn ranges_invalid_rejected() {
        let cases = [
            ("web[3:1]", "greater than the end"),
            ("web[01:3]", "same number of digits"),
            ("web[1:]", "missing end"),
            ("web[1:3:0]", "positive integer"),
            ("web[1:3:x]", "positive integer"),
            ("web[1:2:3:4]", "expected [start:end]"),
            ("web[1-3]", "expected [start:end]"),
            ("web[a:3]", "both be numbers or both single letters"),
            ("web[aa:bb]", "both be numbers or both single letters"),
            ("web[c:a]", "comes after"),
            ("web[1:3", "without a closing"),
            ("web1:3]", "without a matching"),
            ("web[0:99999999]", "more than"),
        ];
        for (pattern, expected) in cases {
            let message = expansion_error(pattern);
            assert!(message.contains(expected), "{pattern}: {message}");
        }
    }

    #[test]
    fn ports_after_names_and_addresses() {
        assert_eq!(port("matrix.example.com:2222"), Some(2222));
        assert_eq!(names("matrix.example.com:2222"), ["matrix.example.com"]);
        assert_eq!(port("192.0.2.10:22"), Some(22));
        assert_eq!(port("web[1:2]:2200"), Some(2200));
        assert_eq!(names("web[1:2]:2200"), ["web1", "web2"]);
        assert_eq!(port("[2001:db8::1]:2222"), Some(2222));
        assert_eq!(names("[2001:db8::1]:2222"), ["2001:db8::1"]);
        assert_eq!(port("[bastion]:22"), Some(22));
        assert_eq!(names("[bastion]:22"), ["bastion"]);
    }

    #[test]
    fn ipv6_without_port_kept_whole() {
        assert_eq!(names("2001:db8::1"), ["2001:db8::1"]);
        assert_eq!(port("2001:db8::1"), None);
        assert_eq!(names("::1"), ["::1"]);
    }

    #[test]
    fn ports_invalid_rejected() {
        assert!(expansion_error("host:0").contains("invalid port"));
        assert!(expansion_error("host:70000").contains("invalid port"));
        assert!(expansion_error("host:").contains("must be followed by a port"));
        assert!(expansion_error(":22").contains("missing host name"));
    }
}
