//! The template environment shared by variable resolution and the template primitive.
//!
//! It has Ansible's settings: undefined names fail, `trim_blocks` is on, the trailing newline is
//! kept, nothing is auto-escaped, and strings and dicts have Python's methods. It adds the
//! Ansible filters, tests and functions that the engine's built-ins lack or implement
//! differently.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{ArgType, Kwargs, Rest, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};
use serde_json::{Map, Value as Json};

use super::convert::{json_to_value, value_to_json};
use super::json_text::{JsonLayout, dump_json};
use super::lookup::{lookup, query};
use super::text;
use super::yaml_text::{YamlLayout, dump_yaml};

/// Builds the template environment. Template files named in `{% include %}`, `{% import %}`
/// and `lookup('template', ...)` are looked up in `template_dirs`, first match first.
pub fn environment(template_dirs: Vec<PathBuf>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Ansible never escapes output, whatever the template's file name ends with.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_loader(move |name| load_template(&template_dirs, name));

    env.add_filter("bool", to_bool);
    env.add_filter("default", default);
    env.add_filter("d", default);
    env.add_filter("ternary", ternary);
    env.add_filter("int", int);
    env.add_filter("mandatory", mandatory);
    env.add_filter("type_debug", type_debug);

    env.add_filter("to_json", to_json);
    env.add_filter("to_nice_json", to_nice_json);
    env.add_filter("from_json", from_json);
    env.add_filter("to_yaml", to_yaml);
    env.add_filter("to_nice_yaml", to_nice_yaml);
    env.add_filter("from_yaml", from_yaml);

    env.add_filter("combine", combine);
    env.add_filter("dict2items", dict2items);
    env.add_filter("items2dict", items2dict);
    env.add_filter("flatten", flatten);
    env.add_filter("difference", difference);
    env.add_filter("union", union);
    env.add_filter("intersect", intersect);
    env.add_filter("symmetric_difference", symmetric_difference);

    env.add_filter("hash", text::hash);
    env.add_filter("to_uuid", text::to_uuid);
    env.add_filter("quote", text::quote);
    env.add_filter("regex_replace", text::regex_replace);
    env.add_filter("regex_search", text::regex_search);
    env.add_filter("regex_findall", text::regex_findall);
    env.add_filter("regex_escape", text::regex_escape);
    env.add_filter("b64encode", text::b64encode);
    env.add_filter("b64decode", text::b64decode);
    env.add_filter("basename", text::basename);
    env.add_filter("dirname", text::dirname);

    env.add_test("match", text::is_match);
    env.add_test("search", text::is_search);
    env.add_test("contains", contains);

    env.add_function("lookup", lookup);
    env.add_function("query", query);
    env.add_function("q", query);
    env
}

/// Finds a template file: an absolute name as it is, a relative one in the first of `dirs`
/// that has it.
pub(crate) fn find_template(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    if path.is_absolute() {
        return path.is_file().then(|| path.to_path_buf());
    }
    dirs.iter()
        .map(|dir| dir.join(path))
        .find(|candidate| candidate.is_file())
}

fn load_template(dirs: &[PathBuf], name: &str) -> Result<Option<String>, Error> {
    let Some(path) = find_template(dirs, name) else {
        return Ok(None);
    };
    std::fs::read_to_string(&path).map(Some).map_err(|err| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("failed to read template {}: {err}", path.display()),
        )
    })
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

fn no_kwargs() -> Kwargs {
    Kwargs::from_iter(std::iter::empty::<(&str, Value)>())
}

/// Fails on an undefined value with the engine's own error, which names the undefined
/// expression. Filters that take `&Value` do not get that check from the engine.
fn ensure_defined(state: &State, value: &Value) -> Result<(), Error> {
    if value.is_undefined() {
        <Cow<'_, str> as ArgType>::from_state_and_value(Some(state), Some(value))?;
    }
    Ok(())
}

fn to_data(value: &Value) -> Result<Json, Error> {
    value_to_json(value).map_err(invalid)
}

/// `bool`: Ansible's conversion. `True`, `1` and the strings `yes`, `on`, `1` and `true` (in
/// any case) are true, none stays none, and everything else is false.
fn to_bool(state: &State, value: &Value) -> Result<Value, Error> {
    ensure_defined(state, value)?;
    let result = match value.kind() {
        ValueKind::None => return Ok(Value::from(())),
        ValueKind::Bool => value.is_true(),
        ValueKind::String => matches!(
            value.as_str().unwrap_or_default().to_lowercase().as_str(),
            "yes" | "on" | "1" | "true"
        ),
        ValueKind::Number => f64::try_from(value.clone()).is_ok_and(|number| number == 1.0),
        _ => false,
    };
    Ok(Value::from(result))
}

/// Ansible's `bool` on plain data, for task files: the same rules as the filter, with none false.
pub fn ansible_bool(value: &Json) -> bool {
    match value {
        Json::Bool(flag) => *flag,
        Json::String(text) => matches!(text.to_lowercase().as_str(), "yes" | "on" | "1" | "true"),
        Json::Number(number) => number.as_f64() == Some(1.0),
        _ => false,
    }
}

/// `default(default_value='', boolean=False)`: the default when the value is undefined, or
/// also when it is falsy (empty, zero, false, none) if `boolean` is true.
fn default(value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let fallback = match args.first() {
        Some(fallback) => fallback.clone(),
        None => kwargs
            .get::<Option<Value>>("default_value")?
            .unwrap_or(Value::from("")),
    };
    let boolean = match args.get(1) {
        Some(flag) => flag.is_true(),
        None => kwargs.get::<Option<bool>>("boolean")?.unwrap_or(false),
    };
    if args.len() > 2 {
        return Err(Error::from(ErrorKind::TooManyArguments));
    }
    kwargs.assert_all_used()?;
    if value.is_undefined() || (boolean && !value.is_true()) {
        Ok(fallback)
    } else {
        Ok(value.clone())
    }
}

/// `ternary(true_val, false_val, none_val=None)`.
fn ternary(
    state: &State,
    value: &Value,
    if_true: Value,
    if_false: Value,
    if_none: Option<Value>,
) -> Result<Value, Error> {
    ensure_defined(state, value)?;
    if let (true, Some(if_none)) = (value.is_none(), if_none) {
        return Ok(if_none);
    }
    Ok(if value.is_true() { if_true } else { if_false })
}

/// `int(default=0, base=10)`: like Jinja2, text that is not a number gives the default
/// instead of an error.
fn int(
    state: &State,
    value: &Value,
    default: Option<Value>,
    base: Option<u32>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    ensure_defined(state, value)?;
    let default = match default {
        Some(default) => default,
        None => kwargs
            .get::<Option<Value>>("default")?
            .unwrap_or(Value::from(0)),
    };
    let base = match base {
        Some(base) => base,
        None => kwargs.get::<Option<u32>>("base")?.unwrap_or(10),
    };
    kwargs.assert_all_used()?;
    match minijinja::filters::int(state, value, Some(default.clone()), Some(base), no_kwargs()) {
        Ok(number) => Ok(number),
        Err(err) if err.kind() == ErrorKind::InvalidOperation => Ok(default),
        Err(err) => Err(err),
    }
}

/// `mandatory(msg=None)`: fails when the value is undefined.
fn mandatory(state: &State, value: &Value, message: Option<String>) -> Result<Value, Error> {
    if !value.is_undefined() {
        return Ok(value.clone());
    }
    match message {
        Some(message) => Err(Error::new(ErrorKind::UndefinedError, message)),
        None => {
            ensure_defined(state, value)?;
            Err(Error::new(
                ErrorKind::UndefinedError,
                "a mandatory variable is undefined",
            ))
        }
    }
}

/// `type_debug`: the Python type name Ansible would report.
fn type_debug(value: &Value) -> &'static str {
    match value.kind() {
        ValueKind::Undefined => "AnsibleUndefined",
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number if value.is_integer() => "int",
        ValueKind::Number => "float",
        ValueKind::String => "str",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq | ValueKind::Iterable => "list",
        ValueKind::Map => "dict",
        _ => "object",
    }
}

/// `to_json(indent=None, sort_keys=False, ensure_ascii=True)`, laid out like `json.dumps`.
fn to_json(state: &State, value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    ensure_defined(state, value)?;
    let mut layout = JsonLayout::compact();
    apply_json_kwargs(&mut layout, &kwargs)?;
    Ok(dump_json(&to_data(value)?, &layout))
}

/// `to_nice_json(indent=4, sort_keys=True)`.
fn to_nice_json(
    state: &State,
    value: &Value,
    indent: Option<usize>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    ensure_defined(state, value)?;
    let mut layout = JsonLayout::nice();
    if indent.is_some() {
        layout.indent = indent;
    }
    apply_json_kwargs(&mut layout, &kwargs)?;
    Ok(dump_json(&to_data(value)?, &layout))
}

fn apply_json_kwargs(layout: &mut JsonLayout, kwargs: &Kwargs) -> Result<(), Error> {
    if let Some(indent) = kwargs.get::<Option<usize>>("indent")? {
        layout.indent = Some(indent);
        layout.item_separator = ",".to_string();
    }
    if let Some(sort_keys) = kwargs.get::<Option<bool>>("sort_keys")? {
        layout.sort_keys = sort_keys;
    }
    if let Some(ensure_ascii) = kwargs.get::<Option<bool>>("ensure_ascii")? {
        layout.ensure_ascii = ensure_ascii;
    }
    kwargs.assert_all_used()
}

/// `from_json`: parses JSON text.
fn from_json(value: &str) -> Result<Value, Error> {
    serde_json::from_str::<Json>(value)
        .map(|json| json_to_value(&json))
        .map_err(|err| invalid(format!("from_json: invalid JSON: {err}")))
}

/// `to_yaml(indent=2, sort_keys=True)`: PyYAML's `default_flow_style=None` layout, which puts a
/// list or map of scalars on one line.
fn to_yaml(state: &State, value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    ensure_defined(state, value)?;
    let layout = YamlLayout {
        indent: kwargs.get::<Option<usize>>("indent")?.unwrap_or(2),
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(true),
        flow_leaves: kwargs.get::<Option<bool>>("default_flow_style")?.is_none(),
    };
    kwargs.assert_all_used()?;
    Ok(dump_yaml(&to_data(value)?, &layout))
}

/// `to_nice_yaml(indent=4, sort_keys=True)`: block style throughout.
fn to_nice_yaml(
    state: &State,
    value: &Value,
    indent: Option<usize>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    ensure_defined(state, value)?;
    let indent = match indent {
        Some(indent) => indent,
        None => kwargs.get::<Option<usize>>("indent")?.unwrap_or(4),
    };
    let layout = YamlLayout {
        indent: indent.max(2),
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(true),
        flow_leaves: false,
    };
    kwargs.assert_all_used()?;
    Ok(dump_yaml(&to_data(value)?, &layout))
}

/// `from_yaml`: parses one YAML document with the YAML 1.1 rules of [`crate::yaml`]. A value
/// that is not text is returned unchanged, as Ansible does. `!unsafe` strings stay plain,
/// because the filter's result is never rendered again.
fn from_yaml(state: &State, value: &Value) -> Result<Value, Error> {
    ensure_defined(state, value)?;
    match value.as_str() {
        Some(text) => crate::yaml::parse_value_unmarked(text)
            .map(|json| json_to_value(&json))
            .map_err(|error| invalid(format!("from_yaml: invalid YAML: {error}"))),
        None => Ok(value.clone()),
    }
}

/// `combine(*dicts, recursive=False, list_merge='replace')`: later maps override earlier ones.
/// With `recursive`, nested maps are merged too. `list_merge` decides what happens to two
/// lists under the same key: `replace`, `keep`, `append`, `prepend`, `append_rp` or
/// `prepend_rp` (the `_rp` forms drop the earlier list's items that the later one has).
fn combine(
    state: &State,
    value: &Value,
    others: Rest<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    ensure_defined(state, value)?;
    let recursive = kwargs.get::<Option<bool>>("recursive")?.unwrap_or(false);
    let list_merge = kwargs
        .get::<Option<String>>("list_merge")?
        .unwrap_or_else(|| "replace".to_string());
    kwargs.assert_all_used()?;
    if ![
        "replace",
        "keep",
        "append",
        "prepend",
        "append_rp",
        "prepend_rp",
    ]
    .contains(&list_merge.as_str())
    {
        return Err(invalid(format!(
            "combine: list_merge '{list_merge}' is invalid; use replace, keep, append, prepend, append_rp or prepend_rp"
        )));
    }

    let mut terms = Vec::new();
    for term in std::iter::once(value).chain(others.iter()) {
        ensure_defined(state, term)?;
        match to_data(term)? {
            Json::Array(items) => terms.extend(items),
            other => terms.push(other),
        }
    }
    let mut merged = Map::new();
    for term in terms {
        let Json::Object(map) = term else {
            return Err(invalid(format!(
                "combine: expected maps, got {}",
                describe_json_kind(&term)
            )));
        };
        merge_maps(&mut merged, map, recursive, &list_merge);
    }
    Ok(json_to_value(&Json::Object(merged)))
}

pub(crate) fn merge_maps(
    into: &mut Map<String, Json>,
    from: Map<String, Json>,
    recursive: bool,
    list_merge: &str,
) {
    for (key, new) in from {
        let Some(old) = into.get_mut(&key) else {
            into.insert(key, new);
            continue;
        };
        match (old, new) {
            (Json::Object(old_map), Json::Object(new_map)) if recursive => {
                merge_maps(old_map, new_map, recursive, list_merge);
            }
            (Json::Array(old_items), Json::Array(new_items)) => {
                let merged = match list_merge {
                    "keep" => continue,
                    "append" => old_items.iter().cloned().chain(new_items).collect(),
                    "prepend" => new_items
                        .into_iter()
                        .chain(old_items.iter().cloned())
                        .collect(),
                    "append_rp" => old_items
                        .iter()
                        .filter(|item| !new_items.contains(item))
                        .cloned()
                        .chain(new_items.iter().cloned())
                        .collect(),
                    "prepend_rp" => new_items
                        .iter()
                        .cloned()
                        .chain(
                            old_items
                                .iter()
                                .filter(|item| !new_items.contains(item))
                                .cloned(),
                        )
                        .collect(),
                    _ => new_items,
                };
                *old_items = merged;
            }
            (old, new) => *old = new,
        }
    }
}

fn describe_json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "none",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a map",
    }
}

/// `dict2items(key_name='key', value_name='value')`.
fn dict2items(state: &State, value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    ensure_defined(state, value)?;
    let (key_name, value_name) = entry_field_names(&kwargs)?;
    let Json::Object(map) = to_data(value)? else {
        return Err(invalid("dict2items: expected a map"));
    };
    let items: Vec<Json> = map
        .into_iter()
        .map(|(key, item)| {
            let mut entry = Map::new();
            entry.insert(key_name.clone(), Json::String(key));
            entry.insert(value_name.clone(), item);
            Json::Object(entry)
        })
        .collect();
    Ok(json_to_value(&Json::Array(items)))
}

/// Reads the `key_name` and `value_name` arguments of `dict2items` and `items2dict`, which
/// default to `key` and `value`, and rejects any other keyword argument.
fn entry_field_names(kwargs: &Kwargs) -> Result<(String, String), Error> {
    let key_name = kwargs
        .get::<Option<String>>("key_name")?
        .unwrap_or_else(|| "key".to_string());
    let value_name = kwargs
        .get::<Option<String>>("value_name")?
        .unwrap_or_else(|| "value".to_string());
    kwargs.assert_all_used()?;
    Ok((key_name, value_name))
}

/// `items2dict(key_name='key', value_name='value')`.
fn items2dict(state: &State, value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    ensure_defined(state, value)?;
    let (key_name, value_name) = entry_field_names(&kwargs)?;
    let Json::Array(items) = to_data(value)? else {
        return Err(invalid("items2dict: expected a list of maps"));
    };
    let mut map = Map::new();
    for item in items {
        let (Some(key), Some(entry)) = (item.get(&key_name), item.get(&value_name)) else {
            return Err(invalid(format!(
                "items2dict: every item needs '{key_name}' and '{value_name}'"
            )));
        };
        let key = match key {
            Json::String(text) => text.clone(),
            other => other.to_string(),
        };
        map.insert(key, entry.clone());
    }
    Ok(json_to_value(&Json::Object(map)))
}

/// `flatten(levels=None, skip_nulls=True)`: nested lists become one list. With `skip_nulls`,
/// none and the strings `None` and `null` are dropped, as in Ansible.
fn flatten(
    state: &State,
    value: &Value,
    levels: Option<usize>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    ensure_defined(state, value)?;
    let levels = match levels {
        Some(levels) => Some(levels),
        None => kwargs.get::<Option<usize>>("levels")?,
    };
    let skip_nulls = kwargs.get::<Option<bool>>("skip_nulls")?.unwrap_or(true);
    kwargs.assert_all_used()?;
    let Json::Array(items) = to_data(value)? else {
        return Err(invalid("flatten: expected a list"));
    };
    let mut out = Vec::new();
    flatten_into(items, levels, skip_nulls, &mut out);
    Ok(json_to_value(&Json::Array(out)))
}

fn flatten_into(items: Vec<Json>, levels: Option<usize>, skip_nulls: bool, out: &mut Vec<Json>) {
    for item in items {
        let is_null = matches!(&item, Json::Null)
            || matches!(&item, Json::String(text) if text == "None" || text == "null");
        if skip_nulls && is_null {
            continue;
        }
        match (item, levels) {
            (Json::Array(inner), None) => flatten_into(inner, None, skip_nulls, out),
            (Json::Array(inner), Some(levels)) if levels >= 1 => {
                flatten_into(inner, Some(levels - 1), skip_nulls, out)
            }
            (other, _) => out.push(other),
        }
    }
}

fn list_items(state: &State, value: &Value, filter: &str) -> Result<Vec<Json>, Error> {
    ensure_defined(state, value)?;
    match to_data(value)? {
        Json::Array(items) => Ok(items),
        other => Err(invalid(format!(
            "{filter}: expected a list, got {}",
            describe_json_kind(&other)
        ))),
    }
}

fn unique_items(items: impl IntoIterator<Item = Json>) -> Value {
    let mut out: Vec<Json> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    json_to_value(&Json::Array(out))
}

/// `difference(other)`: the unique items of the list that `other` lacks, in order.
fn difference(state: &State, value: &Value, other: &Value) -> Result<Value, Error> {
    let (left, right) = (
        list_items(state, value, "difference")?,
        list_items(state, other, "difference")?,
    );
    Ok(unique_items(
        left.into_iter().filter(|item| !right.contains(item)),
    ))
}

/// `union(other)`: the unique items of both lists, in order.
fn union(state: &State, value: &Value, other: &Value) -> Result<Value, Error> {
    let (left, right) = (
        list_items(state, value, "union")?,
        list_items(state, other, "union")?,
    );
    Ok(unique_items(left.into_iter().chain(right)))
}

/// `intersect(other)`: the unique items of the list that `other` has too, in order.
fn intersect(state: &State, value: &Value, other: &Value) -> Result<Value, Error> {
    let (left, right) = (
        list_items(state, value, "intersect")?,
        list_items(state, other, "intersect")?,
    );
    Ok(unique_items(
        left.into_iter().filter(|item| right.contains(item)),
    ))
}

/// `symmetric_difference(other)`: the unique items that only one of the lists has.
fn symmetric_difference(state: &State, value: &Value, other: &Value) -> Result<Value, Error> {
    let left = list_items(state, value, "symmetric_difference")?;
    let right = list_items(state, other, "symmetric_difference")?;
    let only_left = left.iter().filter(|item| !right.contains(item)).cloned();
    let only_right = right.iter().filter(|item| !left.contains(item)).cloned();
    Ok(unique_items(
        only_left.chain(only_right).collect::<Vec<_>>(),
    ))
}

/// Returns whether the list contains the item. This is the `contains` test.
fn contains(state: &State, value: &Value, item: &Value) -> Result<bool, Error> {
    ensure_defined(state, value)?;
    let items = value.try_iter()?;
    Ok(items.into_iter().any(|candidate| &candidate == item))
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn render(template: &str) -> String {
        let env = environment(Vec::new());
        env.render_str(template, context! {})
            .unwrap_or_else(|err| panic!("{template}: {err:#}"))
    }

    fn eval(expression: &str) -> Json {
        let env = environment(Vec::new());
        let value = env
            .compile_expression(expression)
            .and_then(|compiled| compiled.eval(context! {}))
            .unwrap_or_else(|err| panic!("{expression}: {err:#}"));
        value_to_json(&value).unwrap()
    }

    #[test]
    fn bool_follows_ansible() {
        let cases = [
            ("True", Json::Bool(true)),
            ("False", Json::Bool(false)),
            ("'yes'", Json::Bool(true)),
            ("'YES'", Json::Bool(true)),
            ("'on'", Json::Bool(true)),
            ("'1'", Json::Bool(true)),
            ("'true'", Json::Bool(true)),
            ("'True'", Json::Bool(true)),
            ("1", Json::Bool(true)),
            ("1.0", Json::Bool(true)),
            ("'no'", Json::Bool(false)),
            ("'off'", Json::Bool(false)),
            ("'0'", Json::Bool(false)),
            ("'false'", Json::Bool(false)),
            ("'y'", Json::Bool(false)),
            ("''", Json::Bool(false)),
            ("0", Json::Bool(false)),
            ("2", Json::Bool(false)),
            ("[1]", Json::Bool(false)),
            ("none", Json::Null),
        ];
        for (input, expected) in cases {
            assert_eq!(eval(&format!("{input} | bool")), expected, "{input} | bool");
        }
    }

    #[test]
    fn default_with_boolean_flag() {
        assert_eq!(eval("missing | default('x')"), Json::from("x"));
        assert_eq!(eval("missing | d('x')"), Json::from("x"));
        assert_eq!(eval("'' | default('x')"), Json::from(""));
        assert_eq!(eval("'' | default('x', true)"), Json::from("x"));
        assert_eq!(eval("none | default('x')"), Json::Null);
        assert_eq!(eval("none | default('x', boolean=true)"), Json::from("x"));
        assert_eq!(eval("missing | default"), Json::from(""));
    }

    #[test]
    fn json_filters() {
        assert_eq!(
            render("{{ {'b': 1, 'a': [true, none]} | to_json }}"),
            r#"{"b": 1, "a": [true, null]}"#
        );
        assert_eq!(render("{{ 'é' | to_json }}"), r#""\u00e9""#);
        assert_eq!(
            render("{{ {'b': 1, 'a': 2} | to_nice_json }}"),
            "{\n    \"a\": 2,\n    \"b\": 1\n}"
        );
        assert_eq!(
            render("{{ {'a': [1]} | to_nice_json(indent=2) }}"),
            "{\n  \"a\": [\n    1\n  ]\n}"
        );
        assert_eq!(
            eval("'{\"a\": [1, 2]}' | from_json"),
            serde_json::json!({"a": [1, 2]})
        );
    }

    #[test]
    fn yaml_filters() {
        assert_eq!(
            render("{{ {'b': [1, 2], 'a': {'c': 'yes'}} | to_nice_yaml }}"),
            "a:\n    c: 'yes'\nb:\n- 1\n- 2\n"
        );
        assert_eq!(
            render("{{ {'b': [1, 2]} | to_nice_yaml(indent=2) }}"),
            "b:\n- 1\n- 2\n"
        );
        assert_eq!(
            render("{{ {'b': [1, 2], 'a': {'c': 1}} | to_yaml }}"),
            "a: {c: 1}\nb: [1, 2]\n"
        );
        assert_eq!(
            eval("'a: on\\nb: [1, x]' | from_yaml"),
            serde_json::json!({"a": true, "b": [1, "x"]})
        );
        assert_eq!(eval("{'a': 1} | from_yaml"), serde_json::json!({"a": 1}));
    }

    /// Applies `from_yaml` to `text`, passed as a variable so that it needs no escaping.
    fn from_yaml_of(text: &str) -> Result<Json, Error> {
        let env = environment(Vec::new());
        let value = env
            .compile_expression("text | from_yaml")?
            .eval(context! { text })?;
        Ok(value_to_json(&value).unwrap())
    }

    #[test]
    fn from_yaml_uses_yaml_1_1_scalars() {
        let text = "a: yes\nb: off\nc: '010'\nd: 010\ne: 0x1f\nf: 1.5\ng: ~\nh: 15e-1\ni: !!str true\nj: 1:30\n";
        assert_eq!(
            from_yaml_of(text).unwrap(),
            serde_json::json!({
                "a": true, "b": false, "c": "010", "d": 8, "e": 31, "f": 1.5, "g": null,
                "h": 1.5, "i": "true", "j": "1:30"
            })
        );
    }

    #[test]
    fn from_yaml_resolves_anchors_and_merge_keys() {
        let text = "base: &base {x: 1, y: 2}\nderived:\n  <<: *base\n  y: 3\nlist: [*base]\n";
        assert_eq!(
            from_yaml_of(text).unwrap(),
            serde_json::json!({
                "base": {"x": 1, "y": 2}, "derived": {"x": 1, "y": 3}, "list": [{"x": 1, "y": 2}]
            })
        );
    }

    #[test]
    fn from_yaml_keeps_unsafe_text_plain() {
        let text = "a: !unsafe '{{ x }}'\nb: !unsafe ['{% y %}']\n";
        assert_eq!(
            from_yaml_of(text).unwrap(),
            serde_json::json!({"a": "{{ x }}", "b": ["{% y %}"]})
        );
    }

    #[test]
    fn from_yaml_of_comments_only_is_none() {
        assert_eq!(from_yaml_of("# nothing here\n").unwrap(), Json::Null);
    }

    #[test]
    fn from_yaml_reports_invalid_yaml() {
        let error = from_yaml_of("a: 1\nb: [1, 2\n").unwrap_err().to_string();
        assert!(error.contains("from_yaml: invalid YAML: line 3"), "{error}");

        let error = from_yaml_of("a: 1\n---\nb: 2\n").unwrap_err().to_string();
        assert!(error.contains("one YAML document"), "{error}");
    }

    #[test]
    fn combine_recursive_merges_maps_and_replaces_lists() {
        let merged = eval(
            "{'a': {'x': 1, 'l': [1, 2]}, 'b': 1} | combine({'a': {'y': 2, 'l': [3]}, 'c': 3}, recursive=true)",
        );
        assert_eq!(
            merged,
            serde_json::json!({"a": {"x": 1, "l": [3], "y": 2}, "b": 1, "c": 3})
        );

        let shallow = eval("{'a': {'x': 1}} | combine({'a': {'y': 2}})");
        assert_eq!(shallow, serde_json::json!({"a": {"y": 2}}));

        let appended = eval(
            "{'a': {'l': [1, 2]}} | combine({'a': {'l': [2, 3]}}, recursive=true, list_merge='append')",
        );
        assert_eq!(appended, serde_json::json!({"a": {"l": [1, 2, 2, 3]}}));

        let appended_rp = eval("{'l': [1, 2]} | combine({'l': [2, 3]}, list_merge='append_rp')");
        assert_eq!(appended_rp, serde_json::json!({"l": [1, 2, 3]}));

        let several = eval("{'a': 1} | combine({'b': 2}, {'a': 3})");
        assert_eq!(several, serde_json::json!({"a": 3, "b": 2}));

        let from_list = eval("[{'a': 1}, {'b': 2}] | combine");
        assert_eq!(from_list, serde_json::json!({"a": 1, "b": 2}));
    }

    #[test]
    fn combine_rejects_unknown_list_merge() {
        let env = environment(Vec::new());
        let error = env
            .render_str("{{ {} | combine({}, list_merge='merge') }}", context! {})
            .unwrap_err();
        assert!(
            error.to_string().contains("list_merge 'merge' is invalid"),
            "{error}"
        );
    }

    #[test]
    fn dict2items_rejects_unknown_argument() {
        let env = environment(Vec::new());
        let error = env
            .render_str("{{ {'a': 1} | dict2items(name='x') }}", context! {})
            .unwrap_err();
        assert!(
            error.to_string().contains("unknown keyword argument"),
            "{error}"
        );
    }

    #[test]
    fn collection_filters() {
        let cases = [
            (
                "{'a': 1} | dict2items",
                serde_json::json!([{"key": "a", "value": 1}]),
            ),
            (
                "{'a': 1} | dict2items(key_name='name', value_name='v')",
                serde_json::json!([{"name": "a", "v": 1}]),
            ),
            (
                "[{'key': 'a', 'value': 1}] | items2dict",
                serde_json::json!({"a": 1}),
            ),
            (
                "[{'name': 'a', 'v': 1}] | items2dict(key_name='name', value_name='v')",
                serde_json::json!({"a": 1}),
            ),
            (
                "[1, [2, [3, none]], 'None'] | flatten",
                serde_json::json!([1, 2, 3]),
            ),
            (
                "[1, [2, [3]]] | flatten(levels=1)",
                serde_json::json!([1, 2, [3]]),
            ),
            ("[1, 2, 2, 3] | difference([3])", serde_json::json!([1, 2])),
            ("[1, 2] | union([2, 3])", serde_json::json!([1, 2, 3])),
            ("[1, 2, 3] | intersect([3, 2])", serde_json::json!([2, 3])),
            (
                "[1, 2] | symmetric_difference([2, 3])",
                serde_json::json!([1, 3]),
            ),
            (
                "['a', 'A', 'b'] | unique | list",
                serde_json::json!(["a", "b"]),
            ),
            (
                "[{'config': 1}, {'config': 2}] | map(attribute='config') | list",
                serde_json::json!([1, 2]),
            ),
            ("['a', 'b'] | map('upper') | join(',')", Json::from("A,B")),
            (
                "['ab', 'cd'] | select('match', 'a') | list",
                serde_json::json!(["ab"]),
            ),
        ];
        for (expression, expected) in cases {
            assert_eq!(eval(expression), expected, "{expression}");
        }
    }

    #[test]
    fn scalar_filters() {
        assert_eq!(eval("'abc' | int"), Json::from(0));
        assert_eq!(eval("'abc' | int(7)"), Json::from(7));
        assert_eq!(eval("'42' | int"), Json::from(42));
        assert_eq!(eval("true | ternary('a', 'b')"), Json::from("a"));
        assert_eq!(eval("none | ternary('a', 'b', 'c')"), Json::from("c"));
        assert_eq!(eval("'x' | type_debug"), Json::from("str"));
        assert_eq!(eval("{} | type_debug"), Json::from("dict"));
        assert_eq!(eval("\"it's\" | quote"), Json::from("'it'\"'\"'s'"));
        assert_eq!(eval("['a'] is contains('a')"), Json::Bool(true));
        assert_eq!(eval("'Abc'.startswith('A')"), Json::Bool(true));
        assert_eq!(
            eval("{'a': 1}.items() | list"),
            serde_json::json!([["a", 1]])
        );
    }

    #[test]
    fn mandatory_fails_on_undefined() {
        let env = environment(Vec::new());
        let error = env
            .render_str(
                "{{ missing | mandatory('set missing first') }}",
                context! {},
            )
            .unwrap_err();
        assert!(error.to_string().contains("set missing first"), "{error}");
        assert_eq!(render("{{ 'x' | mandatory }}"), "x");
    }

    #[test]
    fn output_is_never_escaped() {
        let env = environment(Vec::new());
        let rendered = env
            .render_named_str("config.yaml.j2", "{{ '<a & \"b\">' }}", context! {})
            .unwrap();
        assert_eq!(rendered, "<a & \"b\">");
    }

    #[test]
    fn trim_blocks_and_trailing_newline() {
        assert_eq!(render("{% if true %}\nyes\n{% endif %}\n"), "yes\n");
    }
}
