//! The duty lead's dashboard: static files embedded in the binary (`build.rs` lists them from
//! `dashboard/src` and Leaflet's `dist`), served without authentication at `/` (the page) and
//! `/assets/...`, and `/config.json`, what the operator set for the page (the base map's tile URL).
//! The page then logs in and calls the API with its bearer token like any other client.
//!
//! Caching: every file answers with a strong `ETag` (a digest of its bytes) and `Cache-Control:
//! no-cache`, so a browser keeps its copy but asks each time whether it is still current (a 304 when it
//! is). A new server binary thus never runs with an old page, and nothing needs versioned file names.

use super::endpoint::Endpoint;
use crate::error::AppError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::OnceLock;

/// One embedded file.
pub struct Asset {
    /// The path under `/assets/` (`app.js`, `leaflet/leaflet.css`).
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// What the operator configures for the page (`serve --tile-url`, `--tile-attribution`).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DashboardConfig {
    /// A Leaflet tile URL template (`https://tiles.example/{z}/{x}/{y}.png`); none = no base map.
    pub tile_url: Option<String>,
    /// Shown in the map's corner, as the tile provider's licence asks.
    pub tile_attribution: Option<String>,
}

impl DashboardConfig {
    /// Checks a tile URL template: http(s), and the `{z}`, `{x}` and `{y}` placeholders Leaflet fills.
    pub fn check_tile_url(url: &str) -> Result<(), String> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!(
                "{url:?}: a tile URL must start with https:// or http://"
            ));
        }
        for p in ["{z}", "{x}", "{y}"] {
            if !url.contains(p) {
                return Err(format!("{url:?}: a tile URL template needs {p}"));
            }
        }
        Ok(())
    }

    /// Where the page may load tile images from: the tile URL's origin, with Leaflet's `{s}`
    /// subdomain placeholder as a wildcard (`https://*.tile.example`). None without a base map.
    fn tile_origin(&self) -> Option<String> {
        let url = self.tile_url.as_deref()?;
        let (scheme, rest) = url.split_once("://")?;
        let host = rest.split(['/', '?', '#']).next()?.replace("{s}", "*");
        // A template with placeholders in the host beyond `{s}` cannot be named as an origin.
        if host.is_empty() || host.contains(['{', '}', ' ', ';', ',', '\'']) {
            return None;
        }
        Some(format!("{scheme}://{host}"))
    }

    /// The page's Content-Security-Policy: everything from this server alone (scripts, styles,
    /// the API and the alert stream), images also from the operator's tile server; no inline script
    /// or style, no plugins, no framing, no foreign form targets. An injected `<script>` or
    /// `onerror=` attribute does not run.
    pub fn content_security_policy(&self) -> String {
        let tiles = self
            .tile_origin()
            .map(|o| format!(" {o}"))
            .unwrap_or_default();
        format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:{tiles}; \
             connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'"
        )
    }
}

/// What every page and file of the dashboard is sent with: no MIME sniffing, no referrer to the
/// tile server or elsewhere, and no camera, microphone or location for the page.
fn hardened(response: &mut HttpResponse) {
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    );
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // GET and HEAD (actix sends no body for HEAD).
    cfg.service(Endpoint::new("/").get(index).on(Method::HEAD, index).done())
        .service(
            Endpoint::new("/index.html")
                .get(index_html)
                .on(Method::HEAD, index_html)
                .done(),
        )
        .service(
            Endpoint::new("/config.json")
                .get(config)
                .on(Method::HEAD, config)
                .done(),
        )
        .service(
            Endpoint::new("/assets/{path:.*}")
                .get(asset)
                .on(Method::HEAD, asset)
                .done(),
        );
}

/// The embedded files by path, with their ETags (computed once).
fn table() -> &'static HashMap<&'static str, (&'static Asset, String)> {
    static TABLE: OnceLock<HashMap<&'static str, (&'static Asset, String)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.bytes);
                (a.path, (a, format!("\"{}\"", hex::encode(&digest[..12]))))
            })
            .collect()
    })
}

fn serve(req: &HttpRequest, path: &str) -> Result<HttpResponse, AppError> {
    let (asset, etag) = table()
        .get(path)
        .ok_or_else(|| AppError::NotFound("no such file".into()))?;
    let not_modified = super::if_none_match(req, etag);
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, etag.as_str()));
    let mut response = if not_modified {
        response.finish()
    } else {
        response.content_type(asset.content_type).body(asset.bytes)
    };
    hardened(&mut response);
    Ok(response)
}

/// The page (`HEAD`: its headers).
#[utoipa::path(
    method(get, head),
    path = "/",
    tag = "dashboard",
    security(()),
    responses(
        (status = 200, description = "The duty lead's dashboard page, with its Content-Security-Policy", content_type = "text/html"),
        (status = 304, description = "The copy named by If-None-Match is current"),
    ),
)]
async fn index(
    req: HttpRequest,
    settings: web::Data<DashboardConfig>,
) -> Result<HttpResponse, AppError> {
    let mut response = serve(&req, "index.html")?;
    let csp = HeaderValue::from_str(&settings.content_security_policy())
        .map_err(|e| AppError::Internal(format!("the page's policy: {e}")))?;
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    // The page may not be framed by another site (clickjacking of the acknowledge buttons).
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Ok(response)
}

/// The page under its file name.
#[utoipa::path(
    method(get, head),
    path = "/index.html",
    tag = "dashboard",
    security(()),
    responses(
        (status = 200, description = "The dashboard page (as at /)", content_type = "text/html"),
        (status = 304, description = "The copy named by If-None-Match is current"),
    ),
)]
async fn index_html(
    req: HttpRequest,
    settings: web::Data<DashboardConfig>,
) -> Result<HttpResponse, AppError> {
    index(req, settings).await
}

/// One of the page's files (scripts, styles, Leaflet and its images).
#[utoipa::path(
    method(get, head),
    path = "/assets/{path}",
    tag = "dashboard",
    security(()),
    params(("path" = String, Path, description = "The file's path under /assets/, e.g. `app.js`")),
    responses(
        (status = 200, description = "The file, with a strong ETag", content(
            ("text/javascript"), ("text/css"), ("image/png"), ("image/svg+xml"), ("application/json")
        )),
        (status = 304, description = "The copy named by If-None-Match is current"),
        (status = 404, description = "No such file"),
    ),
)]
async fn asset(req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    serve(&req, &path)
}

/// What the operator set for the page.
#[utoipa::path(
    method(get, head),
    path = "/config.json",
    tag = "dashboard",
    security(()),
    responses((status = 200, description = "The base map's tile URL and attribution (null: no base map)", body = DashboardConfig)),
)]
async fn config(settings: web::Data<DashboardConfig>) -> HttpResponse {
    let mut response = HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .json(settings.get_ref());
    hardened(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_admits_the_tile_server_alone() {
        let with = |url: Option<&str>| DashboardConfig {
            tile_url: url.map(str::to_owned),
            tile_attribution: None,
        };
        let none = with(None).content_security_policy();
        assert!(none.contains("img-src 'self' data: blob:;"), "{none}");
        let one = with(Some("https://tiles.example.internal:8443/{z}/{x}/{y}.png"));
        assert!(one
            .content_security_policy()
            .contains("img-src 'self' data: blob: https://tiles.example.internal:8443;"));
        let subdomains = with(Some("https://{s}.tile.example.org/{z}/{x}/{y}.png"));
        assert!(subdomains
            .content_security_policy()
            .contains("img-src 'self' data: blob: https://*.tile.example.org;"));
        // A host the policy cannot name safely admits nothing more.
        let odd = with(Some("https://{z}.example.org/{x}/{y}.png"));
        assert!(odd
            .content_security_policy()
            .contains("img-src 'self' data: blob:;"));
        for c in [none, one.content_security_policy()] {
            assert!(!c.contains("unsafe"), "{c}");
        }
    }

    #[test]
    fn the_page_and_leaflet_are_embedded_with_their_types() {
        let t = table();
        for (path, ty) in [
            ("index.html", "text/html; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("leaflet/leaflet.js", "text/javascript; charset=utf-8"),
            ("leaflet/leaflet.css", "text/css; charset=utf-8"),
        ] {
            let (asset, etag) = t.get(path).unwrap_or_else(|| panic!("{path} not embedded"));
            assert_eq!(asset.content_type, ty);
            assert!(!asset.bytes.is_empty());
            assert_eq!(etag.len(), 26);
        }
    }

    #[test]
    fn tile_urls_need_a_scheme_and_placeholders() {
        assert!(DashboardConfig::check_tile_url("https://t0.example/{z}/{x}/{y}.png").is_ok());
        assert!(DashboardConfig::check_tile_url("ftp://t0.example/{z}/{x}/{y}.png").is_err());
        assert!(DashboardConfig::check_tile_url("https://t0.example/{z}/{x}.png").is_err());
    }
}
