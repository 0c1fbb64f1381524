//! The per-tenant request-rate cap and concurrency limit, shared by every request
//! the client makes (token requests included).

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use tokio::sync::{Semaphore, SemaphorePermit};

pub(crate) struct Limits {
    /// Burst 1: starts are spaced `1 / max_rps` apart, so any half-open one-second
    /// interval sees at most `max_rps` starts (a closed one at most `max_rps + 1`).
    /// A larger burst would let a queue that built up behind the semaphore fire all
    /// at once and trip the API's own limiter.
    rate: DefaultDirectRateLimiter,
    slots: Semaphore,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("free_slots", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl Limits {
    pub(crate) fn new(max_rps: NonZeroU32, max_concurrency: usize) -> Self {
        let quota = Quota::per_second(max_rps).allow_burst(NonZeroU32::MIN);
        Self {
            rate: RateLimiter::direct(quota),
            slots: Semaphore::new(max_concurrency),
        }
    }

    /// Waits for a concurrency slot, then for the rate limiter, and returns the slot.
    ///
    /// The slot is taken first so that the moment the limiter lets a request through
    /// is the moment it starts: taking the rate token first would let requests queue
    /// behind the semaphore with their tokens spent and then start in a burst.
    /// `None` only if the semaphore was closed, which this crate never does.
    pub(crate) async fn admit(&self) -> Option<SemaphorePermit<'_>> {
        let permit = self.slots.acquire().await.ok()?;
        self.rate.until_ready().await;
        Some(permit)
    }
}
