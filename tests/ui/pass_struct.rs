//! Named, tuple and unit structs, with and without `channel`.

/// The channel defaults to the type's name.
#[dchan::endpoint]
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// Order number.
    pub id: u64,
    /// What was ordered.
    pub item: String,
}

/// An explicit channel.
#[dchan::endpoint(channel = "payments")]
#[derive(Debug, PartialEq)]
pub struct Payment(pub u64, pub String);

/// A unit struct, with a trailing comma after the argument.
#[dchan::endpoint(channel = "heartbeats")]
#[derive(Debug, PartialEq)]
pub struct Heartbeat;

/// A raw string literal is a string literal too.
#[dchan::endpoint(channel = r"raw/channel")]
#[derive(Debug, PartialEq)]
struct Raw {
    n: i32,
}

fn is_endpoint<T: dchan::Endpoint>() -> &'static str {
    T::CHANNEL
}

fn round_trip<T>(value: &T) -> T
where
    T: dchan::serde::Serialize + dchan::serde::de::DeserializeOwned,
{
    let json = serde_json::to_string(value).expect("serialize");
    serde_json::from_str(&json).expect("deserialize")
}

fn main() {
    assert_eq!(<Order as dchan::Endpoint>::CHANNEL, "Order");
    assert_eq!(is_endpoint::<Payment>(), "payments");
    assert_eq!(is_endpoint::<Heartbeat>(), "heartbeats");
    assert_eq!(is_endpoint::<Raw>(), "raw/channel");

    let order = Order {
        id: 7,
        item: "tea".to_owned(),
    };
    assert_eq!(round_trip(&order), order);
    assert_eq!(
        round_trip(&Payment(1, "card".to_owned())),
        Payment(1, "card".to_owned())
    );
    assert_eq!(round_trip(&Heartbeat), Heartbeat);
    assert_eq!(round_trip(&Raw { n: -3 }), Raw { n: -3 });
}
