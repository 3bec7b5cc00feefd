//! Script errors: what a task file's failure means for the run (task failed, host unreachable,
//! bad input) and how it is shown: message, `--> file:line:col`, the source line with a caret,
//! and the chain of calls that led there.

use std::path::{Path, PathBuf};

use rhai::{EvalAltResult, ParseError, Position};

/// What a failure means for the run's exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// A step or the task file itself failed (exit status 1).
    Failed,
    /// The host could not be reached (exit status 3).
    Unreachable,
    /// The inventory, a variable, a template or the task file is wrong (exit status 2).
    BadInput,
}

/// The payload of a runtime error raised by masrun's own functions, so the run can tell a
/// failed step from bad input after Rhai has wrapped the error in call frames.
#[derive(Clone, Debug)]
pub struct ScriptFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl ScriptFailure {
    pub fn into_error(self) -> Box<EvalAltResult> {
        Box::new(EvalAltResult::ErrorRuntime(
            rhai::Dynamic::from(self),
            Position::NONE,
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read task file {}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("{rendered}")]
    Parse { rendered: String },
    #[error("{rendered}")]
    Runtime { kind: FailureKind, rendered: String },
}

impl ScriptError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ScriptError::Io { .. } | ScriptError::Parse { .. } => FailureKind::BadInput,
            ScriptError::Runtime { kind, .. } => *kind,
        }
    }

    pub fn parse(path: &Path, source: &str, error: &ParseError) -> ScriptError {
        let message = error.err_type().to_string();
        let rendered = render_frame(
            &format!("syntax error: {message}"),
            &path.display().to_string(),
            Some(source),
            error.position(),
        );
        ScriptError::Parse { rendered }
    }

    /// Classifies and renders a runtime error. `main_source` is the task file's path;
    /// `module_dirs` are where `import` found modules, to show their files.
    pub fn runtime(
        error: &EvalAltResult,
        main_source: &str,
        module_dirs: &[PathBuf],
    ) -> ScriptError {
        ScriptError::runtime_with_sources(error, main_source, module_dirs, &|path| {
            std::fs::read_to_string(path).ok()
        })
    }

    /// Classifies and renders a runtime error as [`ScriptError::runtime`] does, reading the
    /// text of each source through `read_source`, for sources that are not files, such as
    /// REPL entries.
    pub fn runtime_with_sources(
        error: &EvalAltResult,
        main_source: &str,
        module_dirs: &[PathBuf],
        read_source: &dyn Fn(&str) -> Option<String>,
    ) -> ScriptError {
        let mut calls = Vec::new();
        let mut source = main_source.to_string();
        let mut current = error;

        loop {
            match current {
                EvalAltResult::ErrorInFunctionCall(name, function_source, inner, position) => {
                    calls.push(format!(
                        "{} (in call to {name})",
                        location(&source, *position)
                    ));
                    if !function_source.is_empty() {
                        source = super::module_path(module_dirs, function_source)
                            .map(|path| path.display().to_string())
                            .unwrap_or_else(|| function_source.clone());
                    }
                    current = inner;
                }
                EvalAltResult::ErrorInModule(module, inner, position) => {
                    calls.push(format!(
                        "{} (import \"{module}\")",
                        location(&source, *position)
                    ));
                    if let Some(path) = super::module_path(module_dirs, module) {
                        source = path.display().to_string();
                    }
                    current = inner;
                }
                _ => break,
            }
        }

        let (kind, message) = match current {
            EvalAltResult::ErrorRuntime(value, _) => {
                match value.clone().try_cast::<ScriptFailure>() {
                    Some(failure) => (failure.kind, failure.message),
                    None => (FailureKind::Failed, value.to_string()),
                }
            }
            EvalAltResult::ErrorTerminated(_, _) => {
                (FailureKind::Failed, "interrupted".to_string())
            }
            other => (FailureKind::BadInput, strip_position(&other.to_string())),
        };

        let file_source = read_source(&source);
        let mut rendered = render_frame(
            &message,
            &source,
            file_source.as_deref(),
            current.position(),
        );
        // Innermost call first, like a stack trace.
        for call in calls.iter().rev() {
            rendered.push_str(&format!("\n  called from {call}"));
        }
        ScriptError::Runtime { kind, rendered }
    }
}

fn location(source: &str, position: Position) -> String {
    match (position.line(), position.position()) {
        (Some(line), Some(column)) => format!("{source}:{line}:{column}"),
        (Some(line), None) => format!("{source}:{line}"),
        _ => source.to_string(),
    }
}

/// Rhai appends ` (line N, position M)` to its messages; the frame shows the location instead.
fn strip_position(message: &str) -> String {
    match message.rfind(" (line ") {
        Some(index) if message.ends_with(')') => message[..index].to_string(),
        _ => message.to_string(),
    }
}

/// Renders `message` with the source location and a caret under the offending column.
pub fn render_frame(
    message: &str,
    source_name: &str,
    source: Option<&str>,
    position: Position,
) -> String {
    let mut out = message.to_string();
    let Some(line_number) = position.line() else {
        if !source_name.is_empty() {
            out.push_str(&format!("\n  --> {source_name}"));
        }
        return out;
    };
    out.push_str(&format!("\n  --> {}", location(source_name, position)));
    let Some(line) = source.and_then(|s| s.lines().nth(line_number - 1)) else {
        return out;
    };
    let gutter = line_number.to_string().len();
    let column = position.position().unwrap_or(1).max(1);
    let caret_pad: String = line
        .chars()
        .take(column - 1)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    out.push_str(&format!(
        "\n{:gutter$} |\n{line_number} | {line}\n{:gutter$} | {caret_pad}^",
        "", ""
    ));
    out
}
