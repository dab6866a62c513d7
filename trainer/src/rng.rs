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

/// The seed torch is given before update `step` on data-parallel rank `rank`, from which both
/// steps draw their dropout: `--step autograd`'s masks come from torch's generators, and
/// `--step fused`'s Philox seeds ([`philox_seed`]) from its CPU generator. Rank 0 keeps the
/// single-process rule ([`torch_seed`]), so a one-process run is unchanged; every other rank
/// mixes its rank into the seed, so the ranks draw different masks for their different rows. A
/// pure function of (seed, rank, step): a resumed run draws exactly what it would have.
pub fn dropout_seed(seed: u64, rank: usize, step: u64) -> i64 {
    let seed = match rank {
        0 => seed,
        r => seed ^ (r as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    };
    torch_seed(seed, step)
}

/// The Philox seed of one micro-batch's dropout masks in the fused step on CUDA: the next draw
/// of torch's CPU generator (seeded with [`dropout_seed`] before each update, so it follows
/// seed, rank and step, and the micro-batches of one update get different seeds).
pub fn philox_seed() -> u64 {
    tch::Tensor::randint(i64::MAX, [1], (tch::Kind::Int64, tch::Device::Cpu)).int64_value(&[0])
        as u64
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
        assert_eq!(
            dropout_seed(3, 0, 7),
            torch_seed(3, 7),
            "rank 0: the 1-process rule"
        );
        assert_eq!(
            dropout_seed(3, 2, 7),
            dropout_seed(3, 2, 7),
            "pure: resume draws the same"
        );
        let ranks: std::collections::HashSet<i64> = (0..8).map(|r| dropout_seed(3, r, 7)).collect();
        assert_eq!(ranks.len(), 8, "every rank its own seed");
    }

    /// Runs the `isolated_` tests below in a process of their own: they seed torch's global
    /// generator, which a test on a parallel thread could draw from between seeding and drawing.
    #[test]
    fn ranks_draw_different_dropout_masks() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--test-threads=1",
                "--nocapture",
                "rng::tests::isolated_",
            ])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("1 passed"),
            "expected the isolated test to run: {text}"
        );
    }

    /// The masks of both steps after seeding as the trainer does for (seed 5, rank, step 7):
    /// autograd's (`Tensor::dropout`) and the fused step's on CUDA (the Philox seed, expanded by
    /// the host Philox exactly as the kernels expand it).
    fn masks(seed: i64) -> (Vec<f32>, Vec<bool>) {
        use tch::{Device, Kind, Tensor};
        tch::manual_seed(seed);
        let autograd = Tensor::ones([4096], (Kind::Float, Device::Cpu)).dropout(0.1, true);
        tch::manual_seed(seed);
        let philox = philox_seed();
        let fused = (0..4096u64)
            .map(|i| shared::cuda::philox::dropout_keep(philox, 1, i, 0.1))
            .collect();
        (Vec::<f32>::try_from(&autograd).unwrap(), fused)
    }

    #[test]
    #[ignore = "run by rng::tests::ranks_draw_different_dropout_masks in a process of its own"]
    fn isolated_masks_differ_by_rank_and_rank_0_keeps_the_single_process_ones() {
        let single = masks(torch_seed(5, 7));
        let by_rank: Vec<_> = (0..3).map(|r| masks(dropout_seed(5, r, 7))).collect();
        assert!(
            by_rank[0] == single,
            "rank 0 draws the single-process masks"
        );
        for a in 0..3 {
            for b in a + 1..3 {
                assert!(
                    by_rank[a].0 != by_rank[b].0,
                    "autograd: ranks {a} and {b} share masks"
                );
                assert!(
                    by_rank[a].1 != by_rank[b].1,
                    "fused: ranks {a} and {b} share masks"
                );
            }
        }
        assert!(
            masks(dropout_seed(5, 1, 7)) == by_rank[1],
            "a resumed rank draws the same"
        );
        let kept = by_rank[1].1.iter().filter(|k| **k).count();
        assert!(
            (3500..3900).contains(&kept),
            "{kept} of 4096 kept at p = 0.1"
        );
    }
}
