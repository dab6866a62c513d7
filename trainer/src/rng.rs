//! The trainer's random streams, by name. Every draw is a pure function of `--seed` and a
//! position (update, pass, sequence), so a resumed run draws exactly what an uninterrupted one
//! would. Streams come from [`CounterRng`] keyed `(seed, [domain, ...])`: the domains below
//! and those of `shared::corruption::rng::domain` (SHUFFLE for the loader's order, MLM for
//! dynamic masking) are all distinct, so no two uses share draws.
use shared::corruption::rng::CounterRng;

/// Domain word of the torch seeds: [`torch_seed`] draws from `(seed, [TORCH_SEED_DOMAIN, step])`.
/// (0x70c4 spells "torch" loosely; any value distinct from the shared domains 1..=5 would do.)
pub const TORCH_SEED_DOMAIN: u64 = 0x7_0c4;

/// The `step` word of the initialisation seed: no update has this index.
pub const INIT_STEP: u64 = u64::MAX;

/// XOR-ed into the initialisation seed, so that it differs from every dropout seed even if
/// an update ever had index [`INIT_STEP`].
pub const INIT_SEED_XOR: i64 = 0x5eed;

/// The pass number keying the MLM masks of validation rows: never a training pass, so
/// validation masks are fixed for the run and differ from every training pass's.
pub const VALIDATION_PASS: u64 = u64::MAX;

/// The seed torch is given before update `step`, so that dropout masks are a function of
/// (seed, step) and a resumed run draws the same ones.
pub fn torch_seed(seed: u64, step: u64) -> i64 {
    let mut r = CounterRng::new(seed, &[TORCH_SEED_DOMAIN, step]);
    (r.next_u64() >> 1) as i64
}

/// The seed torch is given before the model's parameters are initialised.
pub fn init_seed(seed: u64) -> i64 {
    torch_seed(seed, INIT_STEP) ^ INIT_SEED_XOR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_pure_and_distinct() {
        assert_eq!(torch_seed(3, 7), torch_seed(3, 7));
        assert_ne!(torch_seed(3, 7), torch_seed(3, 8));
        assert_ne!(torch_seed(3, 7), torch_seed(4, 7));
        assert!(torch_seed(0, 0) >= 0);
        assert_ne!(init_seed(0), torch_seed(0, INIT_STEP));
    }
}
