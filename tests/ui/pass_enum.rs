//! Enums, with and without `channel`.

/// Unit, tuple and struct variants; the channel defaults to "Event".
#[dchan::endpoint]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A unit variant.
    Started,
    /// A tuple variant.
    Progress(u8),
    /// A struct variant.
    Done {
        /// Whether it worked.
        ok: bool,
    },
}

/// An explicit channel.
#[dchan::endpoint(channel = "commands")]
#[derive(Debug, PartialEq)]
enum Command {
    Stop,
    Say(String),
}

fn round_trip<T>(value: &T) -> T
where
    T: dchan::serde::Serialize + dchan::serde::de::DeserializeOwned,
{
    let json = serde_json::to_string(value).expect("serialize");
    serde_json::from_str(&json).expect("deserialize")
}

fn channel<T: dchan::Endpoint>(_: &T) -> &'static str {
    T::CHANNEL
}

fn main() {
    assert_eq!(<Event as dchan::Endpoint>::CHANNEL, "Event");
    assert_eq!(<Command as dchan::Endpoint>::CHANNEL, "commands");
    for event in [
        Event::Started,
        Event::Progress(50),
        Event::Done { ok: true },
    ] {
        assert_eq!(channel(&event), "Event");
        assert_eq!(round_trip(&event), event);
    }
    assert_eq!(
        round_trip(&Command::Say("hi".to_owned())),
        Command::Say("hi".to_owned())
    );
    assert_eq!(round_trip(&Command::Stop), Command::Stop);
}
