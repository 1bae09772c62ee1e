//! The API's contract: an OpenAPI 3.1 document generated from the handlers' `#[utoipa::path]`
//! annotations and the shared crate's types (`ToSchema`), served at `GET /api/v1/openapi.json`, and
//! a page that renders it for people at `GET /api/v1/docs` (its script and style embedded in the
//! binary, no CDN). Both without a token.
//!
//! What holds for every operation is added here once ([`Conventions`]), not in each annotation:
//! the bearer token (operations that need none say `security(())`), its 401, a 400 for an
//! operation that takes query or header parameters or a body, 413 and 415 for one that takes a body, and the error
//! envelope (`ErrorBody`) as the body of every 4xx. The agreement test (`tests/e2e/openapi.rs`)
//! compares the document with [`super::registered`].

use super::endpoint::Endpoint;
use crate::error::AppError;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use riverchief_shared::api::ErrorBody;
use std::sync::OnceLock;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, RefOr, ResponseBuilder};
use utoipa::{OpenApi, PartialSchema, ToSchema};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/openapi.json").get(document_json).done())
        .service(Endpoint::new("/docs").get(docs_page).done())
        .service(Endpoint::new("/docs/{file}").get(docs_file).done());
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "riverchief",
        description = "River-chief patrols and embankment flood watch. Every request but login, \
            health, the tus OPTIONS probe and this document carries `Authorization: Bearer <token>` \
            (from `POST /api/v1/auth/login`). Roles: `patroller`, `duty_lead`, `admin`; an \
            operation's description says who may call it. Every refusal (4xx) and failure (5xx) \
            has the body `{\"error\": {\"code\", \"message\", \"field\"}}`; `field` names the part \
            of the request that is wrong. A path asked with a method it does not take is 405 \
            `method_not_allowed` with `Allow`; an unknown path under /api/v1 is 404 `not_found`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        document_json,
        docs_page,
        docs_file,
        super::health::healthz,
        super::health::metrics,
        super::dashboard::index,
        super::dashboard::index_html,
        super::dashboard::config,
        super::dashboard::asset,
        super::session::login,
        super::session::me,
        super::segments::list,
        super::coverage::all,
        super::coverage::one,
        super::coverage::get_stage,
        super::coverage::set_stage,
        super::sync::push,
        super::sync::pull,
        super::patrols::get,
        super::issues::list,
        super::issues::counts,
        super::issues::get,
        super::issues::add_event,
        super::uploads::options,
        super::uploads::create,
        super::uploads::head,
        super::uploads::patch,
        super::photos::photo,
        super::stock::depots,
        super::stock::view,
        super::stock::record,
        super::stock::history,
        super::stock::stocktake,
        super::alert_stream::stream,
        super::alerts::list,
        super::alerts::get,
        super::alerts::ack,
        super::flood::stations,
        super::flood::station,
        super::flood::readings,
        super::flood::post_readings,
        super::flood::flood_level,
        super::flood::set_response,
        super::flood::response_history,
        super::flood::start_drill,
        super::flood::drills,
        super::flood::drill,
        super::flood::stop_drill,
        super::webhooks::create,
        super::webhooks::list,
        super::webhooks::delete,
        super::webhooks::deliveries,
        super::users::list,
        super::users::create,
        super::users::update,
        super::users::reset_password,
        super::users::devices,
        super::users::revoke,
        super::audit::list,
    ),
    components(schemas(ErrorBody)),
    security(("bearer" = [])),
    modifiers(&Conventions),
)]
struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// The document as served, serialized once.
fn document_bytes() -> Result<&'static [u8], AppError> {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    if let Some(bytes) = JSON.get() {
        return Ok(bytes);
    }
    let bytes = serde_json::to_vec_pretty(document())
        .map_err(|e| AppError::Internal(format!("serializing the OpenAPI document: {e}")))?;
    Ok(JSON.get_or_init(|| bytes))
}

/// What every operation has in common (see the module's doc).
struct Conventions;

impl utoipa::Modify for Conventions {
    fn modify(&self, doc: &mut Document) {
        tus_options_per_upload(doc);
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A device token from POST /api/v1/auth/login, sent as `Authorization: \
                         Bearer <token>`",
                    ))
                    .build(),
            ),
        );
        let envelope = ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                ErrorBody::name(),
            ))))
            .build();
        for item in doc.paths.paths.values_mut() {
            let operations = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("options", &mut item.options),
                ("head", &mut item.head),
                ("patch", &mut item.patch),
            ];
            for (method, op) in operations {
                let Some(op) = op else {
                    continue;
                };
                // Handler names repeat across areas (`list`) and a GET handler also answers HEAD:
                // the operation id is `<tag>_<handler>`, `_head` added for HEAD.
                let tag = op.tags.as_ref().and_then(|t| t.first()).cloned();
                if let (Some(tag), Some(id)) = (tag, op.operation_id.as_mut()) {
                    *id = format!("{tag}_{id}");
                    if method == "head" && !id.ends_with("head") {
                        id.push_str("_head");
                    }
                }
                let public = op
                    .security
                    .as_ref()
                    .is_some_and(|s| s.iter().any(|r| r == &Default::default()));
                // A path parameter that does not parse is mostly "no such thing" (404): the
                // operations whose path answers 400 say so themselves.
                let takes_input = op.request_body.is_some()
                    || op.parameters.iter().flatten().any(|p| match p {
                        RefOr::T(p) => p.parameter_in != ParameterIn::Path,
                        RefOr::Ref(_) => true,
                    });
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| ResponseBuilder::new().description(description).into());
                };
                if !public {
                    add(
                        "401",
                        "No token, or a token that is unknown, revoked or whose user is switched off",
                    );
                }
                if takes_input {
                    add(
                        "400",
                        "A parameter or the body is malformed or invalid; `field` names it",
                    );
                }
                if op.request_body.is_some() {
                    add("413", "The body is larger than the server accepts");
                    add(
                        "415",
                        "The body's Content-Type or Content-Encoding is not one the operation takes",
                    );
                }
                for (status, response) in op.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if (status.starts_with('4') || status.starts_with('5'))
                        && response.content.is_empty()
                    {
                        response
                            .content
                            .insert("application/json".to_owned(), RefOr::T(envelope.clone()));
                    }
                }
            }
        }
    }
}

/// `OPTIONS /api/v1/uploads/{id}` is answered by the handler of `OPTIONS /api/v1/uploads`
/// (`uploads::options`), whose annotation names one path: the same operation, with the upload's id.
fn tus_options_per_upload(doc: &mut Document) {
    let Some(mut op) = doc
        .paths
        .paths
        .get(&format!("{}/uploads", super::API))
        .and_then(|item| item.options.clone())
    else {
        return;
    };
    if let Some(id) = op.operation_id.as_mut() {
        id.push_str("_upload");
    }
    op.parameters.get_or_insert_with(Vec::new).push(RefOr::T(
        utoipa::openapi::path::ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .required(utoipa::openapi::Required::True)
            .description(Some("The upload's id (from `Location`)"))
            .schema(Some(String::schema()))
            .build(),
    ));
    if let Some(item) = doc
        .paths
        .paths
        .get_mut(&format!("{}/uploads/{{id}}", super::API))
    {
        item.options = Some(op);
    }
}

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "contract",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = serde_json::Value)),
)]
async fn document_json() -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(document_bytes()?))
}

/// The docs page's files: the page, its script and its style.
const DOCS_HTML: &str = include_str!("../../docs-page/index.html");
const DOCS_FILES: [(&str, &str, &str); 2] = [
    (
        "docs.js",
        "text/javascript; charset=utf-8",
        include_str!("../../docs-page/docs.js"),
    ),
    (
        "docs.css",
        "text/css; charset=utf-8",
        include_str!("../../docs-page/docs.css"),
    ),
];

/// The docs page's own policy: its script and style from here, its data from the document here.
fn docs_response(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ))
        .body(body)
}

/// `GET /api/v1/docs`: the API described for people, rendered from the document.
#[utoipa::path(
    get,
    path = "/api/v1/docs",
    tag = "contract",
    security(()),
    responses((status = 200, description = "The docs page", content_type = "text/html")),
)]
async fn docs_page() -> HttpResponse {
    docs_response("text/html; charset=utf-8", DOCS_HTML)
}

/// `GET /api/v1/docs/{file}`: the docs page's script and style.
#[utoipa::path(
    get,
    path = "/api/v1/docs/{file}",
    tag = "contract",
    security(()),
    params(("file" = String, Path, description = "`docs.js` or `docs.css`")),
    responses(
        (status = 200, description = "The file", content(("text/javascript"), ("text/css"))),
        (status = 404, description = "No such file"),
    ),
)]
async fn docs_file(req: HttpRequest) -> Result<HttpResponse, AppError> {
    let name = req.match_info().get("file").unwrap_or_default();
    let (_, content_type, body) = DOCS_FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| AppError::NotFound(format!("no docs file {name:?}")))?;
    Ok(docs_response(content_type, body))
}

/// `GET /healthz`'s answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Health {
    /// `ok`.
    status: String,
}

/// A GeoJSON FeatureCollection (RFC 7946); each operation says what its features' properties are.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FeatureCollection {
    /// `FeatureCollection`.
    r#type: String,
    features: Vec<Feature>,
}

/// A GeoJSON Feature: an id, a geometry and properties.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Feature {
    /// `Feature`.
    r#type: String,
    /// The record's id.
    #[schema(value_type = String, format = Uuid)]
    id: String,
    geometry: Geometry,
    /// The record's fields (see the operation).
    #[schema(value_type = Object)]
    properties: serde_json::Value,
}

/// A GeoJSON geometry: its type and coordinates (longitude, latitude in WGS-84).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Geometry {
    /// `Point`, `LineString` or `MultiLineString`.
    r#type: String,
    coordinates: Vec<serde_json::Value>,
}

/// Raw bytes (a tus chunk).
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .into()
    }
}

impl ToSchema for Binary {}
