//! Chat notifier: turns `invoice.paid`, `user.signup` and `ticket.created` events into a
//! one-line chat message and posts it to the tenant's incoming webhook (Slack, Mattermost and
//! the like), billing one `messages-sent` unit per delivered message.
//!
//! The message text is built by pure functions ([`message_text`], [`format_amount`]) so it can
//! be tested without a host; [`Plugin::handle`] only adds the capability calls around it.

use nexus_plugin_sdk::http::{Method, Request, Response, send};
use nexus_plugin_sdk::{ErrorKind, Event, Guest, Info, Outcome, PluginError, config, log, payload, usage};
use serde_json::{Map, Value, json};

const NAME: &str = "chat-notifier";
const EVENT_TYPES: [&str; 3] = ["invoice.paid", "user.signup", "ticket.created"];
const DEFAULT_CHANNEL: &str = "#general";
const DEFAULT_USERNAME: &str = "Nexus";

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info {
            name: NAME.into(),
            version: "0.1.0".into(),
            event_types: EVENT_TYPES.iter().map(|t| (*t).to_string()).collect(),
        }
    }

    fn handle(event: Event) -> Result<Outcome, PluginError> {
        // Validate the event before touching any capability: a bad event must not cost a
        // webhook call, and the check needs no grants.
        let text = message_text(&event.event_type, &event.payload)?;
        let url = config::secret("webhook-url")?
            .ok_or_else(|| PluginError::invalid_config("secret webhook-url is not set"))?;
        let channel = config::get("channel")?.unwrap_or_else(|| DEFAULT_CHANNEL.into());
        let username = config::get("username")?.unwrap_or_else(|| DEFAULT_USERNAME.into());

        let body = json!({"channel": channel, "username": username, "text": text, "event_id": event.id});
        let response = post(&url, &event.id, body.to_string())?;
        check_status(&response)?;

        usage::report("messages-sent", 1)?;
        // The URL is a secret (it authorizes posting), so only the event is named here.
        log::info(&format!("posted to webhook for {} {}", event.event_type, event.id));
        let data = json!({"delivered": true, "status": response.status, "text": text});
        Ok(Outcome { data: Some(data.to_string()), actions: vec![] })
    }
}

nexus_plugin_sdk::export!(Plugin);

/// Sends the message. The event id doubles as idempotency key so a retried event does not
/// post twice on webhooks that honour the header.
fn post(url: &str, event_id: &str, body: String) -> Result<Response, PluginError> {
    let request = Request {
        method: Method::Post,
        url: url.to_string(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("idempotency-key".into(), event_id.to_string()),
        ],
        body: Some(body.into_bytes()),
    };
    Ok(send(&request)?)
}

/// A non-2xx answer is the chat service's failure; `upstream` tells the platform a retry
/// may succeed.
fn check_status(response: &Response) -> Result<(), PluginError> {
    if (200..300).contains(&response.status) {
        Ok(())
    } else {
        Err(PluginError::new(ErrorKind::Upstream, format!("webhook answered {}", response.status)))
    }
}

/// Builds the chat line for one event from its type and raw JSON payload.
pub fn message_text(event_type: &str, payload: &str) -> Result<String, PluginError> {
    if !EVENT_TYPES.contains(&event_type) {
        return Err(PluginError::new(ErrorKind::UnsupportedEvent, format!("{NAME} does not handle {event_type}")));
    }
    let fields = payload::object(payload)?;
    match event_type {
        "invoice.paid" => invoice_paid_text(&fields),
        "user.signup" => user_signup_text(&fields),
        _ => ticket_created_text(&fields),
    }
}

fn invoice_paid_text(fields: &Map<String, Value>) -> Result<String, PluginError> {
    let invoice_id = payload::string(fields, "invoice_id")?;
    let customer = payload::string(fields, "customer")?;
    let amount_minor = payload::integer(fields, "amount_minor")?;
    let currency = currency_field(fields, "currency")?;
    let amount = format_amount(amount_minor, currency);
    Ok(format!("Invoice {invoice_id} paid by {customer}: {amount} {currency}"))
}

fn user_signup_text(fields: &Map<String, Value>) -> Result<String, PluginError> {
    let email = payload::string(fields, "email")?;
    let name = payload::string(fields, "name")?;
    Ok(format!("New signup: {name} <{email}>"))
}

fn ticket_created_text(fields: &Map<String, Value>) -> Result<String, PluginError> {
    let ticket_id = payload::string(fields, "ticket_id")?;
    let subject = payload::string(fields, "subject")?;
    let priority = payload::string(fields, "priority")?;
    Ok(format!("Ticket {ticket_id} ({priority}): {subject}"))
}

/// Formats an amount in minor units as a decimal in major units, e.g. 123456 EUR -> "1234.56".
/// Integer arithmetic only: floats cannot represent most decimal amounts exactly.
pub fn format_amount(amount_minor: i64, currency: &str) -> String {
    let exponent = minor_unit_exponent(currency);
    let sign = if amount_minor < 0 { "-" } else { "" };
    // unsigned_abs keeps i64::MIN representable.
    let magnitude = amount_minor.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{magnitude}");
    }
    let scale = 10u64.pow(exponent);
    let width = exponent as usize;
    format!("{sign}{}.{:0width$}", magnitude / scale, magnitude % scale)
}

/// Digits after the decimal point for a currency (ISO 4217 minor units); 2 unless listed.
pub fn minor_unit_exponent(currency: &str) -> u32 {
    const ZERO: [&str; 5] = ["JPY", "KRW", "VND", "CLP", "ISK"];
    const THREE: [&str; 5] = ["BHD", "JOD", "KWD", "OMR", "TND"];
    let code = currency.to_ascii_uppercase();
    if ZERO.contains(&code.as_str()) {
        0
    } else if THREE.contains(&code.as_str()) {
        3
    } else {
        2
    }
}

/// A currency must be a 3-letter code: anything else would be formatted with a guessed exponent.
fn currency_field<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<&'a str, PluginError> {
    let code = payload::string(fields, name)?;
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(code)
    } else {
        Err(PluginError::invalid_payload(format!("payload field {name} must be a 3-letter currency code")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(result: Result<String, PluginError>) -> (ErrorKind, String) {
        match result {
            Ok(text) => panic!("expected an error, got {text:?}"),
            Err(e) => (e.kind, e.message),
        }
    }

    #[test]
    fn formats_amounts_with_minor_unit_exponent() {
        assert_eq!(format_amount(123456, "EUR"), "1234.56");
        assert_eq!(format_amount(5, "EUR"), "0.05");
        assert_eq!(format_amount(1500, "JPY"), "1500");
        assert_eq!(format_amount(-250, "USD"), "-2.50");
        assert_eq!(format_amount(1234, "KWD"), "1.234");
        assert_eq!(format_amount(-5, "BHD"), "-0.005");
        assert_eq!(format_amount(0, "USD"), "0.00");
        assert_eq!(format_amount(i64::MIN, "JPY"), "-9223372036854775808");
    }

    #[test]
    fn builds_text_per_event_type() {
        let invoice = r#"{"invoice_id":"inv_1","customer":"Acme","amount_minor":123456,"currency":"EUR"}"#;
        assert_eq!(
            message_text("invoice.paid", invoice).ok().as_deref(),
            Some("Invoice inv_1 paid by Acme: 1234.56 EUR")
        );
        let signup = r#"{"email":"ada@example.com","name":"Ada Lovelace"}"#;
        assert_eq!(
            message_text("user.signup", signup).ok().as_deref(),
            Some("New signup: Ada Lovelace <ada@example.com>")
        );
        let ticket = r#"{"ticket_id":"T-9","subject":"Login broken","priority":"high"}"#;
        assert_eq!(message_text("ticket.created", ticket).ok().as_deref(), Some("Ticket T-9 (high): Login broken"));
    }

    #[test]
    fn rejects_bad_events() {
        let (kind, message) = error_of(message_text("order.created", "{}"));
        assert_eq!(kind, ErrorKind::UnsupportedEvent);
        assert_eq!(message, "chat-notifier does not handle order.created");

        let bad_amount = r#"{"invoice_id":"i","customer":"c","amount_minor":"12","currency":"EUR"}"#;
        let (kind, message) = error_of(message_text("invoice.paid", bad_amount));
        assert_eq!(kind, ErrorKind::InvalidPayload);
        assert_eq!(message, "payload field amount_minor must be an integer");

        let (_, message) = error_of(message_text("user.signup", r#"{"email":"a@b.co"}"#));
        assert_eq!(message, "payload field name must be a string");

        let (kind, message) = error_of(message_text("user.signup", "not json"));
        assert_eq!(kind, ErrorKind::InvalidPayload);
        assert!(message.starts_with("payload is not valid JSON: "));
    }
}
