//! Turns the checked [`crate::ir`] into tokens.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{Attribute, Fields, Item};

use crate::ir::{Endpoint, Failure, Message, Recovered};

/// The item with its serde derives, and `impl ::dchan::Endpoint` for it.
pub(crate) fn generate(endpoint: &Endpoint) -> TokenStream {
    let message = message(&endpoint.message);
    let ident = &endpoint.ident;
    let channel = &endpoint.channel;
    quote! {
        #message

        #[automatically_derived]
        impl ::dchan::Endpoint for #ident {
            const CHANNEL: &'static str = #channel;
        }
    }
}

/// The errors as `compile_error!`s, followed by the item as
/// [`Recovered`] says, or exactly as written if it is not a struct or an enum.
pub(crate) fn generate_error(failure: Failure, item: TokenStream) -> TokenStream {
    let mut tokens = failure.error.to_compile_error();
    match failure.recovered.map(|recovered| *recovered) {
        Some(Recovered::WithDerives(recovered)) => tokens.extend(message(&recovered)),
        Some(Recovered::Plain { mut item, strip_serde_attrs }) => {
            if strip_serde_attrs {
                strip_serde(&mut item);
            }
            item.to_tokens(&mut tokens);
        }
        None => tokens.extend(item),
    }
    tokens
}

/// The struct or enum, preceded by the serde derives it lacks. They go before
/// the user's attributes so that serde's helper attribute `#[serde(..)]`,
/// ours and the user's, always comes after the derive that introduces it.
fn message(message: &Message) -> TokenStream {
    let serde = message.serde;
    let mut derives = Vec::new();
    if !serde.has_serialize {
        derives.push(quote!(::dchan::serde::Serialize));
    }
    if !serde.has_deserialize {
        derives.push(quote!(::dchan::serde::Deserialize));
    }
    let mut tokens = TokenStream::new();
    if !derives.is_empty() {
        tokens.extend(quote!(#[derive(#(#derives),*)]));
        if !serde.has_crate_path {
            tokens.extend(quote!(#[serde(crate = "::dchan::serde")]));
        }
    }
    message.item.to_tokens(&mut tokens);
    tokens
}

/// Removes `#[serde(..)]` from a struct or an enum, its fields and variants.
fn strip_serde(item: &mut Item) {
    fn strip(attrs: &mut Vec<Attribute>) {
        attrs.retain(|attr| !attr.path().is_ident("serde"));
    }
    fn strip_fields(fields: &mut Fields) {
        for field in fields.iter_mut() {
            strip(&mut field.attrs);
        }
    }
    match item {
        Item::Struct(s) => {
            strip(&mut s.attrs);
            strip_fields(&mut s.fields);
        }
        Item::Enum(e) => {
            strip(&mut e.attrs);
            for variant in &mut e.variants {
                strip(&mut variant.attrs);
                strip_fields(&mut variant.fields);
            }
        }
        _ => {}
    }
}
