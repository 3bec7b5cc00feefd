//! Help text for the REPL, generated from the functions registered in the engine: each
//! function's module, parameters, return type and doc comment, as Rhai's metadata records them.
//! Functions the operator defines or imports in the session are listed the same way.

use std::collections::BTreeMap;

use rhai::{Engine, FnAccess};

/// One callable function as `:help` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionDoc {
    /// The module it is called through (`file` for `file::read`), empty for global functions.
    pub module: String,
    pub name: String,
    /// `name: Type` or `name` for each parameter.
    pub params: Vec<String>,
    pub return_type: String,
    /// The doc comment without its `///` leaders, one entry per line.
    pub description: Vec<String>,
    /// Called as a method of `vars` (`vars.get(name, default)`).
    pub on_vars: bool,
}

impl FunctionDoc {
    /// Returns the call as an operator writes it, with parameter names and types.
    pub fn signature(&self) -> String {
        let (receiver, params) = if self.on_vars {
            ("vars.".to_string(), &self.params[1..])
        } else if self.module.is_empty() {
            (String::new(), &self.params[..])
        } else {
            (format!("{}::", self.module), &self.params[..])
        };
        let mut text = format!("{receiver}{}({})", self.name, params.join(", "));
        if !self.return_type.is_empty() && self.return_type != "()" {
            text.push_str(&format!(" -> {}", self.return_type));
        }
        text
    }

    pub fn summary(&self) -> &str {
        self.description.first().map(String::as_str).unwrap_or("")
    }

    /// The name to look the function up by: `file::read`, `vars.get` or `fail`.
    pub fn qualified_name(&self) -> String {
        if self.on_vars {
            format!("vars.{}", self.name)
        } else if self.module.is_empty() {
            self.name.clone()
        } else {
            format!("{}::{}", self.module, self.name)
        }
    }
}

/// Lists the documented functions of `engine`: the primitives and helpers masrun registers,
/// modules imported in the session, and the session's own script functions. Rhai's standard
/// library is left out, as are undocumented internals such as indexers.
pub fn function_docs(engine: &Engine) -> Vec<FunctionDoc> {
    let mut docs = engine.collect_fn_metadata(
        None,
        |info| {
            let metadata = info.metadata;
            if metadata.access == FnAccess::Private || metadata.name.contains('$') {
                return None;
            }
            let comments: Vec<String> = match &info.script {
                Some(script) => script.comments.iter().map(|c| c.to_string()).collect(),
                None => metadata.comments.iter().map(|c| c.to_string()).collect(),
            };
            if comments.is_empty() && info.script.is_none() {
                return None;
            }
            let params: Vec<String> = metadata
                .params_info
                .iter()
                .map(|param| param.to_string())
                .collect();
            let on_vars = params.first().is_some_and(|p| p.ends_with(": Vars"));
            Some(FunctionDoc {
                module: info.namespace.to_string(),
                name: metadata.name.to_string(),
                params,
                return_type: metadata.return_type.to_string(),
                description: comment_lines(&comments),
                on_vars,
            })
        },
        false,
    );
    docs.sort_by(|a, b| {
        (a.on_vars, &a.module, &a.name, a.params.len()).cmp(&(
            b.on_vars,
            &b.module,
            &b.name,
            b.params.len(),
        ))
    });
    docs.dedup();
    docs
}

/// Strips Rhai's `///` and `/** */` leaders from doc comments.
fn comment_lines(comments: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    for comment in comments {
        let body = comment
            .strip_prefix("/**")
            .and_then(|c| c.strip_suffix("*/"))
            .unwrap_or(comment);
        for line in body.lines() {
            let line = line.trim_start();
            let line = line
                .strip_prefix("///")
                .or_else(|| line.strip_prefix('*'))
                .unwrap_or(line);
            let line = line.strip_prefix(' ').unwrap_or(line).trim_end();
            if !line.is_empty() || !lines.is_empty() {
                lines.push(line.to_string());
            }
        }
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// Groups function names by module, for tab completion: `""` contains the global functions.
pub fn functions_by_module(docs: &[FunctionDoc]) -> BTreeMap<String, Vec<String>> {
    let mut modules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for doc in docs.iter().filter(|doc| !doc.on_vars) {
        let names = modules.entry(doc.module.clone()).or_default();
        if !names.contains(&doc.name) {
            names.push(doc.name.clone());
        }
    }
    modules
}

/// The overview `:help` prints: every function grouped by module, with its summary line.
pub fn overview(docs: &[FunctionDoc]) -> String {
    let mut text = String::new();
    let mut heading = None;
    for doc in docs {
        let group = if doc.on_vars {
            "Methods of vars".to_string()
        } else if doc.module.is_empty() {
            "Functions".to_string()
        } else {
            format!("{}::", doc.module)
        };
        if heading.as_ref() != Some(&group) {
            text.push_str(&format!("\n{group}\n"));
            heading = Some(group);
        }
        text.push_str(&format!("  {}\n", doc.signature()));
        if !doc.summary().is_empty() {
            text.push_str(&format!("      {}\n", doc.summary()));
        }
    }
    text
}

/// The full help of the functions `topic` names: a module (`file`), a function (`file::read`,
/// `fail`, `vars.get`) or a function name in any module (`read`). `None` when nothing matches.
pub fn topic(docs: &[FunctionDoc], topic: &str) -> Option<String> {
    let topic = topic.trim().trim_end_matches("::").trim_end_matches('(');
    let matches: Vec<&FunctionDoc> = docs
        .iter()
        .filter(|doc| {
            doc.qualified_name() == topic
                || doc.module == topic
                || (doc.name == topic && !topic.contains("::"))
        })
        .collect();
    if matches.is_empty() {
        return None;
    }
    let mut text = String::new();
    for doc in matches {
        text.push_str(&doc.signature());
        text.push('\n');
        for line in &doc.description {
            text.push_str(&format!("    {line}\n"));
        }
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::{comment_lines, function_docs, overview, topic};
    use crate::report::{OutputFormat, Redactor, Reporter};
    use crate::run::host::{HostContext, SearchPaths};
    use crate::transport::local::LocalTransport;
    use crate::vars::HostVars;

    /// Builds an engine as a host of a run gets it. Its functions are only listed, never called.
    fn engine(runtime: &tokio::runtime::Runtime) -> rhai::Engine {
        let redactor = Arc::new(Redactor::new());
        let reporter = Reporter::on_stderr(OutputFormat::Json, false, 0, redactor);
        let ctx = HostContext::new(
            "test".into(),
            Arc::new(LocalTransport::new()),
            Arc::new(HostVars::new("test", Vec::new(), Vec::new())),
            reporter,
            runtime.handle().clone(),
            SearchPaths {
                project_dir: ".".into(),
                stdlib_dirs: Vec::new(),
            },
            true,
            Arc::new(BTreeSet::new()),
        );
        crate::engine::build(Arc::new(ctx))
    }

    #[test]
    fn every_registered_function_documented() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let engine = engine(&runtime);
        let undocumented = engine.collect_fn_metadata(
            None,
            |info| {
                let name = info.metadata.name.as_str();
                // Conversions Rhai calls for `${failure}` and the `vars[...]` indexer.
                let internal = matches!(name, "to_string" | "to_debug") || name.contains('$');
                (!internal && info.metadata.comments.is_empty())
                    .then(|| format!("{}::{name}", info.namespace))
            },
            false,
        );
        assert!(undocumented.is_empty(), "undocumented: {undocumented:?}");
    }

    #[test]
    fn help_lists_primitives_with_options() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let docs = function_docs(&engine(&runtime));
        let listing = overview(&docs);
        assert!(
            listing.contains("file::content(options: Map) -> Map"),
            "{listing}"
        );
        assert!(
            listing.contains("vars.get(name: String, default: Dynamic)"),
            "{listing}"
        );

        let content = topic(&docs, "file::content").expect("file::content has help");
        assert!(
            content.contains("Options: path, content, mode, owner, group, name."),
            "{content}"
        );
        let module = topic(&docs, "command").expect("the command module has help");
        assert!(module.contains("command::run("), "{module}");
        assert!(topic(&docs, "no_such_function").is_none());
    }

    #[test]
    fn strips_comment_leaders() {
        let comments = vec![
            "/// Ensures a thing.\n/// Options: a, b.".to_string(),
            "/** Block\n * second\n */".to_string(),
        ];
        assert_eq!(
            comment_lines(&comments),
            ["Ensures a thing.", "Options: a, b.", "Block", "second"]
        );
    }
}
