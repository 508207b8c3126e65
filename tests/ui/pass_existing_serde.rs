//! Types that already derive serde's traits, or already carry `#[serde(..)]`
//! attributes: nothing is derived twice and serde's attributes still work.

/// Both derives already there, through the `serde` crate itself.
#[dchan::endpoint(channel = "orders")]
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Order {
    /// Order number.
    pub id: u64,
}

/// Imported derive names, and a `#[serde]` attribute of the user's.
mod imported {
    use serde::{Deserialize, Serialize};

    /// Only the last path segment matters.
    #[dchan::endpoint]
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Imported {
        /// A field.
        pub value: i64,
    }
}

/// Only `Serialize` already derived: the macro adds `Deserialize`.
#[dchan::endpoint]
#[derive(Debug, PartialEq, serde::Serialize)]
pub struct HalfDerived {
    /// A field.
    pub flag: bool,
}

/// No derive, but serde attributes on the type, a field and a variant.
#[dchan::endpoint(channel = "shipments")]
#[derive(Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Shipment {
    /// Renamed to `orderId`.
    pub order_id: u64,
    /// Skipped when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_code: Option<String>,
}

/// Serde attributes on an enum.
#[dchan::endpoint]
#[derive(Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Status {
    /// Tagged as `{"kind":"in_transit"}`.
    InTransit,
    /// Tagged as `{"kind":"delivered", ..}`.
    Delivered {
        /// Who signed.
        #[serde(rename = "by")]
        signed_by: String,
    },
}

/// The user's own `#[serde(crate = ..)]` is kept and not duplicated.
#[dchan::endpoint]
#[derive(Debug, PartialEq)]
#[serde(crate = "dchan::serde")]
pub struct OwnCratePath {
    /// A field.
    pub n: u8,
}

fn round_trip<T>(value: &T) -> String
where
    T: dchan::Endpoint + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_string(value).expect("serialize");
    let back: T = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(&back, value);
    json
}

fn main() {
    assert_eq!(<Order as dchan::Endpoint>::CHANNEL, "orders");
    assert_eq!(<imported::Imported as dchan::Endpoint>::CHANNEL, "Imported");
    assert_eq!(<HalfDerived as dchan::Endpoint>::CHANNEL, "HalfDerived");
    assert_eq!(<Shipment as dchan::Endpoint>::CHANNEL, "shipments");
    assert_eq!(<Status as dchan::Endpoint>::CHANNEL, "Status");
    assert_eq!(<OwnCratePath as dchan::Endpoint>::CHANNEL, "OwnCratePath");

    assert_eq!(round_trip(&Order { id: 1 }), r#"{"id":1}"#);
    assert_eq!(
        round_trip(&imported::Imported { value: -1 }),
        r#"{"value":-1}"#
    );
    assert!(serde_json::from_str::<imported::Imported>(r#"{"value":1,"x":2}"#).is_err());
    assert_eq!(round_trip(&HalfDerived { flag: true }), r#"{"flag":true}"#);
    let shipment = Shipment {
        order_id: 9,
        tracking_code: None,
    };
    assert_eq!(round_trip(&shipment), r#"{"orderId":9}"#);
    let shipment = Shipment {
        order_id: 9,
        tracking_code: Some("X1".to_owned()),
    };
    assert_eq!(
        round_trip(&shipment),
        r#"{"orderId":9,"trackingCode":"X1"}"#
    );
    assert_eq!(round_trip(&Status::InTransit), r#"{"kind":"in_transit"}"#);
    let delivered = Status::Delivered {
        signed_by: "Ann".to_owned(),
    };
    assert_eq!(round_trip(&delivered), r#"{"kind":"delivered","by":"Ann"}"#);
    assert_eq!(round_trip(&OwnCratePath { n: 3 }), r#"{"n":3}"#);
}
