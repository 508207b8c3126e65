//! `dchan request`: send one request and print its answer. The request is a JSON object; a
//! reply handle made by this command's node is put in one of its fields (`--reply-field`,
//! `reply` by default), and whichever receiver takes the request answers through it (a Rust
//! receiver declares the field as a `dchan::oneshot::Sender<R>`). The answer is printed as one
//! line of JSON; no answer within `--timeout` (sending included) is an error.

use std::time::Duration;

use dchan::{RequestError, Value};

use crate::client::{self, Join, Stop};
use crate::{json, Failure};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The channel.
    channel: String,
    /// The request: a JSON object (the reply handle is added as one more field).
    request: String,
    #[command(flatten)]
    join: Join,
    /// How long to wait for the answer, sending included (`500ms`, `10s`, `1m`).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The field of the request that carries the reply handle.
    #[arg(long, default_value = "reply")]
    reply_field: String,
}

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    // Checked before joining: a typo costs no cluster round trip.
    let Value::Map(fields) = json::parse(&args.request)
        .map_err(|e| Failure::new(format!("the request is not JSON: {e}")))?
    else {
        return Err(Failure::new(
            "the request must be a JSON object (the reply handle is one of its fields)",
        ));
    };
    if fields.iter().any(|(k, _)| k.as_str() == Some(args.reply_field.as_str())) {
        return Err(Failure::new(format!(
            "the request has a field {:?} already: the reply handle goes there (see --reply-field)",
            args.reply_field
        )));
    }
    let mut stop = Stop::new()?;
    let node = client::join(&args.join, &format!("request {}", args.channel)).await?;
    let result = async {
        let tx = node.sender::<Value>(&args.channel).await?;
        let field = args.reply_field.clone();
        let asking =
            tx.request_timeout(args.timeout, move |reply: dchan::oneshot::Sender<Value>| {
                let mut fields = fields;
                // A handle becomes a value as it would be encoded in a message.
                let handle = dchan::rmpv::ext::to_value(&reply).expect("a reply handle encodes");
                fields.push((Value::from(field), handle));
                Value::Map(fields)
            });
        let answer = tokio::select! {
            a = asking => a,
            _ = stop.signalled() => return Err(Failure::interrupted("interrupted")),
        };
        match answer {
            Ok(value) => {
                let mut out = std::io::stdout().lock();
                json::write_line(&mut out, &value).map_err(|e| match e {
                    json::WriteError::Io(e) => Failure::from(e),
                    json::WriteError::NotJson(why) => {
                        Failure::new(format!("the answer has no JSON form: {why}"))
                    }
                })
            }
            Err(RequestError::Timeout) => Err(Failure::new(format!(
                "no answer on {} within {}",
                args.channel,
                humantime::format_duration(args.timeout)
            ))),
            Err(RequestError::Closed) => {
                Err(Failure::new(format!("channel {} is closed", args.channel)))
            }
            Err(e) => Err(Failure::new(e.to_string())),
        }
    }
    .await;
    let left = node.shutdown().await;
    result?;
    left.map_err(Failure::from)
}
