//! The HTTP API, one module per area. Each module's `configure` registers its routes.

pub mod alert_stream;
pub mod alerts;
pub mod audit;
pub mod body;
pub mod coverage;
pub mod dashboard;
pub mod endpoint;
pub mod flood;
pub mod geojson;
pub mod health;
pub mod issues;
pub mod openapi;
pub mod patrols;
pub mod photos;
pub mod segments;
pub mod session;
pub mod stock;
pub mod sync;
pub mod uploads;
pub mod users;
pub mod webhooks;

use actix_web::http::Method;
use actix_web::web;

/// Where the API lives.
pub const API: &str = "/api/v1";

pub fn configure(cfg: &mut web::ServiceConfig) {
    outside_api(cfg);
    cfg.service(
        web::scope(API)
            .configure(api)
            .default_service(web::to(not_found)),
    );
}

/// The endpoints outside `/api/v1`: health, metrics and the dashboard.
fn outside_api(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    dashboard::configure(cfg);
}

/// The tus endpoints, which `uploads::configure` registers with `web::resource` (tus answers other
/// methods its own way), listed here for [`registered`].
const UPLOAD_ROUTES: [(Method, &str); 5] = [
    (Method::POST, "/uploads"),
    (Method::OPTIONS, "/uploads"),
    (Method::HEAD, "/uploads/{id}"),
    (Method::PATCH, "/uploads/{id}"),
    (Method::OPTIONS, "/uploads/{id}"),
];

/// Every (method, full path) the server answers, path parameters written `{name}` as in OpenAPI
/// (an actix pattern's `{path:.*}` is `{path}`).
pub fn registered() -> Vec<(Method, String)> {
    let outside = endpoint::recorded(outside_api);
    let inside = endpoint::recorded(api)
        .into_iter()
        .chain(UPLOAD_ROUTES.map(|(m, p)| (m, p.to_owned())))
        .map(|(m, p)| (m, format!("{API}{p}")));
    outside
        .into_iter()
        .chain(inside)
        .map(|(m, p)| (m, openapi_path(&p)))
        .collect()
}

/// `{name:regex}` segments written `{name}`.
fn openapi_path(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some((before, after)) = rest.split_once('{') {
        let Some((param, tail)) = after.split_once('}') else {
            break;
        };
        let name = param.split_once(':').map_or(param, |(name, _)| name);
        out.push_str(before);
        out.push('{');
        out.push_str(name);
        out.push('}');
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// The API's endpoints, registered under [`API`].
fn api(cfg: &mut web::ServiceConfig) {
    cfg.configure(openapi::configure)
        .configure(session::configure)
        .configure(segments::configure)
        .configure(coverage::configure)
        .configure(sync::configure)
        .configure(patrols::configure)
        .configure(issues::configure)
        .configure(uploads::configure)
        .configure(photos::configure)
        .configure(stock::configure)
        // Before `alerts`, whose `/alerts/{id}` would take `stream` for an id.
        .configure(alert_stream::configure)
        .configure(alerts::configure)
        .configure(flood::configure)
        .configure(webhooks::configure)
        .configure(users::configure)
        .configure(audit::configure);
}

/// A path no endpoint serves (with any method): 404 `not_found`. A path that is served, asked with
/// a method it does not take, is 405 ([`endpoint::Endpoint`]).
pub async fn not_found() -> Result<actix_web::HttpResponse, crate::error::AppError> {
    Err(crate::error::AppError::NotFound("no such endpoint".into()))
}

/// Whether the request's `If-None-Match` names this ETag (or `*`); weak tags compare by their value.
pub(crate) fn if_none_match(req: &actix_web::HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(actix_web::http::header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// A query parameter that must be a whole number in `min..=max` (absent or empty: `None`); refused
/// naming `field` otherwise.
pub(crate) fn whole_number<T>(
    value: Option<&str>,
    field: &str,
    min: T,
    max: T,
) -> Result<Option<T>, riverchief_shared::FieldError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    value
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<T>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    riverchief_shared::FieldError::new(
                        "invalid",
                        field,
                        format!("{s:?} is not a whole number from {min} to {max}"),
                    )
                })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_written_as_openapi_paths() {
        assert_eq!(openapi_path("/assets/{path:.*}"), "/assets/{path}");
        assert_eq!(
            openapi_path("/api/v1/users/{id}/devices"),
            "/api/v1/users/{id}/devices"
        );
        assert_eq!(openapi_path("/healthz"), "/healthz");
    }

    #[test]
    fn the_table_holds_each_method_of_each_endpoint_once() {
        let table = registered();
        for probe in [
            (Method::GET, "/api/v1/flood-stage"),
            (Method::POST, "/api/v1/flood-stage"),
            (Method::HEAD, "/"),
            (Method::PATCH, "/api/v1/uploads/{id}"),
        ] {
            let n = table
                .iter()
                .filter(|(m, p)| *m == probe.0 && p == probe.1)
                .count();
            assert_eq!(n, 1, "{probe:?}");
        }
        // Recording is off again afterwards: endpoints built outside `recorded` are not listed.
        let _ = endpoint::Endpoint::new("/elsewhere").get(not_found).done();
        assert_eq!(endpoint::recorded(|_| {}), Vec::new());
    }
}
