//! The order of one pass over an epoch: row groups shuffled, then cut into windows of
//! `window` row groups whose rows are shuffled together. Pure functions of (seed, epoch,
//! repeat), so the order never depends on thread count and a resumed run sees the same rows.
use shared::corruption::rng::{domain, CounterRng};

/// Which pass over which epoch (repeat 0 is the first pass; `--repeat-last-epoch` adds more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassKey {
    pub seed: u64,
    pub epoch: u32,
    pub repeat: u64,
}

/// The row groups of the pass, shuffled (indices into the epoch's list of row groups).
pub fn group_order(key: PassKey, groups: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..groups).collect();
    CounterRng::new(
        key.seed,
        &[domain::SHUFFLE, key.epoch as u64, key.repeat, u64::MAX],
    )
    .shuffle(&mut order);
    order
}

/// The order of the `rows` rows of window `window` (indices into the window's rows, which are
/// its row groups' rows concatenated in [`group_order`]).
pub fn row_order(key: PassKey, window: usize, rows: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..rows as u32).collect();
    CounterRng::new(
        key.seed,
        &[domain::SHUFFLE, key.epoch as u64, key.repeat, window as u64],
    )
    .shuffle(&mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_permutations_that_differ_by_epoch() {
        let k = PassKey {
            seed: 1,
            epoch: 2,
            repeat: 0,
        };
        let a = group_order(k, 50);
        assert_eq!(a, group_order(k, 50));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(a, group_order(PassKey { epoch: 3, ..k }, 50));
        assert_ne!(a, group_order(PassKey { repeat: 1, ..k }, 50));
        let r = row_order(k, 0, 100);
        assert_ne!(r, row_order(k, 1, 100));
        assert_eq!(r, row_order(k, 0, 100));
    }
}
