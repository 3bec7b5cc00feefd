//! Command-line arguments. Help text lives on the fields.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, ValueEnum};

/// The command a command line requests: a task run, the REPL, or one evaluated entry.
#[derive(Debug)]
pub enum Command {
    Run(Cli),
    Repl(ReplCli),
    Eval(EvalCli),
}

impl Command {
    pub fn verbose(&self) -> u8 {
        match self {
            Command::Run(cli) => cli.verbose,
            Command::Repl(cli) => cli.verbose,
            Command::Eval(cli) => cli.verbose,
        }
    }
}

/// Parses the command line. When the first word that is not an option is `repl` or `eval`, it
/// names masrun's own command, never a task file. Any other word runs a task.
pub fn parse(args: Vec<String>) -> Command {
    let word = first_word(&args);
    match word.map(|index| (index, args[index].as_str())) {
        Some((index, "repl")) => Command::Repl(ReplCli::parse_from(without(args, index))),
        Some((index, "eval")) => Command::Eval(EvalCli::parse_from(without(args, index))),
        _ => Command::Run(Cli::parse_from(hoist_options(args))),
    }
}

/// Returns the index of the first word after the program name that is neither an option nor
/// an option's value.
fn first_word(args: &[String]) -> Option<usize> {
    let mut index = 1;
    while let Some(arg) = args.get(index) {
        if arg == "--" {
            return args.get(index + 1).map(|_| index + 1);
        }
        if !arg.starts_with('-') || arg == "-" {
            return Some(index);
        }
        index += if OPTIONS_WITH_VALUE.contains(&arg.as_str()) {
            2
        } else {
            1
        };
    }
    None
}

fn without(mut args: Vec<String>, index: usize) -> Vec<String> {
    args.remove(index);
    args
}

#[derive(Debug, Parser)]
#[command(
    name = "masrun",
    version,
    args_override_self = true,
    about = "Deploy and operate Matrix Authentication Service beside Synapse",
    long_about = "Runs a Rhai task file against the hosts of an Ansible-style inventory.\n\
                  A bare word runs scripts/<word>.rhai (masrun ships setup); \
                  a path runs that file. `masrun <task> --help` prints the task's own help.\n\n\
                  `masrun repl` opens a prompt that evaluates Rhai with the task files' \
                  primitives on the selected hosts; `masrun eval EXPR` evaluates one entry.",
    after_help = "Exit status: 0 every host finished, 1 a task failed, 2 bad input (nothing changed), \
                  3 a host was unreachable."
)]
pub struct Cli {
    /// Inventory hosts file; group_vars/ and host_vars/ are read beside it.
    #[arg(short, long, value_name = "PATH", default_value = "inventory/hosts")]
    pub inventory: PathBuf,

    /// Run only on hosts matching this Ansible pattern (host, group, glob, `a,b`, `!x`, `&y`).
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,

    /// Extra variables, highest precedence: `key=value ...`, `@file.yml` or a JSON object.
    #[arg(short, long = "extra-vars", value_name = "EXTRA", action = ArgAction::Append)]
    pub extra_vars: Vec<String>,

    /// Change nothing; report what would change.
    #[arg(short = 'C', long)]
    pub check: bool,

    /// Show a unified diff of every file change, with secret values masked.
    #[arg(short = 'D', long)]
    pub diff: bool,

    /// Output format: human-readable lines, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = OutputArg::Human)]
    pub output: OutputArg,

    /// More detail: -v shows unchanged steps, -vv adds round-trip counts, -vvv debug logs.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Maximum number of hosts to run at once.
    #[arg(short, long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub forks: u16,

    /// known_hosts file to verify SSH host keys against, and to record accepted keys in
    /// (default: ~/.ssh/known_hosts, also reading /etc/ssh/ssh_known_hosts).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// What to do with a host whose SSH key is not in known_hosts: `strict` rejects it,
    /// `accept-new` records it. A changed key is always rejected. Overrides the inventory's
    /// masrun_host_key_policy.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub host_key_policy: Option<HostKeyPolicyArg>,

    /// The task to run: a word such as `setup` (scripts/setup.rhai) or a path to a .rhai file.
    #[arg(value_name = "TASK")]
    pub task: String,

    /// Arguments passed to the task file as `args`.
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

/// The inventory and the hosts an interactive session or an evaluation works on.
#[derive(Debug, Args)]
pub struct HostArgs {
    /// Inventory hosts file; group_vars/ and host_vars/ are read beside it.
    #[arg(short, long, value_name = "PATH", default_value = "inventory/hosts")]
    pub inventory: PathBuf,

    /// Use only the hosts matching this Ansible pattern (host, group, glob, `a,b`, `!x`, `&y`).
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,

    /// Extra variables, highest precedence: `key=value ...`, `@file.yml` or a JSON object.
    #[arg(short, long = "extra-vars", value_name = "EXTRA", action = ArgAction::Append)]
    pub extra_vars: Vec<String>,

    /// Start in check mode: primitives report what they would change and change nothing.
    #[arg(short = 'C', long)]
    pub check: bool,

    /// Show a unified diff of every file change, with secret values masked.
    #[arg(short = 'D', long)]
    pub diff: bool,

    /// known_hosts file to verify SSH host keys against, and to record accepted keys in
    /// (default: ~/.ssh/known_hosts, also reading /etc/ssh/ssh_known_hosts).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// What to do with a host whose SSH key is not in known_hosts: `strict` rejects it,
    /// `accept-new` records it. Overrides the inventory variable masrun_host_key_policy.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub host_key_policy: Option<HostKeyPolicyArg>,
}

impl HostKeyPolicyArg {
    pub fn policy(self) -> crate::transport::ssh::HostKeyPolicy {
        match self {
            HostKeyPolicyArg::Strict => crate::transport::ssh::HostKeyPolicy::Strict,
            HostKeyPolicyArg::AcceptNew => crate::transport::ssh::HostKeyPolicy::AcceptNew,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "masrun repl",
    bin_name = "masrun repl",
    version,
    about = "Evaluate Rhai entries on inventory hosts, with the task files' primitives",
    long_about = "Opens a prompt that evaluates Rhai with the same primitives, modules and \
                  variables (`vars`, `host`, `check_mode`) as task files, on every selected \
                  host over one connection per host. `let` bindings, functions and imports \
                  stay defined for the rest of the session. Type :help for the primitives and \
                  the meta-commands (:hosts, :host, :vars, :check, :load, :quit).\n\n\
                  Enter runs the entry unless a bracket or a string is still open. Tab \
                  completes modules, functions, `vars.` names and meta-commands. Ctrl-C stops \
                  the running entry, Ctrl-D leaves. History is kept in \
                  $XDG_STATE_HOME/masrun/history (default ~/.local/state/masrun/history); \
                  an entry that starts with a space is not saved.",
    after_help = "Exit status: 0 when the session ends, 2 for bad input before the prompt opens."
)]
pub struct ReplCli {
    #[command(flatten)]
    pub hosts: HostArgs,

    /// More detail: -v shows unchanged steps, -vvv debug logs.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Parser)]
#[command(
    name = "masrun eval",
    bin_name = "masrun eval",
    version,
    about = "Evaluate one Rhai entry on inventory hosts and print its result",
    long_about = "Evaluates one entry the way `masrun repl` does, on every selected host, and \
                  prints each host's result: text as it is, maps and arrays as YAML, or one \
                  JSON object per host with --output json.",
    after_help = "Exit status: 0 every host evaluated the entry, 1 it failed on a host, 2 bad \
                  input (a syntax error, an undefined variable; nothing was changed), 3 a host \
                  was unreachable."
)]
pub struct EvalCli {
    #[command(flatten)]
    pub hosts: HostArgs,

    /// Output format: readable text, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = OutputArg::Human)]
    pub output: OutputArg,

    /// More detail: -v shows unchanged steps, -vvv debug logs.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// The Rhai entry to evaluate, for example `file::read("/etc/hostname")`.
    #[arg(value_name = "EXPR", allow_hyphen_values = true)]
    pub expression: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HostKeyPolicyArg {
    Strict,
    AcceptNew,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    Human,
    Json,
}

/// masrun's own options that take a value, in every spelling.
const OPTIONS_WITH_VALUE: &[&str] = &[
    "-i",
    "--inventory",
    "-l",
    "--limit",
    "-e",
    "--extra-vars",
    "--output",
    "-f",
    "--forks",
    "--known-hosts",
    "--host-key-policy",
];
/// masrun's own flags without a value.
const FLAGS: &[&str] = &["-C", "--check", "-D", "--diff"];

/// Returns masrun's own option names, to suggest one for a mistyped word after the task.
pub fn option_names() -> Vec<&'static str> {
    OPTIONS_WITH_VALUE
        .iter()
        .chain(FLAGS)
        .chain(&["--verbose"])
        .copied()
        .filter(|name| name.starts_with("--"))
        .collect()
}

/// Moves masrun's own options that follow the task name in front of it, so that
/// `masrun setup --check -l host` works as written, while every other word after the task
/// (`register-user alice --admin`, `setup --help`) goes to the task file. After `--` nothing
/// is moved.
pub fn hoist_options(args: Vec<String>) -> Vec<String> {
    let mut before = Vec::new();
    let mut iter = args.into_iter();
    if let Some(program) = iter.next() {
        before.push(program);
    }

    // Options before the task stay where they are; find the task word.
    let mut task = None;
    while let Some(arg) = iter.next() {
        let takes_value = OPTIONS_WITH_VALUE.contains(&arg.as_str());
        let is_option = arg.starts_with('-') && arg != "-";
        before.push(arg);
        if takes_value {
            if let Some(value) = iter.next() {
                before.push(value);
            }
        } else if !is_option {
            task = before.pop();
            break;
        }
    }
    let Some(task) = task else {
        return before;
    };

    let mut after = Vec::new();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            after.extend(iter.by_ref());
            break;
        }
        let name = arg.split('=').next().unwrap_or(&arg);
        let is_verbose =
            arg.len() > 1 && arg.starts_with('-') && arg[1..].chars().all(|c| c == 'v');
        if FLAGS.contains(&arg.as_str()) || is_verbose {
            before.push(arg);
        } else if OPTIONS_WITH_VALUE.contains(&name) {
            let has_inline_value = arg.contains('=');
            before.push(arg);
            if !has_inline_value && let Some(value) = iter.next() {
                before.push(value);
            }
        } else {
            after.push(arg);
        }
    }
    // Everything after `--` is positional for clap, so `--help` reaches the task file.
    before.push(task);
    before.push("--".to_string());
    before.extend(after);
    before
}

#[cfg(test)]
mod tests {
    use super::{Command, hoist_options, parse};

    fn hoist(line: &str) -> String {
        hoist_options(line.split(' ').map(str::to_string).collect()).join(" ")
    }

    #[test]
    fn hoists_flags_after_task() {
        assert_eq!(
            hoist("masrun setup --check --diff"),
            "masrun --check --diff setup --"
        );
        assert_eq!(
            hoist("masrun setup -l host -vv"),
            "masrun -l host -vv setup --"
        );
        assert_eq!(
            hoist("masrun setup --limit=host"),
            "masrun --limit=host setup --"
        );
    }

    #[test]
    fn keeps_task_arguments() {
        assert_eq!(
            hoist("masrun register-user alice --admin --check"),
            "masrun --check register-user -- alice --admin"
        );
        assert_eq!(
            hoist("masrun syn2mas --dry-run"),
            "masrun syn2mas -- --dry-run"
        );
        assert_eq!(hoist("masrun setup --help"), "masrun setup -- --help");
    }

    #[test]
    fn stops_at_double_dash() {
        assert_eq!(
            hoist("masrun x.rhai -- --check"),
            "masrun x.rhai -- --check"
        );
        assert_eq!(hoist("masrun x.rhai -v -- -v"), "masrun -v x.rhai -- -v");
    }

    #[test]
    fn options_before_task_keep_values() {
        assert_eq!(
            hoist("masrun -i inv/hosts -e a=b setup --diff"),
            "masrun -i inv/hosts -e a=b --diff setup --"
        );
    }

    fn command(line: &str) -> Command {
        parse(line.split(' ').map(str::to_string).collect())
    }

    #[test]
    fn repl_is_a_command() {
        let Command::Repl(cli) = command("masrun -i inv/hosts repl -l host --check") else {
            panic!("repl parses as the REPL command");
        };
        assert_eq!(cli.hosts.inventory.to_str(), Some("inv/hosts"));
        assert_eq!(cli.hosts.limit.as_deref(), Some("host"));
        assert!(cli.hosts.check);
    }

    #[test]
    fn eval_takes_expression() {
        let Command::Eval(cli) = command("masrun eval -l host 1+1 --output json") else {
            panic!("eval parses as the eval command");
        };
        assert_eq!(cli.expression, "1+1");
        assert_eq!(cli.hosts.limit.as_deref(), Some("host"));
        assert_eq!(cli.output, super::OutputArg::Json);
    }

    #[test]
    fn task_named_like_option_value_runs() {
        let Command::Run(cli) = command("masrun -l repl setup") else {
            panic!("`-l repl` is a limit, not the REPL");
        };
        assert_eq!(cli.task, "setup");
        assert_eq!(cli.limit.as_deref(), Some("repl"));
    }
}
