//! Coordinates, parsed at the edge, and segment geometry arithmetic (length, chainage of a point).
//!
//! Stored coordinates are WGS-84 (EPSG:4326) in GeoJSON order (lon, lat).

use crate::validate::FieldError;
use geo::{Closest, ClosestPoint, Distance, Geodesic, Length, LineLocatePoint};
use serde::{Deserialize, Serialize};

/// A longitude in degrees, finite and within [-180, 180].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Lon(f64);

/// A latitude in degrees, finite and within [-90, 90].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Lat(f64);

macro_rules! degrees {
    ($name:ident, $max:expr, $what:literal) => {
        impl $name {
            pub fn parse(value: f64, field: &str) -> Result<Self, FieldError> {
                if !value.is_finite() {
                    return Err(FieldError::new(
                        "not_finite",
                        field,
                        concat!($what, " must be a finite number"),
                    ));
                }
                if !(-$max..=$max).contains(&value) {
                    return Err(FieldError::new(
                        "out_of_range",
                        field,
                        format!(concat!($what, " {} is outside -{}..{}"), value, $max, $max),
                    ));
                }
                Ok(Self(value))
            }
            pub fn get(self) -> f64 {
                self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = f64::deserialize(d)?;
                Self::parse(v, "").map_err(|e| serde::de::Error::custom(e.message))
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::Number)
                    .minimum(Some(-$max))
                    .maximum(Some($max))
                    .description(Some(concat!("A WGS-84 ", $what, " in degrees")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

degrees!(Lon, 180.0, "longitude");
degrees!(Lat, 90.0, "latitude");

/// A WGS-84 position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Position {
    pub lon: Lon,
    pub lat: Lat,
}

impl Position {
    pub fn point(&self) -> geo::Point<f64> {
        geo::Point::new(self.lon.get(), self.lat.get())
    }
}

/// Geodesic length of a line in metres.
pub fn length_m(line: &geo::LineString<f64>) -> f64 {
    Geodesic.length(line)
}

/// Geodesic distance in metres between two `[lon, lat]` points.
pub fn distance_m(a: [f64; 2], b: [f64; 2]) -> f64 {
    Geodesic.distance(geo::Point::new(a[0], a[1]), geo::Point::new(b[0], b[1]))
}

/// Where a point lies along a line: metres from the line's start to the point's projection, and the
/// point's distance from the line. `None` for an empty line.
pub fn locate(line: &geo::LineString<f64>, point: geo::Point<f64>) -> Option<(f64, f64)> {
    let fraction = line.line_locate_point(&point)?;
    let along = fraction * length_m(line);
    let nearest = match line.closest_point(&point) {
        Closest::Intersection(p) | Closest::SinglePoint(p) => p,
        Closest::Indeterminate => return None,
    };
    Some((along, Geodesic.distance(nearest, point)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refuses_out_of_range_and_nan() {
        assert!(Lat::parse(91.0, "lat").is_err());
        assert!(Lat::parse(f64::NAN, "lat").is_err());
        assert!(Lon::parse(f64::INFINITY, "lon").is_err());
        assert_eq!(Lat::parse(32.05, "lat").map(Lat::get), Ok(32.05));
    }

    #[test]
    fn locates_a_point_along_a_line() {
        let line = geo::LineString::from(vec![(118.744, 32.05), (118.744, 32.06)]);
        let len = length_m(&line);
        assert!((len - 1109.0).abs() < 5.0, "{len}");
        let (along, off) = locate(&line, geo::Point::new(118.744, 32.055)).unwrap();
        assert!((along - len / 2.0).abs() < 2.0, "{along}");
        assert!(off < 1.0);
    }
}
