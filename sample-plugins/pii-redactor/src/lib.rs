//! PII redactor: handles every event type and returns the event's JSON payload with email
//! addresses, payment card numbers and phone numbers replaced by placeholders, plus how many
//! of each it replaced. One `payloads-scanned` unit is reported per event.
//!
//! Matching is hand-written over bytes instead of using a regex crate, to keep the wasm small.
//! All patterns are ASCII, so a match never starts or ends inside a multi-byte UTF-8 character
//! and slicing the text at match bounds is always valid. The scanning is pure ([`redact`],
//! [`Redactor`]); [`Plugin::handle`] only adds config, usage and logging around it.

use nexus_plugin_sdk::{ErrorKind, Event, Guest, Info, Outcome, PluginError, config, log, usage};
use serde_json::{Number, Value, json};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "pii-redactor".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(event: Event) -> Result<Outcome, PluginError> {
        let payload: Value = serde_json::from_str(&event.payload)
            .map_err(|e| PluginError::new(ErrorKind::InvalidPayload, format!("payload is not valid JSON: {e}")))?;
        let keep_card_last4 = keep_card_last4(config::get("keep-card-last4")?.as_deref());
        let (redacted, counts) = redact(payload, keep_card_last4);

        usage::report("payloads-scanned", 1)?;
        // Only the count is logged: the values are exactly what must not leak.
        log::info(&format!("redacted {} values", counts.total()));
        let data = json!({
            "payload": redacted,
            "redactions": {"card": counts.card, "email": counts.email, "phone": counts.phone},
        });
        Ok(Outcome { data: Some(data.to_string()), actions: vec![] })
    }
}

nexus_plugin_sdk::export!(Plugin);

/// Only an explicit "false" turns the last four digits off: they help support staff match a
/// card with the customer, so showing them is the default.
pub fn keep_card_last4(setting: Option<&str>) -> bool {
    !setting.is_some_and(|value| value.trim().eq_ignore_ascii_case("false"))
}

/// How many values of each kind were replaced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub card: u64,
    pub email: u64,
    pub phone: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.card + self.email + self.phone
    }
}

/// Redacts a whole JSON document and returns it with the replacement counts.
pub fn redact(value: Value, keep_card_last4: bool) -> (Value, Counts) {
    let mut redactor = Redactor { keep_card_last4, counts: Counts::default() };
    let value = redactor.value(value);
    (value, redactor.counts)
}

/// Walks values and rewrites texts, counting what it replaced.
pub struct Redactor {
    keep_card_last4: bool,
    counts: Counts,
}

impl Redactor {
    /// Rewrites one JSON value. Object keys are kept: they are schema, not user data.
    /// Recursion is bounded because serde_json refuses to parse documents nested deeper than 128.
    fn value(&mut self, value: Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.text(&text)),
            Value::Number(number) => self.number(number),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.value(v)).collect()),
            Value::Object(fields) => Value::Object(fields.into_iter().map(|(k, v)| (k, self.value(v))).collect()),
            other => other,
        }
    }

    /// A card number stored as a JSON integer is still a card number.
    fn number(&mut self, number: Number) -> Value {
        let digits = match (number.as_u64(), number.as_i64()) {
            (Some(n), _) => n.to_string(),
            (None, Some(n)) => n.unsigned_abs().to_string(),
            _ => return Value::Number(number),
        };
        let digits = digits.as_bytes();
        if (13..=19).contains(&digits.len()) && luhn_valid(digits) {
            Value::String(self.card_replacement(digits))
        } else {
            Value::Number(number)
        }
    }

    /// Replaces emails, cards and phones in a text, left to right, without overlaps.
    pub fn text(&mut self, text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut i = 0;
        // An email attempt that fails fails for every start inside the same local-part run, so
        // those starts are skipped; this keeps long texts linear.
        let mut no_email_before = 0;
        while i < bytes.len() {
            let found = self.match_at(bytes, i, &mut no_email_before);
            match found {
                Some((end, replacement)) => {
                    out.push_str(&text[copied..i]);
                    out.push_str(&replacement);
                    copied = end;
                    i = end;
                }
                None => i += 1,
            }
        }
        out.push_str(&text[copied..]);
        out
    }

    /// The replacement for a match starting at `start`, if any. Emails go first because
    /// their local part may hold digits that would otherwise look like a phone number.
    fn match_at(&mut self, bytes: &[u8], start: usize, no_email_before: &mut usize) -> Option<(usize, String)> {
        if start >= *no_email_before {
            match email_at(bytes, start) {
                Ok(end) => {
                    self.counts.email += 1;
                    return Some((end, "[email]".to_string()));
                }
                Err(skip_to) => *no_email_before = skip_to,
            }
        }
        self.card_or_phone_at(bytes, start)
    }

    /// Cards are tried before phones because a card number also looks like a long phone number.
    fn card_or_phone_at(&mut self, bytes: &[u8], start: usize) -> Option<(usize, String)> {
        if let Some((end, digits)) = card_at(bytes, start) {
            return Some((end, self.card_replacement(&digits)));
        }
        let end = phone_at(bytes, start)?;
        self.counts.phone += 1;
        Some((end, "[phone]".to_string()))
    }

    fn card_replacement(&mut self, digits: &[u8]) -> String {
        self.counts.card += 1;
        if !self.keep_card_last4 {
            return "[card]".to_string();
        }
        let last4 = &digits[digits.len().saturating_sub(4)..];
        format!("[card:{}]", String::from_utf8_lossy(last4))
    }
}

fn is_local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

fn is_phone_separator(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.' | b'(' | b')')
}

/// Matches an email starting at `start`: the local-part run from `start`, '@', then a domain.
/// On failure returns the first position where a new attempt could give another answer.
fn email_at(bytes: &[u8], start: usize) -> Result<usize, usize> {
    let mut at = start;
    while at < bytes.len() && is_local_char(bytes[at]) {
        at += 1;
    }
    if at == start {
        return Err(start + 1);
    }
    if bytes.get(at) != Some(&b'@') {
        return Err(at);
    }
    domain_end(bytes, at + 1).ok_or(at)
}

/// End of the longest domain from `start`: labels separated by single dots, at least two
/// labels, the last one being at least two letters (a prefix of its label, as a regex would).
fn domain_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut labels = Vec::new();
    let mut at = start;
    loop {
        let label_start = at;
        while at < bytes.len() && is_label_char(bytes[at]) {
            at += 1;
        }
        if at == label_start {
            break;
        }
        labels.push((label_start, at));
        if bytes.get(at) != Some(&b'.') {
            break;
        }
        at += 1;
    }
    // The first label can never be the last one: a domain needs a dot.
    labels.iter().skip(1).rev().find_map(|&(from, to)| {
        let letters = bytes[from..to].iter().take_while(|b| b.is_ascii_alphabetic()).count();
        (letters >= 2).then_some(from + letters)
    })
}

/// Matches a card number starting at `start`: 13 to 19 digits with single ' ' or '-' between
/// digits, passing Luhn, not touching other digits. Returns its end and its digits.
/// The longest such run wins.
fn card_at(bytes: &[u8], start: usize) -> Option<(usize, Vec<u8>)> {
    if !bytes.get(start)?.is_ascii_digit() || preceded_by(bytes, start, |b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits = Vec::with_capacity(19);
    // (end, digit count) at the end of each digit group: only there is the run not followed
    // by a digit.
    let mut candidates = Vec::new();
    let mut at = start;
    loop {
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            digits.push(bytes[at]);
            at += 1;
        }
        if digits.len() > 19 {
            break;
        }
        if digits.len() >= 13 {
            candidates.push((at, digits.len()));
        }
        let separated = matches!(bytes.get(at), Some(b' ' | b'-')) && bytes.get(at + 1).is_some_and(u8::is_ascii_digit);
        if !separated {
            break;
        }
        at += 1;
    }
    candidates
        .into_iter()
        .rev()
        .find_map(|(end, count)| luhn_valid(&digits[..count]).then(|| (end, digits[..count].to_vec())))
}

/// Matches a phone number starting at `start`: '+', a digit or '(' first, then digits and
/// separators, ending on a digit, not touching digits or letters, with 10 to 15 digits (7 to
/// 15 after a '+'). Returns its end; the longest such run wins.
fn phone_at(bytes: &[u8], start: usize) -> Option<usize> {
    let first = *bytes.get(start)?;
    if !(first == b'+' || first == b'(' || first.is_ascii_digit())
        || preceded_by(bytes, start, |b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    let min_digits = if first == b'+' { 7 } else { 10 };
    let mut at = if first == b'+' { start + 1 } else { start };
    let mut digits = 0;
    let mut best = None;
    while at < bytes.len() && digits <= 15 {
        let b = bytes[at];
        if b.is_ascii_digit() {
            digits += 1;
            let next = bytes.get(at + 1).copied();
            let ends_group = !next.is_some_and(|n| n.is_ascii_digit());
            let free_after = !next.is_some_and(|n| n.is_ascii_alphanumeric());
            if ends_group && free_after && (min_digits..=15).contains(&digits) {
                best = Some(at + 1);
            }
        } else if !is_phone_separator(b) {
            break;
        }
        at += 1;
    }
    best
}

fn preceded_by(bytes: &[u8], at: usize, class: impl Fn(&u8) -> bool) -> bool {
    at > 0 && class(&bytes[at - 1])
}

/// The Luhn checksum over ASCII digits, as card issuers compute it.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, b)| {
            let d = u32::from(b - b'0');
            if position % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(input: &str) -> String {
        Redactor { keep_card_last4: true, counts: Counts::default() }.text(input)
    }

    #[test]
    fn redacts_the_documented_example() {
        let payload = r#"{"note":"mail ada@example.com or call +44 20 7946 0958","card":"4242 4242 4242 4242","n":4111111111111111,"date":"2024-01-15"}"#;
        let value: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
        let (redacted, counts) = redact(value, true);
        assert_eq!(
            redacted.to_string(),
            r#"{"card":"[card:4242]","date":"2024-01-15","n":"[card:1111]","note":"mail [email] or call [phone]"}"#
        );
        assert_eq!(counts, Counts { card: 2, email: 1, phone: 1 });
    }

    #[test]
    fn finds_emails() {
        assert_eq!(text("to: a.b+tag@mail.example.co.uk."), "to: [email].");
        assert_eq!(text("x@localhost"), "x@localhost");
        assert_eq!(text("x@host.c"), "x@host.c");
        assert_eq!(text("über ada@example.com ü"), "über [email] ü");
    }

    #[test]
    fn finds_cards() {
        assert_eq!(text("card 4242-4242-4242-4242 ok"), "card [card:4242] ok");
        assert_eq!(text("4242424242424241"), "4242424242424241");
        assert_eq!(text("14242424242424242"), "14242424242424242");
        let mut hidden = Redactor { keep_card_last4: false, counts: Counts::default() };
        assert_eq!(hidden.text("4111111111111111"), "[card]");
    }

    #[test]
    fn finds_phones() {
        assert_eq!(text("call (555) 123-4567."), "call [phone].");
        assert_eq!(text("call +1 555 0100 now"), "call [phone] now");
        assert_eq!(text("on 2024-01-15"), "on 2024-01-15");
        assert_eq!(text("id5551234567"), "id5551234567");
        assert_eq!(text("5551234567x"), "5551234567x");
    }

    #[test]
    fn reads_the_last4_setting() {
        assert!(keep_card_last4(None));
        assert!(keep_card_last4(Some("true")));
        assert!(!keep_card_last4(Some("false")));
    }
}
