//! The `#[dchan::endpoint]` attribute, re-exported by `dchan` as `dchan::endpoint`.
//!
//! Put it on a struct or an enum to make that type a typed dchan message. It
//! expands to two things:
//!
//! 1. The item itself, given `#[derive(Serialize, Deserialize)]` through
//!    `dchan`'s own re-export of serde, with `#[serde(crate = "::dchan::serde")]`
//!    so that your crate does not need to depend on serde. A derive that is
//!    already there (`Serialize`, `serde::Serialize`, `Deserialize`, ...) is kept
//!    and not added twice, and your own `#[serde(...)]` attributes keep working.
//! 2. `impl ::dchan::Endpoint for Type { const CHANNEL: &'static str = "..."; }`,
//!    where the channel is the `channel = "..."` argument or, without it, the
//!    name of the type. `Endpoint`'s other items (`sender`, `receiver`) have
//!    default bodies built on `CHANNEL`.
//!
//! ```ignore
//! #[dchan::endpoint(channel = "orders")]
//! #[derive(Debug, Clone)]
//! pub struct Order {
//!     pub id: u64,
//!     pub item: String,
//! }
//! ```
//!
//! expands to
//!
//! ```text
//! #[derive(::dchan::serde::Serialize, ::dchan::serde::Deserialize)]
//! #[serde(crate = "::dchan::serde")]
//! #[derive(Debug, Clone)]
//! pub struct Order {
//!     pub id: u64,
//!     pub item: String,
//! }
//!
//! #[automatically_derived]
//! impl ::dchan::Endpoint for Order {
//!     const CHANNEL: &'static str = "orders";
//! }
//! ```
//!
//! and `#[dchan::endpoint]` alone on `enum Event { .. }` gives the channel
//! `"Event"`.
//!
//! Put `#[dchan::endpoint]` above any `#[derive(..)]`: a derive written
//! above it has already run when it runs, so it cannot see that derive, and a
//! `Serialize` or `Deserialize` there would be derived twice ("conflicting
//! implementations"). Derives below it are seen and never duplicated.
//!
//! Misuse is a compile error spanned on the offending tokens that says how to
//! fix it: the attribute on a union, a function or another item; an unknown
//! argument; a `channel` that is not a non-empty string literal or is given
//! twice; a generic type (a channel carries one concrete type: use a concrete
//! wrapper type instead).
//!
//! The crate is split the way derive crates usually are: `parse` reads the
//! attribute and the item into the checked `ir`, and `codegen` turns that
//! into tokens.

use proc_macro::TokenStream;

mod codegen;
mod ir;
mod parse;

/// Makes a struct or an enum a dchan message type: derives serde's
/// `Serialize` and `Deserialize` (unless already derived) and implements
/// `dchan::Endpoint` with `CHANNEL` set to `channel = "..."` or, without it,
/// the type's name.
///
/// ```ignore
/// #[dchan::endpoint]                       // CHANNEL == "Order"
/// struct Order { id: u64 }
///
/// #[dchan::endpoint(channel = "payments")] // CHANNEL == "payments"
/// enum Payment { Card(u64), Cash }
/// ```
///
/// Generic types, unions, functions and other items are rejected with a
/// compile error that says how to fix the input.
#[proc_macro_attribute]
pub fn endpoint(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args.into(), item.into()).into()
}

/// Runs parse -> ir -> codegen. On error the item is re-emitted (with its
/// serde derives where it is a struct or an enum) next to the errors, so that
/// the user sees the macro's errors and not a cascade of "cannot find type".
fn expand(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    match parse::parse(args, item.clone()) {
        Ok(endpoint) => codegen::generate(&endpoint),
        Err(failure) => codegen::generate_error(failure, item),
    }
}
