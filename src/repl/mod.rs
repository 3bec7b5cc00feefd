//! `masrun repl` and `masrun eval`: Rhai entries evaluated on inventory hosts with the engine,
//! primitives and variables of task files, for poking at a deployment by hand.
//!
//! The prompt reads entries with rustyline, runs each on every target host and prints the
//! results through the run's redactor. Ctrl-C stops the running entry: the engine stops at its
//! next operation and a primitive waiting on its host drops the transport future, which stops
//! the operation on the host. Ctrl-D or `:quit` ends the session. This module owns the loop and
//! the exit statuses; [`session`] owns hosts, scopes and evaluation.

mod display;
mod editor;
mod help;
mod input;
mod meta;
mod session;

use std::sync::Arc;

use rustyline::error::ReadlineError;

use crate::cli::{EvalCli, OutputArg, ReplCli};
use crate::engine::error::FailureKind;
use crate::report::{OutputFormat, Redactor, Reporter};
use crate::run::{self, ExitStatus, host::Interrupt};
use display::Printer;
use session::{HostResult, Outcome, Session};

/// Runs the interactive session until `:quit` or Ctrl-D.
pub fn repl(cli: ReplCli) -> ExitStatus {
    let redactor = Arc::new(Redactor::new());
    let reporter = Reporter::on_stderr(
        OutputFormat::Human,
        cli.hosts.diff,
        cli.verbose,
        redactor.clone(),
    );
    let printer = Printer::new(OutputFormat::Human, redactor.clone());
    let runtime = match run::runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            reporter.fatal(&format!("cannot start the async runtime: {error}"));
            return ExitStatus::Failed;
        }
    };
    let mut session = match Session::open(
        &cli.hosts,
        reporter.clone(),
        redactor,
        runtime.handle().clone(),
    ) {
        Ok(session) => session,
        Err(message) => {
            reporter.fatal(&message);
            return ExitStatus::BadInput;
        }
    };
    if let Err(error) = listen_for_interrupts(&runtime, session.interrupt().clone()) {
        reporter.fatal(&format!("cannot handle Ctrl-C: {error}"));
        return ExitStatus::Failed;
    }

    let history = editor::history_path();
    let mut editor = match editor::new_editor(history.as_ref()) {
        Ok(editor) => editor,
        Err(error) => {
            reporter.fatal(&format!("cannot open the terminal: {error}"));
            return ExitStatus::Failed;
        }
    };

    for (host, message) in session.connect_targets() {
        printer.unreachable(&host, &format!("{message}{RETRY_HINT}"));
    }
    printer.note("Type :help for the primitives and meta-commands, Ctrl-D to leave.");

    loop {
        if let Some(helper) = editor.helper_mut() {
            refresh_completions(&session, &mut helper.completions);
        }
        let line = match editor.readline(&session.prompt()) {
            Ok(line) => line,
            // Ctrl-C at the prompt drops the line being typed, as a shell does.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(error) => {
                printer.error(None, None, &format!("cannot read the terminal: {error}"));
                return ExitStatus::Failed;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        save_history(&mut editor, history.as_ref(), &line);

        if line.trim_start().starts_with(':') {
            if meta::run(&mut session, &printer, &line) == meta::Flow::Quit {
                break;
            }
            continue;
        }
        match session.evaluate(&line) {
            Ok(results) => {
                print_results(&session, &printer, &results, RETRY_HINT);
            }
            Err(error) => printer.error(None, None, &error.to_string()),
        }
    }
    ExitStatus::Ok
}

/// Evaluates one entry on the selected hosts and exits with the run's statuses: 2 for a syntax
/// error or bad input that changed nothing, 1 for a failure, 3 for an unreachable host.
pub fn eval(cli: EvalCli) -> ExitStatus {
    let format = match cli.output {
        OutputArg::Human => OutputFormat::Human,
        OutputArg::Json => OutputFormat::Json,
    };
    let redactor = Arc::new(Redactor::new());
    // JSON lines all go to stdout, as a run's do; readable reports go to stderr, so stdout
    // contains only the results.
    let reporter = match format {
        OutputFormat::Json => Reporter::new(format, cli.hosts.diff, cli.verbose, redactor.clone()),
        OutputFormat::Human => {
            Reporter::on_stderr(format, cli.hosts.diff, cli.verbose, redactor.clone())
        }
    };
    let printer = Printer::new(format, redactor.clone());
    let runtime = match run::runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            reporter.fatal(&format!("cannot start the async runtime: {error}"));
            return ExitStatus::Failed;
        }
    };
    let mut session = match Session::open(
        &cli.hosts,
        reporter.clone(),
        redactor,
        runtime.handle().clone(),
    ) {
        Ok(session) => session,
        Err(message) => {
            reporter.fatal(&message);
            return ExitStatus::BadInput;
        }
    };
    let interrupt = session.interrupt().clone();
    if let Err(error) = listen_for_interrupts(&runtime, interrupt.clone()) {
        reporter.fatal(&format!("cannot handle Ctrl-C: {error}"));
        return ExitStatus::Failed;
    }

    let status = match session.evaluate(&cli.expression) {
        Ok(results) => print_results(&session, &printer, &results, ""),
        Err(error) => {
            printer.error(None, None, &error.to_string());
            ExitStatus::BadInput
        }
    };
    if interrupt.is_raised() {
        drop(runtime);
        die_of_interrupt();
    }
    status
}

/// Runs `:load FILE [ARGS...]`.
fn load(session: &mut Session, printer: &Printer, argument: &str) {
    let words = match shell_words::split(argument) {
        Ok(words) => words,
        Err(error) => {
            printer.error(None, None, &format!("cannot split {argument:?}: {error}"));
            return;
        }
    };
    let (check, words) = take_check_flag(words);
    let Some((task, args)) = words.split_first() else {
        printer.error(None, None, "usage: :load [--check] FILE|TASK [ARGS...]");
        return;
    };
    let path = match session.find_task(task) {
        Ok(path) => path,
        Err(message) => {
            printer.error(None, None, &message);
            return;
        }
    };

    let session_check = session.check_mode();
    if check {
        session.set_check_mode(true);
    }
    let loaded = session.load(&path, args);
    session.set_check_mode(session_check);
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            printer.error(None, None, &error.to_string());
            return;
        }
    };
    let errors = loaded.issues.iter().filter(|issue| issue.is_error).count();
    for issue in &loaded.issues {
        let mut text = String::new();
        if let Some(origin) = &issue.origin {
            text.push_str(&format!("{origin}: "));
        }
        if let Some(variable) = &issue.variable {
            text.push_str(&format!("{variable}: "));
        }
        text.push_str(&issue.message);
        let kind = if issue.is_error { "error" } else { "warning" };
        printer.labelled(Some(&issue.host), &format!("{kind}: {text}"));
    }
    match loaded.results {
        Some(results) => {
            print_results(session, printer, &results, RETRY_HINT);
        }
        None => printer.error(
            None,
            None,
            &format!("validation failed with {errors} error(s); nothing was changed"),
        ),
    }
}

/// Removes `--check` and `-C` from `:load`'s words, up to a `--`, as `masrun TASK --check`
/// treats them as masrun's own flag rather than the task's arguments. Returns whether one was
/// there.
fn take_check_flag(words: Vec<String>) -> (bool, Vec<String>) {
    let mut check = false;
    let mut rest = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--check" | "-C" => check = true,
            "--" => {
                rest.extend(words.by_ref());
                break;
            }
            _ => rest.push(word),
        }
    }
    (check, rest)
}

/// What the REPL adds to a host's connection error: the session goes on without the host.
const RETRY_HINT: &str = "; masrun connects again at the next entry";

/// Prints every host's result, labelled with the host when the entry ran on several, and
/// returns the exit status `masrun eval` gives for them. `unreachable_hint` follows the error
/// of a host that could not be reached.
fn print_results(
    session: &Session,
    printer: &Printer,
    results: &[HostResult],
    unreachable_hint: &str,
) -> ExitStatus {
    let several = session.targets().count() > 1;
    let mut status = ExitStatus::Ok;
    for result in results {
        let label = several.then_some(result.host.as_str());
        let host_status = match &result.outcome {
            Outcome::Value(value) => {
                printer.value(&result.host, label, value);
                ExitStatus::Ok
            }
            Outcome::Failed(error) => {
                printer.error(Some(&result.host), label, &error.to_string());
                match error.kind() {
                    FailureKind::BadInput if !result.changed => ExitStatus::BadInput,
                    FailureKind::Unreachable => ExitStatus::Unreachable,
                    _ => ExitStatus::Failed,
                }
            }
            Outcome::Unreachable(message) => {
                printer.unreachable(&result.host, &format!("{message}{unreachable_hint}"));
                ExitStatus::Unreachable
            }
        };
        status = status.max(host_status);
    }
    status
}

fn refresh_completions(session: &Session, completions: &mut editor::Completions) {
    let docs = session.with_docs_engine(help::function_docs);
    completions.functions = help::functions_by_module(&docs);
    let first = session.targets().next();
    completions.scope = first.map(|host| host.scope_names()).unwrap_or_default();
    completions.vars = first.map(|host| host.vars.names()).unwrap_or_default();
    let inventory = session.inventory();
    let mut hosts: Vec<String> = inventory.hosts().iter().map(|h| h.name.clone()).collect();
    hosts.extend(inventory.group_hosts().into_keys());
    completions.hosts = hosts;
    completions.tasks = session.available_tasks();
}

fn save_history(editor: &mut editor::LineEditor, path: Option<&std::path::PathBuf>, line: &str) {
    match editor.add_history_entry(line) {
        Ok(true) => {}
        // Ignored: a duplicate or an entry that starts with a space.
        Ok(false) => return,
        Err(error) => {
            tracing::warn!("cannot add to the history: {error}");
            return;
        }
    }
    if let Some(path) = path
        && let Err(error) = editor.append_history(path)
    {
        tracing::warn!("cannot save the history to {}: {error}", path.display());
    }
}

/// Raises `interrupt` on every SIGINT for the rest of the process. While rustyline reads a
/// line the terminal sends no SIGINT (Ctrl-C reaches rustyline as a key), so this only fires
/// while an entry runs, or for a SIGINT sent by another process. The terminal's SIGINT also
/// reaches local commands, which the local transport then reports as interrupted.
fn listen_for_interrupts(
    runtime: &tokio::runtime::Runtime,
    interrupt: Interrupt,
) -> std::io::Result<()> {
    let _context = runtime.enter();
    let mut signals = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    runtime.spawn(async move {
        while signals.recv().await.is_some() {
            interrupt.raise();
        }
    });
    Ok(())
}

/// Ends the process by SIGINT after an interrupted `masrun eval` has stopped its work, so the
/// calling shell learns of the interrupt and stops its script too.
fn die_of_interrupt() -> ! {
    // SAFETY: resetting SIGINT to its default action and raising it has no preconditions; the
    // process ends at `raise`.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::raise(libc::SIGINT);
    }
    std::process::exit(130)
}

#[cfg(test)]
mod tests {
    use super::take_check_flag;

    fn words(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn load_takes_check_flag() {
        assert_eq!(
            take_check_flag(words("setup --check")),
            (true, words("setup"))
        );
        assert_eq!(
            take_check_flag(words("-C register-user alice --admin")),
            (true, words("register-user alice --admin"))
        );
        assert_eq!(
            take_check_flag(words("x.rhai -- --check")),
            (false, words("x.rhai --check"))
        );
    }
}
