//! Deserialization of the API's polymorphic fields (`type`-tagged prices and billing models,
//! price value lists that are either plain or dimensional).
//!
//! serde's derived tagged/untagged enums buffer their input, and buffering loses serde_json's
//! arbitrary-precision numbers. So these fields are first read as a `serde_json::Value` (which
//! keeps numbers exact) and then dispatched by hand. Errors keep the path inside the value,
//! encoded as `@inner.path@ message`, so the HTTP layer can name the full field path.

use serde::de::{DeserializeOwned, Error};
use serde_json::Value;

/// Deserializes `value` into `T`, keeping the failing path inside `value` in the error message.
/// Reads through a reference, so one value can feed several types without being copied.
pub fn from_value<T: DeserializeOwned, E: Error>(value: &Value) -> Result<T, E> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let (path, message) = split_error_path(&err.path().to_string(), &err.inner().to_string());
        E::custom(format_args!("@{path}@ {message}"))
    })
}

/// Joins a path reported by serde_path_to_error with the inner path a [`from_value`] error may
/// carry in its message. Returns the full path (empty for the document root) and the message.
pub fn split_error_path(outer: &str, message: &str) -> (String, String) {
    let outer = if outer == "." { "" } else { outer };
    let (inner, rest) = match message.strip_prefix('@').and_then(|m| m.split_once("@ ")) {
        Some((inner, rest)) => (inner, rest),
        None => ("", message),
    };
    let path = match (outer.is_empty(), inner.is_empty()) {
        (true, _) => inner.to_string(),
        (false, true) => outer.to_string(),
        (false, false) if inner.starts_with('[') => format!("{outer}{inner}"),
        (false, false) => format!("{outer}.{inner}"),
    };
    (path, rest.to_string())
}

/// The field named by serde's "missing field `x`" message, if that is what `message` says.
pub fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(field, _)| field)
}

/// The `type` discriminator of a tagged object, if present and a string.
pub fn tag_of(value: &Value) -> Option<&str> {
    value.get("type").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_error_paths_join_into_one_field_path() {
        assert_eq!(
            split_error_path("prices[0]", "@usage_calculation.volume_field@ invalid type"),
            ("prices[0].usage_calculation.volume_field".into(), "invalid type".into())
        );
        assert_eq!(split_error_path(".", "bad"), ("".into(), "bad".into()));
        assert_eq!(split_error_path("values", "@[2].up_to@ x"), ("values[2].up_to".into(), "x".into()));
    }

    #[test]
    fn missing_field_names_the_field() {
        assert_eq!(missing_field("missing field `name`"), Some("name"));
        assert_eq!(missing_field("other"), None);
    }
}
