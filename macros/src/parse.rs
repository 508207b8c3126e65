//! Reads the attribute's arguments and the item into the checked
//! [`crate::ir`], collecting every error with a span and a way to fix it.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, Generics, Ident, Item, Lit, LitStr, Path, Token};

use crate::ir::{Endpoint, Failure, Message, Recovered, SerdeDerives};

/// How every usage error names the attribute.
const ATTR: &str = "#[dchan::endpoint]";

/// The one argument, spelled out in error messages.
const USAGE: &str = "the only argument is `channel = \"name\"`";

/// Parses `#[dchan::endpoint(<args>)] <item>`.
pub(crate) fn parse(args: TokenStream, item: TokenStream) -> Result<Endpoint, Failure> {
    let mut errors = Errors::default();
    let mut args = parse_args(args, &mut errors);

    let item: Item = match syn::parse2(item) {
        Ok(item) => item,
        Err(error) => {
            errors.push(error);
            return Err(errors.into_failure(None));
        }
    };
    let (ident, generics, attrs) = match &item {
        Item::Struct(s) => (s.ident.clone(), &s.generics, &s.attrs),
        Item::Enum(e) => (e.ident.clone(), &e.generics, &e.attrs),
        other => {
            errors.push(not_a_message(other));
            return Err(errors.into_failure(None));
        }
    };
    let serde = serde_derives(attrs);
    if let Some(error) = generics_error(&ident, generics) {
        errors.push(error);
        let strip_serde_attrs = !serde.has_serialize && !serde.has_deserialize;
        let recovered = Recovered::Plain { item, strip_serde_attrs };
        return Err(errors.into_failure(Some(Box::new(recovered))));
    }
    let message = Message { item, serde };
    if errors.any() {
        let recovered = Recovered::WithDerives(message);
        return Err(errors.into_failure(Some(Box::new(recovered))));
    }
    let channel = args
        .channel
        .take()
        .unwrap_or_else(|| LitStr::new(&ident.unraw().to_string(), ident.span()));
    Ok(Endpoint { message, ident, channel })
}

/// The attribute's arguments.
#[derive(Default)]
struct Args {
    /// `channel = "..."`, checked to be a non-empty string literal.
    channel: Option<LitStr>,
}

/// Errors found so far, reported all at once.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn any(&self) -> bool {
        self.0.is_some()
    }

    /// Only called once an error was pushed; an empty set would be a bug, and
    /// is still reported as an error rather than a panic.
    fn into_failure(self, recovered: Option<Box<Recovered>>) -> Failure {
        let error = self.0.unwrap_or_else(|| {
            syn::Error::new(proc_macro2::Span::call_site(), format!("{ATTR}: internal error"))
        });
        Failure { error, recovered }
    }
}

/// Parses `channel = "name"` (or nothing). Errors that leave the input in a
/// known place are collected and parsing goes on; the others end it.
fn parse_args(args: TokenStream, errors: &mut Errors) -> Args {
    let mut parsed = Args::default();
    let parser = |input: ParseStream<'_>| -> syn::Result<()> {
        while !input.is_empty() {
            if !input.peek(Ident::peek_any) {
                return Err(input.error(format!("expected an argument: {USAGE}")));
            }
            let key = input.call(Ident::parse_any)?;
            if key != "channel" {
                errors.push(syn::Error::new(
                    key.span(),
                    format!("unknown argument `{}`: {USAGE}", key.unraw()),
                ));
                // Skip the value, if any, to look at the arguments after it.
                if input.parse::<Option<Token![=]>>()?.is_some() {
                    input.parse::<Expr>()?;
                }
            } else if input.peek(Token![=]) {
                input.parse::<Token![=]>()?;
                let value = input
                    .parse::<Expr>()
                    .map_err(|e| syn::Error::new(e.span(), channel_must_be_a_string()))?;
                match channel_literal(&value) {
                    Some(channel) if parsed.channel.is_some() => {
                        let mut span = key.to_token_stream();
                        channel.to_tokens(&mut span);
                        errors.push(syn::Error::new_spanned(
                            span,
                            "duplicate argument `channel`: give `channel = \"name\"` only once",
                        ));
                    }
                    Some(channel) => parsed.channel = Some(channel),
                    None => {
                        errors.push(syn::Error::new_spanned(&value, channel_must_be_a_string()))
                    }
                }
            } else {
                return Err(syn::Error::new(
                    key.span(),
                    "`channel` needs a value: write `channel = \"name\"`",
                ));
            }
            if input.is_empty() {
                break;
            }
            if !input.peek(Token![,]) {
                return Err(
                    input.error(format!("expected `,` or the end of the arguments: {USAGE}"))
                );
            }
            input.parse::<Token![,]>()?;
        }
        Ok(())
    };
    if let Err(error) = parser.parse2(args) {
        errors.push(error);
    }
    parsed
}

fn channel_must_be_a_string() -> String {
    "`channel` must be a non-empty string literal, e.g. `channel = \"orders\"`".to_owned()
}

/// The channel's literal, if `value` is a non-empty string literal (maybe in
/// the invisible group of a `macro_rules!` `$name:literal`).
fn channel_literal(value: &Expr) -> Option<LitStr> {
    match value {
        Expr::Group(group) => channel_literal(&group.expr),
        Expr::Lit(lit) => match &lit.lit {
            Lit::Str(s) if !s.value().is_empty() => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The error for an item that is neither a struct nor an enum, spanned on the
/// head of the item (`union Name`, `fn name`, ...) rather than all of it.
fn not_a_message(item: &Item) -> syn::Error {
    let (what, head): (&str, TokenStream) = match item {
        Item::Union(u) => ("a union", head(&u.union_token, &u.ident)),
        Item::Fn(f) => ("a function", head(&f.sig.fn_token, &f.sig.ident)),
        Item::Trait(t) => ("a trait", head(&t.trait_token, &t.ident)),
        Item::TraitAlias(t) => ("a trait alias", head(&t.trait_token, &t.ident)),
        Item::Impl(i) => ("an impl block", head(&i.impl_token, &i.self_ty)),
        Item::Mod(m) => ("a module", head(&m.mod_token, &m.ident)),
        Item::Type(t) => ("a type alias", head(&t.type_token, &t.ident)),
        Item::Const(c) => ("a const", head(&c.const_token, &c.ident)),
        Item::Static(s) => ("a static", head(&s.static_token, &s.ident)),
        Item::Use(u) => ("a use declaration", u.use_token.to_token_stream()),
        Item::ExternCrate(e) => ("an extern crate", head(&e.crate_token, &e.ident)),
        Item::ForeignMod(f) => ("an extern block", f.abi.to_token_stream()),
        Item::Macro(m) => ("a macro", m.mac.path.to_token_stream()),
        other => ("this item", other.to_token_stream()),
    };
    syn::Error::new_spanned(
        head,
        format!("{ATTR} cannot be used on {what}: messages must be a struct or an enum"),
    )
}

/// `keyword name`, for a span covering both.
fn head(keyword: &impl ToTokens, name: &impl ToTokens) -> TokenStream {
    let mut tokens = keyword.to_token_stream();
    name.to_tokens(&mut tokens);
    tokens
}

/// The error for generic parameters (types, lifetimes or consts).
fn generics_error(ident: &Ident, generics: &Generics) -> Option<syn::Error> {
    if generics.params.is_empty() {
        return None;
    }
    Some(syn::Error::new_spanned(
        generics,
        format!(
            "{ATTR} does not support generic types, since a channel carries one concrete type: \
             use a concrete wrapper type instead, e.g. `#[dchan::endpoint] struct My{ident}({ident}<..>);` \
             (with serde's derives on `{ident}`)",
            ident = ident.unraw(),
        ),
    ))
}

/// Which serde derives and `#[serde(crate = ..)]` the item already has.
fn serde_derives(attrs: &[Attribute]) -> SerdeDerives {
    let mut found = SerdeDerives::default();
    for attr in attrs {
        if attr.path().is_ident("derive") {
            // A derive list that does not parse is left for rustc to report.
            let Ok(paths) = attr.parse_args_with(Punctuated::<Path, Token![,]>::parse_terminated)
            else {
                continue;
            };
            for path in &paths {
                match path.segments.last() {
                    Some(last) if last.ident == "Serialize" => found.has_serialize = true,
                    Some(last) if last.ident == "Deserialize" => found.has_deserialize = true,
                    _ => {}
                }
            }
        } else if attr.path().is_ident("serde") {
            if let Ok(list) = attr.meta.require_list() {
                let tokens: Vec<TokenTree> = list.tokens.clone().into_iter().collect();
                found.has_crate_path |= tokens.windows(2).any(|pair| {
                    matches!(&pair[0], TokenTree::Ident(i) if i == "crate")
                        && matches!(&pair[1], TokenTree::Punct(p) if p.as_char() == '=')
                });
            }
        }
    }
    found
}
