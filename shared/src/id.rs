//! Id newtypes. Everything created on a device gets a UUIDv7 made on that device, so ids sort by
//! creation time and can be made with no network.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Why a string is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("not a UUID")]
    Malformed,
    #[error("not a UUIDv7 (ids made on a device must be UUIDv7)")]
    NotV7,
}

/// The OpenAPI schema of every id: a UUIDv7 string (hyphenated; the simple form is accepted too).
pub(crate) fn uuid_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Uuid,
        )))
        .description(Some("A UUIDv7"))
        .into()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh UUIDv7 id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses a UUIDv7 (hyphenated or simple form).
            pub fn parse(s: &str) -> Result<Self, IdError> {
                let uuid = Uuid::parse_str(s).map_err(|_| IdError::Malformed)?;
                Self::from_uuid(uuid)
            }

            /// Wraps a UUID, refusing anything but version 7.
            pub fn from_uuid(uuid: Uuid) -> Result<Self, IdError> {
                if uuid.get_version_num() == 7 {
                    Ok(Self(uuid))
                } else {
                    Err(IdError::NotV7)
                }
            }

            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        /// A UUID string (version 7).
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::id::uuid_schema()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

id_type!(
    /// A user account.
    UserId
);
id_type!(
    /// A stretch of embankment.
    SegmentId
);
id_type!(
    /// One walk by one patroller, created on the device.
    PatrolId
);
id_type!(
    /// A problem found on the bank, created on the device.
    IssueId
);
id_type!(
    /// One entry in an issue's append-only history.
    IssueEventId
);
id_type!(
    /// One offline action queued on a device; the idempotency key of the sync protocol.
    MutationId
);
id_type!(
    /// A device (one installation of the client).
    DeviceId
);
id_type!(
    /// An alert raised by the server.
    AlertId
);
id_type!(
    /// A webhook an admin configured.
    WebhookId
);
id_type!(
    /// One alert change to one webhook; the `Idempotency-Key` of every attempt to send it.
    DeliveryId
);

id_type!(
    /// A tus photo upload (made by the server).
    UploadId
);
id_type!(
    /// A depot where flood supplies are kept (made by the server).
    DepotId
);
id_type!(
    /// A kind of flood supply (made by the server).
    ItemId
);
id_type!(
    /// One lot of an ageing item, with its expiry (made by the server).
    LotId
);
id_type!(
    /// One line of the stock ledger: made on the device for a movement recorded offline, by the server
    /// for one recorded through the API.
    MovementId
);
id_type!(
    /// A gauge station (made by the server).
    StationId
);
id_type!(
    /// A flood drill: a hydrograph replayed for one station (made by the server).
    DrillId
);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_v7_and_refuses_v4() {
        let id = PatrolId::new();
        assert_eq!(PatrolId::parse(&id.to_string()), Ok(id));
        assert_eq!(
            PatrolId::parse("67e55044-10b1-426f-9247-bb680e5fe0c8"),
            Err(IdError::NotV7)
        );
        assert_eq!(PatrolId::parse("nope"), Err(IdError::Malformed));
    }

    #[test]
    fn serde_round_trip_refuses_bad_ids() {
        let id = IssueId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<IssueId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<IssueId>("\"x\"").is_err());
    }
}
