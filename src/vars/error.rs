//! Errors of variable resolution and template rendering. Each error names the variable or
//! template an operator must fix, the file and line it was set at, and the chain of references
//! that led there.

use std::fmt;

use super::source::Origin;

/// Maximum number of characters of template text quoted in an error.
const EXCERPT_MAX_CHARS: usize = 200;

/// One step of the chain of references that led to an error: the variable, template file or
/// expression whose rendering needed the next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Referrer {
    Variable {
        name: String,
        origin: Option<Origin>,
    },
    Template {
        name: String,
    },
    Expression {
        text: String,
    },
}

impl fmt::Display for Referrer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Referrer::Variable { name, origin } => {
                write!(f, "'{name}'")?;
                if let Some(origin) = origin {
                    write!(f, " (set at {origin})")?;
                }
                Ok(())
            }
            Referrer::Template { name } => write!(f, "template '{name}'"),
            Referrer::Expression { text } => write!(f, "expression '{}'", shorten(text)),
        }
    }
}

/// A variable in a reference cycle and the place it was set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CycleStep {
    pub name: String,
    pub origin: Option<Origin>,
}

/// A failure to resolve a variable, render a template or evaluate an expression.
#[derive(Clone, Debug, thiserror::Error)]
pub enum VarError {
    /// A name that is not defined, or an attribute that the value does not have.
    #[error("{}", describe_undefined(.name, .chain, .suggestion.as_deref()))]
    Undefined {
        /// The variable name, or the expression (such as `foo.bar`) that was undefined.
        name: String,
        /// The references that led to `name`, outermost first.
        chain: Vec<Referrer>,
        /// A known variable whose name is close to `name`.
        suggestion: Option<String>,
    },
    /// A variable whose value refers, directly or through others, to itself.
    #[error("{}", describe_cycle(.path))]
    Cycle {
        /// The variables of the cycle in reference order. The first one repeats at the end.
        path: Vec<CycleStep>,
    },
    /// A syntax error, an unknown filter or a failed filter call in a template.
    #[error("{}", describe_template(.place, .message, .excerpt.as_deref(), .chain))]
    Template {
        /// The variable, template file or expression whose text failed. Boxed to keep
        /// `Result<_, VarError>` small.
        place: Box<Referrer>,
        /// The template engine's message.
        message: String,
        /// The failing line of the template text, or `None` when it is withheld because the
        /// variable looks secret.
        excerpt: Option<String>,
        /// The references that led to `place`, outermost first.
        chain: Vec<Referrer>,
    },
}

impl VarError {
    /// Creates the error for a name that no layer defines.
    pub(crate) fn undefined(name: &str) -> VarError {
        VarError::Undefined {
            name: name.to_string(),
            chain: Vec::new(),
            suggestion: None,
        }
    }

    /// Adds `referrer` as the outermost step of the chain that led to this error.
    ///
    /// A cycle error already lists every variable involved, so it is left unchanged.
    pub(crate) fn referred_by(mut self, referrer: &Referrer) -> VarError {
        match &mut self {
            VarError::Undefined { chain, .. } | VarError::Template { chain, .. } => {
                chain.insert(0, referrer.clone());
            }
            VarError::Cycle { .. } => {}
        }
        self
    }

    /// Returns whether the error must stop the rendering that ran into it.
    ///
    /// An undefined name is not fatal: like Ansible, a variable whose value refers to an
    /// undefined name counts as undefined itself, so `default()` and `is defined` apply to it.
    pub(crate) fn is_fatal(&self) -> bool {
        !matches!(self, VarError::Undefined { .. })
    }
}

fn describe_undefined(name: &str, chain: &[Referrer], suggestion: Option<&str>) -> String {
    let mut text = if is_identifier(name) {
        format!("variable '{name}' is undefined")
    } else {
        format!("'{name}' is undefined")
    };
    if !chain.is_empty() {
        text.push_str(&format!("\n  {} -> '{name}'", describe_chain(chain)));
    }
    if let Some(suggestion) = suggestion {
        text.push_str(&format!("\n  did you mean '{suggestion}'?"));
    }
    text
}

fn describe_cycle(path: &[CycleStep]) -> String {
    let first = path.first().map(|step| step.name.as_str()).unwrap_or("");
    let names: Vec<&str> = path.iter().map(|step| step.name.as_str()).collect();
    let mut text = format!(
        "variable '{first}' refers to itself: {}",
        names.join(" -> ")
    );

    // The last step repeats the first one, so its origin is already listed.
    let distinct = path.len().saturating_sub(1).max(1);
    for step in path.iter().take(distinct) {
        match &step.origin {
            Some(origin) => text.push_str(&format!("\n  '{}' is set at {origin}", step.name)),
            None => text.push_str(&format!("\n  '{}' has no known origin", step.name)),
        }
    }
    text.push_str("\n  change one of these values so that it no longer refers back");
    text
}

fn describe_template(
    place: &Referrer,
    message: &str,
    excerpt: Option<&str>,
    chain: &[Referrer],
) -> String {
    let place_text = match place {
        Referrer::Variable { .. } => format!("variable {place}"),
        _ => place.to_string(),
    };
    let mut text = format!("failed to render {place_text}: {message}");
    match excerpt {
        Some(excerpt) => text.push_str(&format!("\n  template: {excerpt}")),
        None => text.push_str(
            "\n  template: (not shown because the value looks secret)\n  \
             if the secret itself contains `{{` or `{%`, write it as `!unsafe 'value'` \
             or wrap it in `{% raw %}...{% endraw %}`",
        ),
    }
    if !chain.is_empty() {
        text.push_str(&format!("\n  {} -> {place}", describe_chain(chain)));
    }
    text
}

fn describe_chain(chain: &[Referrer]) -> String {
    let steps: Vec<String> = chain.iter().map(Referrer::to_string).collect();
    format!("while resolving {}", steps.join(" -> "))
}

/// Returns the text of line `line` (1-based) of `source`, or the whole text when the line is
/// unknown, cut to [`EXCERPT_MAX_CHARS`] characters.
pub(crate) fn excerpt(source: &str, line: Option<usize>) -> String {
    let text = match line {
        Some(line) if source.lines().count() > 1 => source
            .lines()
            .nth(line.saturating_sub(1))
            .map(|text| format!("line {line}: {}", text.trim()))
            .unwrap_or_else(|| source.to_string()),
        _ => source.to_string(),
    };
    shorten(&text)
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= EXCERPT_MAX_CHARS {
        return text.to_string();
    }
    let cut: String = text.chars().take(EXCERPT_MAX_CHARS).collect();
    format!("{cut}…")
}

/// Returns whether `name` is a plain identifier (a variable name), not an attribute path.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first.is_alphabetic() || first == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_alphanumeric() || c == '_')
}
