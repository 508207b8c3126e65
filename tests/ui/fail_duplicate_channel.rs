#[dchan::endpoint(channel = "orders", channel = "orders-v2")]
struct Order {
    id: u64,
}

fn main() {}
