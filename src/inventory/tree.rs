//! The group tree of a parsed hosts file: parent links, cycle detection, group depths and the
//! full set of groups each host belongs to.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::InventoryError;
use super::ini::{ALL, HostsFile, UNGROUPED};

/// The resolved group tree.
#[derive(Debug)]
pub(super) struct GroupTree {
    /// Depth of every group: 0 for `all`, 1 for groups without another parent, and one more
    /// than the deepest parent otherwise. Only the ordering below uses it outside tests.
    #[cfg_attr(not(test), allow(dead_code))]
    pub depth: HashMap<String, usize>,
    /// For every host, in hosts file order, each group that contains it directly or through
    /// child groups, including `all`, ordered by depth and then name.
    pub host_groups: Vec<Vec<String>>,
}

/// Resolves the group tree of `parsed`, the contents of the hosts file `file`.
///
/// Returns an error naming the cycle when a group is its own descendant.
pub(super) fn resolve_group_tree(
    parsed: &HostsFile,
    file: &Path,
) -> Result<GroupTree, InventoryError> {
    check_cycles(parsed, file)?;

    let mut parents: HashMap<&str, Vec<&str>> = HashMap::new();
    for (name, group) in &parsed.groups {
        for (child, _) in &group.children {
            parents
                .entry(child.as_str())
                .or_default()
                .push(name.as_str());
        }
    }

    let mut depth = HashMap::new();
    for name in parsed.groups.keys() {
        group_depth(name, &parents, &mut depth);
    }

    let mut direct_groups: HashMap<&str, Vec<&str>> = HashMap::new();
    for (group_name, group) in &parsed.groups {
        for host in &group.hosts {
            direct_groups
                .entry(host.as_str())
                .or_default()
                .push(group_name.as_str());
        }
    }

    let mut host_groups = Vec::with_capacity(parsed.hosts.len());
    for host in parsed.hosts.keys() {
        let mut groups: Vec<&str> = direct_groups.remove(host.as_str()).unwrap_or_default();
        // As in Ansible, `ungrouped` contains exactly the hosts in no group other than `all`.
        let has_real_group = groups.iter().any(|&name| name != ALL && name != UNGROUPED);
        groups.retain(|&name| name != UNGROUPED);
        if !has_real_group {
            groups.push(UNGROUPED);
        }

        let mut closure: BTreeSet<&str> = BTreeSet::from([ALL]);
        let mut pending = groups;
        while let Some(name) = pending.pop() {
            if closure.insert(name) {
                pending.extend(parents.get(name).into_iter().flatten().copied());
            }
        }

        let mut sorted: Vec<String> = closure.into_iter().map(str::to_string).collect();
        sorted.sort_by(|a, b| depth[a].cmp(&depth[b]).then_with(|| a.cmp(b)));
        host_groups.push(sorted);
    }

    Ok(GroupTree { depth, host_groups })
}

/// Computes the depth of `name` with memoization. The tree must be free of cycles.
fn group_depth(
    name: &str,
    parents: &HashMap<&str, Vec<&str>>,
    depth: &mut HashMap<String, usize>,
) -> usize {
    if let Some(&known) = depth.get(name) {
        return known;
    }
    let value = if name == ALL {
        0
    } else {
        let deepest_parent = parents
            .get(name)
            .into_iter()
            .flatten()
            .map(|parent| group_depth(parent, parents, depth))
            .max();
        deepest_parent.unwrap_or(0) + 1
    };
    depth.insert(name.to_string(), value);
    value
}

/// Returns an error for the first cycle of `[group:children]` entries, found by depth-first
/// search in file order.
fn check_cycles(parsed: &HostsFile, file: &Path) -> Result<(), InventoryError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Visit {
        InProgress,
        Done,
    }

    fn visit<'a>(
        name: &'a str,
        parsed: &'a HostsFile,
        state: &mut HashMap<&'a str, Visit>,
        path: &mut Vec<&'a str>,
    ) -> Result<(), (Vec<String>, usize)> {
        state.insert(name, Visit::InProgress);
        path.push(name);
        for (child, line) in &parsed.groups[name].children {
            match state.get(child.as_str()) {
                Some(Visit::InProgress) => {
                    let start = path.iter().position(|&entry| entry == child).unwrap_or(0);
                    let mut cycle: Vec<String> = path[start..]
                        .iter()
                        .map(|entry| entry.to_string())
                        .collect();
                    cycle.push(child.clone());
                    return Err((cycle, *line));
                }
                Some(Visit::Done) => {}
                None => visit(child, parsed, state, path)?,
            }
        }
        path.pop();
        state.insert(name, Visit::Done);
        Ok(())
    }

    let mut state = HashMap::new();
    for name in parsed.groups.keys() {
        if state.contains_key(name.as_str()) {
            continue;
        }
        let mut path = Vec::new();
        if let Err((cycle, line)) = visit(name, parsed, &mut state, &mut path) {
            return Err(InventoryError::Syntax {
                file: file.to_path_buf(),
                line,
                message: format!(
                    "the [group:children] entries form a cycle: {}. Remove one of these entries",
                    cycle.join(" -> ")
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::ini::parse_hosts_file;
    use super::*;

    const FILE: &str = "/srv/inventory/hosts";

    fn tree(text: &str) -> (HostsFile, GroupTree) {
        let parsed = parse_hosts_file(text, Path::new(FILE)).expect("valid hosts file");
        let tree = resolve_group_tree(&parsed, Path::new(FILE)).expect("valid tree");
        (parsed, tree)
    }

    fn groups_of(parsed: &HostsFile, tree: &GroupTree, host: &str) -> Vec<String> {
        let index = parsed.hosts.get_index_of(host).expect("known host");
        tree.host_groups[index].clone()
    }

    fn cycle_error(text: &str) -> (usize, String) {
        let parsed = parse_hosts_file(text, Path::new(FILE)).expect("valid hosts file");
        match resolve_group_tree(&parsed, Path::new(FILE)) {
            Err(InventoryError::Syntax { line, message, .. }) => (line, message),
            other => panic!("expected a cycle error, got {other:?}"),
        }
    }

    #[test]
    fn depth_follows_longest_parent_chain() {
        let text = "\
[matrix_servers:children]
homeservers
auth

[homeservers:children]
synapse

[auth:children]
mas

[everything:children]
synapse
matrix_servers

[synapse]
s1
[mas]
m1
";
        let (_, tree) = tree(text);
        assert_eq!(tree.depth[ALL], 0);
        assert_eq!(tree.depth[UNGROUPED], 1);
        assert_eq!(tree.depth["everything"], 1);
        assert_eq!(tree.depth["matrix_servers"], 2);
        assert_eq!(tree.depth["homeservers"], 3);
        assert_eq!(tree.depth["auth"], 3);
        assert_eq!(tree.depth["synapse"], 4);
        assert_eq!(tree.depth["mas"], 4);
    }

    #[test]
    fn host_groups_include_ancestors_sorted() {
        let text = "[b_top:children]\nmid\n[a_top:children]\nmid\n[mid:children]\nleaf\n[leaf]\nh\n[zeta]\nh\n";
        let (parsed, tree) = tree(text);
        assert_eq!(
            groups_of(&parsed, &tree, "h"),
            [ALL, "a_top", "b_top", "zeta", "mid", "leaf"]
        );
    }

    #[test]
    fn ungrouped_only_without_other_groups() {
        let text = "loose\nboth\n[all]\nonly_all\n[web]\nboth\n[ungrouped]\nexplicit\n";
        let (parsed, tree) = tree(text);
        assert_eq!(groups_of(&parsed, &tree, "loose"), [ALL, UNGROUPED]);
        assert_eq!(groups_of(&parsed, &tree, "both"), [ALL, "web"]);
        assert_eq!(groups_of(&parsed, &tree, "only_all"), [ALL, UNGROUPED]);
        assert_eq!(groups_of(&parsed, &tree, "explicit"), [ALL, UNGROUPED]);
    }

    #[test]
    fn all_children_are_depth_one() {
        let (_, tree) = tree("[all:children]\nweb\n[web]\nh\n");
        assert_eq!(tree.depth["web"], 1);
    }

    #[test]
    fn cycles_rejected_with_path() {
        let (line, message) = cycle_error("[a:children]\nb\n[b:children]\nc\n[c:children]\na\n");
        assert_eq!(line, 6);
        assert!(message.contains("a -> b -> c -> a"), "{message}");

        let (line, message) = cycle_error("[solo:children]\nsolo\n");
        assert_eq!(line, 2);
        assert!(message.contains("solo -> solo"), "{message}");
    }

    #[test]
    fn shared_children_are_not_cycles() {
        let (_, tree) = tree("[a:children]\nshared\n[b:children]\nshared\n[c:children]\na\nb\n");
        assert_eq!(tree.depth["shared"], 3);
    }
}
