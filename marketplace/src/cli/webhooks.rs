//! `nexus webhooks`: a tenant's webhook endpoints: add one (the signing secret is printed
//! this once), list them, rotate a secret, read an endpoint's delivery log, recover what
//! waits for a retry once the receiver is back, remove one.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::client::Connection;
use crate::error::CursorPage;
use crate::webhooks::{Endpoint, Recovered, WebhookDelivery, WebhookKind, WithSecret};

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Register an endpoint and print its signing secret (shown this once).
    Add {
        /// An https URL (plain http only to an internal address the operator allowed).
        url: String,
        /// What it receives; repeat for several: plugin.action, delivery.dead,
        /// install.paused, payment.failed, plugin.delisted, bill.issued.
        #[arg(long = "kind", required = true)]
        kinds: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// List your endpoints.
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Make a new signing secret; the current one keeps signing beside it for the overlap.
    Rotate {
        id: String,
        /// Hours the current secret keeps signing (0 to 168).
        #[arg(long, default_value_t = 24)]
        overlap_hours: u32,
        #[command(flatten)]
        connection: Connection,
    },
    /// What was posted to an endpoint, newest first, with each message's state and its
    /// latest attempt's status and latency.
    Log {
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Send again now what waits for a retry or ended dead, once your receiver is back.
    Recover {
        id: String,
        /// Only messages created at or after this moment (milliseconds since the epoch).
        #[arg(long)]
        since: Option<i64>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Remove an endpoint; what still waits for it is not sent.
    Remove {
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
}

fn kinds(given: &[String]) -> anyhow::Result<Vec<&'static str>> {
    given
        .iter()
        .map(|kind| {
            WebhookKind::ALL.iter().map(|k| k.as_str()).find(|known| known == kind).ok_or_else(|| {
                let known: Vec<&str> = WebhookKind::ALL.iter().map(|k| k.as_str()).collect();
                anyhow::anyhow!("--kind {kind} is not a webhook kind; use one of {}", known.join(", "))
            })
        })
        .collect()
}

fn print_endpoint(endpoint: &Endpoint) {
    let kinds: Vec<&str> = endpoint.kinds.iter().map(|k| k.as_str()).collect();
    let state = if endpoint.enabled { "enabled" } else { "disabled" };
    println!("{}  {}  {state}  {}", endpoint.id, endpoint.url, kinds.join(","));
}

pub async fn run(command: WebhooksCommand) -> anyhow::Result<ExitCode> {
    match command {
        WebhooksCommand::Add { url, kinds: given, description, connection } => {
            let body = json!({ "url": url, "kinds": kinds(&given)?, "description": description });
            let created: WithSecret =
                connection.send(connection.client().post(connection.url("/v1/webhooks")).json(&body)).await?;
            print_endpoint(&created.endpoint);
            println!("secret    {}", created.secret);
            eprintln!("keep the secret: it is shown only now; verify each message's webhook-signature with it");
        }
        WebhooksCommand::List { connection } => {
            let endpoints: Vec<Endpoint> =
                connection.send(connection.client().get(connection.url("/v1/webhooks"))).await?;
            if endpoints.is_empty() {
                println!("no webhook endpoints yet: `nexus webhooks add <url> --kind plugin.action` adds one");
            }
            endpoints.iter().for_each(print_endpoint);
        }
        WebhooksCommand::Rotate { id, overlap_hours, connection } => {
            let url = connection.url(&format!("/v1/webhooks/{id}/rotate-secret"));
            let body = json!({ "overlap_hours": overlap_hours });
            let rotated: WithSecret = connection.send(connection.client().post(url).json(&body)).await?;
            println!("secret    {}", rotated.secret);
            eprintln!("the previous secret keeps signing for {overlap_hours} h; switch your receiver to the new one");
        }
        WebhooksCommand::Log { id, connection } => log(&id, &connection).await?,
        WebhooksCommand::Recover { id, since, connection } => {
            let url = connection.url(&format!("/v1/webhooks/{id}/recover"));
            let recovered: Recovered =
                connection.send(connection.client().post(url).json(&json!({ "since": since }))).await?;
            match recovered.messages {
                0 => println!("nothing to recover: no message to {id} waits for a retry or ended dead"),
                n => println!("{n} message(s) due now; `nexus webhooks log {id}` shows them go out"),
            }
        }
        WebhooksCommand::Remove { id, connection } => remove(&id, &connection).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The endpoint's deliveries: message, kind, state, attempts, last status and latency.
async fn log(id: &str, connection: &Connection) -> anyhow::Result<()> {
    let url = connection.url(&format!("/v1/webhooks/{id}/deliveries"));
    let log: CursorPage<WebhookDelivery> = connection.send(connection.client().get(url)).await?;
    if log.items.is_empty() {
        println!("nothing posted to {id} yet");
    }
    for delivery in &log.items {
        let status = delivery.last_status.map_or("-".to_string(), |s| s.to_string());
        let latency = delivery.last_latency_ms.map_or("-".to_string(), |ms| format!("{ms} ms"));
        println!(
            "{}  {}  {}  attempts {}  status {status}  {latency}",
            delivery.message_id, delivery.kind, delivery.state, delivery.attempts
        );
    }
    Ok(())
}

async fn remove(id: &str, connection: &Connection) -> anyhow::Result<()> {
    let url = connection.url(&format!("/v1/webhooks/{id}"));
    let response = connection
        .client()
        .delete(url)
        .bearer_auth(connection.token()?)
        .send()
        .await
        .map_err(|e| super::client::unreachable_server(&connection.server(), &e))?;
    if !response.status().is_success() {
        super::client::decode::<serde_json::Value>(response).await?;
    }
    println!("removed {id}");
    Ok(())
}
