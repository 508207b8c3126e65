//! Time and chance for the node's timers: a monotonic millisecond clock that can sit in an
//! atomic, and random draws for jitter, ids and tokens. Beside the message path.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Milliseconds on a monotonic clock shared by every node of the process.
pub(crate) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A random number: std's per-hasher random keys, fed a counter so that two draws differ. (In
/// the delivery protocol's simulation, drawn from the schedule's seed: `seed_thread`.)
pub(crate) fn random_u64() -> u64 {
    #[cfg(test)]
    if let Some(draw) = seeded() {
        return draw;
    }
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(DRAWS.fetch_add(1, Ordering::Relaxed));
    // (The process id, looked up once: a system call per draw showed in profiles.)
    static PID: OnceLock<u32> = OnceLock::new();
    h.write_u32(*PID.get_or_init(std::process::id));
    h.finish()
}

#[cfg(test)]
thread_local! {
    /// The seed of this thread's draws, while a simulation runs on it.
    static SEEDED: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Draw from `seed` on this thread from now on (`None`: at random again), so that a simulated
/// schedule (routers' round-robin starts, stream and request numbers) replays exactly.
#[cfg(test)]
pub(crate) fn seed_thread(seed: Option<u64>) {
    SEEDED.with(|s| s.set(seed));
}

/// The next draw of this thread's seed (splitmix64), if it has one.
#[cfg(test)]
fn seeded() -> Option<u64> {
    SEEDED.with(|s| {
        let mut state = s.get()?.wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(Some(state));
        state = (state ^ (state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        state = (state ^ (state >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Some(state ^ (state >> 31))
    })
}
