//! `nexus reviews`: read a plugin's reviews; review one your organization uses; reply to
//! reviews of your plugins; hide one (operators). And `nexus listing edit`, which changes a
//! listing's text between versions.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::Connection;

#[derive(Debug, Subcommand)]
pub enum ReviewsCommand {
    /// A plugin's reviews, newest first (or by --sort), with its rating.
    List(ListArgs),
    /// Review a plugin your organization has used for a day (again: edit your review).
    Write(WriteArgs),
    /// Delete your organization's review of a plugin.
    Delete(PluginArgs),
    /// Reply to a review of one of your plugins (again: replace the reply).
    Reply(ReplyArgs),
    /// Hide a review with a reason its author sees (operators); --show shows it again.
    Hide(HideArgs),
}

#[derive(Debug, Args)]
pub struct PluginArgs {
    /// `publisher/name`.
    plugin: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// `publisher/name`.
    plugin: String,
    /// newest, helpful, rating-high or rating-low.
    #[arg(long)]
    sort: Option<String>,
    /// Only reviews with this many stars.
    #[arg(long)]
    rating: Option<u8>,
    #[arg(long, default_value_t = 1)]
    page: u32,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    /// `publisher/name`.
    plugin: String,
    /// 1 to 5 stars.
    #[arg(long)]
    rating: i64,
    /// One line.
    #[arg(long)]
    title: String,
    /// The review's text.
    #[arg(long, default_value = "")]
    body: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct ReplyArgs {
    /// The review (`rev_…`; `nexus reviews list` shows them).
    review: String,
    /// The reply's text; --remove takes the reply down instead.
    #[arg(long, required_unless_present = "remove")]
    body: Option<String>,
    #[arg(long)]
    remove: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct HideArgs {
    /// The review (`rev_…`).
    review: String,
    /// Why, shown to the review's author.
    #[arg(long, required_unless_present = "show")]
    reason: Option<String>,
    /// Show a hidden review again.
    #[arg(long)]
    show: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    /// `publisher/name`.
    plugin: String,
    #[arg(long)]
    summary: Option<String>,
    /// A Markdown file with the description.
    #[arg(long)]
    description_file: Option<std::path::PathBuf>,
    #[arg(long)]
    documentation: Option<String>,
    /// A URL or `mailto:` address.
    #[arg(long)]
    support: Option<String>,
    #[arg(long)]
    privacy: Option<String>,
    #[arg(long)]
    terms: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

fn stars(rating: i64) -> String {
    let full = usize::try_from(rating).unwrap_or(0).min(5);
    format!("{}{}", "★".repeat(full), "☆".repeat(5 - full))
}

/// Text a review holds, shown so that it cannot pass for the CLI's own lines: each line of it
/// indented, control characters escaped.
fn quoted(text: &str) -> String {
    text.lines()
        .map(|line| format!("    {}", line.chars().flat_map(char::escape_default).collect::<String>()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn run(command: ReviewsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReviewsCommand::List(args) => list(args).await,
        ReviewsCommand::Write(args) => write(args).await,
        ReviewsCommand::Delete(args) => {
            let c = &args.connection;
            let path = format!("/v1/catalog/{}/reviews/mine", args.plugin);
            let response = c
                .client()
                .delete(c.url(&path))
                .bearer_auth(c.token()?)
                .send()
                .await
                .map_err(|e| super::client::unreachable_server(&c.server(), &e))?;
            if !response.status().is_success() {
                super::client::decode::<Value>(response).await?;
            }
            println!("deleted your organization's review of {}", args.plugin);
            Ok(ExitCode::SUCCESS)
        }
        ReviewsCommand::Reply(args) => {
            let c = &args.connection;
            let path = format!("/v1/reviews/{}/reply", args.review);
            let request = match &args.body {
                Some(body) if !args.remove => c.client().put(c.url(&path)).json(&json!({ "body": body })),
                _ => c.client().delete(c.url(&path)),
            };
            let review: Value = c.send(request).await?;
            match review["reply"]["body"].as_str() {
                Some(_) => println!("replied to {} (its author and every reader see it)", args.review),
                None => println!("removed your reply to {}", args.review),
            }
            Ok(ExitCode::SUCCESS)
        }
        ReviewsCommand::Hide(args) => {
            let c = &args.connection;
            let path = format!("/v1/reviews/{}/hidden", args.review);
            let request = match &args.reason {
                Some(reason) if !args.show => c.client().put(c.url(&path)).json(&json!({ "reason": reason })),
                _ => c.client().delete(c.url(&path)),
            };
            let review: Value = c.send(request).await?;
            match review["hidden"]["reason"].as_str() {
                Some(reason) => println!("hid {}; its author sees why: {reason}", args.review),
                None => println!("{} is shown again", args.review),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let mut query = vec![("page", args.page.to_string())];
    if let Some(sort) = &args.sort {
        query.push(("sort", sort.clone()));
    }
    if let Some(rating) = args.rating {
        query.push(("rating", rating.to_string()));
    }
    let page: Value =
        c.send(c.client().get(c.url(&format!("/v1/catalog/{}/reviews", args.plugin))).query(&query)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(ExitCode::SUCCESS);
    }
    let detail: Value = c.send(c.client().get(c.url(&format!("/v1/catalog/{}", args.plugin)))).await?;
    let rating = &detail["rating"];
    match rating["average"].as_f64() {
        Some(average) => println!("{}: {average:.1} out of 5 from {} review(s)", args.plugin, rating["count"]),
        None => println!("{}: no ratings yet", args.plugin),
    }
    let items = page["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        println!("no reviews{}", if args.page > 1 { " on this page" } else { " yet" });
        return Ok(ExitCode::SUCCESS);
    }
    for review in items {
        println!();
        println!(
            "{} {}  ({}, {} at {}, version {}, {} found it helpful)",
            review["id"].as_str().unwrap_or_default(),
            stars(review["rating"].as_i64().unwrap_or(0)),
            crate::console::when(review["created_at"].as_i64().unwrap_or(0)),
            review["author_name"].as_str().unwrap_or_default(),
            review["organization"].as_str().unwrap_or_default(),
            review["version"].as_str().unwrap_or_default(),
            review["helpful"],
        );
        println!("{}", quoted(review["title"].as_str().unwrap_or_default()));
        if let Some(body) = review["body"].as_str().filter(|b| !b.is_empty()) {
            println!("{}", quoted(body));
        }
        if let Some(reason) = review["hidden"]["reason"].as_str() {
            println!("  hidden: {reason}");
        }
        if let Some(reply) = review["reply"]["body"].as_str() {
            println!("  reply from the publisher:");
            println!("{}", quoted(reply));
        }
    }
    if let Some(next) = page["next_page"].as_u64() {
        println!("\nmore: --page {next}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn write(args: WriteArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let body = json!({ "rating": args.rating, "title": args.title, "body": args.body });
    let path = format!("/v1/catalog/{}/reviews", args.plugin);
    let created: anyhow::Result<Value> = c.send(c.client().post(c.url(&path)).json(&body)).await;
    let review = match created {
        Ok(review) => review,
        // The organization reviewed it before: this is an edit.
        Err(error) if error.to_string().contains("[review_exists]") => {
            c.send(c.client().put(c.url(&format!("{path}/mine"))).json(&body)).await?
        }
        Err(error) => return Err(error),
    };
    println!(
        "{} {} of {} (version {}): {}",
        review["id"].as_str().unwrap_or_default(),
        stars(review["rating"].as_i64().unwrap_or(0)),
        args.plugin,
        review["version"].as_str().unwrap_or_default(),
        if review["created_at"] == review["updated_at"] { "published" } else { "updated" }
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn listing(args: EditArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let mut edit = serde_json::Map::new();
    if let Some(summary) = &args.summary {
        edit.insert("summary".into(), summary.clone().into());
    }
    if let Some(path) = &args.description_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}; pass a Markdown file", path.display()))?;
        edit.insert("description".into(), text.into());
    }
    let links = [
        ("documentation", &args.documentation),
        ("support", &args.support),
        ("privacy", &args.privacy),
        ("terms", &args.terms),
    ];
    if links.iter().any(|(_, v)| v.is_some()) {
        // Links are replaced together: keep the ones not given.
        let detail: Value = c.send(c.client().get(c.url(&format!("/v1/catalog/{}", args.plugin)))).await?;
        let mut merged = detail["links"].as_object().cloned().unwrap_or_default();
        for (name, value) in links {
            if let Some(value) = value {
                merged.insert(name.into(), value.clone().into());
            }
        }
        edit.insert("links".into(), Value::Object(merged));
    }
    if edit.is_empty() {
        anyhow::bail!(
            "nothing to change: pass --summary, --description-file or a link (--documentation, --support, --privacy, --terms)"
        );
    }
    let path = format!("/v1/catalog/{}/text", args.plugin);
    let _: Value = c.send(c.client().patch(c.url(&path)).json(&Value::Object(edit))).await?;
    println!("{}'s listing text is updated until its next version brings its own", args.plugin);
    Ok(ExitCode::SUCCESS)
}
