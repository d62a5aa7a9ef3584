//! Queued events: following one (`nexus events show`), listing the deliveries of queued
//! events (`nexus events deliveries`) and replaying dead or failed ones (`nexus events
//! replay`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use serde_json::{Value, json};

use super::one_line;
use crate::cli::client::Connection;
use crate::error::CursorPage;
use crate::runner::queue::{DeliveryState, QueuedDelivery, QueuedEvent, Replayed};

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The event id (`nexus events send` prints it).
    id: String,
    /// Print the server's answer as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    /// Only deliveries in this state: queued, running, retrying, applied, failed, dead, cancelled.
    #[arg(long)]
    state: Option<String>,
    /// At most this many (1 to 100).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print the server's answer as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Delivery ids (`nexus events deliveries --state dead` lists them).
    #[arg(required_unless_present_any = ["all_dead", "all_failed"], conflicts_with_all = ["all_dead", "all_failed"])]
    ids: Vec<String>,
    /// Every dead delivery of your tenant.
    #[arg(long, conflicts_with = "all_failed")]
    all_dead: bool,
    /// Every failed delivery of your tenant.
    #[arg(long)]
    all_failed: bool,
    #[command(flatten)]
    connection: Connection,
}

pub(super) async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let connection = &args.connection;
    let path = format!("/v1/events/{}", path_segment(&args.id));
    let event: Value = connection.send(connection.client().get(connection.url(&path))).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&event)?);
    } else {
        let parsed = QueuedEvent::deserialize(&event).context("unexpected answer from the server")?;
        print_queued(&parsed, &parsed.event_type);
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn deliveries(args: DeliveriesArgs) -> anyhow::Result<ExitCode> {
    let connection = &args.connection;
    let mut query = vec![("per_page", args.limit.to_string())];
    if let Some(state) = &args.state {
        if !DeliveryState::ALL.iter().any(|known| known.as_str() == state) {
            let known: Vec<&str> = DeliveryState::ALL.iter().map(|s| s.as_str()).collect();
            anyhow::bail!("--state {state} is not a delivery state; use one of {}", known.join(", "));
        }
        query.push(("state", state.clone()));
    }
    let page: Value = connection.send(connection.client().get(connection.url("/v1/deliveries")).query(&query)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(ExitCode::SUCCESS);
    }
    let page = CursorPage::<QueuedDelivery>::deserialize(&page).context("unexpected answer from the server")?;
    if page.items.is_empty() {
        match &args.state {
            Some(state) => println!("no {state} deliveries"),
            None => println!("no deliveries yet: events sent with `nexus events send --async` are listed here"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    for delivery in &page.items {
        println!("{}", delivery_line(delivery));
    }
    if page.has_more {
        println!("({} in all; showing the newest {})", page.total, page.items.len());
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let connection = &args.connection;
    let body = match (args.all_dead, args.all_failed) {
        (true, _) => json!({ "state": "dead" }),
        (_, true) => json!({ "state": "failed" }),
        _ => json!({ "deliveries": args.ids }),
    };
    let request = connection.client().post(connection.url("/v1/deliveries/replay")).json(&body);
    let replayed: Replayed = connection.send(request).await?;
    match replayed.deliveries.len() {
        0 => println!("nothing to replay: no delivery is in that state"),
        n => println!("queued {n} deliveries again; `nexus events deliveries` follows them"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn print_queued(event: &QueuedEvent, event_type: &str) {
    println!("event {} ({} delivery(ies))", event.event_id, event.deliveries.len());
    for delivery in &event.deliveries {
        println!("{}", delivery_line(delivery));
    }
    for skipped in &event.skipped {
        println!("skipped {} ({}): {}", skipped.plugin, skipped.install, skipped.reason);
    }
    if event.deliveries.is_empty() && event.skipped.is_empty() {
        eprintln!("no install handles `{event_type}` events; `nexus installs` lists what is installed");
    }
}

/// One delivery on one line: id, plugin, state, attempts, and the latest error or when it
/// is due next.
fn delivery_line(delivery: &QueuedDelivery) -> String {
    let mut line =
        format!("{}  {}  {}  attempts {}", delivery.id, delivery.plugin, delivery.state.as_str(), delivery.attempts);
    if let (Some(outcome), Some(error)) = (&delivery.last_outcome, &delivery.last_error) {
        line.push_str(&format!("  {outcome}: {}", one_line(error)));
    }
    if delivery.state == DeliveryState::Retrying
        && let Some(due) = delivery.next_attempt_at
    {
        let seconds = (due - nexus_registry::db::now_ms()).max(0) / 1000;
        line.push_str(&format!("  (next attempt in {seconds} s)"));
    }
    line
}

/// An event id as one URL path segment: anything beyond letters, digits and `-._~`
/// percent-encoded.
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
