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

/// Random codes seen within the skew, per company. Memory is bounded by the push rate
/// times the skew: a code is remembered only until its timestamp leaves the skew (after
/// that the push would be refused as stale anyway), each entry is a 128-bit hash of
/// (company, code) and its expiry (about 50 bytes with the map's overhead: 75 MB at
/// 5,000 pushes/s and a 300 s skew), and a hard cap drops the oldest beyond it.
pub struct ReplayGuard {
    max_skew_ms: i64,
    cap: usize,
    inner: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Hash -> expiry (ms).
    codes: HashMap<u128, i64>,
    /// Insertion order (expiry, hash) for expiry.
    order: VecDeque<(i64, u128)>,
}

fn code_hash(company: &str, code: &str) -> u128 {
    let mut h = Md5::new();
    h.update(company.as_bytes());
    h.update([0x1f]);
    h.update(code.as_bytes());
    u128::from_le_bytes(h.finalize().into())
}

impl ReplayGuard {
    pub fn new(max_skew_ms: i64, cap: usize) -> Self {
        Self {
            max_skew_ms,
            cap,
            inner: Mutex::new(Seen::default()),
        }
    }

    /// Records the code of a push stamped `ts_ms`; `false` when it was already seen
    /// while still within the skew (a replay). Call only after the signature checked
    /// out, so forged requests cannot fill it.
    pub fn first_use(&self, company: &str, code: &str, ts_ms: i64, now_ms: i64) -> bool {
        let mut seen = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        while let Some(&(expiry, hash)) = seen.order.front() {
            if expiry >= now_ms && seen.order.len() <= self.cap {
                break;
            }
            seen.order.pop_front();
            if seen.codes.get(&hash) == Some(&expiry) {
                seen.codes.remove(&hash);
            }
        }
        let hash = code_hash(company, code);
        if seen.codes.get(&hash).is_some_and(|&e| e >= now_ms) {
            return false;
        }
        let expiry = ts_ms.saturating_add(self.max_skew_ms);
        seen.codes.insert(hash, expiry);
        seen.order.push_back((expiry, hash));
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
        let g = ReplayGuard::new(1_000, 1_000_000);
        assert!(g.first_use("c", "r1", 0, 0));
        assert!(!g.first_use("c", "r1", 0, 500));
        assert!(g.first_use("other", "r1", 0, 500));
        for i in 0..100 {
            g.first_use("c", &format!("x{i}"), 600, 600);
        }
        // Far later, every code whose timestamp left the skew is forgotten.
        assert!(g.first_use("c", "late", 10_000, 10_000));
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn the_cap_bounds_memory() {
        let g = ReplayGuard::new(1_000_000, 10);
        for i in 0..100 {
            g.first_use("c", &format!("x{i}"), 0, 0);
        }
        assert!(g.len() <= 11, "{}", g.len());
    }
}
