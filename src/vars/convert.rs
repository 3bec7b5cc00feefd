//! Conversions between JSON values (how variables are stored and returned) and template engine
//! values, and the Ansible-style reading of a rendered string back into a list, map, boolean or
//! null.

use minijinja::value::{Value, ValueKind};
use serde_json::{Map, Number, Value as Json};

use crate::python_literal::parse_python_literal;

/// Converts a JSON value into a template engine value.
pub fn json_to_value(json: &Json) -> Value {
    match json {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => number_to_value(n),
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => items.iter().map(json_to_value).collect(),
        Json::Object(map) => Value::from_pairs(
            map.iter()
                .map(|(key, value)| (Value::from(key.as_str()), json_to_value(value))),
        ),
    }
}

fn number_to_value(n: &Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::from(i)
    } else if let Some(u) = n.as_u64() {
        Value::from(u)
    } else {
        Value::from(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Converts a template engine value into JSON.
///
/// Map keys that are not strings become their string form. Iterables become lists. Fails on
/// an undefined or invalid value anywhere inside, naming what was found.
pub fn value_to_json(value: &Value) -> Result<Json, String> {
    match value.kind() {
        ValueKind::Undefined => Err("the value contains an undefined value".to_string()),
        ValueKind::Invalid => Err(value
            .clone()
            .try_iter()
            .err()
            .map(|err| err.to_string())
            .unwrap_or_else(|| "the value is invalid".to_string())),
        ValueKind::None => Ok(Json::Null),
        ValueKind::Bool => Ok(Json::Bool(value.is_true())),
        ValueKind::Number => Ok(number_to_json(value)),
        ValueKind::String => Ok(Json::String(value.as_str().unwrap_or_default().to_string())),
        ValueKind::Bytes => Ok(Json::String(
            String::from_utf8_lossy(value.as_bytes().unwrap_or_default()).into_owned(),
        )),
        ValueKind::Seq | ValueKind::Iterable => {
            let items = value.try_iter().map_err(|err| err.to_string())?;
            items
                .map(|item| value_to_json(&item))
                .collect::<Result<Vec<_>, _>>()
                .map(Json::Array)
        }
        ValueKind::Map => {
            let mut map = Map::new();
            for key in value.try_iter().map_err(|err| err.to_string())? {
                let item = value.get_item(&key).map_err(|err| err.to_string())?;
                let key = match key.as_str() {
                    Some(key) => key.to_string(),
                    None => key.to_string(),
                };
                map.insert(key, value_to_json(&item)?);
            }
            Ok(Json::Object(map))
        }
        // Functions, macros and other plain objects have no data form; their string form
        // is what a template would print for them.
        _ => Ok(Json::String(value.to_string())),
    }
}

fn number_to_json(value: &Value) -> Json {
    if let Ok(i) = i64::try_from(value.clone()) {
        return Json::from(i);
    }
    if let Ok(u) = u64::try_from(value.clone()) {
        return Json::from(u);
    }
    let float = f64::try_from(value.clone()).unwrap_or(f64::NAN);
    Number::from_f64(float)
        .map(Json::Number)
        .unwrap_or(Json::Null)
}

/// Reads the rendered text of a mixed template as Ansible does after rendering.
///
/// Exactly `True`, `False` or `None` becomes a boolean or null. Text that starts with `[` or
/// `{` and parses completely as JSON or as a Python literal (see [`crate::python_literal`])
/// becomes that value. Anything else stays the string it is.
pub fn read_rendered(text: String) -> Json {
    match text.as_str() {
        "True" => return Json::Bool(true),
        "False" => return Json::Bool(false),
        "None" => return Json::Null,
        _ => {}
    }
    if text.starts_with('[') || text.starts_with('{') {
        if let Ok(json) = serde_json::from_str::<Json>(&text) {
            return json;
        }
        if let Some(json) = parse_python_literal(&text) {
            return json;
        }
    }
    Json::String(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn read_rendered_keywords() {
        assert_eq!(read_rendered("True".into()), json!(true));
        assert_eq!(read_rendered("False".into()), json!(false));
        assert_eq!(read_rendered("None".into()), json!(null));
        assert_eq!(read_rendered("true".into()), json!("true"));
        assert_eq!(read_rendered("123".into()), json!("123"));
    }

    #[test]
    fn read_rendered_python_literals() {
        assert_eq!(
            read_rendered("['a', \"b\", 1]".into()),
            json!(["a", "b", 1])
        );
        assert_eq!(
            read_rendered("{'a': True, 'b': None, 'c': [1.5, (2, 3)],}".into()),
            json!({"a": true, "b": null, "c": [1.5, [2, 3]]})
        );
        assert_eq!(read_rendered("{\"a\": [1]}".into()), json!({"a": [1]}));
        assert_eq!(read_rendered("['it\\'s']".into()), json!(["it's"]));
    }

    #[test]
    fn read_rendered_python_only_forms() {
        assert_eq!(
            read_rendered("[\n  'a',\n  'b',\n]\n".into()),
            json!(["a", "b"])
        );
        assert_eq!(read_rendered("{'x', 'y'}".into()), json!(["x", "y"]));
        assert_eq!(read_rendered("[(5), (5,)]".into()), json!([5, [5]]));
        assert_eq!(read_rendered("[0x10, 1_000]".into()), json!([16, 1000]));
        assert_eq!(read_rendered("[r'\\d', b'x']".into()), json!(["\\d", "x"]));
        assert_eq!(
            read_rendered("{True: 1, None: 2}".into()),
            json!({"true": 1, "null": 2})
        );
    }

    #[test]
    fn read_rendered_keeps_non_literals() {
        assert_eq!(read_rendered("[a, b]".into()), json!("[a, b]"));
        assert_eq!(read_rendered("[1] and more".into()), json!("[1] and more"));
        assert_eq!(read_rendered("{{ raw }}".into()), json!("{{ raw }}"));
        assert_eq!(read_rendered(" [1]".into()), json!(" [1]"));
        // Python's literal_eval rejects the JSON words and leading zeros.
        assert_eq!(read_rendered("{'a': true}".into()), json!("{'a': true}"));
        assert_eq!(read_rendered("[0750]".into()), json!("[0750]"));
    }

    #[test]
    fn json_round_trip_keeps_order_and_types() {
        let json = json!({"z": 1, "a": [true, null, "x", 2.5, -3], "m": {"k": "v"}});
        let value = json_to_value(&json);
        assert_eq!(value_to_json(&value).unwrap(), json);
    }

    #[test]
    fn value_to_json_rejects_undefined() {
        let value = Value::from(vec![Value::UNDEFINED]);
        assert!(value_to_json(&value).is_err());
    }
}
