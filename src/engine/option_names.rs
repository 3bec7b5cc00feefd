//! The option names of a primitive's options struct, read from its serde `Deserialize`
//! implementation, so help text lists the keys a primitive accepts without a second list to
//! keep in step with the struct.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

/// Returns the field names that `T` declares to serde, or an empty list when `T` does not
/// deserialize as a plain struct (one with `#[serde(flatten)]` deserializes as a map).
pub fn option_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut recorder = FieldRecorder { fields: None };
    // The recorder always fails, after it has seen the field list.
    let _ = T::deserialize(&mut recorder);
    recorder.fields.unwrap_or(&[])
}

/// A deserializer that supplies no data and records the field list that serde requests.
struct FieldRecorder {
    fields: Option<&'static [&'static str]>,
}

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_message: T) -> Stop {
        Stop
    }
}

impl<'de> Deserializer<'de> for &mut FieldRecorder {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        self.fields = Some(fields);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::option_names;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Options {
        path: String,
        #[serde(default)]
        mode: Option<String>,
    }

    #[test]
    fn lists_struct_fields() {
        assert_eq!(option_names::<Options>(), ["path", "mode"]);
    }

    #[test]
    fn map_has_no_fields() {
        assert!(option_names::<std::collections::BTreeMap<String, String>>().is_empty());
    }
}
