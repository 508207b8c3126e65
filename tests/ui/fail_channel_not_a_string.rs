#[dchan::endpoint(channel = 42)]
struct Order;

#[dchan::endpoint(channel = orders)]
struct Payment;

#[dchan::endpoint(channel = b"bytes")]
struct Shipment;

fn main() {}
