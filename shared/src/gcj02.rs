//! GCJ-02 ("Mars coordinates", the offset datum Chinese map apps and many Chinese phones report) to
//! WGS-84 and back.
//!
//! This is the published algorithm (the one every open implementation, e.g. eviltransform and
//! coordtransform, carries): WGS-84 → GCJ-02 is a closed formula on the Krasovsky 1940 ellipsoid; the
//! inverse has no closed form, so [`to_wgs84`] iterates the forward formula until the round trip
//! lands within a millimetre. Outside mainland China the datum is WGS-84 itself.

use std::f64::consts::PI;

const A: f64 = 6_378_245.0;
const EE: f64 = 0.006_693_421_622_965_943;

/// Whether a position lies outside the box in which GCJ-02 applies its offset.
pub fn out_of_china(lon: f64, lat: f64) -> bool {
    !(72.004..=137.8347).contains(&lon) || !(0.8293..=55.8271).contains(&lat)
}

fn transform_lat(x: f64, y: f64) -> f64 {
    let mut r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (y * PI).sin() + 40.0 * (y / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (160.0 * (y / 12.0 * PI).sin() + 320.0 * (y * PI / 30.0).sin()) * 2.0 / 3.0;
    r
}

fn transform_lon(x: f64, y: f64) -> f64 {
    let mut r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (x * PI).sin() + 40.0 * (x / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (150.0 * (x / 12.0 * PI).sin() + 300.0 * (x / 30.0 * PI).sin()) * 2.0 / 3.0;
    r
}

/// WGS-84 (lon, lat) → GCJ-02 (lon, lat).
pub fn from_wgs84(lon: f64, lat: f64) -> (f64, f64) {
    if out_of_china(lon, lat) {
        return (lon, lat);
    }
    let d_lat = transform_lat(lon - 105.0, lat - 35.0);
    let d_lon = transform_lon(lon - 105.0, lat - 35.0);
    let rad_lat = lat / 180.0 * PI;
    let magic = 1.0 - EE * rad_lat.sin().powi(2);
    let sqrt_magic = magic.sqrt();
    let d_lat = (d_lat * 180.0) / ((A * (1.0 - EE)) / (magic * sqrt_magic) * PI);
    let d_lon = (d_lon * 180.0) / (A / sqrt_magic * rad_lat.cos() * PI);
    (lon + d_lon, lat + d_lat)
}

/// GCJ-02 (lon, lat) → WGS-84 (lon, lat), exact to about a millimetre.
pub fn to_wgs84(lon: f64, lat: f64) -> (f64, f64) {
    if out_of_china(lon, lat) {
        return (lon, lat);
    }
    let (mut w_lon, mut w_lat) = (lon, lat);
    for _ in 0..30 {
        let (g_lon, g_lat) = from_wgs84(w_lon, w_lat);
        let (e_lon, e_lat) = (lon - g_lon, lat - g_lat);
        w_lon += e_lon;
        w_lat += e_lat;
        // 1e-8 degrees is about a millimetre.
        if e_lon.abs() < 1e-9 && e_lat.abs() < 1e-9 {
            break;
        }
    }
    (w_lon, w_lat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{Distance, Geodesic, Point};

    #[test]
    fn matches_published_reference_values() {
        // (wgs lon, lat, gcj lon, lat): the test vectors of coordtransform and eviltransform.
        let cases = [
            (
                116.404,
                39.915,
                116.410_244_499_169_38,
                39.916_404_281_501_64,
            ),
            (
                121.527_210_6,
                31.177_427_6,
                121.531_541_859_215,
                31.175_303_983_645_97,
            ),
            (
                113.912_316,
                22.543_847,
                113.917_176_480_836_3,
                22.540_796_131_694_766,
            ),
        ];
        for (lon, lat, g_lon, g_lat) in cases {
            let (x, y) = from_wgs84(lon, lat);
            assert!(
                (x - g_lon).abs() < 1e-9 && (y - g_lat).abs() < 1e-9,
                "{x},{y}"
            );
        }
    }

    #[test]
    fn round_trips_within_a_millimetre_in_nanjing() {
        for (lon, lat) in [(118.74485, 32.05), (118.74355, 32.0557), (118.8455, 31.952)] {
            let (g_lon, g_lat) = from_wgs84(lon, lat);
            let (w_lon, w_lat) = to_wgs84(g_lon, g_lat);
            let err = Geodesic.distance(Point::new(lon, lat), Point::new(w_lon, w_lat));
            assert!(err < 0.001, "{err} m at {lon},{lat}");
        }
    }

    #[test]
    fn the_offset_on_the_qinhuai_is_about_540_m() {
        let (lon, lat) = (118.74485, 32.05);
        let (g_lon, g_lat) = from_wgs84(lon, lat);
        let off = Geodesic.distance(Point::new(lon, lat), Point::new(g_lon, g_lat));
        assert!((480.0..600.0).contains(&off), "{off}");
    }

    #[test]
    fn leaves_positions_outside_china_alone() {
        assert_eq!(from_wgs84(2.35, 48.85), (2.35, 48.85));
        assert_eq!(to_wgs84(-74.0, 40.7), (-74.0, 40.7));
    }
}
