//! A tiny, version-proof random generator: the data set must stay identical for a seed
//! across releases of `rand`, so the simulator owns its mixing function (SplitMix64).

/// Domain tags keep the streams for different purposes independent.
pub(crate) mod tag {
    pub const HOUR_COUNT: u64 = 1;
    pub const CALL: u64 = 2;
    pub const CALL_ID: u64 = 3;
    pub const PARTY_ID: u64 = 4;
    pub const AGENT: u64 = 5;
    pub const HISTORY: u64 = 6;
    pub const HISTORY_ID: u64 = 7;
    pub const PAGE: u64 = 8;
    pub const COMPANY: u64 = 9;
    pub const LATE: u64 = 10;
    /// issue 15: whether a call's billing settles later.
    pub const REVISE: u64 = 11;
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser: a bijective, well-mixing map of 64-bit words.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a short tuple of words into one.
pub(crate) fn hash(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x5EED_5EED_5EED_5EEDu64, |h, p| mix64(h ^ mix64(*p)))
}

/// A uniform draw in `[0, 1)` derived from a hash, for stable per-record decisions.
pub(crate) fn unit_from(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(parts: &[u64]) -> Self {
        Self(hash(parts))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }

    /// Uniform in `[0, n)`; 0 when `n` is 0.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[lo, hi]`.
    pub(crate) fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo) as u64 + 1;
        lo + self.below(span) as i64
    }

    pub(crate) fn unit(&mut self) -> f64 {
        unit_from(self.next_u64())
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A uniformly chosen index into a collection of `len` items (0 when empty).
    pub(crate) fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// A uniformly chosen item of a non-empty constant table.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// Decimal digits, e.g. the tail of a phone number.
    pub(crate) fn digits(&mut self, out: &mut String, n: usize) {
        for _ in 0..n {
            out.push(char::from(b'0' + self.below(10) as u8));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_bounds_hold() {
        let mut a = Rng::new(&[42, 7]);
        let mut b = Rng::new(&[42, 7]);
        for _ in 0..1000 {
            let x = a.between(3, 9);
            assert_eq!(x, b.between(3, 9));
            assert!((3..=9).contains(&x));
            let u = a.unit();
            assert_eq!(u, b.unit());
            assert!((0.0..1.0).contains(&u));
        }
        assert_ne!(hash(&[1, 2]), hash(&[2, 1]));
    }

    #[test]
    fn below_covers_the_range() {
        let mut r = Rng::new(&[1]);
        let mut seen = [false; 5];
        for _ in 0..200 {
            seen[r.below(5) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(r.below(0), 0);
    }
}
