//! The words a task file accepts after its name, read from the `Usage:` line of its leading
//! `//!` comment, and the check of the words given on the command line against them. A task
//! without a `Usage:` line accepts any words.
//!
//! In `Usage: masrun [OPTIONS] register-user USERNAME [--admin]`, the words after the task's
//! name declare one required argument (`USERNAME`) and one option (`--admin`). Brackets mark
//! an optional word and a trailing `...` any number of them.

/// The arguments and options a task accepts after its name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Usage {
    line: String,
    options: Vec<String>,
    required: usize,
    optional: usize,
    variadic: bool,
}

/// Reads the `Usage:` line of `doc` for the task called `task`. Returns `None` when the
/// comment has no such line or the line does not name the task.
pub fn parse_usage(doc: &str, task: &str) -> Option<Usage> {
    let line = doc
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix("Usage:"))?
        .trim();
    let words: Vec<&str> = line.split_whitespace().collect();
    let position = words.iter().rposition(|word| *word == task)?;

    let mut usage = Usage {
        line: line.to_string(),
        ..Usage::default()
    };
    for word in &words[position + 1..] {
        let optional = word.starts_with('[');
        let name = word.trim_matches(|c| c == '[' || c == ']');
        let variadic = name.ends_with("...");
        let name = name.trim_end_matches("...");
        if name.starts_with('-') {
            let option = name.split('=').next().unwrap_or(name);
            usage.options.push(option.to_string());
        } else if optional {
            usage.optional += 1;
        } else {
            usage.required += 1;
        }
        usage.variadic |= variadic;
    }
    Some(usage)
}

/// Checks the words given after the task's name. `masrun_options` are masrun's own option
/// names, offered when a word looks like a mistyped one (`--chekc`).
pub fn check(
    args: &[String],
    usage: &Usage,
    task: &str,
    masrun_options: &[&str],
) -> Result<(), String> {
    let mut positional = 0;
    for arg in args {
        if !arg.starts_with('-') || arg == "-" {
            positional += 1;
            continue;
        }
        let name = arg.split('=').next().unwrap_or(arg);
        if usage.options.iter().any(|option| option == name) {
            continue;
        }
        let known: Vec<&str> = usage
            .options
            .iter()
            .map(String::as_str)
            .chain(masrun_options.iter().copied())
            .collect();
        let suggestion = closest(name, &known)
            .map(|close| format!("; did you mean {close}?"))
            .unwrap_or_default();
        return Err(format!(
            "unknown option {arg} for {task}{suggestion} (Usage: {})",
            usage.line
        ));
    }

    let max = usage.required + usage.optional;
    if positional < usage.required {
        return Err(format!(
            "{task} needs {} argument(s) but got {positional} (Usage: {})",
            usage.required, usage.line
        ));
    }
    if positional > max && !usage.variadic {
        let words: Vec<&str> = args
            .iter()
            .filter(|arg| !arg.starts_with('-') || *arg == "-")
            .map(String::as_str)
            .collect();
        let accepted = if max == 0 {
            "no arguments".to_string()
        } else {
            format!("at most {max} argument(s)")
        };
        return Err(format!(
            "{task} takes {accepted} but got {} (Usage: {})",
            words.join(" "),
            usage.line
        ));
    }
    Ok(())
}

/// Returns the known option nearest to `name`, if it is within two edits.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|option| (strsim::levenshtein(name, option), *option))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, option)| option)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    const MASRUN: &[&str] = &["--check", "--diff", "--limit"];

    #[test]
    fn usage_without_words_after_task() {
        let usage = parse_usage(
            "Deploys.\n\nUsage: masrun [--check] [-l HOST] setup",
            "setup",
        )
        .unwrap();
        assert!(usage.options.is_empty());
        assert_eq!((usage.required, usage.optional), (0, 0));
    }

    #[test]
    fn usage_with_arguments_and_options() {
        let usage = parse_usage(
            "Usage: masrun [OPTIONS] register-user USERNAME [--admin] [NOTE...]",
            "register-user",
        )
        .unwrap();
        assert_eq!(usage.options, ["--admin"]);
        assert_eq!((usage.required, usage.optional), (1, 1));
        assert!(usage.variadic);
    }

    #[test]
    fn usage_missing_or_naming_another_task() {
        assert_eq!(parse_usage("Deploys things.", "setup"), None);
        assert_eq!(parse_usage("Usage: masrun doctor", "setup"), None);
    }

    #[test]
    fn mistyped_masrun_option_is_rejected_with_suggestion() {
        let usage = parse_usage("Usage: masrun setup", "setup").unwrap();
        let error = check(&words("--chekc"), &usage, "setup", MASRUN).unwrap_err();
        assert!(
            error.contains("unknown option --chekc for setup"),
            "{error}"
        );
        assert!(error.contains("did you mean --check?"), "{error}");
    }

    #[test]
    fn unknown_option_without_close_match() {
        let usage = parse_usage("Usage: masrun setup", "setup").unwrap();
        let error = check(&words("--bogus=1"), &usage, "setup", MASRUN).unwrap_err();
        assert!(error.contains("unknown option --bogus=1"), "{error}");
        assert!(!error.contains("did you mean"), "{error}");
    }

    #[test]
    fn extra_argument_is_rejected() {
        let usage = parse_usage("Usage: masrun setup", "setup").unwrap();
        let error = check(&words("typo-arg"), &usage, "setup", MASRUN).unwrap_err();
        assert!(
            error.contains("setup takes no arguments but got typo-arg"),
            "{error}"
        );
    }

    #[test]
    fn declared_words_are_accepted() {
        let usage = parse_usage(
            "Usage: masrun register-user USERNAME [--admin]",
            "register-user",
        )
        .unwrap();
        assert!(check(&words("alice --admin"), &usage, "register-user", MASRUN).is_ok());
        let missing = check(&words("--admin"), &usage, "register-user", MASRUN).unwrap_err();
        assert!(
            missing.contains("needs 1 argument(s) but got 0"),
            "{missing}"
        );
        let extra = check(&words("alice bob"), &usage, "register-user", MASRUN).unwrap_err();
        assert!(
            extra.contains("at most 1 argument(s) but got alice bob"),
            "{extra}"
        );
    }
}
