//! A throwaway masrun project for the service tests: an inventory of one host with its
//! variables, templates and task files in a directory of its own, and the events of the runs
//! made against it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Run;

pub struct Project {
    dir: PathBuf,
    pub host: String,
    /// Removes the directory when the project is dropped (not for directories a node owns).
    _cleanup: Option<tempfile::TempDir>,
}

impl Project {
    /// Creates a project in a new temporary directory. `vars` become the host's
    /// `host_vars/<host>/vars.yml` (JSON is YAML); `ansible_connection=local` is set inline.
    pub fn new(host: &str, vars: &Value) -> Project {
        let temp = tempfile::tempdir().expect("temporary directory");
        let mut project = Project::in_dir(temp.path(), host, "ansible_connection=local", vars);
        project._cleanup = Some(temp);
        project
    }

    /// Creates a project in `dir`, which the caller owns and removes, with a host that masrun
    /// reaches as `connection` says (inline inventory variables such as
    /// `ansible_connection=local`).
    pub fn in_dir(dir: &Path, host: &str, connection: &str, vars: &Value) -> Project {
        let project = Project {
            dir: dir.to_path_buf(),
            host: host.to_string(),
            _cleanup: None,
        };
        project.write(
            "inventory/hosts",
            &format!("[matrix_servers]\n{host} {connection}\n"),
        );
        project.set_vars(vars);
        project
    }

    /// Replaces the host's variables file.
    pub fn set_vars(&self, vars: &Value) {
        self.write(
            &format!("inventory/host_vars/{}/vars.yml", self.host),
            &serde_json::to_string_pretty(vars).unwrap(),
        );
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes a file of the project, creating its directories.
    pub fn write(&self, relative: &str, text: &str) {
        let path = self.dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Writes `tasks/<name>.rhai` and returns its path.
    pub fn task(&self, name: &str, source: &str) -> PathBuf {
        let relative = format!("tasks/{name}.rhai");
        self.write(&relative, source);
        self.dir.join(relative)
    }

    /// Builds masrun's arguments for running `task` against this project with JSON output.
    pub fn args(&self, task: &Path, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            "--output".to_string(),
            "json".to_string(),
            "-i".to_string(),
            self.dir.join("inventory/hosts").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(task.display().to_string());
        args
    }

    /// Runs `task` with the masrun binary on this machine.
    pub fn run(&self, task: &Path, extra: &[&str]) -> Run {
        super::masrun(&self.args(task, extra))
    }
}

impl Run {
    /// Returns the text of every `print` of the task file, in order.
    pub fn messages(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| e.get("message").and_then(Value::as_str).map(str::to_string))
            .filter(|m| !m.is_empty())
            .collect()
    }

    /// Parses the JSON that a task file printed after `prefix` (`print("x=" + json::encode(v))`).
    #[track_caller]
    pub fn printed(&self, prefix: &str) -> Value {
        let line = self
            .messages()
            .into_iter()
            .find_map(|m| m.strip_prefix(prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("no message {prefix:?} in:\n{}", self.all_output()));
        serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("message {prefix:?} is not JSON ({e}): {line}"))
    }

    /// Returns the step event named `step`, and panics when there is none.
    #[track_caller]
    pub fn step(&self, step: &str) -> Value {
        self.events()
            .into_iter()
            .find(|e| e.get("step").and_then(Value::as_str) == Some(step))
            .unwrap_or_else(|| panic!("no step {step:?} in:\n{}", self.all_output()))
    }

    /// Returns the status of the step named `step`: ok, changed, failed or skipped.
    #[track_caller]
    pub fn step_status(&self, step: &str) -> String {
        self.step(step)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[track_caller]
    pub fn step_message(&self, step: &str) -> String {
        self.step(step)["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}
