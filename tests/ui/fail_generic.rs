#[dchan::endpoint]
struct Envelope<T> {
    body: T,
}

#[dchan::endpoint(channel = "borrowed")]
#[serde(rename_all = "camelCase")]
enum Borrowed<'a> {
    #[serde(rename = "text")]
    Text(#[serde(borrow)] &'a str),
}

#[dchan::endpoint]
struct Buffer<const N: usize>([u8; N]);

#[dchan::endpoint]
#[derive(serde::Serialize)]
struct Wrapper<T: serde::Serialize> {
    #[serde(rename = "inner")]
    value: T,
}

fn main() {
    let _ = Envelope { body: 1 };
    let _ = Borrowed::Text("x");
    let _ = Buffer([0u8; 4]);
    let _ = Wrapper { value: 1 };
}
