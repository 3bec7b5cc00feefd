//! YAML reading with the YAML 1.1 rules of PyYAML (and so of Ansible), with line numbers, and
//! YAML writing that PyYAML reads back as the same values.
//!
//! Operators write their `vars.yml` files for Ansible, so plain scalars resolve as PyYAML's
//! `SafeLoader` resolves them: `yes`, `on` and `off` are booleans, `0750` is the octal integer
//! 488 and `~` is null. A few forms deliberately differ from PyYAML 6:
//!
//! - Booleans match in any letter case (`yEs`), where PyYAML accepts only three casings.
//! - `0o17` is an integer, and `1e3`, `1.5e3` and `-.5` are floats. PyYAML 6 reads these YAML 1.2
//!   forms as strings.
//! - Sexagesimal numbers such as `1:30` stay strings, where PyYAML reads the integer 90.
//! - JSON has no infinity or NaN, so `.inf`, `-.inf` and `.nan` become the strings `inf`, `-inf`
//!   and `nan` (what Jinja prints for those Python floats). Integers outside the 64-bit range
//!   keep their source text as a string.
//!
//! Ansible's `!unsafe` tag marks a string that must never be templated. The loader represents
//! it as the string wrapped in a Jinja raw block (see [`mark_unsafe`]), so the Jinja resolver
//! renders it back to the literal text. [`parse_value_unmarked`] keeps such strings plain, for
//! values that are never rendered.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::LazyLock;

use indexmap::IndexMap;
use regex::Regex;
use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::vars::source::{Layer, Origin, RawVar, VarSource};

/// Prefix of the standard YAML tags, which `!!int` abbreviates.
const YAML_TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// Maximum number of nodes that aliases may expand to in one document. Each alias is copied
/// into the JSON value, so a document of nested aliases (an "alias bomb") could otherwise
/// grow exponentially. The limit is set far above what a hand-written variables file reaches.
const MAX_ALIAS_EXPANSION: usize = 1_000_000;

/// A YAML syntax or type error and the 1-based position it was found at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", format_position(.file, *.line, *.column))]
pub struct YamlError {
    /// The file, or `None` for text that did not come from a file.
    pub file: Option<PathBuf>,
    /// 1-based line, or 0 when the error concerns the whole file (for example it is unreadable).
    pub line: usize,
    /// 1-based column, or 0 when only the line is known.
    pub column: usize,
    pub message: String,
}

/// A problem that PyYAML accepts silently, such as a duplicate mapping key, worth showing to
/// the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlWarning {
    pub file: Option<PathBuf>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for YamlWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let position = format_position(&self.file, self.line, self.column);
        write!(f, "{position}: {}", self.message)
    }
}

/// Formats a position as `FILE:LINE:COL`, leaving out the parts that are unknown.
fn format_position(file: &Option<PathBuf>, line: usize, column: usize) -> String {
    match (file, line, column) {
        (Some(file), 0, _) => file.display().to_string(),
        (Some(file), line, 0) => format!("{}:{line}", file.display()),
        (Some(file), line, column) => format!("{}:{line}:{column}", file.display()),
        (None, 0, _) => "YAML input".to_string(),
        (None, line, 0) => format!("line {line}"),
        (None, line, column) => format!("line {line}, column {column}"),
    }
}

/// The top-level variables of one YAML document and the warnings found while reading it.
#[derive(Debug, Clone)]
pub struct ParsedVars {
    pub vars: VarSource,
    pub warnings: Vec<YamlWarning>,
}

/// Parses one YAML document into a JSON value, wrapping `!unsafe` strings as variables are.
/// Empty text is `Null`. Only the tests read single values this way.
#[cfg(test)]
pub fn parse_value(text: &str) -> Result<Value, YamlError> {
    parse_value_with_warnings(text, None).map(|(value, _)| value)
}

/// Parses one YAML document like [`parse_value`], but keeps `!unsafe` strings as they are
/// instead of wrapping them with [`mark_unsafe`]. This suits a value that is never rendered
/// again, such as the result of the `from_yaml` filter, where the wrapper would be printed.
pub fn parse_value_unmarked(text: &str) -> Result<Value, YamlError> {
    parse_document(text, None, false).map(|(value, _)| value)
}

/// Parses one YAML document into a JSON value and returns the warnings next to it. `file` is
/// only used to name the source in errors and warnings.
#[cfg(test)]
pub fn parse_value_with_warnings(
    text: &str,
    file: Option<&Path>,
) -> Result<(Value, Vec<YamlWarning>), YamlError> {
    parse_document(text, file, true)
}

fn parse_document(
    text: &str,
    file: Option<&Path>,
    mark_unsafe_strings: bool,
) -> Result<(Value, Vec<YamlWarning>), YamlError> {
    let mut constructor = Constructor::new(file);
    constructor.mark_unsafe_strings = mark_unsafe_strings;
    let value = match compose(text, file)? {
        Some(root) => constructor.construct(&root)?,
        None => Value::Null,
    };
    Ok((value, constructor.warnings))
}

/// Parses a variables document: a top-level mapping whose keys are variable names. Each
/// variable's origin records `file`, `layer` and the 1-based line of its key. An empty
/// document is an empty map.
pub fn parse_vars_str(
    text: &str,
    file: Option<&Path>,
    layer: Layer,
) -> Result<VarSource, YamlError> {
    parse_vars_with_warnings(text, file, layer).map(|parsed| parsed.vars)
}

/// Parses a variables document like [`parse_vars_str`] and also returns its warnings.
pub fn parse_vars_with_warnings(
    text: &str,
    file: Option<&Path>,
    layer: Layer,
) -> Result<ParsedVars, YamlError> {
    let mut constructor = Constructor::new(file);
    let Some(root) = compose(text, file)? else {
        return Ok(ParsedVars {
            vars: VarSource::new(),
            warnings: Vec::new(),
        });
    };

    let entries = match &root.deref_alias().kind {
        NodeKind::Mapping { .. } => constructor.construct_mapping(&root)?,
        NodeKind::Scalar {
            text,
            style: TScalarStyle::Plain,
            tag: None,
        } if is_null(text) => IndexMap::new(),
        _ => {
            let found = root.deref_alias().kind_name();
            return Err(constructor.error(
                &root,
                format!("expected a mapping of variable names at the top level, found {found}"),
            ));
        }
    };

    let vars = entries
        .into_iter()
        .map(|(name, entry)| {
            let origin = Origin {
                layer,
                file: file.map(Path::to_path_buf),
                line: Some(entry.line),
            };
            (
                name,
                RawVar {
                    value: entry.value,
                    origin,
                },
            )
        })
        .collect();
    Ok(ParsedVars {
        vars,
        warnings: constructor.warnings,
    })
}

/// Reads a variables file (YAML, or JSON, which is YAML too) like [`parse_vars_str`].
pub fn load_vars_file(path: &Path, layer: Layer) -> Result<VarSource, YamlError> {
    load_vars_file_with_warnings(path, layer).map(|parsed| parsed.vars)
}

/// Reads a variables file like [`load_vars_file`] and also returns its warnings.
pub fn load_vars_file_with_warnings(path: &Path, layer: Layer) -> Result<ParsedVars, YamlError> {
    let text = std::fs::read_to_string(path).map_err(|error| YamlError {
        file: Some(path.to_path_buf()),
        line: 0,
        column: 0,
        message: format!("failed to read the file: {error}"),
    })?;
    parse_vars_file(&text, path, layer)
}

/// Parses `text`, the content of the variables file `path`, like [`parse_vars_with_warnings`].
/// A `.json` file that the YAML reader rejects (for example because of tab indentation) is
/// read again as plain JSON, without key lines.
pub fn parse_vars_file(text: &str, path: &Path, layer: Layer) -> Result<ParsedVars, YamlError> {
    let yaml_error = match parse_vars_with_warnings(text, Some(path), layer) {
        Ok(parsed) => return Ok(parsed),
        Err(error) => error,
    };
    if path.extension().is_none_or(|extension| extension != "json") {
        return Err(yaml_error);
    }

    let value: Value = serde_json::from_str(text).map_err(|error| YamlError {
        file: Some(path.to_path_buf()),
        line: error.line(),
        column: error.column(),
        message: format!("invalid JSON: {}", json_error_message(&error)),
    })?;
    let Value::Object(object) = value else {
        return Err(YamlError {
            file: Some(path.to_path_buf()),
            line: 1,
            column: 1,
            message: "expected a JSON object of variable names at the top level".to_string(),
        });
    };
    let vars = object
        .into_iter()
        .map(|(name, value)| {
            let origin = Origin {
                layer,
                file: Some(path.to_path_buf()),
                line: None,
            };
            (name, RawVar { value, origin })
        })
        .collect();
    Ok(ParsedVars {
        vars,
        warnings: Vec::new(),
    })
}

/// Returns serde_json's message without its " at line L column C" suffix, which the
/// error's position already gives.
fn json_error_message(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message,
    }
}

/// Marks `text` as never to be templated by wrapping it in a Jinja raw block, which renders
/// back to exactly `text`.
///
/// The `+` in `{% raw +%}` … `{%+ endraw %}` stops the `trim_blocks` and `lstrip_blocks`
/// settings from removing a leading newline or trailing indentation of the text. An `endraw`
/// tag inside the text is closed and emitted again as a string expression, so no text can end
/// the raw block early.
pub fn mark_unsafe(text: &str) -> String {
    static ENDRAW_TAG: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\{%[-+]?\s*endraw\s*[-+]?%\}").expect("valid regex"));

    let mut wrapped = String::from("{% raw +%}");
    let mut last = 0;
    for found in ENDRAW_TAG.find_iter(text) {
        wrapped.push_str(&text[last..found.start()]);
        wrapped.push_str("{%+ endraw %}{{ ");
        wrapped.push_str(&jinja_string_literal(found.as_str()));
        wrapped.push_str(" }}{% raw +%}");
        last = found.end();
    }
    wrapped.push_str(&text[last..]);
    wrapped.push_str("{%+ endraw %}");
    wrapped
}

/// Quotes `text` as a single-quoted Jinja string literal.
fn jinja_string_literal(text: &str) -> String {
    let mut literal = String::from("'");
    for c in text.chars() {
        match c {
            '\\' => literal.push_str("\\\\"),
            '\'' => literal.push_str("\\'"),
            '\n' => literal.push_str("\\n"),
            '\r' => literal.push_str("\\r"),
            '\t' => literal.push_str("\\t"),
            _ => literal.push(c),
        }
    }
    literal.push('\'');
    literal
}

// ---------------------------------------------------------------------------------------------
// Composing: events to a node tree with anchors resolved.
// ---------------------------------------------------------------------------------------------

/// One node of the document with the position of its first event.
#[derive(Debug)]
struct Node {
    line: usize,
    column: usize,
    kind: NodeKind,
}

#[derive(Debug)]
enum NodeKind {
    Scalar {
        text: String,
        style: TScalarStyle,
        tag: Option<String>,
    },
    Sequence {
        items: Vec<Rc<Node>>,
        tag: Option<String>,
    },
    Mapping {
        entries: Vec<(Rc<Node>, Rc<Node>)>,
        tag: Option<String>,
    },
    /// A `*name` reference to an earlier anchored node.
    Alias(Rc<Node>),
}

impl Node {
    fn deref_alias(&self) -> &Node {
        match &self.kind {
            NodeKind::Alias(target) => target.deref_alias(),
            _ => self,
        }
    }

    /// Returns a short description for messages, such as "a sequence".
    fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Sequence { .. } => "a sequence",
            NodeKind::Mapping { .. } => "a mapping",
            NodeKind::Alias(target) => target.kind_name(),
        }
    }
}

#[derive(Default)]
struct EventLog {
    events: Vec<(Event, Marker)>,
}

impl MarkedEventReceiver for EventLog {
    fn on_event(&mut self, event: Event, mark: Marker) {
        self.events.push((event, mark));
    }
}

/// Parses `text` into the node tree of its only document, or `None` when it has no document.
fn compose(text: &str, file: Option<&Path>) -> Result<Option<Rc<Node>>, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut log = EventLog::default();
    Parser::new_from_str(text)
        .load(&mut log, true)
        .map_err(|error| YamlError {
            file: file.map(Path::to_path_buf),
            line: error.marker().line(),
            column: error.marker().col() + 1,
            message: error.info().to_string(),
        })?;

    let mut composer = Composer {
        events: log.events.into_iter(),
        anchors: HashMap::new(),
        file,
    };
    composer.compose_stream()
}

struct Composer<'a> {
    events: std::vec::IntoIter<(Event, Marker)>,
    /// Completed anchored nodes by the parser's anchor id.
    anchors: HashMap<usize, Rc<Node>>,
    file: Option<&'a Path>,
}

impl Composer<'_> {
    fn error(&self, mark: &Marker, message: impl Into<String>) -> YamlError {
        YamlError {
            file: self.file.map(Path::to_path_buf),
            line: mark.line(),
            column: mark.col() + 1,
            message: message.into(),
        }
    }

    fn next_event(&mut self) -> Result<(Event, Marker), YamlError> {
        self.events.next().ok_or_else(|| YamlError {
            file: self.file.map(Path::to_path_buf),
            line: 0,
            column: 0,
            message: "unexpected end of the YAML event stream".to_string(),
        })
    }

    fn compose_stream(&mut self) -> Result<Option<Rc<Node>>, YamlError> {
        let mut document = None;
        while let Some((event, mark)) = self.events.next() {
            match event {
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
                Event::DocumentStart => {
                    if document.is_some() {
                        return Err(self.error(
                            &mark,
                            "expected one YAML document but found a second one \
                             (remove the '---' line that starts it)",
                        ));
                    }
                    let (first, first_mark) = self.next_event()?;
                    document = Some(self.compose_node(first, first_mark)?);
                }
                other => {
                    return Err(self.error(&mark, format!("unexpected YAML event {other:?}")));
                }
            }
        }
        Ok(document)
    }

    fn compose_node(&mut self, event: Event, mark: Marker) -> Result<Rc<Node>, YamlError> {
        let line = mark.line();
        let column = mark.col() + 1;
        let (kind, anchor) = match event {
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id) else {
                    return Err(self.error(
                        &mark,
                        "alias refers to an anchor that is still being defined, but \
                         recursive structures are not supported",
                    ));
                };
                (NodeKind::Alias(Rc::clone(target)), 0)
            }
            Event::Scalar(text, style, anchor, tag) => (
                NodeKind::Scalar {
                    text,
                    style,
                    tag: tag.map(tag_name),
                },
                anchor,
            ),
            Event::SequenceStart(anchor, tag) => {
                let mut items = Vec::new();
                loop {
                    let (event, mark) = self.next_event()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.compose_node(event, mark)?);
                }
                (
                    NodeKind::Sequence {
                        items,
                        tag: tag.map(tag_name),
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, tag) => {
                let mut entries = Vec::new();
                loop {
                    let (event, mark) = self.next_event()?;
                    if event == Event::MappingEnd {
                        break;
                    }
                    let key = self.compose_node(event, mark)?;
                    let (event, mark) = self.next_event()?;
                    let value = self.compose_node(event, mark)?;
                    entries.push((key, value));
                }
                (
                    NodeKind::Mapping {
                        entries,
                        tag: tag.map(tag_name),
                    },
                    anchor,
                )
            }
            other => return Err(self.error(&mark, format!("unexpected YAML event {other:?}"))),
        };

        let node = Rc::new(Node { line, column, kind });
        if anchor != 0 {
            self.anchors.insert(anchor, Rc::clone(&node));
        }
        Ok(node)
    }
}

/// Returns the full tag name, for example `tag:yaml.org,2002:str` for `!!str` and `!unsafe`
/// for `!unsafe`.
fn tag_name(tag: Tag) -> String {
    format!("{}{}", tag.handle, tag.suffix)
}

/// Returns the tag as the operator wrote it in the usual short form, for messages.
fn short_tag(tag: &str) -> String {
    match tag.strip_prefix(YAML_TAG_PREFIX) {
        Some(suffix) => format!("!!{suffix}"),
        None => tag.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Constructing: node tree to JSON values with PyYAML's resolution rules.
// ---------------------------------------------------------------------------------------------

/// A mapping value and the 1-based line of the key that set it.
struct MappingEntry {
    value: Value,
    line: usize,
}

type NodePair = (Rc<Node>, Rc<Node>);

struct Constructor<'a> {
    file: Option<&'a Path>,
    warnings: Vec<YamlWarning>,
    /// How many aliases enclose the node being constructed.
    alias_depth: usize,
    /// Nodes constructed inside aliases so far.
    expanded_nodes: usize,
    /// Whether `!unsafe` strings are wrapped with [`mark_unsafe`].
    mark_unsafe_strings: bool,
}

impl<'a> Constructor<'a> {
    fn new(file: Option<&'a Path>) -> Self {
        Constructor {
            file,
            warnings: Vec::new(),
            alias_depth: 0,
            expanded_nodes: 0,
            mark_unsafe_strings: true,
        }
    }

    fn error(&self, node: &Node, message: impl Into<String>) -> YamlError {
        YamlError {
            file: self.file.map(Path::to_path_buf),
            line: node.line,
            column: node.column,
            message: message.into(),
        }
    }

    /// Records a warning once, because a mapping behind an anchor is constructed again for
    /// every alias to it.
    fn warn(&mut self, warning: YamlWarning) {
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }

    fn construct(&mut self, node: &Node) -> Result<Value, YamlError> {
        if self.alias_depth > 0 {
            self.expanded_nodes += 1;
            if self.expanded_nodes > MAX_ALIAS_EXPANSION {
                return Err(self.error(
                    node,
                    format!(
                        "aliases expand to more than {MAX_ALIAS_EXPANSION} nodes, so the \
                         document nests aliases too deeply to load"
                    ),
                ));
            }
        }

        match &node.kind {
            NodeKind::Scalar { text, style, tag } => {
                let value = self.construct_scalar(node, text, *style, tag.as_deref())?;
                let unsafe_tag = tag.as_deref() == Some("!unsafe");
                Ok(mark_strings_unsafe_if(
                    unsafe_tag && self.mark_unsafe_strings,
                    value,
                ))
            }
            NodeKind::Sequence { items, tag } => {
                let unsafe_tag = self.check_collection_tag(node, tag.as_deref(), "seq")?
                    && self.mark_unsafe_strings;
                let mut array = Vec::with_capacity(items.len());
                for item in items {
                    array.push(self.construct(item)?);
                }
                Ok(mark_strings_unsafe_if(unsafe_tag, Value::Array(array)))
            }
            NodeKind::Mapping { tag, .. } => {
                let unsafe_tag = self.check_collection_tag(node, tag.as_deref(), "map")?
                    && self.mark_unsafe_strings;
                let entries = self.construct_mapping(node)?;
                let object: Map<String, Value> = entries
                    .into_iter()
                    .map(|(key, entry)| (key, entry.value))
                    .collect();
                Ok(mark_strings_unsafe_if(unsafe_tag, Value::Object(object)))
            }
            NodeKind::Alias(target) => {
                self.alias_depth += 1;
                let value = self.construct(target);
                self.alias_depth -= 1;
                value
            }
        }
    }

    /// Checks the tag of a sequence or mapping and returns whether it is `!unsafe`.
    fn check_collection_tag(
        &self,
        node: &Node,
        tag: Option<&str>,
        expected: &str,
    ) -> Result<bool, YamlError> {
        match tag {
            None | Some("!") => Ok(false),
            Some("!unsafe") => Ok(true),
            Some(tag) if tag.strip_prefix(YAML_TAG_PREFIX) == Some(expected) => Ok(false),
            Some(tag) => Err(self.error(
                node,
                format!(
                    "the tag {} cannot be applied to {}",
                    short_tag(tag),
                    node.kind_name()
                ),
            )),
        }
    }

    fn construct_scalar(
        &self,
        node: &Node,
        text: &str,
        style: TScalarStyle,
        tag: Option<&str>,
    ) -> Result<Value, YamlError> {
        let Some(tag) = tag else {
            return Ok(match style {
                TScalarStyle::Plain => resolve_plain(text),
                _ => Value::String(text.to_string()),
            });
        };

        // `!` is the non-specific tag, which forces a string like quoting does.
        if tag == "!" || tag == "!unsafe" {
            return Ok(Value::String(text.to_string()));
        }
        if tag == "!vault" {
            return Err(self.error(
                node,
                "this value is encrypted with Ansible Vault (!vault), which masrun cannot \
                 decrypt. Store the value in plain text or pass it with -e",
            ));
        }

        let invalid = |kind: &str| {
            self.error(
                node,
                format!("invalid {} value {text:?}: not {kind}", short_tag(tag)),
            )
        };
        match tag.strip_prefix(YAML_TAG_PREFIX) {
            Some("str") => Ok(Value::String(text.to_string())),
            Some("null") => Ok(Value::Null),
            Some("bool") => parse_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| invalid("a boolean")),
            Some("int") => parse_int(text).ok_or_else(|| invalid("an integer")),
            Some("float") => parse_float(text)
                .or_else(|| parse_int(text).map(|value| int_to_float(&value)))
                .ok_or_else(|| invalid("a number")),
            // PyYAML returns a date or datetime object, which Jinja prints as the same text.
            Some("timestamp") => Ok(Value::String(text.to_string())),
            _ => Err(self.error(
                node,
                format!(
                    "unsupported tag {} on a scalar (supported: !!str, !!int, !!float, \
                     !!bool, !!null, !!timestamp and !unsafe)",
                    short_tag(tag)
                ),
            )),
        }
    }

    /// Constructs a mapping node's entries in PyYAML's order: keys merged in with `<<` first,
    /// then the mapping's own keys, where a later key replaces an earlier one in place.
    fn construct_mapping(
        &mut self,
        node: &Node,
    ) -> Result<IndexMap<String, MappingEntry>, YamlError> {
        let (merged, own) = self.flatten_mapping(node.deref_alias())?;
        let mut entries: IndexMap<String, MappingEntry> = IndexMap::new();

        for (key, value) in merged {
            let name = self.construct_key(&key)?;
            let value = self.construct(&value)?;
            entries.insert(
                name,
                MappingEntry {
                    value,
                    line: key.line,
                },
            );
        }

        let mut own_key_lines: HashMap<String, usize> = HashMap::new();
        for (key, value) in own {
            let name = self.construct_key(&key)?;
            if let Some(first_line) = own_key_lines.insert(name.clone(), key.line) {
                self.warn(YamlWarning {
                    file: self.file.map(Path::to_path_buf),
                    line: key.line,
                    column: key.column,
                    message: format!(
                        "duplicate key {name:?} (first set on line {first_line}), so the \
                         later value is used"
                    ),
                });
            }
            let value = self.construct(&value)?;
            entries.insert(
                name,
                MappingEntry {
                    value,
                    line: key.line,
                },
            );
        }
        Ok(entries)
    }

    /// Splits a mapping's entries into the pairs merged in through `<<` keys and its own pairs.
    fn flatten_mapping(&self, node: &Node) -> Result<(Vec<NodePair>, Vec<NodePair>), YamlError> {
        let NodeKind::Mapping { entries, .. } = &node.kind else {
            return Err(self.error(
                node,
                format!("expected a mapping, found {}", node.kind_name()),
            ));
        };

        let mut merged = Vec::new();
        let mut own = Vec::new();
        for (key, value) in entries {
            if !is_merge_key(key) {
                own.push((Rc::clone(key), Rc::clone(value)));
                continue;
            }

            let source = value.deref_alias();
            match &source.kind {
                NodeKind::Mapping { .. } => {
                    let (inner_merged, inner_own) = self.flatten_mapping(source)?;
                    merged.extend(inner_merged);
                    merged.extend(inner_own);
                }
                NodeKind::Sequence { items, .. } => {
                    // PyYAML gives earlier mappings in the list precedence, so their pairs
                    // are applied last.
                    let mut parts = Vec::with_capacity(items.len());
                    for item in items {
                        let item = item.deref_alias();
                        if !matches!(item.kind, NodeKind::Mapping { .. }) {
                            return Err(self.error(
                                item,
                                format!(
                                    "expected a mapping in the merge (<<) list, found {}",
                                    item.kind_name()
                                ),
                            ));
                        }
                        let (mut part, inner_own) = self.flatten_mapping(item)?;
                        part.extend(inner_own);
                        parts.push(part);
                    }
                    for part in parts.into_iter().rev() {
                        merged.extend(part);
                    }
                }
                _ => {
                    return Err(self.error(
                        value,
                        format!(
                            "expected a mapping or a list of mappings to merge (<<), found {}",
                            source.kind_name()
                        ),
                    ));
                }
            }
        }
        Ok((merged, own))
    }

    /// Constructs a mapping key as a JSON object key: scalars become their JSON text
    /// (`1`, `true`, `null`), and sequences or mappings are rejected.
    fn construct_key(&mut self, key: &Node) -> Result<String, YamlError> {
        let key = key.deref_alias();
        let value = match &key.kind {
            // `!unsafe` is not applied to keys, because keys are never templated.
            NodeKind::Scalar { text, style, tag } => {
                self.construct_scalar(key, text, *style, tag.as_deref())?
            }
            _ => {
                return Err(self.error(
                    key,
                    format!("{} cannot be a mapping key (use a string)", key.kind_name()),
                ));
            }
        };
        Ok(match value {
            Value::String(text) => text,
            other => other.to_string(),
        })
    }
}

fn is_merge_key(key: &Node) -> bool {
    match &key.kind {
        NodeKind::Scalar {
            text,
            style: TScalarStyle::Plain,
            tag,
        } => {
            text == "<<"
                && tag
                    .as_deref()
                    .is_none_or(|tag| tag == "tag:yaml.org,2002:merge")
        }
        _ => false,
    }
}

/// Applies [`mark_unsafe`] to every string value inside `value` when `unsafe_tag` is set.
fn mark_strings_unsafe_if(unsafe_tag: bool, value: Value) -> Value {
    if !unsafe_tag {
        return value;
    }
    match value {
        Value::String(text) => Value::String(mark_unsafe(&text)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| mark_strings_unsafe_if(true, item))
                .collect(),
        ),
        Value::Object(object) => Value::Object(
            object
                .into_iter()
                .map(|(key, item)| (key, mark_strings_unsafe_if(true, item)))
                .collect(),
        ),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// Plain scalar resolution (YAML 1.1 as PyYAML implements it, with the differences listed in
// the module documentation).
// ---------------------------------------------------------------------------------------------

/// Resolves an untagged plain scalar to null, a boolean, a number or a string.
fn resolve_plain(text: &str) -> Value {
    if is_null(text) {
        return Value::Null;
    }
    if let Some(boolean) = parse_bool(text) {
        return Value::Bool(boolean);
    }
    if let Some(int) = parse_int(text) {
        return int;
    }
    if let Some(float) = parse_float(text) {
        return float;
    }
    Value::String(text.to_string())
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// Parses the YAML 1.1 booleans `yes/no/true/false/on/off` in any letter case.
fn parse_bool(text: &str) -> Option<bool> {
    const TRUE_WORDS: [&str; 3] = ["yes", "true", "on"];
    const FALSE_WORDS: [&str; 3] = ["no", "false", "off"];
    if TRUE_WORDS
        .iter()
        .any(|word| word.eq_ignore_ascii_case(text))
    {
        Some(true)
    } else if FALSE_WORDS
        .iter()
        .any(|word| word.eq_ignore_ascii_case(text))
    {
        Some(false)
    } else {
        None
    }
}

/// Parses a YAML 1.1 integer: decimal, `0x` hex, `0o` or leading-zero octal, or `0b` binary,
/// with an optional sign and `_` separators. Returns a number, or the source text as a string
/// when the integer does not fit in 64 bits.
fn parse_int(text: &str) -> Option<Value> {
    let (negative, body) = split_sign(text);
    let (radix, digits) = if let Some(hex) = body.strip_prefix("0x") {
        (16, hex)
    } else if let Some(octal) = body.strip_prefix("0o") {
        (8, octal)
    } else if let Some(binary) = body.strip_prefix("0b") {
        (2, binary)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };

    if radix == 10 && !digits.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if !digits.chars().all(|c| c == '_' || c.is_digit(radix)) {
        return None;
    }
    let cleaned: String = digits.chars().filter(|&c| c != '_').collect();
    if cleaned.is_empty() {
        return None;
    }

    let Ok(magnitude) = u128::from_str_radix(&cleaned, radix) else {
        return Some(Value::String(text.to_string()));
    };
    let number = if negative {
        i64::try_from(magnitude)
            .ok()
            .map(|value| Number::from(-value))
            .or_else(|| {
                (magnitude == u128::from(i64::MIN.unsigned_abs())).then(|| Number::from(i64::MIN))
            })
    } else {
        u64::try_from(magnitude).ok().map(Number::from)
    };
    Some(number.map_or_else(|| Value::String(text.to_string()), Value::Number))
}

/// Parses a YAML 1.1 float (`1.5`, `.5`, `1.`, `1_000.5`, `6.02e+23`, `.inf`, `.nan`) or a
/// YAML 1.2 exponent form without a dot (`1e3`).
fn parse_float(text: &str) -> Option<Value> {
    let (negative, body) = split_sign(text);
    if matches!(body, ".inf" | ".Inf" | ".INF") {
        return Some(non_finite_float(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        }));
    }
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Some(non_finite_float(f64::NAN));
    }

    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(index) => (&body[..index], Some(&body[index + 1..])),
        None => (body, None),
    };
    if let Some(exponent) = exponent {
        let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }

    let (integer_part, fraction) = match mantissa.split_once('.') {
        Some((integer_part, fraction)) => (integer_part, Some(fraction)),
        None if exponent.is_some() => (mantissa, None),
        None => return None,
    };
    let is_digits = |part: &str| part.chars().all(|c| c == '_' || c.is_ascii_digit());
    let starts_with_digit = |part: &str| part.starts_with(|c: char| c.is_ascii_digit());
    if !is_digits(integer_part) || (!integer_part.is_empty() && !starts_with_digit(integer_part)) {
        return None;
    }
    match fraction {
        Some(fraction) if !is_digits(fraction) => return None,
        Some(fraction) if integer_part.is_empty() && !starts_with_digit(fraction) => return None,
        None if integer_part.is_empty() => return None,
        _ => {}
    }

    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    let value: f64 = cleaned.parse().ok()?;
    Some(match Number::from_f64(value) {
        Some(number) => Value::Number(number),
        None => non_finite_float(value),
    })
}

/// Represents infinity or NaN, which JSON cannot hold, as the text Python prints for them.
fn non_finite_float(value: f64) -> Value {
    let text = if value.is_nan() {
        "nan"
    } else if value > 0.0 {
        "inf"
    } else {
        "-inf"
    };
    Value::String(text.to_string())
}

fn int_to_float(value: &Value) -> Value {
    match value.as_f64().and_then(Number::from_f64) {
        Some(number) => Value::Number(number),
        // An integer beyond 64 bits stayed a string, whose decimal text f64 may still parse.
        None => value
            .as_str()
            .and_then(|text| text.replace('_', "").parse::<f64>().ok())
            .and_then(Number::from_f64)
            .map_or_else(|| value.clone(), Value::Number),
    }
}

fn split_sign(text: &str) -> (bool, &str) {
    if let Some(rest) = text.strip_prefix('-') {
        (true, rest)
    } else {
        (false, text.strip_prefix('+').unwrap_or(text))
    }
}

// ---------------------------------------------------------------------------------------------
// Writing.
// ---------------------------------------------------------------------------------------------

/// Writes `value` as block-style YAML with 2-space indentation, keys in map order and no line
/// wrapping.
///
/// serde_yaml_ng quotes strings that YAML 1.2 would read as other types, but writes strings
/// such as `yes`, `on` or `1_000` plain, which PyYAML (YAML 1.1) reads as a boolean or number.
/// This function quotes those too, and writes floats in the `1.0e+20` form that PyYAML
/// requires, so Ansible and masrun read the output back as the same value.
pub fn to_yaml_string(value: &Value) -> String {
    let written = serde_yaml_ng::to_string(value)
        .expect("serde_yaml_ng serializes every serde_json::Value, whose keys are strings");

    let mut scalars = Vec::new();
    collect_scalar_positions(&written, &mut scalars);
    let mut scalars = scalars.into_iter();
    let mut fixes = Vec::new();
    plan_scalar_fixes(value, &mut scalars, &mut fixes);
    apply_fixes(&written, fixes)
}

/// A scalar in written YAML: its text, style and 1-based line and column.
struct WrittenScalar {
    text: String,
    style: TScalarStyle,
    line: usize,
    column: usize,
}

/// A replacement of `length` characters at a 1-based line and column.
struct Fix {
    line: usize,
    column: usize,
    length: usize,
    replacement: String,
}

fn collect_scalar_positions(yaml: &str, scalars: &mut Vec<WrittenScalar>) {
    struct ScalarLog<'a> {
        scalars: &'a mut Vec<WrittenScalar>,
    }
    impl MarkedEventReceiver for ScalarLog<'_> {
        fn on_event(&mut self, event: Event, mark: Marker) {
            if let Event::Scalar(text, style, _, _) = event {
                let column = mark.col() + 1;
                self.scalars.push(WrittenScalar {
                    text,
                    style,
                    line: mark.line(),
                    column,
                });
            }
        }
    }

    let mut log = ScalarLog { scalars };
    // serde_yaml_ng's output is valid YAML, so a parse error cannot occur here. Should one
    // occur anyway, the scalars seen so far are fixed and the rest stay as written.
    let _ = Parser::new_from_str(yaml).load(&mut log, false);
}

/// Walks `value` in the order serde_yaml_ng writes it and records the fixes its scalars need.
fn plan_scalar_fixes(
    value: &Value,
    scalars: &mut std::vec::IntoIter<WrittenScalar>,
    fixes: &mut Vec<Fix>,
) {
    match value {
        Value::Object(object) => {
            for (key, item) in object {
                plan_string_fix(key, scalars.next(), fixes);
                plan_scalar_fixes(item, scalars, fixes);
            }
        }
        Value::Array(items) => {
            for item in items {
                plan_scalar_fixes(item, scalars, fixes);
            }
        }
        Value::String(text) => plan_string_fix(text, scalars.next(), fixes),
        Value::Number(number) => {
            let scalar = scalars.next();
            if let Some(scalar) = scalar.filter(|_| number.is_f64()) {
                let pyyaml_form = pyyaml_float_text(&scalar.text);
                if pyyaml_form != scalar.text {
                    fixes.push(Fix {
                        line: scalar.line,
                        column: scalar.column,
                        length: scalar.text.chars().count(),
                        replacement: pyyaml_form,
                    });
                }
            }
        }
        Value::Null | Value::Bool(_) => {
            scalars.next();
        }
    }
}

fn plan_string_fix(text: &str, scalar: Option<WrittenScalar>, fixes: &mut Vec<Fix>) {
    let Some(scalar) = scalar else { return };
    let is_plain = matches!(scalar.style, TScalarStyle::Plain);
    // A mismatch would mean the walk got out of step with the writer. Leaving the scalar as
    // written is then safer than quoting the wrong one.
    if is_plain && scalar.text == text && yaml11_reads_as_non_string(text) {
        fixes.push(Fix {
            line: scalar.line,
            column: scalar.column,
            length: text.chars().count(),
            replacement: format!("'{}'", text.replace('\'', "''")),
        });
    }
}

/// Returns whether a YAML 1.1 reader reads the plain scalar `text` as something other than the
/// same string. Besides [`reads_as_non_string`], this covers `y` and `n`, which the YAML 1.1
/// boolean type lists but PyYAML reads as strings.
fn yaml11_reads_as_non_string(text: &str) -> bool {
    reads_as_non_string(text) || matches!(text, "y" | "Y" | "n" | "N")
}

/// Returns whether PyYAML or this module reads the plain scalar `text` as something other than
/// the same string, so that a writer must quote it.
pub(crate) fn reads_as_non_string(text: &str) -> bool {
    // The implicit resolvers of PyYAML 6.0 (`yaml/resolver.py`): bool, float, int, merge, null,
    // timestamp and value. They catch the forms that this module's reader keeps as strings,
    // such as `1:30`, `2024-05-01` and integers beyond 64 bits.
    static PYYAML_RESOLVERS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?x)^(?:
                yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF
              | [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
              | \.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
              | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
              | [-+]?\.(?:inf|Inf|INF)
              | \.(?:nan|NaN|NAN)
              | [-+]?0b[0-1_]+
              | [-+]?0[0-7_]+
              | [-+]?(?:0|[1-9][0-9_]*)
              | [-+]?0x[0-9a-fA-F_]+
              | [-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+
              | <<
              | ~|null|Null|NULL|
              | [0-9]{4}-[0-9]{2}-[0-9]{2}
              | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[\ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?
                (?:[\ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?
              | =
            )$",
        )
        .expect("valid regex")
    });
    PYYAML_RESOLVERS.is_match(text)
        || !matches!(resolve_plain(text), Value::String(ref resolved) if resolved == text)
}

/// Rewrites a float written in ryu's shortest form (as serde_yaml_ng and serde_json write it,
/// such as `1e20` or `1.5e-7`) into the form PyYAML reads as a float: a dot in the mantissa and
/// a signed exponent (`1.0e+20`).
pub(crate) fn pyyaml_float_text(text: &str) -> String {
    let Some((mantissa, exponent)) = text.split_once(['e', 'E']) else {
        return text.to_string();
    };
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        format!("{mantissa}.0")
    };
    let exponent = if exponent.starts_with(['+', '-']) {
        exponent.to_string()
    } else {
        format!("+{exponent}")
    };
    format!("{mantissa}e{exponent}")
}

fn apply_fixes(yaml: &str, mut fixes: Vec<Fix>) -> String {
    if fixes.is_empty() {
        return yaml.to_string();
    }
    // Right to left within a line, so earlier columns stay valid.
    fixes.sort_by_key(|fix| (fix.line, std::cmp::Reverse(fix.column)));

    let mut lines: Vec<String> = yaml.split_inclusive('\n').map(str::to_string).collect();
    for fix in fixes {
        let Some(line) = lines.get_mut(fix.line - 1) else {
            continue;
        };
        let start = line
            .char_indices()
            .nth(fix.column - 1)
            .map(|(index, _)| index);
        let Some(start) = start else { continue };
        let end = line[start..]
            .char_indices()
            .nth(fix.length)
            .map_or(line.len(), |(offset, _)| start + offset);
        line.replace_range(start..end, &fix.replacement);
    }
    lines.concat()
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> Value {
        parse_value(text).unwrap_or_else(|error| panic!("parse failed for {text:?}: {error}"))
    }

    /// Parses `key: <scalar>` and returns the value of `key`.
    fn scalar(source: &str) -> Value {
        parse(&format!("key: {source}\n"))["key"].clone()
    }

    fn parse_error(text: &str) -> YamlError {
        match parse_value(text) {
            Ok(value) => panic!("expected an error for {text:?}, parsed {value}"),
            Err(error) => error,
        }
    }

    fn render_jinja(template: &str, trim_blocks: bool, lstrip_blocks: bool) -> String {
        let mut environment = minijinja::Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(trim_blocks)
            .lstrip_blocks(lstrip_blocks)
            .build()
            .expect("valid syntax config");
        environment.set_syntax(syntax);
        environment
            .render_str(template, minijinja::context! { x => "TEMPLATED" })
            .unwrap_or_else(|error| panic!("render failed for {template:?}: {error}"))
    }

    #[test]
    fn booleans_every_yaml11_spelling() {
        let true_words = [
            "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON",
        ];
        let false_words = [
            "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF",
        ];
        for word in true_words {
            assert_eq!(scalar(word), json!(true), "plain {word}");
        }
        for word in false_words {
            assert_eq!(scalar(word), json!(false), "plain {word}");
        }
    }

    #[test]
    fn booleans_in_any_case() {
        for word in ["yEs", "tRUE", "oN", "yeS"] {
            assert_eq!(scalar(word), json!(true), "plain {word}");
        }
        for word in ["nO", "fALSE", "oFf"] {
            assert_eq!(scalar(word), json!(false), "plain {word}");
        }
    }

    #[test]
    fn booleans_quoted_stay_strings() {
        for word in ["yes", "No", "on", "OFF", "true"] {
            assert_eq!(
                scalar(&format!("'{word}'")),
                json!(word),
                "single-quoted {word}"
            );
            assert_eq!(
                scalar(&format!("\"{word}\"")),
                json!(word),
                "double-quoted {word}"
            );
        }
    }

    #[test]
    fn booleans_not_yaml11_words() {
        for word in ["y", "n", "Y", "N", "yess", "enable", "0n", "truthy"] {
            assert_eq!(scalar(word), json!(word), "plain {word}");
        }
    }

    #[test]
    fn nulls_plain_spellings() {
        for word in ["~", "null", "Null", "NULL"] {
            assert_eq!(scalar(word), Value::Null, "plain {word}");
        }
        assert_eq!(parse("key:\n")["key"], Value::Null);
        assert_eq!(parse("- \n- ~\n"), json!([null, null]));
        assert_eq!(scalar("nUll"), json!("nUll"));
        assert_eq!(scalar("'~'"), json!("~"));
        assert_eq!(scalar("\"null\""), json!("null"));
        assert_eq!(scalar("''"), json!(""));
    }

    #[test]
    fn integers_decimal_hex_octal_binary() {
        let cases = [
            ("0", json!(0)),
            ("42", json!(42)),
            ("-17", json!(-17)),
            ("+17", json!(17)),
            ("1_000_000", json!(1_000_000)),
            ("0x1F", json!(31)),
            ("0xff_ff", json!(65535)),
            ("-0x10", json!(-16)),
            ("0o17", json!(15)),
            ("0750", json!(488)),
            ("0644", json!(420)),
            ("-0750", json!(-488)),
            ("00", json!(0)),
            ("0b1010", json!(10)),
            ("0b1_0", json!(2)),
            ("9223372036854775807", json!(i64::MAX)),
            ("-9223372036854775808", json!(i64::MIN)),
            ("18446744073709551615", json!(u64::MAX)),
        ];
        for (source, expected) in cases {
            assert_eq!(scalar(source), expected, "plain {source}");
        }
    }

    #[test]
    fn integers_invalid_forms_stay_strings() {
        for source in [
            "09", "0x", "0xg1", "0b102", "0o8", "1_000x", "_1", "1-2", "12abc", "1:30",
        ] {
            assert_eq!(scalar(source), json!(source), "plain {source}");
        }
    }

    #[test]
    fn integers_beyond_64_bits_keep_text() {
        assert_eq!(
            scalar("18446744073709551616"),
            json!("18446744073709551616")
        );
        assert_eq!(
            scalar("-9223372036854775809"),
            json!("-9223372036854775809")
        );
    }

    #[test]
    fn floats_yaml11_and_exponent_forms() {
        let cases = [
            ("1.5", json!(1.5)),
            ("-1.5", json!(-1.5)),
            (".5", json!(0.5)),
            ("1.", json!(1.0)),
            ("1e3", json!(1000.0)),
            ("1.5e+3", json!(1500.0)),
            ("-1.5E-3", json!(-0.0015)),
            ("6.02e23", json!(6.02e23)),
            ("-.5", json!(-0.5)),
            ("1_000.5", json!(1000.5)),
            ("0.1", json!(0.1)),
        ];
        for (source, expected) in cases {
            assert_eq!(scalar(source), expected, "plain {source}");
        }
    }

    #[test]
    fn floats_non_finite_become_python_text() {
        for (source, expected) in [
            (".inf", "inf"),
            (".Inf", "inf"),
            ("+.INF", "inf"),
            ("-.inf", "-inf"),
            (".nan", "nan"),
            (".NaN", "nan"),
            ("1e999", "inf"),
        ] {
            assert_eq!(scalar(source), json!(expected), "plain {source}");
        }
    }

    #[test]
    fn floats_invalid_forms_stay_strings() {
        for source in [
            "1.2.3",
            "1e",
            "1e+",
            ".",
            "._5",
            "e3",
            "1.5e3.0",
            "-.nan",
            ".infinity",
            "1,5",
        ] {
            assert_eq!(scalar(source), json!(source), "plain {source}");
        }
    }

    #[test]
    fn quoted_numbers_stay_strings() {
        assert_eq!(scalar("'0750'"), json!("0750"));
        assert_eq!(scalar("\"42\""), json!("42"));
        assert_eq!(scalar("'1.5'"), json!("1.5"));
        assert_eq!(scalar("\"0x1F\""), json!("0x1F"));
    }

    #[test]
    fn block_scalars_are_strings() {
        assert_eq!(parse("key: |\n  yes\n")["key"], json!("yes\n"));
        assert_eq!(parse("key: |-\n  0750\n")["key"], json!("0750"));
        assert_eq!(
            parse("key: >\n  folded\n  text\n")["key"],
            json!("folded text\n")
        );
        assert_eq!(parse("key: >-\n  ~\n")["key"], json!("~"));
    }

    #[test]
    fn plain_strings_with_special_text() {
        assert_eq!(scalar("matrix.example.com"), json!("matrix.example.com"));
        assert_eq!(
            scalar("https://example.com:8448/path"),
            json!("https://example.com:8448/path")
        );
        assert_eq!(scalar("a # comment"), json!("a"));
        assert_eq!(scalar("a#b"), json!("a#b"));
        assert_eq!(
            scalar("\"{{ matrix_domain }}\""),
            json!("{{ matrix_domain }}")
        );
        assert_eq!(scalar("matrix-{{ suffix }}"), json!("matrix-{{ suffix }}"));
    }

    #[test]
    fn tags_force_and_coerce_types() {
        assert_eq!(scalar("!!str 0750"), json!("0750"));
        assert_eq!(scalar("!!str yes"), json!("yes"));
        assert_eq!(scalar("!!str"), json!(""));
        assert_eq!(scalar("!!int \"42\""), json!(42));
        assert_eq!(scalar("!!int '0x10'"), json!(16));
        assert_eq!(scalar("!!bool \"yes\""), json!(true));
        assert_eq!(scalar("!!bool 'Off'"), json!(false));
        assert_eq!(scalar("!!float 1"), json!(1.0));
        assert_eq!(scalar("!!float '2.5'"), json!(2.5));
        assert_eq!(scalar("!!null whatever"), Value::Null);
        assert_eq!(scalar("! 123"), json!("123"));
        assert_eq!(scalar("!<tag:yaml.org,2002:str> 12"), json!("12"));
        assert_eq!(scalar("!!timestamp 2024-05-01"), json!("2024-05-01"));
        assert_eq!(parse("!!seq [1]"), json!([1]));
        assert_eq!(parse("!!map {a: 1}"), json!({"a": 1}));
    }

    #[test]
    fn tags_invalid_coercion_errors() {
        // The position is that of the scalar's text, after the tag.
        let error = parse_error("first: 1\nport: !!int eighty\n");
        assert_eq!(error.line, 2);
        assert_eq!(error.column, 13);
        assert!(error.message.contains("!!int"), "{error}");
        assert!(error.message.contains("eighty"), "{error}");

        let error = parse_error("flag: !!bool maybe\n");
        assert!(error.message.contains("not a boolean"), "{error}");

        let error = parse_error("list: !!map [1, 2]\n");
        assert!(
            error
                .message
                .contains("!!map cannot be applied to a sequence"),
            "{error}"
        );
    }

    #[test]
    fn tags_unknown_and_vault_rejected() {
        let error = parse_error("a: !custom value\n");
        assert!(error.message.contains("unsupported tag !custom"), "{error}");

        let vault = "secret: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162636465\n";
        let error = parse_error(vault);
        // yaml-rust2 places a block scalar at its first content line.
        assert_eq!(error.line, 2);
        assert!(error.message.contains("Ansible Vault"), "{error}");
    }

    #[test]
    fn unsafe_wraps_in_raw_block() {
        let value = scalar("!unsafe '{{ not_a_template }}'");
        assert_eq!(value, json!(mark_unsafe("{{ not_a_template }}")));
        let text = value.as_str().expect("string");
        assert!(text.starts_with("{% raw +%}"), "{text}");
        assert!(text.ends_with("{%+ endraw %}"), "{text}");
    }

    #[test]
    fn unsafe_renders_back_to_literal() {
        let samples = [
            "{{ x }}",
            "p@ss{%word%}#{#",
            "\nleading newline",
            "trailing indent\n    ",
            "{% endraw %}{{ x }}",
            "a{%endraw%}b{%- endraw -%}c{%+endraw+%}",
            "quote ' and \\ backslash {% endraw %}",
            "",
        ];
        for sample in samples {
            let wrapped = mark_unsafe(sample);
            for (trim_blocks, lstrip_blocks) in [(false, false), (true, false), (true, true)] {
                let rendered = render_jinja(&wrapped, trim_blocks, lstrip_blocks);
                assert_eq!(
                    rendered, sample,
                    "sample {sample:?} with trim_blocks={trim_blocks} lstrip_blocks={lstrip_blocks}"
                );
            }
        }
    }

    #[test]
    fn unsafe_on_collections_marks_strings() {
        let value = parse("list: !unsafe ['{{ a }}', 3]\nmap: !unsafe {k: '{{ b }}'}\n");
        assert_eq!(value["list"], json!([mark_unsafe("{{ a }}"), 3]));
        assert_eq!(value["map"], json!({"k": mark_unsafe("{{ b }}")}));
    }

    #[test]
    fn unsafe_unmarked_stays_plain() {
        let text =
            "a: !unsafe '{{ x }}'\nlist: !unsafe ['{{ a }}', 3]\nmap: !unsafe {k: '{{ b }}'}\n";
        let value = parse_value_unmarked(text).expect("valid");
        assert_eq!(
            value,
            json!({"a": "{{ x }}", "list": ["{{ a }}", 3], "map": {"k": "{{ b }}"}})
        );
    }

    #[test]
    fn unsafe_key_stays_plain() {
        let value = parse("!unsafe '{{k}}': 1\n");
        assert_eq!(value, json!({"{{k}}": 1}));
    }

    #[test]
    fn anchors_and_aliases_copy_values() {
        let value = parse(
            "base: &base\n  a: 1\n  b: [x, y]\ncopy: *base\nitem: &one 1\nlist: [*one, *one]\n",
        );
        assert_eq!(value["copy"], json!({"a": 1, "b": ["x", "y"]}));
        assert_eq!(value["list"], json!([1, 1]));
    }

    #[test]
    fn anchors_recursive_alias_rejected() {
        let error = parse_error("a: &loop\n  - *loop\n");
        assert_eq!(error.line, 2);
        assert!(error.message.contains("recursive"), "{error}");
    }

    #[test]
    fn anchors_unknown_alias_rejected() {
        let error = parse_error("a: *missing\n");
        assert_eq!(error.line, 1);
        assert!(error.message.contains("unknown anchor"), "{error}");
    }

    #[test]
    fn anchors_alias_bomb_rejected() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..8 {
            let previous = level - 1;
            let refs = vec![format!("*a{previous}"); 10].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
        }
        let error = parse_error(&text);
        assert!(error.message.contains("aliases expand"), "{error}");
    }

    #[test]
    fn merge_key_single_mapping() {
        let text = "base: &base\n  image: mas\n  port: 8080\nservice:\n  <<: *base\n  port: 9090\n  name: auth\n";
        let value = parse(text);
        assert_eq!(
            value["service"],
            json!({"image": "mas", "port": 9090, "name": "auth"})
        );
        let keys: Vec<&String> = value["service"].as_object().expect("map").keys().collect();
        assert_eq!(keys, ["image", "port", "name"]);
    }

    #[test]
    fn merge_key_list_earlier_wins() {
        let text = "a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  w: 0\n";
        let value = parse(text);
        assert_eq!(value["c"], json!({"y": 1, "z": 2, "x": 1, "w": 0}));
        let keys: Vec<&String> = value["c"].as_object().expect("map").keys().collect();
        assert_eq!(keys, ["y", "z", "x", "w"]);
    }

    #[test]
    fn merge_key_nested_and_inline() {
        let text = "a: &a {x: 1}\nb: &b\n  <<: *a\n  y: 2\nc:\n  <<: *b\n  <<: {z: 3}\n";
        assert_eq!(parse(text)["c"], json!({"x": 1, "y": 2, "z": 3}));
    }

    #[test]
    fn merge_key_own_keys_win_without_warning() {
        let text = "a: &a {x: 1}\nb:\n  x: 2\n  <<: *a\n";
        let (value, warnings) = parse_value_with_warnings(text, None).expect("valid");
        assert_eq!(value["b"], json!({"x": 2}));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn merge_key_quoted_is_ordinary_key() {
        assert_eq!(parse("'<<': {a: 1}\n"), json!({"<<": {"a": 1}}));
    }

    #[test]
    fn merge_key_non_mapping_rejected() {
        let error = parse_error("a: &a text\nb:\n  <<: *a\n");
        assert_eq!(error.line, 3);
        assert_eq!(error.column, 7);
        assert!(error.message.contains("found a scalar"), "{error}");

        let error = parse_error("a: &a [1]\nb:\n  <<: [{x: 1}, *a]\n");
        assert!(
            error.message.contains("expected a mapping in the merge"),
            "{error}"
        );
        assert!(error.message.contains("found a sequence"), "{error}");
    }

    #[test]
    fn duplicate_keys_later_wins_with_warning() {
        let text = "name: first\nother: 1\nname: second\n";
        let file = Path::new("inventory/host_vars/matrix/vars.yml");
        let (value, warnings) = parse_value_with_warnings(text, Some(file)).expect("valid");
        assert_eq!(value, json!({"name": "second", "other": 1}));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].line, 3);
        assert_eq!(warnings[0].column, 1);
        assert!(
            warnings[0].message.contains("first set on line 1"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[0]
                .to_string()
                .starts_with("inventory/host_vars/matrix/vars.yml:3:1: "),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn duplicate_keys_behind_alias_warned_once() {
        let text = "base: &base\n  a: 1\n  a: 2\ncopy: *base\nmore: [*base, *base]\n";
        let (value, warnings) = parse_value_with_warnings(text, None).expect("valid");
        assert_eq!(value["copy"], json!({"a": 2}));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].line, 3);
    }

    #[test]
    fn duplicate_keys_nested_warned() {
        let (_, warnings) = parse_value_with_warnings("a:\n  b: 1\n  b: 2\n", None).expect("valid");
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].line, 3);
        assert_eq!(warnings[0].column, 3);
    }

    #[test]
    fn keys_non_string_use_json_text() {
        let value = parse("1: a\ntrue: b\n~: c\n1.5: d\n0x10: e\n'2': f\n");
        assert_eq!(
            value,
            json!({"1": "a", "true": "b", "null": "c", "1.5": "d", "16": "e", "2": "f"})
        );
    }

    #[test]
    fn keys_collections_rejected() {
        let error = parse_error("? [a, b]\n: value\n");
        assert!(
            error.message.contains("a sequence cannot be a mapping key"),
            "{error}"
        );
    }

    #[test]
    fn errors_report_line_and_column() {
        let error = parse_error("a: 1\nb: c: d\n");
        assert_eq!(error.line, 2);
        assert_eq!(error.column, 5);
        assert_eq!(error.file, None);

        let error = parse_error("a:\n  - 1\n  b: 2\n");
        assert_eq!(error.line, 3);

        let error = parse_error("key: \"unterminated\n");
        assert!(error.line >= 1, "{error}");
    }

    #[test]
    fn errors_display_file_line_column() {
        let file = Path::new("inventory/host_vars/matrix.example.com/vars.yml");
        let error = parse_vars_str("a: 1\nb: [1, 2\n", Some(file), Layer::HostVars)
            .expect_err("unclosed flow sequence");
        let shown = error.to_string();
        let prefix = format!("{}:{}:{}: ", file.display(), error.line, error.column);
        assert!(shown.starts_with(&prefix), "{shown}");
        assert!(error.line >= 2, "{shown}");

        let without_file = YamlError {
            file: None,
            line: 3,
            column: 4,
            message: "bad".into(),
        };
        assert_eq!(without_file.to_string(), "line 3, column 4: bad");
        let whole_file = YamlError {
            file: Some(file.to_path_buf()),
            line: 0,
            column: 0,
            message: "bad".into(),
        };
        assert_eq!(whole_file.to_string(), format!("{}: bad", file.display()));
    }

    #[test]
    fn documents_empty_is_null() {
        assert_eq!(parse(""), Value::Null);
        assert_eq!(parse("# only a comment\n\n"), Value::Null);
        assert_eq!(parse("---\n"), Value::Null);
        assert_eq!(parse("---\na: 1\n...\n"), json!({"a": 1}));
        assert_eq!(parse("\u{feff}a: 1\n"), json!({"a": 1}));
    }

    #[test]
    fn documents_multiple_rejected() {
        let error = parse_error("a: 1\n---\nb: 2\n");
        assert_eq!(error.line, 2);
        assert!(error.message.contains("one YAML document"), "{error}");
    }

    #[test]
    fn vars_key_lines_recorded() {
        let text = "\
# Matrix homeserver settings
matrix_domain: example.com

matrix_mas_config: |
  line one
  line two

# a comment between keys
matrix_mas_enabled: true
matrix_list:
  - a
  - b
matrix_flow: {x: 1,
  y: 2}
last: \"multi
  line\"
after: 1
";
        let file = Path::new("/srv/inventory/host_vars/matrix/vars.yml");
        let vars = parse_vars_str(text, Some(file), Layer::HostVars).expect("valid");
        let lines: Vec<(&str, Option<usize>)> = vars
            .iter()
            .map(|(name, var)| (name.as_str(), var.origin.line))
            .collect();
        assert_eq!(
            lines,
            [
                ("matrix_domain", Some(2)),
                ("matrix_mas_config", Some(4)),
                ("matrix_mas_enabled", Some(9)),
                ("matrix_list", Some(10)),
                ("matrix_flow", Some(13)),
                ("last", Some(15)),
                ("after", Some(17)),
            ]
        );
        let origin = &vars["matrix_domain"].origin;
        assert_eq!(origin.layer, Layer::HostVars);
        assert_eq!(origin.file.as_deref(), Some(file));
        assert_eq!(
            vars["matrix_mas_config"].value,
            json!("line one\nline two\n")
        );
        assert_eq!(vars["last"].value, json!("multi line"));
    }

    #[test]
    fn vars_merge_key_lines_from_source() {
        let text = "base: &base\n  x: 1\n  y: 2\n<<: *base\ny: 3\n";
        let vars = parse_vars_str(text, None, Layer::GroupVars).expect("valid");
        assert_eq!(vars["x"].origin.line, Some(2));
        assert_eq!(vars["y"].origin.line, Some(5));
        assert_eq!(vars["y"].value, json!(3));
        assert_eq!(vars["base"].origin.line, Some(1));
    }

    #[test]
    fn vars_duplicate_key_line_is_last() {
        let vars = parse_vars_str("a: 1\nb: 2\na: 3\n", None, Layer::GroupVars).expect("valid");
        assert_eq!(vars["a"].value, json!(3));
        assert_eq!(vars["a"].origin.line, Some(3));
        let names: Vec<&String> = vars.keys().collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn vars_top_level_must_be_mapping() {
        let file = Path::new("group_vars/all.yml");
        let error = parse_vars_str("- a\n- b\n", Some(file), Layer::GroupVars).expect_err("list");
        assert!(
            error.to_string().starts_with("group_vars/all.yml:1:1: "),
            "{error}"
        );
        assert!(error.message.contains("found a sequence"), "{error}");

        let error =
            parse_vars_str("just text\n", Some(file), Layer::GroupVars).expect_err("scalar");
        assert!(error.message.contains("found a scalar"), "{error}");
    }

    #[test]
    fn vars_empty_or_null_is_empty_map() {
        for text in ["", "\n# nothing yet\n", "---\n", "~\n"] {
            let vars = parse_vars_str(text, None, Layer::GroupVars).expect("valid");
            assert!(vars.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn load_vars_file_reads_and_names_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vars.yml");
        std::fs::write(&path, "matrix_domain: example.com\nmas_port: 8080\n").expect("write");
        let vars = load_vars_file(&path, Layer::HostVars).expect("valid");
        assert_eq!(vars["mas_port"].value, json!(8080));
        assert_eq!(
            vars["mas_port"].origin.file.as_deref(),
            Some(path.as_path())
        );
        assert_eq!(vars["mas_port"].origin.line, Some(2));

        let empty = dir.path().join("empty.yml");
        std::fs::write(&empty, "").expect("write");
        assert!(
            load_vars_file(&empty, Layer::HostVars)
                .expect("valid")
                .is_empty()
        );

        let list = dir.path().join("list.yml");
        std::fs::write(&list, "- 1\n").expect("write");
        let error = load_vars_file(&list, Layer::HostVars).expect_err("not a mapping");
        assert_eq!(error.file.as_deref(), Some(list.as_path()));
    }

    #[test]
    fn load_vars_file_missing_reports_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.yml");
        let error = load_vars_file(&path, Layer::HostVars).expect_err("missing");
        assert_eq!(error.line, 0);
        assert_eq!(error.file.as_deref(), Some(path.as_path()));
        assert!(
            error.message.starts_with("failed to read the file"),
            "{error}"
        );
    }

    #[test]
    fn load_vars_file_reads_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vars.json");
        std::fs::write(
            &path,
            "{\n  \"a\": \"yes\",\n  \"b\": [1, 2.5, null, true]\n}\n",
        )
        .expect("write");
        let vars = load_vars_file(&path, Layer::GroupVars).expect("valid");
        assert_eq!(vars["a"].value, json!("yes"));
        assert_eq!(vars["b"].value, json!([1, 2.5, null, true]));
        assert_eq!(vars["b"].origin.line, Some(3));
    }

    #[test]
    fn load_vars_file_json_fallback() {
        // A tab after ':' is valid JSON but not valid YAML.
        let text = "{\"a\":\t1,\n\"c\": \"yes\"}\n";
        assert!(
            parse_value(text).is_err(),
            "the YAML reader must reject {text:?}"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("extra.json");
        std::fs::write(&path, text).expect("write");
        let vars = load_vars_file(&path, Layer::ExtraVars).expect("valid");
        assert_eq!(vars["a"].value, json!(1));
        assert_eq!(vars["c"].value, json!("yes"));
        assert_eq!(vars["c"].origin.line, None);

        let yaml_path = dir.path().join("extra.yml");
        std::fs::write(&yaml_path, text).expect("write");
        let error = load_vars_file(&yaml_path, Layer::ExtraVars).expect_err("YAML file");
        assert!(error.message.contains("whitespace"), "{error}");
    }

    /// Values that a YAML writer must quote or format with care to read back the same.
    pub(crate) fn round_trip_cases() -> Vec<Value> {
        let strings = [
            "yes",
            "No",
            "on",
            "OFF",
            "y",
            "n",
            "true",
            "False",
            "~",
            "null",
            "",
            " ",
            "0750",
            "0o17",
            "0x1F",
            "0b11",
            "1_000",
            "0_",
            "18446744073709551616",
            "1e3",
            "1.5",
            ".5",
            ".inf",
            "-.inf",
            ".nan",
            "1:30",
            "2024-05-01",
            "2024-05-01 10:00:00",
            "=",
            "<<",
            "-",
            "?",
            ":",
            "- a",
            "a: b",
            "a #b",
            "#hash",
            "it's",
            "\"double\"",
            "`backtick`",
            "back\\slash",
            "p\"ss\\`w#rd: x",
            "'p\"ss\\`w#rd: x'",
            "!example{secret}",
            "&anchor",
            "*alias",
            "%percent",
            "@at",
            "{{ matrix_domain }}",
            "{% raw %}x{% endraw %}",
            "[list]",
            "{map}",
            "line1\nline2",
            "trailing newline\n",
            "\nleading newline",
            "  leading spaces",
            "trailing spaces  ",
            "tab\tinside",
            "unicode: ünïcödé ✓ 日本語",
            "emoji 🎉",
            "null\u{0}byte",
            "carriage\rreturn",
            "multi\n  indented\n    lines\n",
            "  \n  ",
        ];
        let mut cases: Vec<Value> = strings.iter().map(|text| json!(text)).collect();
        cases.extend([
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-42),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1.5),
            json!(-0.25),
            json!(1e20),
            json!(1.5e-7),
            json!(1e300),
            json!([]),
            json!({}),
            json!({"yes": "no", "on": ["off", "y"], "0750": {"~": "null"}}),
            json!({"nested": {"list": [{"a": "yes"}, ["1_000", 2]], "empty": {}}}),
            json!(["a: b", "x", {"k": "line1\nline2"}]),
        ]);
        cases.push(Value::Object(
            strings
                .iter()
                .map(|text| ((*text).to_string(), json!(text)))
                .collect(),
        ));
        cases
    }

    #[test]
    fn to_yaml_round_trips_tricky_values() {
        for value in round_trip_cases() {
            let written = to_yaml_string(&value);
            let read = parse_value(&written)
                .unwrap_or_else(|error| panic!("re-parse failed for {value}: {error}\n{written}"));
            assert_eq!(read, value, "written as:\n{written}");
        }
    }

    #[test]
    fn to_yaml_quotes_yaml11_strings() {
        let value = json!({
            "a": "yes", "b": "on", "c": "0750", "d": "~", "e": "y", "f": "1_000",
            "g": "18446744073709551616", "h": "0_"
        });
        let written = to_yaml_string(&value);
        for line in written.lines() {
            let (_, scalar) = line.split_once(": ").expect("key: value line");
            assert!(
                scalar.starts_with('\'') || scalar.starts_with('"'),
                "unquoted: {line}"
            );
        }
    }

    #[test]
    fn to_yaml_quotes_keys() {
        let written = to_yaml_string(&json!({"yes": 1, "plain": 2}));
        assert_eq!(written, "'yes': 1\nplain: 2\n");
    }

    #[test]
    fn to_yaml_block_style_two_spaces() {
        let value =
            json!({"outer": {"inner": {"leaf": "value"}, "list": ["a", "b"]}, "text": "x\ny"});
        let written = to_yaml_string(&value);
        assert_eq!(
            written,
            "outer:\n  inner:\n    leaf: value\n  list:\n  - a\n  - b\ntext: |-\n  x\n  y\n"
        );
    }

    #[test]
    fn to_yaml_long_lines_not_wrapped() {
        let long = "word ".repeat(60).trim_end().to_string();
        let written = to_yaml_string(&json!({"long": long}));
        assert_eq!(written.lines().count(), 1, "{written}");
    }

    #[test]
    fn to_yaml_floats_in_pyyaml_form() {
        assert_eq!(to_yaml_string(&json!(1e20)), "1.0e+20\n");
        assert_eq!(to_yaml_string(&json!(1.5e-7)), "1.5e-7\n");
        assert_eq!(to_yaml_string(&json!(2.5)), "2.5\n");
        assert_eq!(to_yaml_string(&json!([1e300])), "- 1.0e+300\n");
    }

    #[test]
    fn to_yaml_fixes_after_multibyte_block() {
        let value = json!({"text": "ünï\ncödé ✓", "after": "yes", "ключ": "on"});
        let written = to_yaml_string(&value);
        assert!(written.contains("after: 'yes'"), "{written}");
        assert!(written.contains("ключ: 'on'"), "{written}");
        assert_eq!(parse_value(&written).expect("valid"), value);
    }
}
