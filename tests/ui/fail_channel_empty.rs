#[dchan::endpoint(channel = "")]
struct Order {
    id: u64,
}

fn main() {}
