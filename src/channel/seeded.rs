//! The seed runner both simulations of the delivery protocol share ([`credit::sim`] and
//! [`switchboard::sim`], test builds only): which seeds to run, from the environment, and a
//! failing seed named with the one command that replays it.
//!
//! - `DCHAN_SIM_SEED=S`: seed `S` alone (replay; `DCHAN_SIM_TRACE=1` prints what it does);
//! - `DCHAN_SIM_SEEDS=N`: `N` seeds (each simulation has its default), from
//!   `DCHAN_SIM_FROM=F` (0 by default): a long search goes on where the last one stopped;
//! - `DCHAN_SIM_SECS=T`: no seed is started after `T` seconds (CI's budget: the count run is
//!   printed);
//! - `DCHAN_SIM_HASH=seed` (or a number): the switchboard simulation's maps hash with keys from
//!   each schedule's seed (or that number) instead of std's fixed keys, another order of
//!   visiting them, so the same seeds reach other interleavings (see [`hash_key`]).
//!
//! [`credit::sim`]: crate::channel::credit
//! [`switchboard::sim`]: crate::channel::switchboard

use std::panic::{catch_unwind, UnwindSafe};

/// A number from environment variable `name`, if set; a value that is not one is a mistake
/// worth stopping for.
fn number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name}: not a number: {value:?}")))
}

/// The seeds to run: see the module's documentation. `default`: how many without
/// `DCHAN_SIM_SEEDS`.
pub(crate) fn seeds(default: u64) -> std::ops::Range<u64> {
    if let Some(seed) = number("DCHAN_SIM_SEED") {
        return seed..seed + 1;
    }
    let from = number("DCHAN_SIM_FROM").unwrap_or(0);
    from..from + number("DCHAN_SIM_SEEDS").unwrap_or(default)
}

/// Run `run` for each of [`seeds`]`(default)`, and hand back what each returned. The first that
/// panics stops the run with a panic naming its seed and `replay`, the command that runs it
/// again (`DCHAN_SIM_SEED=S` is put in front).
pub(crate) fn run_seeds<T>(
    default: u64,
    replay: &str,
    run: impl Fn(u64) -> T + UnwindSafe + Copy,
) -> Vec<T> {
    let deadline = number("DCHAN_SIM_SECS")
        .map(|secs| std::time::Instant::now() + std::time::Duration::from_secs(secs));
    seeds(default)
        .take_while(|_| deadline.is_none_or(|d| std::time::Instant::now() < d))
        .map(|seed| {
            run_one(&format!("{seed}"), &format!("DCHAN_SIM_SEED={seed} {replay}"), move || {
                run(seed)
            })
        })
        .collect()
}

/// The key a schedule's maps hash with (see `crate::sync::hash_order`): 0, std's fixed keys,
/// unless `DCHAN_SIM_HASH` says `seed` (keys from the schedule's seed) or gives a number. A
/// failure found with it replays with the same setting.
pub(crate) fn hash_key(seed: u64) -> u64 {
    match std::env::var("DCHAN_SIM_HASH").ok().as_deref().map(str::trim) {
        None | Some("" | "0") => 0,
        Some("seed") => seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        Some(_) => number("DCHAN_SIM_HASH").unwrap_or(0),
    }
}

/// Run one schedule, `seed` (how it is named), and hand back what it returned; if it panics,
/// panic again naming it and `replay`, the command that runs it again.
pub(crate) fn run_one<T>(seed: &str, replay: &str, run: impl FnOnce() -> T + UnwindSafe) -> T {
    match catch_unwind(run) {
        Ok(t) => t,
        Err(e) => {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("seed {seed} failed: {why}\nreplay: {replay}");
        }
    }
}
