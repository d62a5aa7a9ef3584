//! {{name}}: counts the words of each `document.submitted` (`metered` template).
//!
//! Words are the runs of non-whitespace in the payload's `text` (required, a string). Each
//! event adds its count to the install's running total in KV (key `total-words`, decimal
//! text such as `1234`), reports that many units on the meter `words` (which the manifest's
//! per-word plan bills), and returns data `{"words": <this document>, "total": <all
//! documents so far>}`.
//!
//! KV writes are committed only when the event succeeds, and the host holds the install's
//! KV for the whole invocation, so concurrent events cannot lose an update. Usage is never
//! rolled back, so it is reported last, once the work it bills for has succeeded. A retried
//! event counts again.

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError, kv, log, payload, usage};
use serde_json::json;

const EVENT_TYPES: &[&str] = &["document.submitted"];
const TOTAL_KEY: &str = "total-words";
const METER: &str = "words";

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        // The crate's name and version are nexus.toml's: `nexus plugin check` compares them.
        Info {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            event_types: EVENT_TYPES.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn handle(event: Event) -> Result<Outcome, PluginError> {
        match event.event_type.as_str() {
            "document.submitted" => on_document_submitted(&event),
            other => Err(PluginError::unsupported_event(other, EVENT_TYPES)),
        }
    }
}

fn on_document_submitted(event: &Event) -> Result<Outcome, PluginError> {
    let fields = payload::object(&event.payload)?;
    let words = count_words(payload::string(&fields, "text")?);
    let total = read_total()? + words;
    kv::set(TOTAL_KEY, total.to_string().as_bytes())?;
    usage::report(METER, words)?;

    log::info(&format!("event {}: {words} words, {total} in all", event.id));
    Ok(Outcome { data: Some(json!({ "words": words, "total": total }).to_string()), actions: vec![] })
}

fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn read_total() -> Result<u64, PluginError> {
    let Some(stored) = kv::get(TOTAL_KEY)? else { return Ok(0) };
    std::str::from_utf8(&stored)
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| PluginError::internal(format!("kv {TOTAL_KEY} does not hold a number")))
}

nexus_plugin_sdk::export!(Plugin);

#[cfg(test)]
mod tests {
    use super::count_words;

    #[test]
    fn words_are_runs_of_non_whitespace() {
        assert_eq!(count_words("The quick brown fox"), 4);
        assert_eq!(count_words("  one\ttwo\n\nthree  four-five  "), 4);
        assert_eq!(count_words(" \n "), 0);
    }
}
