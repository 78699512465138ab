//! Error bodies: RFC 7807 ProblemDetails and Credyt's ValidationProblem, plus the collector that
//! validation code fills with `field path -> messages`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProblemDetails {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Present (and non-empty) only on a ValidationProblem.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, Vec<String>>,
}

/// Field-path-keyed validation errors, e.g. `prices[0].usage_calculation.volume_field`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValidationErrors {
    errors: BTreeMap<String, Vec<String>>,
}

impl ValidationErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// A single error on one field.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, message);
        errors
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.entry(field.into()).or_default().push(message.into());
    }

    /// Records `message` on `field` unless `ok`.
    pub fn check(&mut self, ok: bool, field: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.add(field, message);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn into_map(self) -> BTreeMap<String, Vec<String>> {
        self.errors
    }

    /// `Ok(())` when nothing was recorded.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.errors.keys().map(String::as_str)
    }
}

/// A field path builder: `path("prices", 0).field("usage_calculation")`.
#[derive(Clone, Debug, Default)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn root() -> Self {
        Self(String::new())
    }

    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    pub fn at(&self, name: &str, i: usize) -> Self {
        self.field(name).index(i)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<FieldPath> for String {
    fn from(path: FieldPath) -> String {
        path.0
    }
}

impl From<&FieldPath> for String {
    fn from(path: &FieldPath) -> String {
        path.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_render_like_the_api() {
        let p = FieldPath::root().at("prices", 0).field("usage_calculation").field("volume_field");
        assert_eq!(p.as_str(), "prices[0].usage_calculation.volume_field");
    }

    #[test]
    fn validation_problem_serializes_errors_only_when_present() {
        let problem = ProblemDetails {
            kind: "about:blank".into(),
            title: "Not Found".into(),
            status: 404,
            detail: None,
            instance: None,
            errors: BTreeMap::new(),
        };
        let json = serde_json::to_value(&problem).unwrap();
        assert!(json.get("errors").is_none());
        assert_eq!(json["type"], "about:blank");
    }
}
