#[dchan::endpoint]
fn send_order() {}

#[dchan::endpoint(channel = "orders")]
trait Order {}

#[dchan::endpoint]
type Alias = u64;

#[dchan::endpoint]
mod messages {}

fn main() {}
