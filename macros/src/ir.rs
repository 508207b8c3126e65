//! The checked form of one `#[dchan::endpoint]` use, between [`crate::parse`]
//! and [`crate::codegen`].

use syn::{Ident, Item, LitStr};

/// A valid endpoint: a non-generic struct or enum and its channel name.
pub(crate) struct Endpoint {
    /// The message type, re-emitted with serde's derives added.
    pub(crate) message: Message,
    /// The type's name, the `Self` of `impl Endpoint`.
    pub(crate) ident: Ident,
    /// The channel: the `channel = "..."` literal as written, or the type's
    /// name as a string literal spanned on the identifier.
    pub(crate) channel: LitStr,
}

/// A struct or an enum as written, and which serde derives it still needs.
pub(crate) struct Message {
    /// The item as the user wrote it, attributes untouched.
    pub(crate) item: Item,
    /// Which of serde's traits the item already derives.
    pub(crate) serde: SerdeDerives,
}

/// What the item's own attributes already say about serde.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SerdeDerives {
    /// A `#[derive(..)]` lists `Serialize` (any path ending in it).
    pub(crate) has_serialize: bool,
    /// A `#[derive(..)]` lists `Deserialize` (any path ending in it).
    pub(crate) has_deserialize: bool,
    /// A `#[serde(crate = "..")]` is already there: adding ours would be a
    /// duplicate, and the user's path then serves our derives too.
    pub(crate) has_crate_path: bool,
}

/// Input that is not a valid endpoint: the errors to report and, when the
/// item is a struct or an enum, how to re-emit it next to them so that the
/// rest of the user's crate still sees the type and only the macro's own
/// errors are reported.
pub(crate) struct Failure {
    /// Every error found, combined.
    pub(crate) error: syn::Error,
    /// The struct or enum to re-emit, if the item was one; otherwise the
    /// input is re-emitted as it was.
    pub(crate) recovered: Option<Box<Recovered>>,
}

/// How a struct or an enum is re-emitted after an error.
pub(crate) enum Recovered {
    /// The type itself is fine (the arguments were not): it gets its serde
    /// derives as usual, so its `#[serde(..)]` attributes stay valid.
    WithDerives(Message),
    /// The type is generic: serde's derives could add errors of their own
    /// (a field type with no serde impl for every parameter), so none is
    /// added.
    Plain {
        /// The item as the user wrote it.
        item: Item,
        /// The item derives neither serde trait itself, so its `#[serde(..)]`
        /// attributes (on the type, its fields and variants) would be unknown
        /// attributes: they are removed.
        strip_serde_attrs: bool,
    },
}
