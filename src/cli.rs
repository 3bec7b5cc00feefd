//! Command-line arguments. Help text lives on the fields.

use std::path::PathBuf;

use clap::{ArgAction, Parser, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "masrun",
    version,
    args_override_self = true,
    about = "Deploy and operate Matrix Authentication Service beside Synapse",
    long_about = "Runs a Rhai task file against the hosts of an Ansible-style inventory.\n\
                  A bare word runs scripts/<word>.rhai (setup, register-user, syn2mas, doctor); \
                  a path runs that file. `masrun <task> --help` prints the task's own help.",
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
    use super::hoist_options;

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
}
