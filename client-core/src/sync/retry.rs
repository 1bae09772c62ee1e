//! Capped exponential backoff with jitter, for the errors worth retrying (network failures, 5xx).

use crate::error::{ClientError, Result};
use std::future::Future;
use std::time::Duration;

/// How hard the sync engine tries before giving up on a request (all queued work stays pending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (0 is taken as 1).
    pub max_attempts: u32,
    /// The delay ceiling before the first retry; it doubles with every retry.
    pub base_delay: Duration,
    /// The most the delay ceiling may grow to.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries at all: every transient error gives up at once.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The delay ceiling before retry number `retry` (1 for the first retry):
    /// `min(max_delay, base_delay * 2^(retry-1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The delay before retry number `retry`, drawn uniformly from the upper half of the ceiling
    /// ("equal jitter"): devices that lost the network together do not come back in lockstep, and
    /// no retry comes sooner than half the ceiling.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(rand::random_range(0..=spread))
    }

    fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }
}

/// Runs `op` until it succeeds, fails with an error that is not transient, or has used up the
/// policy's attempts (then [`ClientError::GaveUp`] wraps the last error). `op` gets the attempt
/// number, from 1.
pub(crate) async fn retrying<T, F, Fut>(policy: &RetryPolicy, what: &str, mut op: F) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(e) if e.is_transient() && attempt < policy.attempts() => {
                let delay = policy.delay(attempt);
                tracing::warn!(attempt, ?delay, "{what} failed, will retry: {e}");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) if e.is_transient() => {
                return Err(ClientError::GaveUp {
                    attempts: attempt,
                    source: Box::new(e),
                })
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riverchief_shared::api::ErrorDetail;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        }
    }

    #[test]
    fn ceilings_double_and_are_capped() {
        let p = policy();
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(200));
        assert_eq!(p.ceiling(4), Duration::from_millis(800));
        assert_eq!(p.ceiling(5), Duration::from_secs(1));
        assert_eq!(p.ceiling(200), Duration::from_secs(1));
        assert_eq!(p.ceiling(0), Duration::from_millis(100));
    }

    #[test]
    fn delays_stay_within_half_and_the_ceiling() {
        let p = policy();
        for retry in 1..40 {
            let ceiling = p.ceiling(retry);
            for _ in 0..50 {
                let d = p.delay(retry);
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "{retry}: {d:?} vs {ceiling:?}"
                );
            }
        }
    }

    fn server_error(status: u16) -> ClientError {
        ClientError::Server {
            status,
            body: ErrorDetail {
                code: "x".into(),
                message: "x".into(),
                field: None,
                current_status: None,
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_then_gives_up() {
        let p = policy();
        let mut calls = 0;
        let result: Result<()> = retrying(&p, "test", |_| {
            calls += 1;
            async { Err(server_error(503)) }
        })
        .await;
        assert_eq!(calls, 4);
        assert!(matches!(
            result,
            Err(ClientError::GaveUp { attempts: 4, .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_refusals_and_stops_on_success() {
        let p = policy();
        let mut calls = 0;
        let result: Result<()> = retrying(&p, "test", |_| {
            calls += 1;
            async { Err(server_error(401)) }
        })
        .await;
        assert_eq!(calls, 1);
        assert_eq!(result.err().and_then(|e| e.status()), Some(401));

        let result = retrying(&p, "test", |attempt| async move {
            if attempt < 3 {
                Err(server_error(502))
            } else {
                Ok(attempt)
            }
        })
        .await;
        assert_eq!(result.ok(), Some(3));
    }
}
