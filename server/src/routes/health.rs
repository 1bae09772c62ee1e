//! Liveness: `GET /healthz` answers once the database does.

use crate::app::AppState;
use crate::error::AppError;
use actix_web::{web, HttpResponse};
use diesel::RunQueryDsl;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz));
}

async fn healthz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    state
        .db
        .run(|conn| {
            diesel::sql_query("SELECT 1")
                .execute(conn)
                .map_err(AppError::from)
        })
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ok"})))
}
