//! What every handler can reach: the application state actix hands to each request
//! (`web::Data<AppState>`). Built once by `app::Application::build`; routes import it from here, not
//! from `app`, which imports every route.

use crate::db::Db;
use crate::photo_store::PhotoStore;
use riverchief_shared::Limits;

/// What every handler can reach.
pub struct AppState {
    pub db: Db,
    pub photos: PhotoStore,
    pub limits: Limits,
    pub coverage: crate::coverage::Policy,
    pub flood: crate::flood::Settings,
    pub delivery: crate::delivery::DeliveryConfig,
    /// The newest alert change seen (see `delivery::feed`): the live streams wait on it.
    pub alert_feed: tokio::sync::watch::Receiver<i64>,
    /// Cancelled when the server stops: background tasks and open streams end.
    pub shutdown: crate::delivery::CancellationToken,
    pub login: crate::auth::LoginLimits,
    /// The scheduled check's settings: the issue lists' acceptance time and the stock view's expiry
    /// window are these, so the lists and the check agree.
    pub checks: crate::checks::Settings,
}
