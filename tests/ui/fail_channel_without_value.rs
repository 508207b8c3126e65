#[dchan::endpoint(channel)]
struct Order;

#[dchan::endpoint(channel("orders"))]
struct Payment;

#[dchan::endpoint("orders")]
struct Shipment;

fn main() {}
