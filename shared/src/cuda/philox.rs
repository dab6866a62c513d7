//! Philox4x32-10 (Salmon et al., SC'11) on the host, transcribed from `common.cuh`'s device
//! function with the same dropout rule, so the kernels' masks can be reproduced and checked: a
//! known-answer test here, the kernel's `dropout_mask` against [`dropout_keep`] in the GPU check.

/// Philox4x32-10 of counter `c` under key `k`.
pub fn philox4x32_10(mut c: [u32; 4], mut k: [u32; 2]) -> [u32; 4] {
    const M0: u32 = 0xD251_1F53;
    const M1: u32 = 0xCD9E_8D57;
    const W0: u32 = 0x9E37_79B9;
    const W1: u32 = 0xBB67_AE85;
    for _ in 0..10 {
        let p0 = M0 as u64 * c[0] as u64;
        let p1 = M1 as u64 * c[2] as u64;
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
        k[0] = k[0].wrapping_add(W0);
        k[1] = k[1].wrapping_add(W1);
    }
    c
}

/// `dropout_keep` of common.cuh: whether element `i` of dropout site `site` under `seed` is
/// kept at rate `p`.
pub fn dropout_keep(seed: u64, site: u64, i: u64, p: f32) -> bool {
    if p <= 0.0 {
        return true;
    }
    let r = philox4x32_10(
        [i as u32, (i >> 32) as u32, site as u32, (site >> 32) as u32],
        [seed as u32, (seed >> 32) as u32],
    );
    let u = (r[0] >> 8) as f32 * (1.0 / 16_777_216.0);
    u >= p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_the_random123_known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn dropout_keeps_about_one_minus_p() {
        let n = 100_000u64;
        let kept = (0..n).filter(|&i| dropout_keep(7, 3, i, 0.1)).count() as f64;
        assert!((kept / n as f64 - 0.9).abs() < 0.005, "{kept}");
        assert!((0..1000).all(|i| dropout_keep(7, 3, i, 0.0)));
        // Sites and seeds give different masks.
        let a: Vec<bool> = (0..256).map(|i| dropout_keep(7, 3, i, 0.5)).collect();
        let b: Vec<bool> = (0..256).map(|i| dropout_keep(7, 4, i, 0.5)).collect();
        let c: Vec<bool> = (0..256).map(|i| dropout_keep(8, 3, i, 0.5)).collect();
        assert!(a != b && a != c);
    }
}
