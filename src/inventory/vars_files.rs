//! Discovery and loading of `group_vars/<name>` and `host_vars/<name>` variable files, with
//! the lookup rules of Ansible's `host_group_vars` plugin.
//!
//! For a name, the first of `<name>`, `<name>.yml`, `<name>.yaml` and `<name>.json` that exists
//! is used. A file is read as it is. A directory is read recursively in sorted order, taking
//! files with no extension or a `.yml`, `.yaml` or `.json` extension. Names that start with
//! `.` or end in `~`, `.swp`, `.orig` or `.retry` are skipped inside directories.

use std::fs;
use std::path::{Path, PathBuf};

use crate::vars::source::{Layer, VarSource};
use crate::yaml::{self, ParsedVars};

use super::InventoryError;

/// Extensions of variable files, as in Ansible's `YAML_FILENAME_EXTENSIONS`.
const VARS_EXTENSIONS: [&str; 3] = ["yml", "yaml", "json"];

/// Loads every variables file for `name` under `base` (such as `inventory/group_vars`), in
/// load order, one [`VarSource`] per file. YAML warnings are appended to `warnings`.
pub(super) fn load_entity_vars(
    base: &Path,
    name: &str,
    layer: Layer,
    warnings: &mut Vec<String>,
) -> Result<Vec<VarSource>, InventoryError> {
    let mut sources = Vec::new();
    for path in find_vars_files(base, name)? {
        let parsed = load_vars_file(&path, layer)?;
        warnings.extend(parsed.warnings.iter().map(ToString::to_string));
        sources.push(parsed.vars);
    }
    Ok(sources)
}

/// Returns the variable files for `name` under `base` in load order.
pub(super) fn find_vars_files(base: &Path, name: &str) -> Result<Vec<PathBuf>, InventoryError> {
    // A name with a path separator would reach outside `base`, and no group or host can
    // use one as a file name.
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']) {
        return Ok(Vec::new());
    }

    let candidates = std::iter::once(name.to_string()).chain(
        VARS_EXTENSIONS
            .iter()
            .map(|extension| format!("{name}.{extension}")),
    );
    for candidate in candidates {
        let path = base.join(candidate);
        let Ok(metadata) = fs::metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            let mut found = Vec::new();
            collect_directory(&path, &mut found)?;
            return Ok(found);
        }
        return Ok(vec![path]);
    }
    Ok(Vec::new())
}

/// Returns the names in `base` that look like variables for a group or host, as the file or
/// directory name with any `.yml`, `.yaml` or `.json` extension removed. A missing `base`
/// has no names.
pub(super) fn entity_names(base: &Path) -> Result<Vec<(String, PathBuf)>, InventoryError> {
    let Ok(entries) = fs::read_dir(base) else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| InventoryError::Read {
            path: base.to_path_buf(),
            error,
        })?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if is_ignored(&file_name) {
            continue;
        }
        let path = entry.path();
        let name = match Path::new(&file_name)
            .extension()
            .and_then(|extension| extension.to_str())
        {
            Some(extension) if VARS_EXTENSIONS.contains(&extension) && !path.is_dir() => {
                file_name[..file_name.len() - extension.len() - 1].to_string()
            }
            _ => file_name,
        };
        names.push((name, path));
    }
    names.sort();
    Ok(names)
}

fn collect_directory(directory: &Path, found: &mut Vec<PathBuf>) -> Result<(), InventoryError> {
    let read_error = |error| InventoryError::Read {
        path: directory.to_path_buf(),
        error,
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(directory).map_err(read_error)? {
        entries.push(entry.map_err(read_error)?.path());
    }
    entries.sort();

    for path in entries {
        let file_name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if is_ignored(&file_name) {
            continue;
        }
        if path.is_dir() {
            collect_directory(&path, found)?;
            continue;
        }
        let extension = path.extension().and_then(|extension| extension.to_str());
        if extension.is_none_or(|extension| VARS_EXTENSIONS.contains(&extension)) {
            found.push(path);
        }
    }
    Ok(())
}

/// Returns whether a directory entry is hidden or an editor or tool leftover.
fn is_ignored(file_name: &str) -> bool {
    file_name.starts_with('.')
        || file_name.ends_with('~')
        || [".swp", ".orig", ".retry"]
            .iter()
            .any(|suffix| file_name.ends_with(suffix))
}

/// Loads one variables file with [`yaml::parse_vars_file`].
fn load_vars_file(path: &Path, layer: Layer) -> Result<ParsedVars, InventoryError> {
    let text = fs::read_to_string(path).map_err(|error| InventoryError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(yaml::parse_vars_file(&text, path, layer)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().expect("parent")).expect("create parent");
        fs::write(path, text).expect("write");
    }

    fn relative(base: &Path, paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|path| {
                path.strip_prefix(base)
                    .expect("under base")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    #[test]
    fn single_file_forms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path();
        write(&base.join("plain"), "a: 1\n");
        write(&base.join("yml_group.yml"), "a: 1\n");
        write(&base.join("yaml_group.yaml"), "a: 1\n");
        write(&base.join("json_group.json"), "{\"a\": 1}\n");
        write(&base.join("matrix.example.com"), "a: 1\n");

        for name in [
            "plain",
            "yml_group",
            "yaml_group",
            "json_group",
            "matrix.example.com",
        ] {
            let found = find_vars_files(base, name).expect("readable");
            assert_eq!(found.len(), 1, "{name}: {found:?}");
        }
        assert!(
            find_vars_files(base, "missing")
                .expect("readable")
                .is_empty()
        );
    }

    #[test]
    fn first_candidate_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path();
        write(&base.join("all/vars.yml"), "a: 1\n");
        write(&base.join("all.yml"), "a: 2\n");
        write(&base.join("web.yml"), "a: 1\n");
        write(&base.join("web.json"), "{}\n");

        assert_eq!(
            relative(base, &find_vars_files(base, "all").expect("readable")),
            ["all/vars.yml"]
        );
        assert_eq!(
            relative(base, &find_vars_files(base, "web").expect("readable")),
            ["web.yml"]
        );
    }

    #[test]
    fn directory_sorted_recursive_filtered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path();
        let host = base.join("matrix.example.com");
        for name in [
            "vars.yml",
            "10-extra.yaml",
            "20-more.json",
            "noext",
            "sub/nested.yml",
            "sub/deeper/last.yml",
            ".hidden.yml",
            "vars.yml~",
            ".vars.yml.swp",
            "vars.yml.swp",
            "vars.yml.orig",
            "site.retry",
            "notes.txt",
            "README.md",
        ] {
            write(&host.join(name), "a: 1\n");
        }
        fs::create_dir_all(host.join(".git")).expect("mkdir");
        write(&host.join(".git/config.yml"), "a: 1\n");

        let found = find_vars_files(base, "matrix.example.com").expect("readable");
        assert_eq!(
            relative(&host, &found),
            [
                "10-extra.yaml",
                "20-more.json",
                "noext",
                "sub/deeper/last.yml",
                "sub/nested.yml",
                "vars.yml"
            ]
        );
    }

    #[test]
    fn names_with_separators_not_looked_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(&dir.path().join("outside.yml"), "a: 1\n");
        let base = dir.path().join("group_vars");
        fs::create_dir_all(&base).expect("mkdir");
        for name in ["../outside", "..", ".", "", "a/b"] {
            assert!(
                find_vars_files(&base, name).expect("readable").is_empty(),
                "{name}"
            );
        }
    }

    #[test]
    fn load_records_origins_and_warnings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path();
        write(&base.join("web/a.yml"), "# header\nport: 80\nport: 81\n");
        write(&base.join("web/b.yml"), "name: web\n");

        let mut warnings = Vec::new();
        let sources =
            load_entity_vars(base, "web", Layer::GroupVars, &mut warnings).expect("valid");
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0]["port"].value, json!(81));
        assert_eq!(sources[0]["port"].origin.line, Some(3));
        assert_eq!(
            sources[0]["port"].origin.file.as_deref(),
            Some(base.join("web/a.yml").as_path())
        );
        assert_eq!(sources[0]["port"].origin.layer, Layer::GroupVars);
        assert_eq!(sources[1]["name"].value, json!("web"));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("a.yml:3:1: duplicate key \"port\""),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn load_json_with_tabs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path();
        write(
            &base.join("tabs.json"),
            "{\n\t\"a\": {\n\t\t\"b\": [1, 2]\n\t},\n\t\"c\": \"yes\"\n}\n",
        );
        let mut warnings = Vec::new();
        let sources =
            load_entity_vars(base, "tabs", Layer::HostVars, &mut warnings).expect("valid");
        assert_eq!(sources[0]["a"].value, json!({"b": [1, 2]}));
        assert_eq!(sources[0]["c"].value, json!("yes"));
    }

    #[test]
    fn load_invalid_json_reports_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path();
        write(
            &base.join("bad.json"),
            "{\n\t\"a\": 1,\n\t\"b\": [1, 2}\n}\n",
        );
        let mut warnings = Vec::new();
        let error =
            load_entity_vars(base, "bad", Layer::HostVars, &mut warnings).expect_err("invalid");
        let InventoryError::Yaml(error) = error else {
            panic!("expected a YAML error, got {error}");
        };
        assert_eq!(error.line, 3);
        assert!(error.message.starts_with("invalid JSON: "), "{error}");
        assert!(!error.message.contains(" at line "), "{error}");
    }

    #[test]
    fn load_invalid_yaml_reports_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path();
        write(&base.join("web.yml"), "a: 1\nb: [1\n");
        let mut warnings = Vec::new();
        let error =
            load_entity_vars(base, "web", Layer::GroupVars, &mut warnings).expect_err("invalid");
        let shown = error.to_string();
        assert!(
            shown.starts_with(&base.join("web.yml").display().to_string()),
            "{shown}"
        );
    }

    #[test]
    fn entity_names_strip_extensions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path();
        write(&base.join("all.yml"), "a: 1\n");
        write(&base.join("web.json"), "{}\n");
        write(&base.join("matrix.example.com/vars.yml"), "a: 1\n");
        write(&base.join("dir.yml/vars.yml"), "a: 1\n");
        write(&base.join("plain"), "a: 1\n");
        write(&base.join(".hidden.yml"), "a: 1\n");
        write(&base.join("old.yml~"), "a: 1\n");

        let names: Vec<String> = entity_names(base)
            .expect("readable")
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            names,
            ["all", "dir.yml", "matrix.example.com", "plain", "web"]
        );
        assert!(
            entity_names(&base.join("missing"))
                .expect("readable")
                .is_empty()
        );
    }
}
