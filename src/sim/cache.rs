//! A small least-recently-used cache of generated hours, so a backfill that pages through
//! a window (and then asks for every call's parties) generates each hour once while
//! memory stays flat however long the range.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::generate::Hour;

#[derive(Debug)]
pub(crate) struct HourCache {
    capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    tick: u64,
    map: HashMap<u32, (Arc<Hour>, u64)>,
}

impl HourCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Entries::default()),
        }
    }

    /// The cached hour, or `make()`'s result, which is then cached. Generation runs
    /// outside the lock: two requests may build the same hour at once, which only costs
    /// time, since generation is deterministic.
    pub(crate) fn get_or_make(&self, hour: u32, make: impl FnOnce() -> Hour) -> Arc<Hour> {
        {
            let mut e = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            e.tick += 1;
            let tick = e.tick;
            if let Some((h, used)) = e.map.get_mut(&hour) {
                *used = tick;
                return Arc::clone(h);
            }
        }
        let made = Arc::new(make());
        let mut e = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        e.tick += 1;
        let tick = e.tick;
        if e.map.len() >= self.capacity && !e.map.contains_key(&hour) {
            let oldest = e
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                e.map.remove(&k);
            }
        }
        e.map.insert(hour, (Arc::clone(&made), tick));
        made
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn empty() -> Hour {
        Hour {
            calls: Vec::new(),
            by_seq: Vec::new(),
            histories: Vec::new(),
        }
    }

    #[test]
    fn evicts_the_least_recently_used() {
        let cache = HourCache::new(2);
        let made = Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            empty()
        };
        cache.get_or_make(1, make);
        cache.get_or_make(2, make);
        cache.get_or_make(1, make); // hit, refreshes 1
        cache.get_or_make(3, make); // evicts 2
        assert_eq!(made.get(), 3);
        cache.get_or_make(1, make);
        assert_eq!(made.get(), 3);
        cache.get_or_make(2, make);
        assert_eq!(made.get(), 4);
        assert_eq!(cache.len(), 2);
    }
}
