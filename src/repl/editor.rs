//! Line editing for the REPL: rustyline with history in the user's state directory, entries
//! that continue while a bracket or string is open, and tab completion of meta-commands,
//! modules, functions, `vars.` names and the session's variables.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{CompletionType, Config, Context, Editor, Helper};

use super::input::is_incomplete;
use super::meta::COMMANDS;

pub type LineEditor = Editor<ReplHelper, DefaultHistory>;

/// Entries kept in the history file.
const HISTORY_SIZE: usize = 10_000;

/// Rhai keywords an entry may start with, completed like names.
const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "for", "in", "while", "loop", "do", "until", "break",
    "continue", "return", "throw", "try", "catch", "switch", "import", "as", "true", "false",
    "print", "debug", "type_of",
];

/// The candidates completion offers, refreshed before every prompt.
#[derive(Default)]
pub struct Completions {
    /// Function names by module. The `""` module contains the global functions.
    pub functions: BTreeMap<String, Vec<String>>,
    /// Names in the scope of the first target host: `let` bindings and constants.
    pub scope: Vec<String>,
    /// The host variables `vars.` reads.
    pub vars: Vec<String>,
    /// Inventory hosts and groups, for `:host`.
    pub hosts: Vec<String>,
    /// Task names, for `:load`.
    pub tasks: Vec<String>,
}

pub struct ReplHelper {
    pub completions: Completions,
    files: FilenameCompleter,
}

/// Creates the line editor and loads the history file, if there is one.
pub fn new_editor(history: Option<&PathBuf>) -> rustyline::Result<LineEditor> {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .max_history_size(HISTORY_SIZE)?
        .history_ignore_dups(true)?
        // An entry typed with a leading space stays out of the history, as in bash with
        // HISTCONTROL=ignorespace: the way to keep a typed secret out of the file.
        .history_ignore_space(true)
        .auto_add_history(false)
        .build();
    let mut editor = LineEditor::with_config(config)?;
    editor.set_helper(Some(ReplHelper {
        completions: Completions::default(),
        files: FilenameCompleter::new(),
    }));
    if let Some(path) = history
        && path.exists()
        && let Err(error) = editor.load_history(path)
    {
        tracing::warn!("cannot read the history file {}: {error}", path.display());
    }
    Ok(editor)
}

/// Returns the history file: `$XDG_STATE_HOME/masrun/history`, else
/// `~/.local/state/masrun/history`. Creates its directory (0700) and the file (0600), since
/// entries can name hosts and paths. Returns `None` when neither variable gives a directory or
/// it cannot be created.
pub fn history_path() -> Option<PathBuf> {
    let state_dir = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|home| home.is_absolute())
                .map(|home| home.join(".local/state"))
        })?;
    let dir = state_dir.join("masrun");
    if let Err(error) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
    {
        tracing::warn!(
            "cannot create {}: {error}; history is not saved",
            dir.display()
        );
        return None;
    }
    let path = dir.join("history");
    if let Err(error) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
    {
        tracing::warn!(
            "cannot open {}: {error}; history is not saved",
            path.display()
        );
        return None;
    }
    Some(path)
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        if before.trim_start().starts_with(':') {
            return self.complete_meta(line, pos, ctx);
        }
        Ok(self.complete_code(before))
    }
}

impl ReplHelper {
    fn complete_meta(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let Some((command, argument)) = before.trim_start().split_once(char::is_whitespace) else {
            let start = before.len() - before.trim_start().len();
            let names = COMMANDS.iter().map(|command| format!(":{}", command.name));
            return Ok((start, candidates(before.trim_start(), names, " ")));
        };
        let argument = argument.trim_start();
        let start = pos - argument.len();
        let choices: Vec<String> = match command {
            ":load" => {
                let (file_start, mut files) = self.files.complete(line, pos, ctx)?;
                if file_start == start {
                    files.extend(candidates(argument, self.completions.tasks.clone(), ""));
                }
                return Ok((file_start, files));
            }
            ":host" => self.completions.hosts.clone(),
            ":vars" => self.completions.vars.clone(),
            ":check" => vec!["on".into(), "off".into()],
            ":help" => self.help_topics(),
            _ => Vec::new(),
        };
        Ok((start, candidates(argument, choices, "")))
    }

    fn help_topics(&self) -> Vec<String> {
        let mut topics = Vec::new();
        for (module, functions) in &self.completions.functions {
            if module.is_empty() {
                topics.extend(functions.iter().cloned());
            } else {
                topics.push(module.clone());
                topics.extend(functions.iter().map(|f| format!("{module}::{f}")));
            }
        }
        topics
    }

    /// Completes the word before the cursor: `module::function`, `vars.name`, or a module,
    /// function, variable or keyword.
    fn complete_code(&self, before: &str) -> (usize, Vec<Pair>) {
        let start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_alphanumeric() || matches!(c, '_' | ':' | '.'))
            .last()
            .map_or(before.len(), |(index, _)| index);
        let word = &before[start..];

        if let Some((module, _)) = word.rsplit_once("::") {
            let functions = self.completions.functions.get(module);
            let names = functions
                .into_iter()
                .flatten()
                .map(|name| format!("{module}::{name}"));
            return (start, candidates(word, names, "("));
        }
        if let Some(prefix) = word.strip_prefix("vars.") {
            let names = self
                .completions
                .vars
                .iter()
                .filter(|name| name.starts_with(prefix))
                .map(|name| format!("vars.{name}"));
            return (start, candidates(word, names, ""));
        }
        if word.contains('.') {
            return (start, Vec::new());
        }

        let mut pairs = candidates(
            word,
            self.completions
                .functions
                .keys()
                .filter(|module| !module.is_empty())
                .map(|module| format!("{module}::")),
            "",
        );
        let globals = self.completions.functions.get("").into_iter().flatten();
        pairs.extend(candidates(word, globals.cloned(), "("));
        pairs.extend(candidates(word, self.completions.scope.iter().cloned(), ""));
        pairs.extend(candidates(word, KEYWORDS.iter().map(|k| k.to_string()), ""));
        pairs.sort_by(|a, b| a.replacement.cmp(&b.replacement));
        pairs.dedup_by(|a, b| a.replacement == b.replacement);
        (start, pairs)
    }
}

/// Returns the choices that start with `word`, each replaced by itself plus `suffix`.
fn candidates(word: &str, choices: impl IntoIterator<Item = String>, suffix: &str) -> Vec<Pair> {
    let mut pairs: Vec<Pair> = choices
        .into_iter()
        .filter(|choice| choice.starts_with(word))
        .map(|choice| Pair {
            display: choice.rsplit("::").next().unwrap_or(&choice).to_string(),
            replacement: format!("{choice}{suffix}"),
        })
        .collect();
    pairs.sort_by(|a, b| a.replacement.cmp(&b.replacement));
    pairs.dedup_by(|a, b| a.replacement == b.replacement);
    pairs
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        if input.trim_start().starts_with(':') || !is_incomplete(input) {
            Ok(ValidationResult::Valid(None))
        } else {
            Ok(ValidationResult::Incomplete)
        }
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Borrowed(line)
    }
}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::{Completions, ReplHelper};
    use rustyline::completion::FilenameCompleter;

    fn helper() -> ReplHelper {
        let mut completions = Completions::default();
        completions.functions.insert(
            "file".into(),
            vec!["content".into(), "copy".into(), "read".into()],
        );
        completions
            .functions
            .insert(String::new(), vec!["fail".into(), "variable".into()]);
        completions.vars = vec![
            "matrix_authentication_service_enabled".into(),
            "matrix_authentication_service_hostname".into(),
            "matrix_domain".into(),
        ];
        completions.scope = vec!["vars".into(), "host".into(), "answer".into()];
        ReplHelper {
            completions,
            files: FilenameCompleter::new(),
        }
    }

    fn replacements(line: &str) -> (usize, Vec<String>) {
        let (start, pairs) = helper().complete_code(line);
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn module_functions() {
        assert_eq!(
            replacements("let x = file::co"),
            (8, vec!["file::content(".into(), "file::copy(".into()])
        );
    }

    #[test]
    fn variable_names() {
        assert_eq!(
            replacements("vars.matrix_authentication_service_h"),
            (
                0,
                vec!["vars.matrix_authentication_service_hostname".to_string()]
            )
        );
    }

    #[test]
    fn modules_globals_scope_and_keywords() {
        assert_eq!(replacements("fi").1, ["file::"]);
        assert_eq!(replacements("fa").1, ["fail(", "false"]);
        assert_eq!(replacements("print(ans").1, ["answer"]);
        assert_eq!(replacements("l").1, ["let", "loop"]);
    }
}
