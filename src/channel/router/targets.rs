//! A router's receivers as it keeps them: one inline (every unnamed channel's router has one),
//! or a list, so that a router of one receiver makes no allocation of its own for it (24 bytes
//! on the heap, for 8 more inline: in every unnamed channel, one per request maybe).

/// The receivers of a router (see the module's doc): read as a slice. (Of any `T`: the
/// router's `Target`.)
#[derive(Debug)]
pub(super) enum Targets<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Default for Targets<T> {
    fn default() -> Self {
        Targets::Many(Vec::new())
    }
}

impl<T> From<Vec<T>> for Targets<T> {
    fn from(mut targets: Vec<T>) -> Self {
        match targets.pop() {
            Some(one) if targets.is_empty() => Targets::One(one),
            Some(last) => {
                targets.push(last);
                Targets::Many(targets)
            }
            None => Targets::Many(targets),
        }
    }
}

impl<T> std::ops::Deref for Targets<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Targets::One(one) => std::slice::from_ref(one),
            Targets::Many(many) => many,
        }
    }
}

impl<T> IntoIterator for Targets<T> {
    type Item = T;
    type IntoIter = std::iter::Chain<std::option::IntoIter<T>, std::vec::IntoIter<T>>;
    fn into_iter(self) -> Self::IntoIter {
        match self {
            Targets::One(one) => Some(one).into_iter().chain(Vec::new()),
            Targets::Many(many) => None.into_iter().chain(many),
        }
    }
}
