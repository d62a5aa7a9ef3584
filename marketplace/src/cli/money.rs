//! The money commands: publishers manage plans (`nexus plans`), tenants change plan, settle
//! and read their bills (`nexus plan change`, `nexus settle`, `nexus charges`, `nexus bill`),
//! partners read their sales (`nexus sales`), operators refund, run billing and check the
//! ledger (`nexus refund`, `nexus billing run`, `nexus ledger verify`).
//!
//! Amounts are typed as people write them (`29.00`, `0.25`, `500` for JPY) and parsed
//! exactly in the currency's minor units: `12.345` EUR is refused, never rounded.

mod bills;
mod charges;
mod operators;
mod partners;
mod payouts;
mod plans;

use anyhow::{anyhow, bail};
use nexus_money::{Currency, Money};
use nexus_registry::publishers::random_hex;
use serde_json::Value;

pub use bills::{BillArgs, UsageArgs, bill, usage};
pub use charges::{ChargesArgs, SettleArgs, charges, settle};
pub use operators::{BillingCommand, LedgerCommand, RefundArgs, billing, ledger, refund};
pub use partners::{GmvArgs, SalesArgs, StatementsArgs, gmv, sales, statements};
pub use payouts::{PayoutsCommand, payouts};
pub(super) use plans::plan_terms;
pub use plans::{PlanCommand, PlansCommand, change_plan, plans};

use super::client::{self, Connection};

fn currency(code: &str) -> anyhow::Result<Currency> {
    Currency::from_code(code).map_err(|e| anyhow!("--currency: {e}"))
}

/// An amount typed by a person, in minor units of `currency`.
fn minor(flag: &str, text: &str, currency: Currency) -> anyhow::Result<i64> {
    Money::parse(text, currency).map(|m| m.minor).map_err(|e| anyhow!("{flag}: {e}"))
}

fn shown(minor: i64, currency: &str) -> String {
    Currency::from_code(currency).map_or_else(|_| format!("{minor} {currency}"), |c| Money::new(minor, c).to_string())
}

/// `{"EUR": 1200, "USD": 99}` as `12.00 EUR, 0.99 USD`, or `nothing`.
fn per_currency(amounts: &Value) -> String {
    let shown: Vec<String> = amounts
        .as_object()
        .into_iter()
        .flatten()
        .map(|(code, minor)| shown(minor.as_i64().unwrap_or(0), code))
        .collect();
    if shown.is_empty() { "nothing".into() } else { shown.join(", ") }
}

fn new_key(given: Option<String>) -> anyhow::Result<String> {
    match given {
        Some(key) => Ok(key),
        None => Ok(format!("cli-{}", random_hex(16)?)),
    }
}

/// Whether the `YYYY-MM` period has not ended yet (UTC).
fn period_open(period: &str) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    nexus_money::period::month_label(i64::try_from(now).unwrap_or(i64::MAX)).as_str() <= period
}

/// A text (CSV) answer, or the API's error.
async fn text(c: &Connection, request: reqwest::RequestBuilder) -> anyhow::Result<String> {
    let response =
        request.bearer_auth(c.token()?).send().await.map_err(|e| client::unreachable_server(&c.server(), &e))?;
    if !response.status().is_success() {
        client::decode::<Value>(response).await?;
        bail!("unexpected answer from the server");
    }
    Ok(response.text().await?)
}
