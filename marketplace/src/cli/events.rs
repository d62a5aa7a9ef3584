//! `nexus events`: a tenant sends one event to every install that handles its type and sees
//! what each did (`send`; exits 1 when any delivery failed, as `nexus plugin run` does when
//! the plugin fails), or queues it (`send --async`) and follows it (`show`); lists the
//! deliveries of queued events (`deliveries --state dead`) and replays dead ones (`replay`).

mod queue;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{Value, json};

use self::queue::{DeliveriesArgs, ReplayArgs, ShowArgs, deliveries, print_queued, replay, show};
use super::client::Connection;
use super::output;
use crate::ids::CliEventId;
use crate::runner::EventReceipt;
use crate::runner::queue::QueuedEvent;

/// Characters of a delivery's data or error shown in the listing, so one delivery stays one
/// line; `--json` shows all of it.
const MAX_SHOWN_CHARS: usize = 120;

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Send an event to every install that handles its type and print each outcome
    /// (`--async`: queue it and print what was queued).
    Send(SendArgs),
    /// Show a queued event and where each of its deliveries stands.
    Show(ShowArgs),
    /// List the deliveries of queued events, newest first (`--state dead`: what needs a replay).
    Deliveries(DeliveriesArgs),
    /// Queue dead or failed deliveries again: the ids given, or all of them (`--all-dead`).
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The event type, such as `order.created`.
    #[arg(long = "type", value_name = "TYPE", required_unless_present = "file", conflicts_with = "file")]
    event_type: Option<String>,
    /// Send every event of a file in turn instead: one JSON object per line,
    /// `{"type": "order.created", "id": "evt_1", "payload": {...}}` (`id` and `payload`
    /// optional; blank lines and lines starting with `#` are skipped).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["payload", "payload_file", "id"])]
    file: Option<PathBuf>,
    /// The payload, as JSON (default `{}`).
    #[arg(long, value_name = "JSON", conflicts_with = "payload_file")]
    payload: Option<String>,
    /// Read the JSON payload from a file (`-` for standard input).
    #[arg(long, value_name = "PATH")]
    payload_file: Option<PathBuf>,
    /// Your id for the event, so plugins can recognise a resend (default: the server makes one).
    #[arg(long)]
    id: Option<String>,
    /// Queue the event and answer at once; workers deliver it, retrying transient failures
    /// (`nexus events show <id>` follows it).
    #[arg(long = "async")]
    queue: bool,
    /// Print the server's receipt as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

pub async fn run(command: EventsCommand) -> anyhow::Result<ExitCode> {
    match command {
        EventsCommand::Send(args) => send(args).await,
        EventsCommand::Show(args) => show(args).await,
        EventsCommand::Deliveries(args) => deliveries(args).await,
        EventsCommand::Replay(args) => replay(args).await,
    }
}

/// One line of a `--file` of events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEvent {
    #[serde(rename = "type")]
    event_type: String,
    id: Option<String>,
    #[serde(default = "empty_object")]
    payload: Value,
}

fn empty_object() -> Value {
    json!({})
}

async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let Some(path) = &args.file else {
        let event_type = args.event_type.clone().context("--type is required")?;
        return send_one(&args, &event_type, args.id.clone(), payload(&args)?).await;
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("--file {}: cannot read it", path.display()))?;
    // Every line is read before anything is sent, so a typo on line 9 sends nothing.
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let event: FileEvent = serde_json::from_str(line).map_err(|e| {
            anyhow!(
                "{}:{}: not an event ({e}); each line is one JSON object such as \
                 {{\"type\": \"order.created\", \"id\": \"evt_1\", \"payload\": {{}}}}",
                path.display(),
                n + 1
            )
        })?;
        events.push(event);
    }
    if events.is_empty() {
        bail!("{} has no events: write one JSON object per line", path.display());
    }
    let mut code = ExitCode::SUCCESS;
    for event in events {
        if send_one(&args, &event.event_type, event.id, event.payload).await? != ExitCode::SUCCESS {
            code = ExitCode::from(1);
        }
    }
    Ok(code)
}

async fn send_one(args: &SendArgs, event_type: &str, id: Option<String>, payload: Value) -> anyhow::Result<ExitCode> {
    let connection = &args.connection;
    // An id of the client's own, so that sending again after `host_busy` cannot apply the
    // event twice.
    let id = match id {
        Some(id) => id,
        None => CliEventId::random()?.into(),
    };
    let body = json!({ "id": id, "type": event_type, "payload": payload });
    if args.queue {
        let request = connection.client().post(connection.url("/v1/events")).header("prefer", "respond-async");
        let queued: Value = connection.send(request.json(&body)).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&queued)?);
        } else {
            let parsed = QueuedEvent::deserialize(&queued).context("unexpected answer from the server")?;
            print_queued(&parsed, event_type);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let receipt = send_while_busy(connection, &body).await?;
    let parsed = EventReceipt::deserialize(&receipt).context("unexpected answer from the server")?;
    let all_ok = parsed.deliveries.iter().all(|d| d.outcome == "ok");
    if args.json {
        println!("{}", serde_json::to_string_pretty(&receipt)?);
    } else {
        print_receipt(&parsed, event_type);
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// How long `events send` keeps resending an event the marketplace answered `host_busy`
/// (no capacity now, or a component still compiling on the node).
const MAX_BUSY_WAIT: Duration = Duration::from_secs(180);

/// Sends the event, and again after each `host_busy` answer for up to [`MAX_BUSY_WAIT`],
/// waiting what `Retry-After` says (1 to 5 s).
async fn send_while_busy(connection: &Connection, body: &Value) -> anyhow::Result<Value> {
    let started = std::time::Instant::now();
    let mut told = false;
    loop {
        let request = connection.client().post(connection.url("/v1/events")).json(body);
        let response = request
            .bearer_auth(connection.token()?)
            .send()
            .await
            .map_err(|e| super::client::unreachable_server(&connection.server(), &e))?;
        let busy = response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE;
        if !busy || started.elapsed() >= MAX_BUSY_WAIT {
            return super::client::decode(response).await;
        }
        let seconds = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1)
            .clamp(1, 5);
        if !told {
            eprintln!(
                "the marketplace is busy (a component may still be compiling); sending again every {seconds} s..."
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
}

fn payload(args: &SendArgs) -> anyhow::Result<Value> {
    let (flag, text) = match (&args.payload, &args.payload_file) {
        (Some(text), _) => ("--payload".to_string(), text.clone()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let text = std::io::read_to_string(std::io::stdin()).context("--payload-file -: cannot read stdin")?;
            ("--payload-file -".to_string(), text)
        }
        (None, Some(path)) => {
            let flag = format!("--payload-file {}", path.display());
            let text = std::fs::read_to_string(path).with_context(|| format!("{flag}: cannot read the file"))?;
            (flag, text)
        }
        (None, None) => return Ok(json!({})),
    };
    serde_json::from_str(&text).map_err(|error| {
        anyhow!("{flag} is not valid JSON ({error}); give a JSON value such as '{{\"amount_minor\": 1200}}'")
    })
}

fn print_receipt(receipt: &EventReceipt, event_type: &str) {
    println!("event {}", receipt.event_id);
    for delivery in &receipt.deliveries {
        let shown = match (&delivery.error, &delivery.data) {
            (Some(error), _) => format!("error: {}", one_line(error)),
            (None, Some(data)) => one_line(data),
            (None, None) => "(no data)".to_string(),
        };
        println!(
            "{}@{}  {}  {}  {shown}",
            delivery.plugin,
            delivery.version,
            delivery.outcome,
            output::duration(Duration::from_micros(delivery.duration_us))
        );
        for action in &delivery.actions {
            println!("  action {} {}", one_line(&action.kind), one_line(&action.payload));
        }
        if delivery.paused {
            println!("  this failure paused the install; `nexus installs` shows why");
        }
    }
    for skipped in &receipt.skipped {
        println!("skipped {} ({}): {}", skipped.plugin, skipped.install, skipped.reason);
    }
    if receipt.deliveries.is_empty() && receipt.skipped.is_empty() {
        eprintln!("no install handles `{event_type}` events; `nexus installs` lists what is installed");
    }
}

/// `text` on one line: control characters escaped, cut at `MAX_SHOWN_CHARS`.
fn one_line(text: &str) -> String {
    let mut line = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == MAX_SHOWN_CHARS {
            line.push('…');
            break;
        }
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_escapes_control_characters_and_cuts_long_text() {
        assert_eq!(one_line("a\nb\tc"), "a\\nb\\tc");
        let long = "x".repeat(MAX_SHOWN_CHARS + 5);
        assert_eq!(one_line(&long), format!("{}…", "x".repeat(MAX_SHOWN_CHARS)));
        assert_eq!(one_line(&"x".repeat(MAX_SHOWN_CHARS)), "x".repeat(MAX_SHOWN_CHARS));
    }
}
