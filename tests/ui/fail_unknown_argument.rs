#[dchan::endpoint(chanel = "orders")]
struct Order {
    id: u64,
}

#[dchan::endpoint(channel = "payments", retries = 3)]
struct Payment;

fn main() {}
