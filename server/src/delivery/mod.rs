//! Delivery: how alert changes reach people who are not looking at a phone's mirror.
//!
//! - [`feed`]: one task per server process watches the change log for alert changes (a cheap
//!   indexed query every [`DeliveryConfig::stream_poll`]) and wakes the live streams
//!   (`GET /alerts/stream`, `routes::alert_stream`), which then read what their viewer may see.
//!   Polling the shared database (rather than a signal inside the process) also brings alerts raised
//!   by other instances.
//! - [`worker`]: one task per server process sends the webhook outbox (`db::webhooks`): claims due
//!   deliveries with a lease, POSTs them signed, records each attempt, retries with exponential
//!   backoff and jitter, gives up after [`DeliveryConfig::max_attempts`].
//! - [`format`]: the bodies (generic JSON, WeCom and DingTalk group robots) and the signatures.
//!
//! Both tasks stop when the server stops (the [`CancellationToken`] in `app::AppHandle`), and so do
//! the open streams: actix waits for open responses on a graceful stop.

pub mod feed;
pub mod format;
pub mod worker;

pub use tokio_util::sync::CancellationToken;

use std::time::Duration;

/// Timing of the live stream and of webhook deliveries.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryConfig {
    /// The first retry's delay; each further one doubles it, up to `backoff_cap`; jitter adds up
    /// to a quarter.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Attempts before a delivery is given up (`failed`).
    pub max_attempts: u32,
    /// How long one attempt may take (connect, send, answer).
    pub timeout: Duration,
    /// How often the sender looks for due deliveries when idle.
    pub poll: Duration,
    /// Deliveries sent at once (to different webhooks: one webhook's are sent one at a time).
    pub concurrency: usize,
    /// How often the live stream's feed looks for new alert changes.
    pub stream_poll: Duration,
    /// How often an idle stream sends a comment, so that proxies keep it open.
    pub keepalive: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            backoff_base: Duration::from_secs(5),
            backoff_cap: Duration::from_secs(15 * 60),
            max_attempts: 12,
            timeout: Duration::from_secs(10),
            poll: Duration::from_millis(500),
            concurrency: 8,
            stream_poll: Duration::from_millis(200),
            keepalive: Duration::from_secs(15),
        }
    }
}

impl DeliveryConfig {
    /// How long a claimed delivery stays leased: long enough for one attempt and its bookkeeping,
    /// short enough that a delivery held by a dead instance is taken up again soon.
    pub fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(5)
    }

    /// The delay before the next attempt after `attempts_made` failed ones (1 = the first failed):
    /// `base × 2^(attempts_made − 1)`, at most `cap`, plus `jitter` (0..1) of a quarter of it. So
    /// delays grow strictly until the cap, and instances retrying together spread out.
    pub fn backoff(&self, attempts_made: u32, jitter: f64) -> Duration {
        let exp = attempts_made.saturating_sub(1).min(30);
        let d = self
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.backoff_cap);
        d + d.mul_f64(jitter.clamp(0.0, 1.0) / 4.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_until_the_cap_with_bounded_jitter() {
        let c = DeliveryConfig {
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_millis(1000),
            ..DeliveryConfig::default()
        };
        assert_eq!(c.backoff(1, 0.0), Duration::from_millis(100));
        assert_eq!(c.backoff(2, 0.0), Duration::from_millis(200));
        assert_eq!(c.backoff(3, 0.5), Duration::from_millis(450));
        assert_eq!(c.backoff(5, 0.0), Duration::from_millis(1000));
        assert_eq!(c.backoff(40, 1.0), Duration::from_millis(1250));
        // The largest jitter of one attempt is below the smallest delay of the next.
        for n in 1..4 {
            assert!(c.backoff(n, 1.0) < c.backoff(n + 1, 0.0));
        }
    }
}
