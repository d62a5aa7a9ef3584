//! Writing the rollups: [`apply`] adds a batch of postings to `money_rollups`,
//! `partner_balances` and `partner_entries` in a few multi-row statements, on the connection
//! (and so in the transaction) that wrote the postings.

use std::collections::BTreeMap;

use nexus_money::ledger::Posting;
use nexus_registry::db::{backend_of, placeholders, value_rows};

use super::{
    BALANCE_FIGURES, FIGURES, Figures, Grain, KEY, Leg, day_of, figures, line_figures, month_of_day, payable_moves,
};
use crate::billing::ledger::Kind;
use crate::error::MarketError;

/// A row of `money_rollups`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RollupKey {
    grain: Grain,
    start_day: i64,
    currency: String,
    publisher: String,
    plugin: String,
    plan: String,
}

/// A ledger transaction as [`ledger::post_many`](super::ledger::post_many) wrote it.
pub(crate) struct Posted<'a> {
    pub id: &'a str,
    pub seq: i64,
    pub kind: Kind,
    pub at: i64,
    pub charge: Option<&'a str>,
    pub refund: Option<&'a str>,
    pub payout: Option<&'a str>,
    pub adjustment: Option<&'a str>,
    pub posting: &'a Posting,
}

/// What a charge tells about the postings that name it.
#[derive(sqlx::FromRow)]
struct ChargeFacts {
    publisher: String,
    #[sqlx(rename = "plugin_id")]
    plugin: String,
    #[sqlx(rename = "plan_key")]
    plan: String,
    line: String,
    collected_at: Option<i64>,
}

/// A row [`charge_facts`] reads: a charge's id and its facts.
#[derive(sqlx::FromRow)]
struct ChargeFactsRow {
    id: String,
    #[sqlx(flatten)]
    facts: ChargeFacts,
}

/// Adds `posted` to the rollups, on the connection (and so in the transaction) that wrote it.
pub(crate) async fn apply(conn: &mut sqlx::AnyConnection, posted: &[Posted<'_>]) -> Result<(), MarketError> {
    let legs: Vec<BTreeMap<String, Leg>> = posted
        .iter()
        .map(|p| figures(p.kind, p.posting).into_iter().filter(|(_, leg)| !leg.figures.is_zero()).collect())
        .collect();
    let moves: Vec<BTreeMap<(String, String), i64>> = posted.iter().map(|p| payable_moves(p.posting)).collect();
    let rolled = || {
        posted.iter().zip(legs.iter().zip(&moves)).filter(|(_, (legs, moves))| !legs.is_empty() || !moves.is_empty())
    };
    let charges = charge_facts(conn, rolled().filter_map(|(p, _)| p.charge).collect()).await?;
    let unattributed = |(p, legs): &(&Posted, &BTreeMap<String, Leg>)| {
        p.charge.is_none() && legs.values().any(|leg| leg.payee.is_none())
    };
    let payouts =
        payout_partners(conn, posted.iter().zip(&legs).filter(unattributed).filter_map(|(p, _)| p.payout).collect())
            .await?;

    let mut rollups: BTreeMap<RollupKey, Figures> = BTreeMap::new();
    let mut balances: BTreeMap<(String, String), Figures> = BTreeMap::new();
    let mut entries = Vec::new();
    for ((p, legs), moves) in posted.iter().zip(legs).zip(moves) {
        let charge = p.charge.and_then(|id| charges.get(id));
        for (currency, leg) in legs {
            let publisher = leg
                .payee
                .or_else(|| charge.map(|c| c.publisher.clone()))
                .or_else(|| p.payout.and_then(|id| payouts.get(id).cloned()))
                .unwrap_or_default();
            let (plugin, plan) = charge.map(|c| (c.plugin.clone(), c.plan.clone())).unwrap_or_default();
            let (own, sold) = leg.figures.split_sold();
            let day = day_of(p.at);
            let sold_day = charge.and_then(|c| c.collected_at).map_or(day, day_of);
            for (start, figures) in [(day, own), (sold_day, sold)] {
                if figures.is_zero() {
                    continue;
                }
                for (grain, start_day) in [(Grain::Day, start), (Grain::Month, month_of_day(start))] {
                    let key = RollupKey {
                        grain,
                        start_day,
                        currency: currency.clone(),
                        publisher: publisher.clone(),
                        plugin: plugin.clone(),
                        plan: plan.clone(),
                    };
                    rollups.entry(key).or_default().add(&figures);
                }
            }
            balances.entry((publisher, currency)).or_default().add(&own);
        }
        let lines = line_figures(p.kind, p.posting);
        for ((partner, currency), amount) in moves {
            let (gross, fee) = lines.get(&currency).copied().unwrap_or_default();
            entries.push(PartnerEntry { partner, currency, posted: p, charge, amount, gross, fee });
        }
    }
    upsert_rollups(conn, &rollups).await?;
    upsert_balances(conn, &balances).await?;
    insert_entries(conn, &entries).await
}

async fn charge_facts(
    conn: &mut sqlx::AnyConnection,
    mut ids: Vec<&str>,
) -> Result<BTreeMap<String, ChargeFacts>, MarketError> {
    ids.sort_unstable();
    ids.dedup();
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(500) {
        let sql = backend_of(conn).positional(format!(
            "SELECT c.id, c.publisher, c.plugin_id, p.plan_key, c.line, c.collected_at FROM charges c \
             JOIN plans p ON p.id = c.plan_id WHERE c.id IN ({})",
            placeholders(1, chunk.len())
        ));
        let mut query = sqlx::query_as::<_, ChargeFactsRow>(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            out.insert(row.id, row.facts);
        }
    }
    Ok(out)
}

async fn payout_partners(
    conn: &mut sqlx::AnyConnection,
    mut ids: Vec<&str>,
) -> Result<BTreeMap<String, String>, MarketError> {
    ids.sort_unstable();
    ids.dedup();
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(500) {
        let sql = backend_of(conn)
            .positional(format!("SELECT id, publisher FROM payouts WHERE id IN ({})", placeholders(1, chunk.len())));
        let mut query = sqlx::query_as::<_, (String, String)>(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        out.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// `column = table.column + excluded.column` for each figure column.
fn increments(table: &str, columns: &[&str]) -> String {
    columns.iter().map(|c| format!("{c} = {table}.{c} + excluded.{c}")).collect::<Vec<_>>().join(", ")
}

/// Rows per multi-row statement: well under both backends' limits on bound values.
const ROWS_PER_STATEMENT: usize = 200;

async fn upsert_rollups(
    conn: &mut sqlx::AnyConnection,
    rows: &BTreeMap<RollupKey, Figures>,
) -> Result<(), MarketError> {
    let rows: Vec<_> = rows.iter().collect();
    let width = KEY.len() + FIGURES.len();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let values = value_rows(chunk.len(), width);
        let sql = backend_of(conn).positional(format!(
            "INSERT INTO money_rollups ({}, {}) VALUES {} ON CONFLICT ({}) DO UPDATE SET {}",
            KEY.join(", "),
            FIGURES.join(", "),
            values,
            KEY.join(", "),
            increments("money_rollups", &FIGURES)
        ));
        let mut query = sqlx::query(&sql);
        for (key, figures) in chunk {
            query = query
                .bind(key.grain.as_str())
                .bind(key.start_day)
                .bind(key.currency.as_str())
                .bind(key.publisher.as_str())
                .bind(key.plugin.as_str())
                .bind(key.plan.as_str());
            for value in figures.values() {
                query = query.bind(value);
            }
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn upsert_balances(
    conn: &mut sqlx::AnyConnection,
    rows: &BTreeMap<(String, String), Figures>,
) -> Result<(), MarketError> {
    let rows: Vec<_> = rows.iter().filter(|(_, figures)| !figures.is_zero()).collect();
    let columns = &FIGURES[..BALANCE_FIGURES];
    let width = 2 + columns.len();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let values = value_rows(chunk.len(), width);
        let sql = backend_of(conn).positional(format!(
            "INSERT INTO partner_balances (publisher, currency, {}) VALUES {} ON CONFLICT (publisher, currency) \
             DO UPDATE SET {}",
            columns.join(", "),
            values,
            increments("partner_balances", columns)
        ));
        let mut query = sqlx::query(&sql);
        for ((publisher, currency), figures) in chunk {
            query = query.bind(publisher.as_str()).bind(currency.as_str());
            for value in &figures.values()[..BALANCE_FIGURES] {
                query = query.bind(*value);
            }
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A row of `partner_entries`: a statement line.
struct PartnerEntry<'a> {
    partner: String,
    currency: String,
    posted: &'a Posted<'a>,
    charge: Option<&'a ChargeFacts>,
    amount: i64,
    gross: i64,
    fee: i64,
}

async fn insert_entries(conn: &mut sqlx::AnyConnection, rows: &[PartnerEntry<'_>]) -> Result<(), MarketError> {
    const COLUMNS: usize = 16;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let values = value_rows(chunk.len(), COLUMNS);
        let sql = backend_of(conn).positional(format!(
            "INSERT INTO partner_entries (publisher, currency, seq, posted_at, transaction_id, kind, charge_id, \
             refund_id, payout_id, adjustment_id, plugin_id, plan_key, line, amount_minor, gross_minor, fee_minor) \
             VALUES {}",
            values
        ));
        let mut query = sqlx::query(&sql);
        for row in chunk {
            let p = row.posted;
            query = query
                .bind(row.partner.as_str())
                .bind(row.currency.as_str())
                .bind(p.seq)
                .bind(p.at)
                .bind(p.id)
                .bind(p.kind.as_str())
                .bind(p.charge)
                .bind(p.refund)
                .bind(p.payout)
                .bind(p.adjustment)
                .bind(row.charge.map(|c| c.plugin.as_str()))
                .bind(row.charge.map(|c| c.plan.as_str()))
                .bind(row.charge.map(|c| c.line.as_str()))
                .bind(row.amount)
                .bind(row.gross)
                .bind(row.fee);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}
