//! Finding the files of a run: the project directory (the inventory's parent), the installed
//! copy of scripts/ and stdlib/, the task file, and the stdlib default variable files.

use std::path::{Path, PathBuf};

use super::host::SearchPaths;

/// The directory holding the installed `scripts/` and `stdlib/`: `$MASRUN_HOME`, else
/// `<exe dir>/../share/masrun`, else the source tree masrun was built from.
pub fn install_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("MASRUN_HOME") {
        return Some(PathBuf::from(home));
    }
    let from_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("../share/masrun")))
        .filter(|dir| dir.join("stdlib").is_dir());
    from_exe.or_else(|| {
        let source_tree = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        source_tree.join("stdlib").is_dir().then_some(source_tree)
    })
}

/// The project directory is the one holding `inventory/`: the parent of the inventory
/// directory, as in the playbook's layout.
pub fn project_dir(inventory_dir: &Path) -> PathBuf {
    let inventory_dir =
        std::path::absolute(inventory_dir).unwrap_or_else(|_| inventory_dir.to_path_buf());
    inventory_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn search_paths(project_dir: &Path) -> SearchPaths {
    let mut stdlib_dirs = Vec::new();
    let project_stdlib = project_dir.join("stdlib");
    if project_stdlib.is_dir() {
        stdlib_dirs.push(project_stdlib);
    }
    if let Some(install) = install_dir() {
        let installed = install.join("stdlib");
        let same = stdlib_dirs.iter().any(|dir| same_file(dir, &installed));
        if installed.is_dir() && !same {
            stdlib_dirs.push(installed);
        }
    }
    SearchPaths {
        project_dir: project_dir.to_path_buf(),
        stdlib_dirs,
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Finds the task file for `task`: a path when it names a `.rhai` file or contains a `/`,
/// otherwise `scripts/<task>.rhai` in the project, then in the installed copy. On failure,
/// returns the places searched.
pub fn find_task(task: &str, project_dir: &Path) -> Result<PathBuf, Vec<PathBuf>> {
    if task.ends_with(".rhai") || task.contains('/') {
        let path = PathBuf::from(task);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(vec![path])
        };
    }
    let mut candidates = vec![project_dir.join("scripts").join(format!("{task}.rhai"))];
    if let Some(install) = install_dir() {
        let installed = install.join("scripts").join(format!("{task}.rhai"));
        // The project may be the installed copy; list that path once.
        if !same_file(&project_dir.join("scripts"), &install.join("scripts")) {
            candidates.push(installed);
        }
    }
    match candidates.iter().find(|c| c.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(candidates),
    }
}

/// Lists the tasks available as bare words, for the "task not found" message.
pub fn available_tasks(project_dir: &Path) -> Vec<String> {
    let mut dirs = vec![project_dir.join("scripts")];
    if let Some(install) = install_dir() {
        dirs.push(install.join("scripts"));
    }
    let mut tasks: Vec<String> = dirs
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rhai").map(str::to_string)
        })
        .collect();
    tasks.sort();
    tasks.dedup();
    tasks
}

/// The default variable files: every `defaults/*.yml` of each stdlib directory, where a file in
/// an earlier (project) directory replaces the file of the same name in a later (installed) one.
/// Returned in file-name order, so later files override earlier ones key by key.
pub fn default_files(paths: &SearchPaths) -> Vec<PathBuf> {
    let mut by_name: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for dir in paths.stdlib_dirs.iter().rev() {
        let Ok(entries) = std::fs::read_dir(dir.join("defaults")) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_yaml = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            );
            if is_yaml {
                by_name.insert(entry.file_name().to_string_lossy().into_owned(), path);
            }
        }
    }
    by_name.into_values().collect()
}
