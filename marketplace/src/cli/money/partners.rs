//! What partners earn: their sales and balance (`nexus sales`), their monthly statements
//! (`nexus statements`), and GMV figures by period (`nexus gmv`).

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::{period_open, shown, text};
use crate::cli::client::Connection;

#[derive(Debug, Args)]
pub struct SalesArgs {
    publisher: String,
    /// A month, `YYYY-MM`; default all time.
    #[arg(long)]
    period: Option<String>,
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    connection: Connection,
}

pub async fn sales(args: SalesArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let mut query = vec![("format", if args.csv { "csv" } else { "json" }.to_string())];
    if let Some(period) = &args.period {
        query.push(("period", period.clone()));
    }
    let request = c.client().get(c.url(&format!("/v1/publishers/{}/sales", args.publisher))).query(&query);
    if args.csv {
        print!("{}", text(c, request).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let sales: Value = c.send(request).await?;
    if sales["rows"].as_array().is_none_or(Vec::is_empty) {
        let when = args.period.as_deref().map_or_else(|| "yet".to_string(), |period| format!("in {period}"));
        let open = match &args.period {
            Some(period) if period_open(period) => "; the period is still open: usage is charged when it ends",
            _ => "",
        };
        println!("no sales of {} collected {when}{open}", args.publisher);
    }
    for row in sales["rows"].as_array().into_iter().flatten() {
        let currency = row["currency"].as_str().unwrap_or("");
        let amount = |field: &str| shown(row[field].as_i64().unwrap_or(0), currency);
        println!(
            "{:<28} {:<14} {:>4} sale(s)  gross {}  fee {}  share {}  refunded {}",
            row["plugin"].as_str().unwrap_or(""),
            row["plan"].as_str().unwrap_or(""),
            row["charges"],
            amount("gross_minor"),
            amount("fee_minor"),
            amount("share_minor"),
            amount("refunded_minor")
        );
    }
    for balance in sales["balances"].as_array().into_iter().flatten() {
        let currency = balance["currency"].as_str().unwrap_or("");
        println!(
            "balance owed to {}: {}",
            args.publisher,
            shown(balance["payable_minor"].as_i64().unwrap_or(0), currency)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct StatementsArgs {
    publisher: String,
    /// A month, `YYYY-MM`; without it, the list of months with their opening and closing.
    period: Option<String>,
    /// One currency only.
    #[arg(long)]
    currency: Option<String>,
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    connection: Connection,
}

pub async fn statements(args: StatementsArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let Some(period) = &args.period else {
        let months: Value =
            c.send(c.client().get(c.url(&format!("/v1/publishers/{}/statements", args.publisher)))).await?;
        print_months(&args.publisher, &months);
        return Ok(ExitCode::SUCCESS);
    };
    let mut query = vec![("format", if args.csv { "csv" } else { "json" }.to_string())];
    if let Some(currency) = &args.currency {
        query.push(("currency", currency.clone()));
    }
    let request =
        c.client().get(c.url(&format!("/v1/publishers/{}/statements/{period}", args.publisher))).query(&query);
    if args.csv {
        print!("{}", text(c, request).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let found: Value = c.send(request).await?;
    if found.as_array().is_none_or(Vec::is_empty) {
        let open = if period_open(period) {
            "; the period is still open: usage is charged when each install's period ends (`nexus usage --plugin` \
             shows it so far)"
        } else {
            ""
        };
        println!("no statement for {} in {period}{open}", args.publisher);
    }
    for statement in found.as_array().into_iter().flatten() {
        print_statement(&args.publisher, statement);
    }
    Ok(ExitCode::SUCCESS)
}

/// The months with a statement, one line each: opening, closing, open or closed.
fn print_months(publisher: &str, months: &Value) {
    if months.as_array().is_none_or(Vec::is_empty) {
        println!(
            "no statements for {publisher} yet: a month's statement starts with its first collected sale; usage is \
             charged when each install's period ends (`nexus usage --plugin {publisher}/<name>` shows it so far)"
        );
    }
    for month in months.as_array().into_iter().flatten() {
        let currency = month["currency"].as_str().unwrap_or("");
        let amount = |field: &str| shown(month[field].as_i64().unwrap_or(0), currency);
        let state = if month["closed"] == true { "closed" } else { "open" };
        println!(
            "{} {currency}  opening {:>16}  closing {:>16}  {state}",
            month["period"].as_str().unwrap_or(""),
            amount("opening_minor"),
            amount("closing_minor")
        );
    }
}

/// One month's statement in one currency, line by line between its opening and closing.
fn print_statement(publisher: &str, s: &Value) {
    let currency = s["currency"].as_str().unwrap_or("");
    let amount = |field: &str| shown(s[field].as_i64().unwrap_or(0), currency);
    let state = if s["closed"] == true { "closed" } else { "open, may still change" };
    println!("{publisher} {} {currency} ({state})", s["period"].as_str().unwrap_or(""));
    println!("  opening        {:>16}", amount("opening_minor"));
    for line in s["lines"].as_array().into_iter().flatten() {
        println!(
            "  {:<14} {:>16}  {} {}",
            line["kind"].as_str().unwrap_or(""),
            shown(line["amount_minor"].as_i64().unwrap_or(0), currency),
            line["plugin"].as_str().or(line["payout"].as_str()).or(line["adjustment"].as_str()).unwrap_or(""),
            line["charge"].as_str().unwrap_or("")
        );
    }
    println!(
        "  sales {}, fees {}, refunds {}, fees returned {}, adjustments {}, payouts {}",
        amount("sales_minor"),
        amount("fees_minor"),
        amount("refunds_minor"),
        amount("fees_returned_minor"),
        amount("adjustments_minor"),
        amount("payouts_minor")
    );
    println!("  closing        {:>16}", amount("closing_minor"));
}

#[derive(Debug, Args)]
pub struct GmvArgs {
    /// day, week or month.
    #[arg(long, default_value = "month")]
    interval: String,
    /// currency, plugin, partner or category.
    #[arg(long, default_value = "currency")]
    by: String,
    /// Partners: your own name; operators: one partner's figures.
    #[arg(long)]
    publisher: Option<String>,
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    connection: Connection,
}

pub async fn gmv(args: GmvArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let mut query = vec![
        ("interval", args.interval.clone()),
        ("by", args.by.clone()),
        ("format", if args.csv { "csv" } else { "json" }.to_string()),
    ];
    if let Some(publisher) = &args.publisher {
        query.push(("publisher", publisher.clone()));
    }
    let request = c.client().get(c.url("/v1/metrics/gmv")).query(&query);
    if args.csv {
        print!("{}", text(c, request).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let figures: Value = c.send(request).await?;
    for r in figures["rows"].as_array().into_iter().flatten() {
        let currency = r["currency"].as_str().unwrap_or("");
        let amount = |field: &str| shown(r[field].as_i64().unwrap_or(0), currency);
        let bp = r["take_rate_bp"].as_i64().unwrap_or(0);
        println!(
            "{} {:<24} GMV {:>16}  refunds {:>14}  net revenue {:>14}  take rate {}.{:02}%",
            r["period"].as_str().unwrap_or(""),
            r["group"].as_str().filter(|g| !g.is_empty()).unwrap_or(currency),
            amount("gmv_minor"),
            amount("refunds_minor"),
            amount("net_revenue_minor"),
            bp / 100,
            bp % 100
        );
    }
    Ok(ExitCode::SUCCESS)
}
