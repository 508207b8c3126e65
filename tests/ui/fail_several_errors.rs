// Every error is reported at once, and the type still exists afterwards (with
// its `#[serde]` attributes accepted), so nothing else errors.
#[dchan::endpoint(chanel = "x", channel = "")]
#[serde(rename_all = "camelCase")]
struct Envelope<T> {
    body_text: T,
}

fn main() {
    let _ = Envelope { body_text: 1 };
}
