#![allow(dead_code)]
/// splitmix64: a reproducible generator (no rand crate offline). The seed
/// comes from GM_SEED when set, and is printed by failing tests.
pub struct Rng(u64);

impl Rng {
    pub fn new(default_seed: u64) -> Rng {
        let seed = std::env::var("GM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default_seed);
        eprintln!("seed {seed} (replay with GM_SEED={seed})");
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// GM_TEST_SCALE (as the C tests): scales iteration counts.
pub fn scale(n: u64) -> u64 {
    let s: f64 = std::env::var("GM_TEST_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    ((n as f64 * s) as u64).max(1)
}
