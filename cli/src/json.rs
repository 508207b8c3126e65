//! JSON to dchan's untyped messages and back: a JSON value becomes a MessagePack value with the
//! same shape (objects become maps with field names, as dchan encodes Rust structs), through
//! serde on both sides, nothing hand-written.

use dchan::Value;

/// Parse one JSON value. The error names the column where it went wrong (and the line, when
/// the text has more than one): callers say which value or input line it was.
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    serde_json::from_str::<Value>(text).map_err(|e| {
        let full = e.to_string();
        // serde_json ends its message with " at line L column C".
        let what = full.rsplit_once(" at line ").map_or(full.as_str(), |(what, _)| what);
        match (text.contains('\n'), e.line(), e.column()) {
            (_, 0, _) => what.to_owned(),
            (false, _, column) => format!("{what} at column {column}"),
            (true, line, column) => format!("{what} at its line {line}, column {column}"),
        }
    })
}

/// Write `value` as one line of JSON.
pub(crate) fn write_line(out: &mut impl std::io::Write, value: &Value) -> Result<(), WriteError> {
    serde_json::to_writer(&mut *out, value).map_err(|e| {
        if e.is_io() {
            WriteError::Io(std::io::Error::from(e))
        } else {
            WriteError::NotJson(e.to_string())
        }
    })?;
    out.write_all(b"\n").map_err(WriteError::Io)
}

/// Why a value could not be written.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The output is gone (closed pipe, full disk).
    Io(std::io::Error),
    /// The value has no JSON form (a map key that is not a string or a number).
    NotJson(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_messagepack_with_field_names() {
        let v = parse(r#"{"id": 7, "name": "x", "tags": [1, -2, 3.5, null, true]}"#).unwrap();
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Job {
            id: u64,
            name: String,
            tags: Vec<Option<serde_json::Value>>,
        }
        let bytes = rmp_serde::to_vec_named(&v).unwrap();
        let job: Job = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!((job.id, job.name.as_str(), job.tags.len()), (7, "x", 5));
        let mut out = Vec::new();
        write_line(&mut out, &v).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\":7,\"name\":\"x\",\"tags\":[1,-2,3.5,null,true]}\n"
        );
        assert_eq!(
            parse("{\"id\": ").unwrap_err(),
            "EOF while parsing a value at column 7",
            "one line: no second meaning of 'line' beside the caller's"
        );
    }
}
