//! Host selection with Ansible's `--limit` patterns.
//!
//! A limit is a list of terms separated by `,` (or by `:` when it has no comma). A term is a
//! host or group name, `all` or `*`, a shell glob (`*.example.com`), or `~` and a regular
//! expression, matched against host and group names from the start of the name. A term may
//! end in a subscript such as `[0]`, `[-1]` or `[1:3]` (inclusive) to pick hosts of its
//! match by position. Terms prefixed with `&` intersect and terms prefixed with `!` exclude.
//! Both apply after the plain terms, which form a union (or `all` when there are none).

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;

use super::ini::ALL;
use super::{Host, Inventory, InventoryError};

/// A host a term matched: an inventory host by index, or the implicit `localhost`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Member {
    Listed(usize),
    ImplicitLocalhost,
}

/// The hosts of one term in match order, and whether any group matched (an empty group is a
/// valid match).
struct TermMatch {
    members: Vec<Member>,
    matched_group: bool,
}

impl Inventory {
    /// Selects the hosts that `limit` matches, in hosts file order. `None` selects every host.
    ///
    /// `localhost` is only selected when the inventory lists it or when a term is exactly
    /// `localhost`, which then selects the implicit localhost as in Ansible. A term that
    /// matches no host or group, an invalid term and an empty result are errors that list
    /// the known hosts and groups.
    pub fn select(&self, limit: Option<&str>) -> Result<Vec<&Host>, InventoryError> {
        let Some(limit) = limit else {
            if self.hosts.is_empty() {
                return Err(InventoryError::Limit {
                    pattern: String::new(),
                    message: format!(
                        "the inventory {} lists no hosts. Add a host line under a [group] \
                         section",
                        self.hosts_file.display()
                    ),
                });
            }
            return Ok(self.hosts.iter().collect());
        };

        let terms = split_limit(limit);
        if terms.is_empty() {
            return Err(self.limit_error(limit, format!("the limit {limit:?} contains no pattern")));
        }

        let mut union_terms = Vec::new();
        let mut intersect_terms = Vec::new();
        let mut exclude_terms = Vec::new();
        for term in &terms {
            if let Some(rest) = term.strip_prefix('&') {
                intersect_terms.push(rest);
            } else if let Some(rest) = term.strip_prefix('!') {
                exclude_terms.push(rest);
            } else {
                union_terms.push(term.as_str());
            }
        }
        if union_terms.is_empty() {
            union_terms.push(ALL);
        }

        let mut selected: BTreeSet<Member> = BTreeSet::new();
        for term in union_terms {
            selected.extend(self.match_term(limit, term)?);
        }
        for term in intersect_terms {
            let matched: BTreeSet<Member> = self.match_term(limit, term)?.into_iter().collect();
            selected.retain(|member| matched.contains(member));
        }
        for term in exclude_terms {
            for member in self.match_term(limit, term)? {
                selected.remove(&member);
            }
        }

        if selected.is_empty() {
            return Err(self.limit_error(limit, format!("the limit {limit:?} selects no hosts")));
        }
        Ok(selected
            .into_iter()
            .map(|member| match member {
                Member::Listed(index) => &self.hosts[index],
                Member::ImplicitLocalhost => &self.implicit_localhost,
            })
            .collect())
    }

    /// Returns the hosts one term selects, after its subscript, in match order.
    fn match_term(&self, limit: &str, term: &str) -> Result<Vec<Member>, InventoryError> {
        if term.is_empty() {
            return Err(self.limit_error(
                limit,
                format!("the limit {limit:?} has an empty '&' or '!' term"),
            ));
        }
        let (expression, subscript) = split_subscript(term);
        let found = self.match_expression(limit, expression)?;
        if found.members.is_empty() && !found.matched_group {
            let mut message = format!(
                "the pattern {expression:?} in the limit {limit:?} matches no host or group."
            );
            if let Some(suggestion) = self.closest_name(expression) {
                message.push_str(&format!(" Did you mean {suggestion:?}?"));
            }
            return Err(self.limit_error(limit, message));
        }

        let Some(subscript) = subscript else {
            return Ok(found.members);
        };
        subscript.apply(found.members).map_err(|message| {
            self.limit_error(
                limit,
                format!("the pattern {term:?} in the limit {limit:?} {message}"),
            )
        })
    }

    fn match_expression(&self, limit: &str, expression: &str) -> Result<TermMatch, InventoryError> {
        if expression == ALL || expression == "*" {
            let members = (0..self.hosts.len()).map(Member::Listed).collect();
            return Ok(TermMatch {
                members,
                matched_group: true,
            });
        }

        let matcher = match expression.strip_prefix('~') {
            Some(source) => Regex::new(&format!("^(?:{source})")),
            None => Regex::new(&glob_to_regex(expression)),
        };
        let matcher = matcher.map_err(|error| {
            self.limit_error(
                limit,
                format!("invalid regular expression in the pattern {expression:?}: {error}"),
            )
        })?;

        let mut members = Vec::new();
        let mut matched_group = false;
        for (group, hosts) in self.group_members() {
            if matcher.is_match(&group) {
                matched_group = true;
                for index in hosts {
                    push_unique(&mut members, Member::Listed(index));
                }
            }
        }
        // As in Ansible, a name that matches a group is only also tried against host names
        // when it is a regular expression or contains `.`, `?`, `*` or `[`.
        if !matched_group
            || expression.starts_with('~')
            || expression.contains(['.', '?', '*', '['])
        {
            for (index, host) in self.hosts.iter().enumerate() {
                if matcher.is_match(&host.name) {
                    push_unique(&mut members, Member::Listed(index));
                }
            }
        }
        if members.is_empty() && !matched_group && expression == "localhost" {
            members.push(Member::ImplicitLocalhost);
        }
        Ok(TermMatch {
            members,
            matched_group,
        })
    }

    /// Returns every group name with the indexes of its hosts in hosts file order.
    fn group_members(&self) -> Vec<(String, Vec<usize>)> {
        self.groups
            .keys()
            .map(|group| {
                let hosts = (0..self.hosts.len())
                    .filter(|&index| self.host_groups[index].contains(group))
                    .collect();
                (group.clone(), hosts)
            })
            .collect()
    }

    /// Returns the known host or group name closest to `name` when one is close enough to be a
    /// likely typo.
    fn closest_name(&self, name: &str) -> Option<String> {
        self.hosts
            .iter()
            .map(|host| host.name.as_str())
            .chain(self.groups.keys().map(String::as_str))
            .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
            .filter(|(score, _)| *score >= 0.85)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, candidate)| candidate.to_string())
    }

    fn limit_error(&self, limit: &str, message: String) -> InventoryError {
        let hosts: Vec<&str> = self.hosts.iter().map(|host| host.name.as_str()).collect();
        let groups: Vec<&str> = self.groups.keys().map(String::as_str).collect();
        let hosts = if hosts.is_empty() {
            "none".to_string()
        } else {
            hosts.join(", ")
        };
        InventoryError::Limit {
            pattern: limit.to_string(),
            message: format!(
                "{}. Known hosts: {hosts}. Known groups: {}.",
                message.trim_end_matches('.'),
                groups.join(", ")
            ),
        }
    }
}

fn push_unique(members: &mut Vec<Member>, member: Member) {
    if !members.contains(&member) {
        members.push(member);
    }
}

/// Splits a limit into trimmed, non-empty terms. Without commas, `:` separates terms unless it
/// is inside `[...]` or the whole limit is one IPv6 address.
fn split_limit(limit: &str) -> Vec<String> {
    let trimmed = limit.trim();
    let terms: Vec<String> = if trimmed.contains(',') {
        trimmed.split(',').map(str::to_string).collect()
    } else if trimmed.parse::<Ipv6Addr>().is_ok() {
        vec![trimmed.to_string()]
    } else {
        let mut terms = Vec::new();
        let mut current = String::new();
        let mut bracket_depth = 0usize;
        for c in trimmed.chars() {
            match c {
                '[' => bracket_depth += 1,
                ']' => bracket_depth = bracket_depth.saturating_sub(1),
                ':' if bracket_depth == 0 => {
                    terms.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            }
            current.push(c);
        }
        terms.push(current);
        terms
    };
    terms
        .into_iter()
        .map(|term| term.trim().to_string())
        .filter(|term| !term.is_empty())
        .collect()
}

/// A `[n]` or `[start:end]` suffix that picks hosts of a term's match by position.
#[derive(Debug, PartialEq, Eq)]
enum Subscript {
    Index(i64),
    /// An inclusive range; `None` as the end runs to the last host.
    Range(usize, Option<usize>),
}

impl Subscript {
    fn apply(&self, members: Vec<Member>) -> Result<Vec<Member>, String> {
        let count = members.len();
        match *self {
            Subscript::Index(index) => {
                let position = if index < 0 {
                    count as i64 + index
                } else {
                    index
                };
                usize::try_from(position)
                    .ok()
                    .and_then(|position| members.get(position).copied())
                    .map(|member| vec![member])
                    .ok_or_else(|| {
                        format!("has no host at index {index}, because it matches {count} hosts")
                    })
            }
            Subscript::Range(start, end) => {
                let last = end
                    .unwrap_or(count.saturating_sub(1))
                    .min(count.saturating_sub(1));
                if start >= count || start > last {
                    return Err(format!("selects no host, because it matches {count} hosts"));
                }
                Ok(members[start..=last].to_vec())
            }
        }
    }
}

/// Splits `name[subscript]` into the name and its subscript, as Ansible does for terms that
/// are not regular expressions. A bracket that is no subscript stays part of the name.
fn split_subscript(term: &str) -> (&str, Option<Subscript>) {
    static SUBSCRIPT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)[:-]([0-9]*))\]$").expect("valid regex")
    });

    if term.starts_with('~') {
        return (term, None);
    }
    let Some(captures) = SUBSCRIPT.captures(term) else {
        return (term, None);
    };
    let name = captures.get(1).map_or(term, |found| found.as_str());
    let subscript = if let Some(index) = captures.get(2) {
        index.as_str().parse().ok().map(Subscript::Index)
    } else {
        let start = captures[3].parse().ok();
        let end = captures
            .get(4)
            .map(|found| found.as_str())
            .filter(|text| !text.is_empty());
        match (start, end.map(str::parse::<usize>)) {
            (Some(start), None) => Some(Subscript::Range(start, None)),
            (Some(start), Some(Ok(end))) => Some(Subscript::Range(start, Some(end))),
            _ => None,
        }
    };
    match subscript {
        Some(subscript) => (name, Some(subscript)),
        None => (term, None),
    }
}

/// Translates a shell glob (`*`, `?`, `[abc]`, `[!abc]`) into an anchored regular expression,
/// as Python's `fnmatch.translate` does.
fn glob_to_regex(glob: &str) -> String {
    let chars: Vec<char> = glob.chars().collect();
    let mut regex = String::from("^(?:");
    let mut index = 0;
    while index < chars.len() {
        match chars[index] {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            '[' => {
                // A `]` right after `[` or `[!` is a literal member of the class.
                let mut end = index + 1;
                if chars.get(end) == Some(&'!') {
                    end += 1;
                }
                if chars.get(end) == Some(&']') {
                    end += 1;
                }
                while end < chars.len() && chars[end] != ']' {
                    end += 1;
                }
                if end >= chars.len() {
                    regex.push_str(r"\[");
                } else {
                    let mut members: String = chars[index + 1..end].iter().collect();
                    let negated = members.starts_with('!');
                    if negated {
                        members.remove(0);
                    }
                    let members = members.replace('\\', r"\\").replace('[', r"\[");
                    regex.push('[');
                    if negated {
                        regex.push('^');
                    }
                    regex.push_str(&members);
                    regex.push(']');
                    index = end;
                }
            }
            c => regex.push_str(&regex::escape(&c.to_string())),
        }
        index += 1;
    }
    regex.push_str(")$");
    regex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_limit_commas_colons_brackets() {
        assert_eq!(split_limit("a,b , c"), ["a", "b", "c"]);
        assert_eq!(split_limit("a:b:!c"), ["a", "b", "!c"]);
        assert_eq!(split_limit("web[1:2]:db"), ["web[1:2]", "db"]);
        assert_eq!(split_limit("a:b,c"), ["a:b", "c"]);
        assert_eq!(split_limit("2001:db8::1"), ["2001:db8::1"]);
        assert_eq!(split_limit(" , ,"), Vec::<String>::new());
    }

    #[test]
    fn subscripts_parsed() {
        assert_eq!(
            split_subscript("web[0]"),
            ("web", Some(Subscript::Index(0)))
        );
        assert_eq!(
            split_subscript("web[-1]"),
            ("web", Some(Subscript::Index(-1)))
        );
        assert_eq!(
            split_subscript("web[1:3]"),
            ("web", Some(Subscript::Range(1, Some(3))))
        );
        assert_eq!(
            split_subscript("web[1-3]"),
            ("web", Some(Subscript::Range(1, Some(3))))
        );
        assert_eq!(
            split_subscript("web[2:]"),
            ("web", Some(Subscript::Range(2, None)))
        );
        assert_eq!(split_subscript("web[ab]"), ("web[ab]", None));
        assert_eq!(split_subscript("~web[0]"), ("~web[0]", None));
        assert_eq!(split_subscript("web"), ("web", None));
    }

    #[test]
    fn glob_translation() {
        let matches = |glob: &str, name: &str| {
            Regex::new(&glob_to_regex(glob))
                .expect("valid")
                .is_match(name)
        };
        assert!(matches("*.example.com", "matrix.example.com"));
        assert!(!matches("*.example.com", "matrix.example.org"));
        assert!(!matches("*.example.com", "matrixXexample.com.evil"));
        assert!(matches("web?", "web1"));
        assert!(!matches("web?", "web10"));
        assert!(matches("web[12]", "web2"));
        assert!(!matches("web[12]", "web3"));
        assert!(matches("web[!12]", "web3"));
        assert!(matches("web[]x]", "web]"));
        assert!(matches("a+b(c)", "a+b(c)"));
        assert!(matches("open[", "open["));
    }
}
