//! Prometheus metrics: `GET /metrics` (admin token; the OpenMetrics text format).
//!
//! Counters and histograms are kept in memory per instance and count from its start (Prometheus
//! sums instances): HTTP requests by method, route pattern and status, their durations, and pushed
//! mutations by outcome. Gauges that describe the shared state (alerts active, uploads in progress,
//! the change log's head, webhook deliveries by state) are read from the database at scrape time, so every instance reports the
//! same value for them.

use crate::db::{self, Conn, QueryResult};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use riverchief_shared::sync::{PushResult, PushStatus};
use std::future::Future;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    /// The route pattern (`/api/v1/issues/{id}`), never the raw path: bounded cardinality.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MutationLabels {
    status: String,
    /// The refusal's code (`forbidden`, `conflict`, ...); empty unless rejected.
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    kind: String,
    level: String,
    drill: String,
    acknowledged: String,
}

/// The metrics of one server instance.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<RouteLabels, Histogram>,
    mutations: Family<MutationLabels, Counter>,
    alerts_active: Family<AlertLabels, Gauge>,
    uploads_in_progress: Gauge,
    change_log_head: Gauge,
    webhook_deliveries: Family<StateLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("riverchief");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route pattern and status",
            http_requests.clone(),
        );
        let http_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to the response head; streamed bodies continue)",
            http_seconds.clone(),
        );
        let mutations = Family::<MutationLabels, Counter>::default();
        registry.register(
            "sync_mutations",
            "Pushed mutations by outcome (applied, duplicate, rejected) and refusal code",
            mutations.clone(),
        );
        let alerts_active = Family::<AlertLabels, Gauge>::default();
        registry.register(
            "alerts_active",
            "Alerts not yet resolved, by kind, level, drill and whether acknowledged",
            alerts_active.clone(),
        );
        let uploads_in_progress = Gauge::default();
        registry.register(
            "uploads_in_progress",
            "Photo uploads begun and not yet complete",
            uploads_in_progress.clone(),
        );
        let change_log_head = Gauge::default();
        registry.register(
            "change_log_head",
            "The change log's highest sequence number (grows with every synced write)",
            change_log_head.clone(),
        );
        let webhook_deliveries = Family::<StateLabels, Gauge>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries in the outbox by state (pending, delivered, failed, cancelled)",
            webhook_deliveries.clone(),
        );
        Metrics {
            registry,
            webhook_deliveries,
            http_requests,
            http_seconds,
            mutations,
            alerts_active,
            uploads_in_progress,
            change_log_head,
        }
    }

    fn observe(&self, method: &str, route: &str, status: u16, started: Instant) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_seconds
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Counts the outcomes of one push.
    pub fn pushed(&self, results: &[PushResult]) {
        for r in results {
            let status = match r.status {
                PushStatus::Applied => "applied",
                PushStatus::Duplicate => "duplicate",
                PushStatus::Rejected => "rejected",
            };
            let code = r.error.as_ref().map(|e| e.code.clone()).unwrap_or_default();
            self.mutations
                .get_or_create(&MutationLabels {
                    status: status.to_owned(),
                    code,
                })
                .inc();
        }
    }

    /// Reads the shared-state gauges from the database. Call it on the blocking pool.
    pub fn refresh(&self, conn: &mut Conn) -> QueryResult<()> {
        let rows = db::alerts::unresolved_labels(conn)?;
        // Zero every series first, so that a kind with no active alert left reads 0, not its last value.
        self.alerts_active.clear();
        for a in rows {
            self.alerts_active
                .get_or_create(&AlertLabels {
                    kind: a.kind,
                    level: a.level,
                    drill: a.drill.to_string(),
                    acknowledged: a.acknowledged.to_string(),
                })
                .inc();
        }
        self.uploads_in_progress
            .set(db::photos::uploads_in_progress(conn)?);
        self.change_log_head.set(db::changes::max_seq(conn)?);
        self.webhook_deliveries.clear();
        for (state, n) in db::webhooks::counts_by_state(conn)? {
            self.webhook_deliveries
                .get_or_create(&StateLabels { state })
                .set(n);
        }
        Ok(())
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The middleware body (for `App::wrap_fn`): counts and times every request by its route pattern,
/// read after routing.
pub fn track<S, B>(
    metrics: std::sync::Arc<Metrics>,
    req: ServiceRequest,
    srv: &S,
) -> impl Future<Output = Result<ServiceResponse<B>, actix_web::Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let started = Instant::now();
    let method = req.method().to_string();
    let fut = srv.call(req);
    async move {
        let res = fut.await;
        match &res {
            Ok(r) => {
                let route = r
                    .request()
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".to_owned());
                metrics.observe(&method, &route, r.status().as_u16(), started);
            }
            Err(e) => {
                let status = e.as_response_error().status_code().as_u16();
                metrics.observe(&method, "unmatched", status, started);
            }
        }
        res
    }
}
