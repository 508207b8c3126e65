//! Shared primitives beneath every layer: locks that ignore poisoning.
//!
//! A panic while one of dchan's locks is held cannot leave the state behind it inconsistent in a
//! way that matters more than stopping the node's traffic, so every lock in the crate is taken
//! through these, which carry on with the state as the panicking thread left it.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Lock `m`, ignoring poisoning.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lock `l` for reading, ignoring poisoning.
pub(crate) fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Lock `l` for writing, ignoring poisoning.
pub(crate) fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// The hasher of the crate's hash maps: keyed at random in a build for use, the same in every
/// run in test builds, so that what follows from the order a map is visited in (frames queued
/// for each receiver or peer in turn) replays exactly under a simulation's seed.
///
/// In a build for use, foldhash (hashbrown's own default), seeded at random per process and
/// per map: its keys are small ids, some from peers (a collision attack needs the seed). std's
/// SipHash cost about 150 instructions a lookup, seven lookups a ping-pong round trip in each
/// process (issue 21).
#[cfg(not(test))]
pub(crate) type Hasher = foldhash::fast::RandomState;
#[cfg(test)]
pub(crate) use order::hash_order;
/// The hasher of the crate's hash maps (see the build for use): fixed keys, std's by default,
/// or those a simulation's schedule set for its thread ([`hash_order`]).
#[cfg(test)]
pub(crate) use order::Hasher;

/// A hash map with the crate's [`Hasher`] (made with `HashMap::default()`).
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, Hasher>;

/// A hash set with the crate's [`Hasher`].
pub(crate) type HashSet<T> = std::collections::HashSet<T, Hasher>;

/// The order a test build's maps are visited in, as a dimension of a simulation's schedule: the
/// same seeds under another order are other interleavings (the switchboard simulation's seed
/// 73821 lost a message only under another hash function).
#[cfg(test)]
mod order {
    use std::cell::Cell;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::BuildHasher;

    thread_local! {
        static KEY: Cell<u64> = const { Cell::new(0) };
    }

    /// Maps made on this thread from now on hash with key `key` (0: std's fixed keys, the
    /// order every recorded seed was found with).
    pub(crate) fn hash_order(key: u64) {
        KEY.set(key);
    }

    /// Keyed when made, from its thread's [`hash_order`].
    #[derive(Clone, Debug)]
    pub(crate) struct Hasher(u64);

    impl Default for Hasher {
        fn default() -> Self {
            Hasher(KEY.get())
        }
    }

    /// std's `DefaultHasher` with its fixed keys, or SipHash keyed.
    pub(crate) enum Keyed {
        Fixed(DefaultHasher),
        #[expect(deprecated, reason = "the only keyed SipHash in std, for test builds")]
        Keyed(std::hash::SipHasher),
    }

    impl std::hash::Hasher for Keyed {
        fn finish(&self) -> u64 {
            match self {
                Keyed::Fixed(h) => h.finish(),
                Keyed::Keyed(h) => h.finish(),
            }
        }

        fn write(&mut self, bytes: &[u8]) {
            match self {
                Keyed::Fixed(h) => h.write(bytes),
                Keyed::Keyed(h) => h.write(bytes),
            }
        }
    }

    impl BuildHasher for Hasher {
        type Hasher = Keyed;

        #[expect(deprecated, reason = "the only keyed SipHash in std, for test builds")]
        fn build_hasher(&self) -> Keyed {
            match self.0 {
                0 => Keyed::Fixed(DefaultHasher::new()),
                key => Keyed::Keyed(std::hash::SipHasher::new_with_keys(key, !key)),
            }
        }
    }
}
