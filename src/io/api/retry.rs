//! Classified failures and the retry loop around one logical request.
//!
//! Each attempt ends in success or a [`Failure`] whose class decides what happens
//! next: transient failures are tried again with exponential backoff and jitter
//! (via `backon`), at least as late as the server's `Retry-After` asks; a well-formed
//! answer of a shape we do not read is tried once more (issue 13: a proxy's odd answer
//! may pass, a tenant's different form will not); everything else ends the request at
//! once.

use super::ApiError;
use super::counters::Counters;
use backon::{ExponentialBuilder, Retryable};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

/// A `Retry-After` longer than this is treated as this: a misconfigured server
/// should slow us down, not park a sync for hours.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Retries a [`Class::Shape`] failure gets within one logical request.
pub(crate) const SHAPE_RETRIES: usize = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Another attempt may succeed (connect errors, timeouts, 408, 429, 5xx, bodies
    /// that are not JSON or are cut off).
    Transient,
    /// issue 13: a well-formed answer whose shape we do not understand. Not transient:
    /// retried at most once (see [`SHAPE_RETRIES`]), then final, so a tenant answering in
    /// a form we do not read fails in about a second instead of after every backoff.
    Shape,
    /// Asking again is pointless.
    Permanent,
    /// The token was refused; the caller may refresh it once.
    Unauthorized,
}

/// One failed attempt, with what the retry loop needs to know about it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: ApiError,
    pub(crate) class: Class,
    /// The server's `Retry-After`, already capped at [`MAX_RETRY_AFTER`].
    pub(crate) retry_after: Option<Duration>,
    /// HTTP 429 or envelope code 429, for the statistics.
    pub(crate) rate_limited: bool,
}

impl Failure {
    pub(crate) fn new(error: ApiError, class: Class) -> Self {
        Self {
            error,
            class,
            retry_after: None,
            rate_limited: false,
        }
    }

    pub(crate) fn transient(error: ApiError) -> Self {
        Self::new(error, Class::Transient)
    }

    pub(crate) fn permanent(error: ApiError) -> Self {
        Self::new(error, Class::Permanent)
    }

    pub(crate) fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    pub(crate) fn with_rate_limited(mut self, rate_limited: bool) -> Self {
        self.rate_limited |= rate_limited;
        self
    }
}

/// Backoff settings, copied from `ApiSettings`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub(crate) max_retries: usize,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
}

impl RetryPolicy {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.min_backoff)
            .with_max_delay(self.max_backoff)
            .with_factor(2.0)
            .with_jitter()
            // backon is built without `std`, whose default seed would be a constant:
            // every client would then back off in lockstep.
            .with_jitter_seed(rand::random())
            .with_max_times(self.max_retries)
    }

    /// The pause before the next attempt: backon's jittered delay (jitter can double
    /// it, so it is capped again here), but never shorter than the `Retry-After`.
    fn next_delay(&self, failure: &Failure, proposed: Option<Duration>) -> Option<Duration> {
        let delay = proposed?.min(self.max_backoff);
        Some(match failure.retry_after {
            Some(wait) => delay.max(wait.min(MAX_RETRY_AFTER)),
            None => delay,
        })
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries run out.
    ///
    /// `endpoint` names the request in logs and in `Exhausted`; each retry is counted on
    /// the client's counters and, for a run's request, on its `meter` (issue 15).
    pub(crate) async fn run<T, F, Fut>(
        &self,
        endpoint: &str,
        counters: &Counters,
        meter: Option<&super::RequestMeter>,
        mut attempt: F,
    ) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        // Atomic only so the future stays `Send`; nothing else touches it.
        let attempts = AtomicUsize::new(0);
        let shapes = AtomicUsize::new(0);
        let result = (|| {
            attempts.fetch_add(1, Ordering::Relaxed);
            attempt()
        })
        .retry(self.backoff())
        .sleep(tokio::time::sleep)
        .when(|f: &Failure| match f.class {
            Class::Transient => true,
            Class::Shape => shapes.fetch_add(1, Ordering::Relaxed) < SHAPE_RETRIES,
            Class::Permanent | Class::Unauthorized => false,
        })
        .adjust(|f: &Failure, proposed| self.next_delay(f, proposed))
        .notify(|f: &Failure, delay: Duration| {
            counters.retries.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = meter {
                m.retry(endpoint);
            }
            crate::io::obs::metrics::api_retry(counters.tenant.as_deref(), endpoint);
            tracing::warn!(
                endpoint,
                attempt = attempts.load(Ordering::Relaxed),
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                reason = %f.error,
                "transient API failure, retrying"
            );
        })
        .await;
        match result {
            Ok(value) => Ok(value),
            Err(f) if f.class == Class::Transient => Err(ApiError::Exhausted {
                endpoint: endpoint.to_owned(),
                attempts: attempts.load(Ordering::Relaxed),
                last: Box::new(f.error),
            }),
            Err(f) => Err(f.error),
        }
    }
}

/// Parses `Retry-After` as delta-seconds or an HTTP-date (RFC 7231), capped at
/// [`MAX_RETRY_AFTER`]. A date in the past means "now"; garbage means "no hint".
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else if let Ok(secs) = value.parse::<f64>() {
        // Not in the RFC, but some servers send fractions; be liberal.
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        Duration::try_from_secs_f64(secs).unwrap_or(MAX_RETRY_AFTER)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        let at = SystemTime::from(at.with_timezone(&chrono::Utc));
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn delay_is_capped_but_honours_retry_after() {
        let policy = RetryPolicy {
            max_retries: 3,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
        };
        let plain = Failure::transient(ApiError::Config("x".into()));
        assert_eq!(
            policy.next_delay(&plain, Some(Duration::from_millis(180))),
            Some(Duration::from_millis(100))
        );
        assert_eq!(policy.next_delay(&plain, None), None);
        let slow = Failure::transient(ApiError::Config("x".into()))
            .with_retry_after(Some(Duration::from_secs(2)));
        assert_eq!(
            policy.next_delay(&slow, Some(Duration::from_millis(20))),
            Some(Duration::from_secs(2))
        );
    }

    /// Attempts `policy.run` makes when every attempt fails with `class`.
    async fn attempts_until_failure(class: Class) -> (usize, ApiError) {
        let policy = RetryPolicy {
            max_retries: 4,
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        };
        let n = AtomicUsize::new(0);
        let result: Result<(), ApiError> = policy
            .run("/e", &Counters::default(), None, || async {
                n.fetch_add(1, Ordering::Relaxed);
                Err(Failure::new(
                    ApiError::Decode {
                        endpoint: "/e".into(),
                        detail: "d".into(),
                    },
                    class,
                ))
            })
            .await;
        let error = result.err().unwrap_or(ApiError::Config("succeeded".into()));
        (n.load(Ordering::Relaxed), error)
    }

    #[tokio::test]
    async fn shapes_are_retried_once_transients_until_the_policy_ends() {
        let (n, e) = attempts_until_failure(Class::Shape).await;
        assert_eq!(n, 1 + SHAPE_RETRIES);
        assert!(matches!(e, ApiError::Decode { .. }), "{e}");
        let (n, e) = attempts_until_failure(Class::Transient).await;
        assert_eq!(n, 5);
        assert!(matches!(e, ApiError::Exhausted { attempts: 5, .. }), "{e}");
        let (n, _) = attempts_until_failure(Class::Permanent).await;
        assert_eq!(n, 1);
    }
}
