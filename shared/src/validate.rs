//! Field-path errors and the limits both sides enforce.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A refusal that names the field it is about, as a path into the request (`data.points[17].lat`).
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema,
)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Machine-readable reason, e.g. `out_of_range`, `required`, `too_long`.
    pub code: String,
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(code: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// Puts `prefix` in front of the field path (`points[3].lat` → `data.points[3].lat`).
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// A field path under construction, for building `data.points[17].lat` without string juggling.
#[derive(Debug, Clone, Copy)]
pub struct Path<'a>(pub &'a str);

impl Path<'_> {
    pub fn field(&self, name: &str) -> String {
        if self.0.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.0)
        }
    }
    pub fn index(&self, i: usize) -> String {
        format!("{}[{i}]", self.0)
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The limits of the sync protocol. The server enforces them; the client keeps under them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Track points in one `patrol.points` mutation.
    pub max_points_per_mutation: usize,
    /// Mutations in one push.
    pub max_mutations_per_push: usize,
    /// Bytes of one push request body.
    pub max_push_bytes: usize,
    /// Photos attached to one report or event.
    pub max_photos_per_record: usize,
    /// Bytes of one photo.
    pub max_photo_bytes: u64,
    /// Characters of a description or note.
    pub max_text_chars: usize,
    /// Changes in one pull page.
    pub max_pull_limit: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_points_per_mutation: 1000,
        max_mutations_per_push: 200,
        max_push_bytes: 4 * 1024 * 1024,
        max_photos_per_record: 9,
        max_photo_bytes: 25 * 1024 * 1024,
        max_text_chars: 4000,
        max_pull_limit: 5000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Deserializes `value`, naming the path of whatever is wrong, under `prefix` (`data` turns
/// `points[17].lat` into `data.points[17].lat`). A missing field is named itself (serde reports it at
/// its parent) with code `required`; every other mismatch is `invalid` with serde's message.
pub fn parse_value<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let err = match missing {
            Some(name) if path.is_empty() => FieldError::new("required", name, "is required"),
            Some(name) => FieldError::new("required", format!("{path}.{name}"), "is required"),
            None => FieldError::new("invalid", path, message),
        };
        if prefix.is_empty() {
            err
        } else {
            err.within(prefix)
        }
    })
}

/// Refuses text longer than `max` characters (not bytes: Chinese text is three bytes a character).
pub fn text(value: &str, max: usize, field: impl Into<String>) -> Result<(), FieldError> {
    // NUL is never meant in a note, and some databases (PostgreSQL) refuse to store it.
    if value.contains('\0') {
        return Err(FieldError::new(
            "invalid",
            field,
            "contains a NUL character",
        ));
    }
    let n = value.chars().count();
    if n > max {
        return Err(FieldError::new(
            "too_long",
            field,
            format!("is {n} characters long; at most {max} are allowed"),
        ));
    }
    Ok(())
}

/// Refuses an empty (or whitespace-only) required text.
pub fn non_empty(value: &str, field: impl Into<String>) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::new("required", field, "must not be empty"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
    #[allow(dead_code)]
    struct Outer {
        inner: Vec<Inner>,
    }
    #[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
    #[allow(dead_code)]
    struct Inner {
        lat: f64,
    }

    #[test]
    fn names_missing_and_mistyped_fields_by_path() {
        let missing =
            parse_value::<Outer>(serde_json::json!({"inner": [{"lat": 1.0}, {}]}), "data");
        let e = missing.unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.field.as_str()),
            ("required", "data.inner[1].lat")
        );
        let typed = parse_value::<Outer>(serde_json::json!({"inner": [{"lat": "x"}]}), "");
        assert_eq!(typed.unwrap_err().field, "inner[0].lat");
        let top = parse_value::<Outer>(serde_json::json!({}), "");
        assert_eq!(top.unwrap_err().field, "inner");
    }

    #[test]
    fn text_refuses_nul_and_overlong() {
        assert!(text("a\0b", 10, "note").is_err());
        assert!(text("管涌", 2, "note").is_ok());
        assert!(text("管涌!", 2, "note").is_err());
    }
}
