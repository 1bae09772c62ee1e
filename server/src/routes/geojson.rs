//! The GeoJSON the map endpoints answer (`/segments`, `/coverage`, `/depots`): a Feature and a
//! FeatureCollection, each shape written once here.

use serde::Serialize;
use serde_json::{json, Value};

/// A Feature: its `id`, `geometry` (or `null`) and `properties`.
pub fn feature(id: impl Serialize, geometry: Value, properties: impl Serialize) -> Value {
    json!({
        "type": "Feature",
        "id": id,
        "geometry": geometry,
        "properties": properties,
    })
}

/// A FeatureCollection of `features`.
pub fn collection(features: Vec<Value>) -> Value {
    json!({"type": "FeatureCollection", "features": features})
}

/// A geometry of `kind` (`Point`, `LineString`, `MultiLineString`) with its coordinates.
pub fn geometry(kind: &str, coordinates: impl Serialize) -> Value {
    json!({"type": kind, "coordinates": coordinates})
}
