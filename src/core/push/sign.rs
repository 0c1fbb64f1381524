//! `X-Log-Sign` verification and replay protection (API document, Push Management).
//!
//! The signature is `md5(companyId + X-Log-TimeStamp + X-Log-RandomCode + appKey)` in
//! lower-case hex. It is compared in constant time so response timing tells an attacker
//! nothing about how many leading characters were right.

use md5::{Digest, Md5};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// The signature Sobot sends for these parts.
pub fn sign(company_id: &str, timestamp: &str, random_code: &str, app_key: &str) -> String {
    let mut h = Md5::new();
    for part in [company_id, timestamp, random_code, app_key] {
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Whether `given` is the signature of the parts (constant time in the signature's bytes;
/// upper-case hex is accepted as the same digest).
pub fn verify(
    company_id: &str,
    timestamp: &str,
    random_code: &str,
    app_key: &str,
    given: &str,
) -> bool {
    let expected = sign(company_id, timestamp, random_code, app_key);
    let given = given.trim().to_ascii_lowercase();
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// Why a push was refused with 401; the label of the refusal counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MissingHeaders,
    StaleTimestamp,
    UnknownCompany,
    BadSignature,
    Replay,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MissingHeaders => "missing_headers",
            Refusal::StaleTimestamp => "stale_timestamp",
            Refusal::UnknownCompany => "unknown_company",
            Refusal::BadSignature => "bad_signature",
            Refusal::Replay => "replay",
        }
    }
}

/// Checks `X-Log-TimeStamp` (epoch ms) against `now_ms`.
pub fn check_timestamp(timestamp: &str, now_ms: i64, max_skew_ms: i64) -> Result<i64, Refusal> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Refusal::StaleTimestamp)?;
    if (now_ms - ts).abs() > max_skew_ms {
        return Err(Refusal::StaleTimestamp);
    }
    Ok(ts)
}

/// Random codes seen within the skew, per company.
///
/// Memory is bounded by the push rate times the skew: a code is remembered only until
/// its timestamp leaves the skew (after that the push would be refused as stale anyway),
/// and a hard cap drops the oldest beyond it. Each code is kept compactly: a 64-bit hash
/// of (company, code) mapped to its expiry in whole seconds (u32, counted from the
/// guard's start, rounded up so a code is never forgotten early), plus the hash again in
/// an insertion-order ring for expiry. That is 12 bytes per map slot, 8 per ring slot;
/// with the tables' spare room (hashbrown keeps 1/8 to 9/16 free, a ring grows by
/// doubling) about 22 to 34 bytes per code: 1.5 M codes (5,000 pushes/s, 300 s skew)
/// take about 45 MB, and the memory stops growing once the skew has passed.
///
/// Exactness: two distinct live codes with the same 64-bit hash would make the second
/// look like a replay (401; Sobot retries). Among n = 1.5 M live codes the chance that
/// any two collide is about n^2 / 2^65 = 6e-8; for one new code, n / 2^64 = 8e-14.
pub struct ReplayGuard {
    max_skew_ms: i64,
    cap: usize,
    /// Expiries are seconds after this (ms since the epoch).
    base_ms: i64,
    inner: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Hash -> expiry (seconds after `base_ms`).
    codes: HashMap<u64, u32>,
    /// Hashes in insertion order (each hash once: it is inserted only when absent).
    order: VecDeque<u64>,
}

fn code_hash(company: &str, code: &str) -> u64 {
    let mut h = Md5::new();
    h.update(company.as_bytes());
    h.update([0x1f]);
    h.update(code.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

impl ReplayGuard {
    pub fn new(max_skew_ms: i64, cap: usize) -> Self {
        // Timestamps up to one skew before the start are accepted; count from there so
        // every expiry is >= 0.
        let base_ms = chrono::Utc::now()
            .timestamp_millis()
            .saturating_sub(max_skew_ms.max(0));
        Self::with_base(max_skew_ms, cap, base_ms)
    }

    fn with_base(max_skew_ms: i64, cap: usize, base_ms: i64) -> Self {
        Self {
            max_skew_ms,
            cap,
            base_ms,
            inner: Mutex::new(Seen::default()),
        }
    }

    /// `ms` as whole seconds after the base, rounded up (clamped to u32).
    fn secs_up(&self, ms: i64) -> u32 {
        let d = ms.saturating_sub(self.base_ms).max(0);
        (d.saturating_add(999) / 1000).min(i64::from(u32::MAX)) as u32
    }

    /// Seconds after the base that have fully passed at `now_ms` (rounded down): an
    /// expiry below it is over.
    fn secs_down(&self, ms: i64) -> u32 {
        let d = ms.saturating_sub(self.base_ms).max(0);
        (d / 1000).min(i64::from(u32::MAX)) as u32
    }

    /// Records the code of a push stamped `ts_ms`; `false` when it was already seen
    /// while still within the skew (a replay). Call only after the signature checked
    /// out, so forged requests cannot fill it.
    pub fn first_use(&self, company: &str, code: &str, ts_ms: i64, now_ms: i64) -> bool {
        let mut seen = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let now = self.secs_down(now_ms);
        while let Some(&hash) = seen.order.front() {
            let expiry = seen.codes.get(&hash).copied().unwrap_or(0);
            if expiry >= now && seen.order.len() <= self.cap {
                break;
            }
            seen.order.pop_front();
            seen.codes.remove(&hash);
        }
        let hash = code_hash(company, code);
        let expiry = self.secs_up(ts_ms.saturating_add(self.max_skew_ms));
        match seen.codes.get_mut(&hash) {
            Some(e) if *e >= now => return false,
            // Expired but not yet popped (behind a code that expires later): a new use.
            Some(e) => *e = expiry,
            None => {
                seen.codes.insert(hash, expiry);
                seen.order.push_back(hash);
            }
        }
        true
    }

    /// Codes remembered now (tests: the memory stays bounded).
    pub fn len(&self) -> usize {
        match self.inner.lock() {
            Ok(g) => g.codes.len(),
            Err(p) => p.into_inner().codes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_documented_recipe() {
        let s = sign("c1", "1700000000000", "abc", "key");
        assert_eq!(s, hex::encode(Md5::digest(b"c11700000000000abckey")));
        assert!(verify("c1", "1700000000000", "abc", "key", &s));
        assert!(verify(
            "c1",
            "1700000000000",
            "abc",
            "key",
            &s.to_uppercase()
        ));
        assert!(!verify("c1", "1700000000001", "abc", "key", &s));
        assert!(!verify("c1", "1700000000000", "abc", "key", ""));
    }

    #[test]
    fn timestamps_outside_the_skew_are_stale() {
        assert!(check_timestamp("1000", 1000, 10).is_ok());
        assert!(check_timestamp("989", 1000, 10).is_err());
        assert!(check_timestamp("1011", 1000, 10).is_err());
        assert!(check_timestamp("soon", 1000, 10).is_err());
    }

    #[test]
    fn replays_are_caught_and_memory_expires() {
        let g = ReplayGuard::with_base(1_000, 1_000_000, 0);
        assert!(g.first_use("c", "r1", 0, 0));
        assert!(!g.first_use("c", "r1", 0, 500));
        assert!(g.first_use("other", "r1", 0, 500));
        for i in 0..100 {
            g.first_use("c", &format!("x{i}"), 600, 600);
        }
        // Far later, every code whose timestamp left the skew is forgotten.
        assert!(g.first_use("c", "late", 10_000, 10_000));
        assert_eq!(g.len(), 1);
        // A code is remembered at least as long as the skew (expiry rounded up)...
        assert!(!g.first_use("c", "late", 10_000, 11_000));
        // ...and once its expiry has passed it may be used again.
        assert!(g.first_use("c", "late", 13_000, 13_000));
        assert!(!g.first_use("c", "late", 13_000, 13_500));
    }

    #[test]
    fn the_cap_bounds_memory() {
        let g = ReplayGuard::with_base(1_000_000, 10, 0);
        for i in 0..100 {
            g.first_use("c", &format!("x{i}"), 0, 0);
        }
        assert!(g.len() <= 11, "{}", g.len());
    }
}
