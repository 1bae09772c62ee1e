//! The API's contract (issue 14): the OpenAPI document a real server serves agrees with the routes
//! the server registers, follows the conventions every operation shares, and the docs page that
//! renders it is served with everything it needs from the server itself. (That the document
//! validates as OpenAPI 3.1, and that the server's answers conform to it, is `scripts/fuzz-api`:
//! openapi-spec-validator and Schemathesis.)

use anyhow::{anyhow, Result};
use reqwest::StatusCode;
use riverchief_tests::TestServer;
use serde_json::Value;
use std::collections::BTreeSet;

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

/// A header's value as text ("" when absent).
fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn document(base: &str) -> Result<Value> {
    let r = reqwest::get(format!("{base}/api/v1/openapi.json")).await?;
    if r.status() != StatusCode::OK {
        return Err(anyhow!("GET /api/v1/openapi.json: {}", r.status()));
    }
    let content_type = header(&r, "content-type");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    Ok(r.json().await?)
}

/// Every (METHOD, path) the document describes.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (m.to_uppercase(), path.clone()))
        })
        .collect()
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter_map(|m| item.get(*m).map(|op| (m.to_uppercase(), path.clone(), op)))
        })
        .collect()
}

#[tokio::test]
async fn every_registered_route_is_documented_and_every_documented_operation_exists() -> Result<()>
{
    let server = TestServer::start().await?;
    let doc = document(&server.url()).await?;
    assert_eq!(doc["openapi"], "3.1.0");

    let registered: BTreeSet<(String, String)> = riverchief_server::routes::registered()
        .into_iter()
        .map(|(m, p)| (m.as_str().to_owned(), p))
        .collect();
    let documented = documented(&doc);
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && phantom.is_empty(),
        "registered but not documented: {undocumented:?}\ndocumented but not registered: {phantom:?}"
    );
    // The table is not empty by accident: every area is in it.
    for probe in [
        ("POST", "/api/v1/sync/push"),
        ("PATCH", "/api/v1/uploads/{id}"),
        ("GET", "/api/v1/alerts/stream"),
        ("GET", "/assets/{path}"),
        ("GET", "/api/v1/openapi.json"),
    ] {
        assert!(
            registered.contains(&(probe.0.to_owned(), probe.1.to_owned())),
            "{probe:?} is not in the registered table"
        );
    }

    // Each documented operation exists on the server: asked as documented (no token, placeholder
    // parameters), it is not answered as an unknown path or a method the path does not take.
    let client = reqwest::Client::new();
    for (method, path, _) in operations(&doc) {
        let url = format!(
            "{}{}",
            server.url(),
            path.replace('{', "x").replace('}', "")
        );
        let m = reqwest::Method::from_bytes(method.as_bytes())?;
        let r = client.request(m, &url).send().await?;
        let status = r.status();
        let text = r.text().await?;
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {text}"
        );
        assert!(
            !text.contains("no such endpoint"),
            "{method} {path}: answered as an unknown path: {text}"
        );
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn every_operation_states_its_security_and_refuses_in_the_envelope() -> Result<()> {
    let server = TestServer::start().await?;
    let doc = document(&server.url()).await?;
    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_default().to_owned();
        assert!(!id.is_empty(), "{method} {path} has no operationId");
        assert!(ids.insert(id.clone()), "operationId {id} is not unique");
        assert!(op["tags"][0].is_string(), "{method} {path} has no tag");
        let responses = op["responses"].as_object().cloned().unwrap_or_default();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} documents no success"
        );
        let public = op["security"].as_array().is_some_and(|s| {
            s.iter()
                .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
        });
        if !public {
            assert!(responses.contains_key("401"), "{method} {path}: no 401");
            assert!(
                op["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("Roles:")),
                "{method} {path}: the roles are not in the description"
            );
        }
        for (status, response) in &responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status} is not the envelope"
                );
            }
        }
    }
    // The enums of the shared crate are their wire names; ids are UUID strings.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["Role"]["type"], "string");
    assert_eq!(
        schemas["Role"]["enum"],
        serde_json::json!(["patroller", "duty_lead", "admin"])
    );
    assert_eq!(schemas["IssueId"]["type"], "string");
    assert_eq!(schemas["IssueId"]["format"], "uuid");
    assert_eq!(
        schemas["ErrorBody"]["required"],
        serde_json::json!(["error"])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_docs_page_is_served_by_the_server_alone() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let page = reqwest::get(format!("{base}/api/v1/docs")).await?;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = header(&page, "content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    let html = page.text().await?;
    assert!(html.contains("/api/v1/openapi.json"));
    for (file, ty) in [("docs.js", "text/javascript"), ("docs.css", "text/css")] {
        assert!(html.contains(&format!("/api/v1/docs/{file}")), "{file}");
        let r = reqwest::get(format!("{base}/api/v1/docs/{file}")).await?;
        assert_eq!(r.status(), StatusCode::OK, "{file}");
        let content_type = header(&r, "content-type");
        assert!(content_type.starts_with(ty), "{file}: {content_type}");
        let text = r.text().await?;
        // Nothing is fetched from elsewhere.
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{file}"
        );
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
    let missing = reqwest::get(format!("{base}/api/v1/docs/nothing.js")).await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: Value = missing.json().await?;
    assert_eq!(body["error"]["code"], "not_found");
    server.stop().await;
    Ok(())
}
