//! Other ways of writing it: the imported attribute, attributes on either
//! side of it, a channel from a `macro_rules!` literal, and the bounds that
//! `dchan::Endpoint` puts on the type.
use dchan::endpoint;

/// Imported by name.
#[endpoint(channel = "imported")]
#[derive(Debug)]
pub struct Imported;

/// The derive before the attribute, doc comments in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
/// A documented message.
#[dchan::endpoint(channel = "after-derive")]
#[allow(dead_code)]
pub struct AfterDerive {
    id: u32,
}

macro_rules! message {
    ($name:ident, $channel:literal) => {
        /// Declared by a macro.
        #[dchan::endpoint(channel = $channel)]
        #[derive(Debug, Default)]
        pub struct $name {
            /// A field.
            pub n: u64,
        }
    };
}

message!(FromMacro, "from-macro");

fn assert_endpoint<T>() -> &'static str
where
    T: dchan::Endpoint
        + dchan::serde::Serialize
        + dchan::serde::de::DeserializeOwned
        + Send
        + 'static,
{
    T::CHANNEL
}

fn main() {
    assert_eq!(assert_endpoint::<Imported>(), "imported");
    assert_eq!(assert_endpoint::<AfterDerive>(), "after-derive");
    assert_eq!(assert_endpoint::<FromMacro>(), "from-macro");
    let copied = AfterDerive { id: 1 };
    let same = copied;
    assert_eq!(copied, same);
}
