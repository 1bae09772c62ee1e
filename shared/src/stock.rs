//! Flood supplies: what a stock movement does.

use crate::FieldError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// What a movement does to stock. On the wire and in the ledger it is its [`MovementKind::as_str`]
/// name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MovementKind {
    Receive,
    Dispatch,
    Return,
    WriteOff,
    Adjust,
}

/// The most a depot holds of one item, and so the most one movement moves and one count finds: a
/// billion units (sandbags are counted one by one, and the largest city depots hold millions). Every
/// balance stays within `0..=MAX_QUANTITY`, so no movement's arithmetic and no sum of the ledger can
/// overflow.
pub const MAX_QUANTITY: i64 = 1_000_000_000;

/// What an unknown kind is told.
const ONE_OF: &str = "the kind is one of receive, dispatch, return, write_off, adjust";

crate::names::named!(MovementKind {
    Receive => "receive",
    Dispatch => "dispatch",
    Return => "return",
    WriteOff => "write_off",
    Adjust => "adjust",
});

impl MovementKind {
    /// [`MovementKind::parse`], or the refusal that names `field`.
    pub fn parse_field(s: &str, field: &str) -> Result<MovementKind, FieldError> {
        MovementKind::parse(s).ok_or_else(|| FieldError::new("invalid", field, ONE_OF))
    }

    /// The signed change a movement of `quantity` (positive) makes; an adjustment carries its sign.
    pub fn signed(self, quantity: i64) -> i64 {
        match self {
            MovementKind::Receive | MovementKind::Return | MovementKind::Adjust => quantity,
            MovementKind::Dispatch | MovementKind::WriteOff => -quantity,
        }
    }
}

impl fmt::Display for MovementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MovementKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MovementKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        MovementKind::parse(&s).ok_or_else(|| serde::de::Error::custom(ONE_OF))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_their_wire_names() {
        for k in MovementKind::ALL {
            let json = serde_json::to_value(k).ok();
            assert_eq!(json, Some(serde_json::Value::from(k.as_str())));
            assert_eq!(
                serde_json::from_value::<MovementKind>(k.as_str().into()).ok(),
                Some(k)
            );
        }
        assert!(serde_json::from_value::<MovementKind>("steal".into()).is_err());
    }
}
