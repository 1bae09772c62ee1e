//! Photos are content-addressed by SHA-256: stored once, verified on arrival, never trusted by name.

use crate::validate::FieldError;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::fmt;
use std::str::FromStr;

/// A SHA-256 digest as 64 lowercase hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256([u8; 32]);

impl Sha256 {
    pub fn parse(s: &str, field: &str) -> Result<Self, FieldError> {
        let bad = || {
            FieldError::new(
                "bad_hash",
                field,
                "must be a SHA-256 digest: 64 lowercase hex characters",
            )
        };
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(sha2::Sha256::digest(bytes).into())
    }

    pub fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl FromStr for Sha256 {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s, "sha256")
    }
}

impl Serialize for Sha256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s, "").map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// 64 lowercase hex characters.
impl utoipa::PartialSchema for Sha256 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-f]{64}$"))
            .description(Some("A SHA-256 digest: 64 lowercase hex characters"))
            .into()
    }
}

impl utoipa::ToSchema for Sha256 {}

/// The image types a photo may be, judged by its bytes, never by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PhotoType {
    Jpeg,
    Png,
    Webp,
    Heic,
    Heif,
}

impl PhotoType {
    /// Sniffs the type from the first bytes of the file (a few hundred bytes are plenty).
    pub fn sniff(head: &[u8]) -> Option<Self> {
        match infer::get(head)?.mime_type() {
            "image/jpeg" => Some(Self::Jpeg),
            "image/png" => Some(Self::Png),
            "image/webp" => Some(Self::Webp),
            "image/heic" => Some(Self::Heic),
            "image/heif" => Some(Self::Heif),
            _ => None,
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Heic => "image/heic",
            Self::Heif => "image/heif",
        }
    }

    pub fn from_mime(mime: &str) -> Option<Self> {
        [Self::Jpeg, Self::Png, Self::Webp, Self::Heic, Self::Heif]
            .into_iter()
            .find(|t| t.mime() == mime)
    }
}

/// A photo attached to an issue or event, and whether the server has its bytes yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PhotoRef {
    pub sha256: Sha256,
    pub arrived: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_lowercase_hex_digests() {
        let d = Sha256::of(b"abc");
        assert_eq!(Sha256::parse(&d.hex(), "x"), Ok(d));
        assert!(Sha256::parse(&d.hex().to_uppercase(), "x").is_err());
        assert!(Sha256::parse("abc", "x").is_err());
        assert!(Sha256::parse(&"g".repeat(64), "x").is_err());
    }

    #[test]
    fn sniffs_by_bytes() {
        assert_eq!(
            PhotoType::sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]),
            Some(PhotoType::Jpeg)
        );
        assert_eq!(
            PhotoType::sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(PhotoType::Png)
        );
        assert_eq!(PhotoType::sniff(b"just some text posing as a jpeg"), None);
    }
}
