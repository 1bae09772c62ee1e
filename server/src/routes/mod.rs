//! The HTTP API, one module per area. Each module's `configure` registers its routes.

pub mod body;
pub mod coverage;
pub mod dashboard;
pub mod health;
pub mod issues;
pub mod patrols;
pub mod photos;
pub mod segments;
pub mod session;
pub mod stock;
pub mod sync;
pub mod uploads;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    dashboard::configure(cfg);
    cfg.service(
        web::scope("/api/v1")
            .configure(session::configure)
            .configure(segments::configure)
            .configure(coverage::configure)
            .configure(sync::configure)
            .configure(patrols::configure)
            .configure(issues::configure)
            .configure(uploads::configure)
            .configure(photos::configure)
            .configure(stock::configure)
            .default_service(web::to(not_found)),
    );
}

async fn not_found() -> Result<actix_web::HttpResponse, crate::error::AppError> {
    Err(crate::error::AppError::NotFound("no such endpoint".into()))
}
