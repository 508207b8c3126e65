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
#[cfg(not(test))]
pub(crate) type Hasher = std::collections::hash_map::RandomState;
/// The hasher of the crate's hash maps (see the build for use): fixed keys.
#[cfg(test)]
pub(crate) type Hasher = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

/// A hash map with the crate's [`Hasher`] (made with `HashMap::default()`).
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, Hasher>;

/// A hash set with the crate's [`Hasher`].
pub(crate) type HashSet<T> = std::collections::HashSet<T, Hasher>;
