//! The month before now, lived a day at a time on the real paths before the demo serves.

use super::Seeded;
use super::traffic::next_event;
use crate::accounts::Caller;
use crate::billing::{DAY_MS, refunds, run, settle, views};
use crate::installs;
use crate::market::Market;

/// Days of history lived through before serving: at least one whole month, so usage is
/// billed in arrears once before the demo serves.
pub(super) const HISTORY_DAYS: i64 = 31;

/// Lives through the month before now, a day at a time, on the real paths: each day both
/// tenants send events and billing runs; globex upgrades pii-redactor on day 20 and gets a
/// goodwill refund on day 22. Ends at the real time.
pub(super) async fn history(market: &Market, seeded: &Seeded) -> anyhow::Result<()> {
    println!("living through the last {HISTORY_DAYS} days (events, daily billing runs) ...");
    let mut n = 0u64;
    for day in 0..=HISTORY_DAYS {
        nexus_registry::db::shift_process_clock(-(HISTORY_DAYS - day) * DAY_MS);
        for _ in 0..4 {
            for caller in &seeded.callers {
                let request = serde_json::from_value(next_event(n))?;
                crate::runner::send_event(market, caller, request).await?;
                n += 1;
            }
        }
        if day == 20 {
            upgrade(market, seeded, day).await?;
        }
        if day == 22 {
            refund(market, seeded, day).await?;
        }
        let report = run::run(market, market.billing.clock.now_ms()).await?;
        if report.charges_created + report.collected + report.declined > 0 {
            println!(
                "  day {day}: billing charged {} line(s), collected {}, declined {}",
                report.charges_created, report.collected, report.declined
            );
        }
    }
    nexus_registry::db::shift_process_clock(0);
    run::run(market, market.billing.clock.now_ms()).await?;
    pay_out(market).await?;
    for totals in views::totals(market).await? {
        println!("  month so far, {}: {}", totals.currency, totals.describe());
    }
    Ok(())
}

/// globex moves pii-redactor from team to business, prorated.
async fn upgrade(market: &Market, seeded: &Seeded, day: i64) -> anyhow::Result<()> {
    let globex = &seeded.callers[0];
    if let Some(install) = own_install(market, globex, "nexus-labs/pii-redactor").await? {
        let change = settle::PlanChange { plan: "business".into() };
        settle::change_plan(market, globex, &install, change, Some("demo-upgrade")).await?;
        println!("  day {day}: globex moved pii-redactor from team to business (prorated)");
    }
    Ok(())
}

/// A goodwill refund of part of globex's one-time echo purchase.
async fn refund(market: &Market, seeded: &Seeded, day: i64) -> anyhow::Result<()> {
    let charges = crate::billing::charges::list(
        market,
        &seeded.operator_caller,
        &crate::billing::charges::ChargeQuery { tenant: Some("globex".into()), ..Default::default() },
    )
    .await?;
    if let Some(charge) = charges.items.iter().find(|c| c.line == "one-time") {
        let request = refunds::RefundRequest { amount_minor: 900, reason: "goodwill: slow support reply".into() };
        refunds::refund(market, &seeded.operator_caller, &charge.id, request, Some("demo-refund")).await?;
        println!("  day {day}: refunded 9.00 EUR of globex's echo purchase");
    }
    Ok(())
}

/// The payout run at the end of the history, and what it paid.
async fn pay_out(market: &Market) -> anyhow::Result<()> {
    let payouts = crate::billing::payouts::run(market, market.billing.clock.now_ms()).await?;
    let paid: Vec<String> = payouts
        .paid_minor
        .iter()
        .map(|(code, minor)| {
            nexus_money::Currency::from_code(code)
                .map_or_else(|_| format!("{minor} {code}"), |c| nexus_money::Money::new(*minor, c).to_string())
        })
        .collect();
    println!(
        "  payout run {}: {} payout(s) ({}), {} balance(s) under the minimum carried forward",
        payouts.period,
        payouts.paid,
        paid.join(", "),
        payouts.carried_forward.len()
    );
    Ok(())
}

/// The id of the tenant's live install of `plugin`.
async fn own_install(market: &Market, caller: &Caller, plugin: &str) -> anyhow::Result<Option<String>> {
    let page = installs::list(market, caller, None, false, &crate::error::PageQuery::default()).await?;
    Ok(page.items.into_iter().find(|i| i.plugin == plugin).map(|i| i.id.into()))
}
