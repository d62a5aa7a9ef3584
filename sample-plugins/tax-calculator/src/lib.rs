//! Tax calculator: computes the sales tax of `order.created` and `order.refunded` events from
//! per-region rates in the install's config, keeps a running tax total per region and currency
//! in KV, and reports one `tax-calculations` unit per order. Retried events are answered from
//! KV without counting twice.
//!
//! Money stays in integer minor units throughout; the rate is in basis points and the product
//! is rounded once, with `i128` so it cannot overflow. The arithmetic and parsing are pure
//! functions; [`Plugin::handle`] adds the config, KV, usage and log calls.

use nexus_plugin_sdk::{Action, ErrorKind, Event, Guest, Info, Outcome, PluginError, config, kv, log, payload, usage};
use serde_json::{Map, Value, json};

const NAME: &str = "tax-calculator";
const EVENT_TYPES: [&str; 2] = ["order.created", "order.refunded"];
const BASIS_POINTS: i128 = 10_000;

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
        let direction = direction(&event.event_type)?;
        let order = Order::parse(&event.payload)?;
        let seen_key = format!("seen/{}", event.id);
        // A retried event must not move the total again: answer with what was answered then.
        if let Some(previous) = kv::get(&seen_key)? {
            let data = replayed(&previous, &event.id)?;
            return Ok(Outcome { actions: vec![tax_line(&data, direction, &event.id)?], data: Some(data) });
        }

        let rounding = Rounding::parse(config::get("rounding")?.as_deref())?;
        let rates = config::get("rates")?.ok_or_else(|| PluginError::invalid_config("config rates is not set"))?;
        let rate_bp = rate_for(&parse_rates(&rates)?, &order.region)?;
        let tax_minor = tax_minor(order.amount_minor, rate_bp, rounding);
        let total_with_tax_minor = order
            .amount_minor
            .checked_add(tax_minor)
            .ok_or_else(|| PluginError::invalid_payload("payload field amount_minor is too large"))?;

        let total_key = format!("total/{}/{}", order.region, order.currency);
        let previous_total = read_total(&total_key)?;
        let new_total = apply(previous_total, direction, tax_minor)
            .ok_or_else(|| PluginError::internal(format!("running total {total_key} would overflow")))?;

        let data = json!({
            "amount_minor": order.amount_minor,
            "currency": order.currency,
            "order_id": order.order_id,
            "rate_bp": rate_bp,
            "region": order.region,
            "region_tax_total_minor": new_total,
            "replayed": false,
            "tax_minor": tax_minor,
            "total_with_tax_minor": total_with_tax_minor,
        })
        .to_string();
        kv::set(&total_key, new_total.to_string().as_bytes())?;
        kv::set(&seen_key, data.as_bytes())?;

        usage::report("tax-calculations", 1)?;
        log::info(&format!("tax {tax_minor} {} for order {}", order.currency, order.order_id));
        Ok(Outcome { actions: vec![tax_line(&data, direction, &event.id)?], data: Some(data) })
    }
}

nexus_plugin_sdk::export!(Plugin);

/// Whether an event adds to or takes from the running total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Add,
    Subtract,
}

pub fn direction(event_type: &str) -> Result<Direction, PluginError> {
    match event_type {
        "order.created" => Ok(Direction::Add),
        "order.refunded" => Ok(Direction::Subtract),
        other => Err(PluginError::new(ErrorKind::UnsupportedEvent, format!("{NAME} does not handle {other}"))),
    }
}

/// The new running total; `None` when it would leave the `i64` range.
pub fn apply(total: i64, direction: Direction, tax_minor: i64) -> Option<i64> {
    match direction {
        Direction::Add => total.checked_add(tax_minor),
        Direction::Subtract => total.checked_sub(tax_minor),
    }
}

/// How a tax amount exactly halfway between two minor units is rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// To the even neighbour (banker's rounding): unbiased over many orders.
    HalfEven,
    /// Away from zero, as many receipts do by hand.
    HalfUp,
}

impl Rounding {
    pub fn parse(setting: Option<&str>) -> Result<Self, PluginError> {
        match setting {
            None | Some("half-even") => Ok(Self::HalfEven),
            Some("half-up") => Ok(Self::HalfUp),
            Some(_) => Err(PluginError::invalid_config("config rounding must be half-even or half-up")),
        }
    }
}

/// `amount_minor * rate_bp / 10000`, rounded once. The product is taken in `i128` so no
/// `i64` amount can overflow it.
pub fn tax_minor(amount_minor: i64, rate_bp: u32, rounding: Rounding) -> i64 {
    let product = i128::from(amount_minor) * i128::from(rate_bp);
    let magnitude = round_div(product.abs(), BASIS_POINTS, rounding);
    let signed = if product < 0 { -magnitude } else { magnitude };
    // A rate of at most 100% keeps the tax within the amount, hence within i64.
    i64::try_from(signed).unwrap_or(if signed < 0 { i64::MIN } else { i64::MAX })
}

/// Divides non-negative `n` by positive `d`, rounding halves per `rounding`.
fn round_div(n: i128, d: i128, rounding: Rounding) -> i128 {
    let quotient = n / d;
    let twice_remainder = 2 * (n % d);
    let round_up = match twice_remainder.cmp(&d) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal => rounding == Rounding::HalfUp || quotient % 2 == 1,
    };
    if round_up { quotient + 1 } else { quotient }
}

/// Parses `DE=1900,FR=2000,US-CA=725`: region codes with rates in basis points.
pub fn parse_rates(setting: &str) -> Result<Vec<(String, u32)>, PluginError> {
    setting.split(',').map(str::trim).map(parse_rate).collect()
}

fn parse_rate(item: &str) -> Result<(String, u32), PluginError> {
    let malformed = || PluginError::invalid_config(format!("config rates is malformed at \"{item}\""));
    let (region, rate) = item.split_once('=').ok_or_else(malformed)?;
    if region.is_empty() || region.chars().any(char::is_whitespace) {
        return Err(malformed());
    }
    // Only plain digits: `str::parse` would also take a sign.
    if rate.is_empty() || !rate.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    match rate.parse::<u32>() {
        Ok(bp) if bp <= 10_000 => Ok((region.to_string(), bp)),
        _ => Err(malformed()),
    }
}

pub fn rate_for(rates: &[(String, u32)], region: &str) -> Result<u32, PluginError> {
    rates
        .iter()
        .find(|(code, _)| code == region)
        .map(|(_, bp)| *bp)
        .ok_or_else(|| PluginError::invalid_payload(format!("no tax rate for region {region}")))
}

/// The fields of an order event's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub region: String,
}

impl Order {
    pub fn parse(payload: &str) -> Result<Self, PluginError> {
        let fields = payload::object(payload)?;
        let order_id = payload::string(&fields, "order_id")?.to_string();
        let amount_minor = payload::integer(&fields, "amount_minor")?;
        if amount_minor < 0 {
            // Refunds are their own event type, so a negative amount is a mistake.
            return Err(PluginError::invalid_payload("payload field amount_minor must not be negative"));
        }
        let currency = payload::string(&fields, "currency")?.to_string();
        let region = payload::string(&fields, "region")?.to_string();
        Ok(Self { order_id, amount_minor, currency, region })
    }
}

/// Reads a running total; an absent key is a total of 0.
fn read_total(key: &str) -> Result<i64, PluginError> {
    match kv::get(key)? {
        None => Ok(0),
        Some(bytes) => parse_total(&bytes).ok_or_else(|| PluginError::internal(format!("stored {key} is corrupt"))),
    }
}

pub fn parse_total(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// The stored answer to an event, marked as a replay.
pub fn replayed(stored: &[u8], event_id: &str) -> Result<String, PluginError> {
    let corrupt = || PluginError::internal(format!("stored result for event {event_id} is corrupt"));
    let mut data: Map<String, Value> = serde_json::from_slice(stored).map_err(|_| corrupt())?;
    data.insert("replayed".into(), Value::Bool(true));
    Ok(Value::Object(data).to_string())
}

/// The action `invoice.tax-line` for the answer `data`: the order, region, currency and
/// tax, and whether the tax is charged (`order.created`) or returned (`order.refunded`),
/// for the tenant's invoicing to add.
pub fn tax_line(data: &str, direction: Direction, event_id: &str) -> Result<Action, PluginError> {
    let corrupt = || PluginError::internal(format!("result for event {event_id} is corrupt"));
    let data: Map<String, Value> = serde_json::from_str(data).map_err(|_| corrupt())?;
    let field = |name: &str| data.get(name).cloned().ok_or_else(corrupt);
    let line = json!({
        "currency": field("currency")?,
        "direction": match direction { Direction::Add => "charged", Direction::Subtract => "returned" },
        "order_id": field("order_id")?,
        "region": field("region")?,
        "tax_minor": field("tax_minor")?,
    });
    Ok(Action { kind: "invoice.tax-line".into(), payload: line.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_of<T: std::fmt::Debug>(result: Result<T, PluginError>) -> String {
        match result {
            Ok(value) => panic!("expected an error, got {value:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn the_tax_line_names_the_order_and_the_direction() {
        let data =
            r#"{"amount_minor":1000,"currency":"EUR","order_id":"o-1","rate_bp":1900,"region":"DE","tax_minor":190}"#;
        let line = tax_line(data, Direction::Subtract, "evt-1").unwrap();
        assert_eq!(line.kind, "invoice.tax-line");
        assert_eq!(
            line.payload,
            r#"{"currency":"EUR","direction":"returned","order_id":"o-1","region":"DE","tax_minor":190}"#
        );
        assert_eq!(message_of(tax_line("{}", Direction::Add, "evt-2")), "result for event evt-2 is corrupt");
    }

    #[test]
    fn rounds_tax() {
        assert_eq!(tax_minor(10_000, 1900, Rounding::HalfEven), 1900);
        assert_eq!(tax_minor(12_345, 725, Rounding::HalfEven), 895);
        assert_eq!(tax_minor(50, 1000, Rounding::HalfEven), 5);
        assert_eq!(tax_minor(25, 1000, Rounding::HalfEven), 2);
        assert_eq!(tax_minor(25, 1000, Rounding::HalfUp), 3);
        assert_eq!(tax_minor(35, 1000, Rounding::HalfEven), 4);
        assert_eq!(tax_minor(i64::MAX, 10_000, Rounding::HalfUp), i64::MAX);
    }

    #[test]
    fn parses_rates() {
        let rates = parse_rates(" DE=1900, FR=2000 ,US-CA=725").unwrap_or_default();
        assert_eq!(rate_for(&rates, "US-CA").ok(), Some(725));
        assert_eq!(message_of(rate_for(&rates, "IT")), "no tax rate for region IT");
        assert_eq!(message_of(parse_rates("DE=1900,FR")), "config rates is malformed at \"FR\"");
        assert_eq!(message_of(parse_rates("DE=10001")), "config rates is malformed at \"DE=10001\"");
        assert_eq!(message_of(parse_rates("DE=-5")), "config rates is malformed at \"DE=-5\"");
    }

    #[test]
    fn parses_rounding() {
        assert_eq!(Rounding::parse(None).ok(), Some(Rounding::HalfEven));
        assert_eq!(Rounding::parse(Some("half-up")).ok(), Some(Rounding::HalfUp));
        assert_eq!(message_of(Rounding::parse(Some("up"))), "config rounding must be half-even or half-up");
    }

    #[test]
    fn validates_orders() {
        let negative = r#"{"order_id":"o1","amount_minor":-1,"currency":"EUR","region":"DE"}"#;
        assert_eq!(message_of(Order::parse(negative)), "payload field amount_minor must not be negative");
        let missing = r#"{"order_id":"o1","amount_minor":1,"currency":"EUR"}"#;
        assert_eq!(message_of(Order::parse(missing)), "payload field region must be a string");
        assert_eq!(message_of(direction("order.paid")), "tax-calculator does not handle order.paid");
    }

    #[test]
    fn marks_replays() {
        let stored = br#"{"replayed":false,"tax_minor":5}"#;
        assert_eq!(replayed(stored, "e1").ok().as_deref(), Some(r#"{"replayed":true,"tax_minor":5}"#));
    }
}
