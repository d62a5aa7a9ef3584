//! The statements that write a batch of invocation rows, their usage and its hours: one
//! script per batch on SQLite, a few multi-row statements in a transaction on PostgreSQL.

use std::collections::HashSet;

use sqlx::pool::PoolConnection;

use super::{InvocationRecord, Written, usage_hours};

/// Rows per multi-row `INSERT`: 21 parameters a row stays far below SQLite's 32,766 and
/// PostgreSQL's 65,535 parameters per statement.
pub(super) const ROWS_PER_STATEMENT: usize = 256;
/// Parameters of one SQLite script at most: SQLite's largest parameter number (its default
/// `SQLITE_MAX_VARIABLE_NUMBER`); a script numbers its parameters across its statements.
pub(super) const SQLITE_MAX_PARAMETERS: usize = 32_766;

/// `records` cut into parts whose scripts stay within [`SQLITE_MAX_PARAMETERS`] (a row's
/// columns and two per usage meter); a single row always fits, as the host caps its meters.
pub(super) fn within_parameters(records: &[InvocationRecord]) -> Vec<&[InvocationRecord]> {
    let mut parts = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (index, record) in records.iter().enumerate() {
        let needs = ROW_PARAMETERS + 2 * record.usage.len();
        if used + needs > SQLITE_MAX_PARAMETERS && index > start {
            parts.push(&records[start..index]);
            (start, used) = (index, 0);
        }
        used += needs;
    }
    parts.push(&records[start..]);
    parts
}

/// SQLite: `records` and their usage in one transaction sent as one script, so the
/// connection's thread runs it without handing back between statements. Rows without usage
/// (most) are one `INSERT` in SQLite's autocommit: the statement is the transaction, so
/// SQLite keeps no statement journal (a temporary file per batch otherwise). Usage rows are
/// kept only for rows that were inserted (ids are random, so an id in `invocations` is a row
/// this script inserted), and so are their hours (summed by the script itself, as which rows
/// are refused is known only as it runs); refused rows come back as [`Written::Duplicate`].
pub(super) async fn insert_script(
    connection: &mut PoolConnection<sqlx::Any>,
    records: &[InvocationRecord],
) -> Result<Vec<Written>, sqlx::Error> {
    let billable = billable_usage(records, |_| true)?;
    let script = sqlite_script(records.len(), &billable);
    let mut query = sqlx::query_scalar::<_, String>(&script);
    for record in records {
        query = bind_row(query, record)?;
    }
    for (_, meter, units) in &billable {
        query = query.bind(*meter).bind(*units);
    }
    let inserted: HashSet<String> = match query.fetch_all(&mut **connection).await {
        Ok(ids) => ids.into_iter().collect(),
        Err(error) => {
            // The script stopped inside its transaction (or before it began): end it, and if
            // that fails too, do not give the connection back to the pool in that state.
            if sqlx::query("ROLLBACK").execute(&mut **connection).await.is_err() {
                connection.close_on_drop();
            }
            return Err(error);
        }
    };
    let mut written = Vec::with_capacity(records.len());
    for record in records {
        if inserted.contains(record.id.as_str()) {
            written.push(Written::Inserted);
        } else {
            written.push(Written::Duplicate(applied_id(connection, record).await?));
        }
    }
    Ok(written)
}

/// The script of [`insert_script`] for `rows` rows bound by [`bind_row`] (row `r`'s id is
/// parameter `21 r + 1`) followed by the meter and units of each `billable` entry.
pub(super) fn sqlite_script(rows: usize, billable: &[(usize, &str, i64)]) -> String {
    if rows <= ROWS_PER_STATEMENT && billable.is_empty() {
        // Positional parameters: SQLite looks a numbered one up by a scan of the statement's
        // names, which for a few hundred parameters was a visible share of the writer's time.
        let row = format!("({})", vec!["?"; ROW_PARAMETERS].join(", "));
        return format!(
            "INSERT INTO invocations ({ROW_COLUMNS}) VALUES {} ON CONFLICT DO NOTHING RETURNING id",
            vec![row; rows].join(", ")
        );
    }
    let inserts: Vec<String> = (0..rows)
        .collect::<Vec<_>>()
        .chunks(ROWS_PER_STATEMENT)
        .map(|chunk| {
            let values: Vec<String> = chunk.iter().map(|&row| row_slots(row)).collect();
            format!(
                "INSERT INTO invocations ({ROW_COLUMNS}) VALUES {} ON CONFLICT DO NOTHING RETURNING id;\n",
                values.join(", ")
            )
        })
        .collect();
    let mut script = String::from("BEGIN IMMEDIATE;\n") + &inserts.concat();
    let first = rows * ROW_PARAMETERS;
    let entries: Vec<(usize, &(usize, &str, i64))> = billable.iter().enumerate().collect();
    for chunk in entries.chunks(ROWS_PER_STATEMENT) {
        let values: Vec<String> = chunk
            .iter()
            .map(|(n, (row, _, _))| {
                format!("(${}, ${}, ${})", row * ROW_PARAMETERS + 1, first + 2 * n + 1, first + 2 * n + 2)
            })
            .collect();
        script += &format!(
            "INSERT INTO invocation_usage (invocation_id, meter, units) SELECT u.column1, u.column2, u.column3 \
             FROM (VALUES {}) AS u WHERE EXISTS (SELECT 1 FROM invocations i WHERE i.id = u.column1);\n",
            values.join(", ")
        );
    }
    if !billable.is_empty() {
        let entries: Vec<(usize, usize, usize)> = billable
            .iter()
            .enumerate()
            .map(|(n, (row, _, _))| (row * ROW_PARAMETERS + 1, first + 2 * n + 1, first + 2 * n + 2))
            .collect();
        script += &usage_hours::script_statement(&entries);
    }
    script + "COMMIT;"
}

/// `(first + 1, ..., first + 21)` as `$n` placeholders, for row `row`.
fn row_slots(row: usize) -> String {
    let first = row * ROW_PARAMETERS;
    let slots: Vec<String> = (1..=ROW_PARAMETERS).map(|n| format!("${}", first + n)).collect();
    format!("({})", slots.join(", "))
}

/// The usage of the applied (`ok`) records among `records` that `keep` accepts, as
/// (record index, meter, units). Billable units are stored as reported or not at all, never
/// clamped.
pub(super) fn billable_usage(
    records: &[InvocationRecord],
    keep: impl Fn(&InvocationRecord) -> bool,
) -> Result<Vec<(usize, &str, i64)>, sqlx::Error> {
    records
        .iter()
        .enumerate()
        .filter(|(_, record)| record.outcome == "ok" && keep(record))
        .flat_map(|(row, record)| record.usage.iter().map(move |(meter, units)| (row, meter, *units)))
        .map(|(row, meter, units)| {
            Ok((row, meter.as_str(), i64::try_from(units).map_err(|e| sqlx::Error::Encode(Box::new(e)))?))
        })
        .collect()
}

/// The columns of an invocation row, in the order [`bind_row`] binds them.
const ROW_COLUMNS: &str = "id, tenant_id, install_id, plugin_id, version, event_id, event_type, started_at, \
                           duration_us, outcome, error_message, fuel_used, peak_memory_bytes, http_requests, \
                           kv_writes, denials, usage, logs, stderr, outcome_data, actions";
pub(super) const ROW_PARAMETERS: usize = 21;

/// Inserts `records` in one statement (their usage in another, and its hours, summed per key
/// here first, in a third): a round trip to the database per batch, not per row, which is
/// what bounded events per second. Rows refused by the applied-once index come back as
/// [`Written::Duplicate`] with the applied row's id, and none of their usage is kept.
pub(super) async fn insert_rows(
    tx: &mut sqlx::AnyConnection,
    records: &[InvocationRecord],
) -> Result<Vec<Written>, sqlx::Error> {
    let values: Vec<String> = (0..records.len()).map(row_slots).collect();
    let statement = format!(
        "INSERT INTO invocations ({ROW_COLUMNS}) VALUES {} ON CONFLICT DO NOTHING RETURNING id",
        values.join(", ")
    );
    let mut query = sqlx::query_scalar::<_, String>(&statement);
    for record in records {
        query = bind_row(query, record)?;
    }
    let inserted: HashSet<String> = query.fetch_all(&mut *tx).await?.into_iter().collect();
    let mut written = Vec::with_capacity(records.len());
    for record in records {
        if inserted.contains(record.id.as_str()) {
            written.push(Written::Inserted);
        } else {
            written.push(Written::Duplicate(applied_id(tx, record).await?));
        }
    }
    let billable = billable_usage(records, |record| inserted.contains(record.id.as_str()))?;
    for chunk in billable.chunks(ROWS_PER_STATEMENT) {
        let values: Vec<String> =
            (0..chunk.len()).map(|n| format!("(${}, ${}, ${})", 3 * n + 1, 3 * n + 2, 3 * n + 3)).collect();
        let statement = nexus_registry::db::backend_of(tx).positional(format!(
            "INSERT INTO invocation_usage (invocation_id, meter, units) VALUES {}",
            values.join(", ")
        ));
        let mut query = sqlx::query(&statement);
        for (row, meter, units) in chunk {
            query = query.bind(records[*row].id.as_str()).bind(*meter).bind(*units);
        }
        query.execute(&mut *tx).await?;
    }
    let mut hours = usage_hours::Hours::new();
    for (row, meter, units) in &billable {
        let record = &records[*row];
        let key = (record.install.as_str(), *meter, usage_hours::hour_of(record.started_at));
        let sum = hours.entry(key).or_default();
        *sum = sum.checked_add(*units).ok_or_else(|| sqlx::Error::Protocol("usage units overflow".into()))?;
    }
    usage_hours::add(tx, &hours).await?;
    Ok(written)
}

type ScalarQuery<'q> = sqlx::query::QueryScalar<'q, sqlx::Any, String, sqlx::any::AnyArguments<'q>>;

/// Binds one row's [`ROW_COLUMNS`].
fn bind_row<'q>(query: ScalarQuery<'q>, record: &'q InvocationRecord) -> Result<ScalarQuery<'q>, sqlx::Error> {
    // A map of strings to integers always serializes; the error arm only keeps billable
    // data from being written as anything but what it is.
    let usage = serde_json::to_string(&record.usage).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let logs = serde_json::to_string(&record.logs).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let actions = serde_json::to_string(&record.actions).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    Ok(query
        .bind(&record.id)
        .bind(&record.tenant)
        .bind(&record.install)
        .bind(record.plugin.to_string())
        .bind(&record.version)
        .bind(&record.event_id)
        .bind(&record.event_type)
        .bind(record.started_at)
        .bind(record.duration_us)
        .bind(&record.outcome)
        .bind(record.error.as_deref())
        .bind(record.fuel_used)
        .bind(record.peak_memory_bytes)
        .bind(record.http_requests)
        .bind(record.kv_writes)
        .bind(record.denials)
        .bind(usage)
        .bind(logs)
        .bind(&record.stderr)
        .bind(record.data.as_deref())
        .bind(actions))
}

/// The id of the row that applied `record`'s event to its install (the applied-once index
/// refused `record`; ids are random and unique, so nothing else can).
async fn applied_id(tx: &mut sqlx::AnyConnection, record: &InvocationRecord) -> Result<String, sqlx::Error> {
    let applied: Option<String> =
        sqlx::query_scalar("SELECT id FROM invocations WHERE install_id = $1 AND event_id = $2 AND outcome = 'ok'")
            .bind(&record.install)
            .bind(&record.event_id)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(applied.unwrap_or_default())
}
