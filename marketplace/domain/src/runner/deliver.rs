//! One delivery: an event through one install's plugin, recorded exactly once. The record is
//! the commit point: an invocation that staged KV writes commits them, its row and its usage
//! in one transaction (`records::commit_applied`), so a crash leaves all of it or none; an
//! event already applied to the install is never applied again (the database's
//! applied-once index decides between racing deliveries). Then the metrics and the circuit
//! breaker.

use std::sync::Arc;
use std::time::Instant;

use nexus_host::limits::{MAX_ERROR_MESSAGE_BYTES, clip};
use nexus_host::{
    Event, Finished, Invocation, InvocationContext, InvocationError, Limits, Outcome, Plugin, Report, Secrets,
};

use super::{Delivery, counts_against_plugin};
use crate::error::{BusyReason, MarketError};
use crate::ids::{InstallId, InvocationId};
use crate::installs::{self, Target};
use crate::market::Market;
use crate::records::{self, InvocationRecord, Written};

/// The outcome code of a delivery whose component could not be prepared (fetch, digest,
/// signature or load failed, or the secrets could not be opened).
pub const LOAD_FAILED: &str = "load_failed";

/// Why a delivery produced no record: the host had no capacity (nothing ran), or the
/// marketplace itself failed.
pub(super) enum Refusal {
    Busy { install: InstallId, reason: BusyReason },
    Failed(MarketError),
}

impl From<MarketError> for Refusal {
    fn from(error: MarketError) -> Self {
        Self::Failed(error)
    }
}

/// Why a delivery failed, and whether it says something about the plugin's health.
struct Failure {
    outcome: String,
    message: String,
    counts: bool,
    retryable: bool,
}

/// The answer for an event that had already applied to the install: what its first answer
/// said, from the record.
pub(super) fn replayed(record: InvocationRecord) -> Delivery {
    Delivery {
        invocation: record.id,
        install: record.install,
        plugin: record.plugin,
        version: record.version,
        outcome: record.outcome,
        duration_us: u64::try_from(record.duration_us).unwrap_or(0),
        data: record.data,
        actions: record.actions,
        error: None,
        paused: false,
        retryable: false,
        replayed: true,
    }
}

/// One invocation, recorded. A KV conflict (another node committed first) is retried once;
/// the discarded attempt committed nothing and leaves no record, so the install's record
/// holds one row per applied event. A component that cannot be prepared is recorded as
/// `load_failed` and counts against the circuit breaker, so one broken install never fails
/// the whole event. A host without capacity (`busy`) records nothing and counts nothing.
pub(super) async fn run(market: &Market, target: Target, event: &Event) -> Result<Delivery, Refusal> {
    let runner = &market.runner;
    let coming = runner.records.coming();
    // The billing clock: usage is billed by the period its invocation started in.
    let started_at = market.billing.clock.now_ms();
    let clock = Instant::now();
    let (plugin, secrets) = match prepare(market, &target).await {
        Ok(prepared) => prepared,
        Err(MarketError::Storage(detail)) => return Err(MarketError::Storage(detail).into()),
        Err(MarketError::HostBusy { reason, .. }) => {
            runner.metrics.record_skipped("host_busy");
            return Err(Refusal::Busy { install: target.id, reason });
        }
        Err(error) => {
            tracing::warn!(install = %target.id, plugin = %target.plugin, %error, "component not runnable");
            let failure =
                Failure { outcome: LOAD_FAILED.into(), message: error.to_string(), counts: true, retryable: true };
            let row = row(&target, event, started_at, Err(&failure), None, 0)?;
            market.runner.records.append(row.clone(), coming).await?;
            return Ok(finish(market, target, row, clock, Some(failure), None).await?);
        }
    };
    let (invocation, applied) = match execute(market, &target, &plugin, secrets, event, started_at).await? {
        Executed::Concluded(invocation, applied) => (invocation, applied),
        Executed::AlreadyApplied(delivery) => return Ok(delivery),
        Executed::Busy => {
            runner.metrics.record_skipped("host_busy");
            return Err(Refusal::Busy { install: target.id, reason: BusyReason::Capacity });
        }
    };
    let result = invocation.result.map_err(|error| Failure {
        outcome: error.code().into(),
        message: clip(&error.to_string(), MAX_ERROR_MESSAGE_BYTES),
        counts: counts_against_plugin(&error),
        retryable: super::retryable(&error),
    });
    let report = invocation.report;
    if let Some(row) = applied {
        // Already committed with its KV writes.
        return Ok(finish(market, target, row, clock, result.err(), Some(&report)).await?);
    }
    let row = row(&target, event, started_at, result.as_ref(), Some(&report), 0)?;
    match market.runner.records.append(row.clone(), coming).await? {
        Written::Inserted => Ok(finish(market, target, row, clock, result.err(), Some(&report)).await?),
        Written::Duplicate(applied) => Ok(answered(market, records::get(market, &applied).await?).await?),
    }
}

/// The component of `target`'s version and its opened secrets.
async fn prepare(market: &Market, target: &Target) -> Result<(Arc<Plugin>, Secrets), MarketError> {
    let plugin = market.runner.plugin(market, target).await?;
    Ok((plugin, Secrets::new(installs::open_secrets(market, target)?)))
}

/// How an execution ended.
// Returned once per delivery and matched at once, never stored: boxing the large variant
// would add an allocation to every delivery to save stack space nothing keeps.
#[allow(clippy::large_enum_variant)]
enum Executed {
    /// Concluded, with the row it committed with its staged KV writes (an applied invocation
    /// that staged some), else none yet.
    Concluded(Invocation, Option<InvocationRecord>),
    /// Another delivery of the same event had applied first: its answer.
    AlreadyApplied(Delivery),
    /// The host had no capacity: nothing ran.
    Busy,
}

/// Runs the plugin on `event` (once more after a KV conflict) and concludes the run: an
/// applied invocation that staged KV writes commits them with its row here.
async fn execute(
    market: &Market,
    target: &Target,
    plugin: &Plugin,
    secrets: Secrets,
    event: &Event,
    started_at: i64,
) -> Result<Executed, Refusal> {
    let runner = &market.runner;
    let context = InvocationContext {
        tenant: target.tenant.to_string(),
        install: target.id.to_string(),
        grants: target.grants.clone(),
        config: target.config.clone(),
        secrets,
        kv: runner.kv.clone(),
        limits: Limits::default(),
    };
    let mut retried = false;
    loop {
        let finished = runner.host.execute(plugin, context.clone(), event).await;
        let (invocation, applied) = match (finished.staged(), finished.result()) {
            (Some(staged), Ok(outcome)) => {
                let row = row(target, event, started_at, Ok(outcome), Some(finished.report()), staged.writes.len())?;
                match records::commit_applied(&market.db, &staged, &row).await {
                    Ok(Written::Inserted) => (runner.host.conclude(finished, Ok(())), Some(row)),
                    Ok(Written::Duplicate(applied)) => {
                        return already_applied(market, finished, &applied).await.map(Executed::AlreadyApplied);
                    }
                    Err(error) => (runner.host.conclude(finished, Err(error)), None),
                }
            }
            _ => (runner.host.conclude(finished, Ok(())), None),
        };
        if matches!(invocation.result, Err(InvocationError::KvConflict)) && !retried {
            retried = true;
            continue;
        }
        if let Err(InvocationError::Busy { .. }) = invocation.result {
            return Ok(Executed::Busy);
        }
        return Ok(Executed::Concluded(invocation, applied));
    }
}

/// Another delivery of the same event applied first: this attempt's writes were not kept.
async fn already_applied(market: &Market, finished: Finished, applied: &str) -> Result<Delivery, Refusal> {
    market.runner.host.conclude(finished, Err(nexus_host::capability::kv::KvError::Conflict));
    Ok(answered(market, records::get(market, applied).await?).await?)
}

/// The answer from an applied record ([`replayed`]), after queuing its actions for the
/// tenant's webhooks again (which keeps one message per action): the process that applied it
/// may have died before it did.
pub(super) async fn answered(market: &Market, record: InvocationRecord) -> Result<Delivery, MarketError> {
    super::actions::enqueue_actions(market, &record).await?;
    Ok(replayed(record))
}

/// The invocation's row: what it answered (or why it failed), the report's figures, the KV
/// writes it commits.
fn row(
    target: &Target,
    event: &Event,
    started_at: i64,
    result: Result<&Outcome, &Failure>,
    report: Option<&Report>,
    kv_writes: usize,
) -> Result<InvocationRecord, MarketError> {
    let number = |figure: fn(&Report) -> u64| report.map_or(0, |r| i64::try_from(figure(r)).unwrap_or(i64::MAX));
    let (outcome, error, answer) = match result {
        Ok(answer) => ("ok", None, Some(answer)),
        Err(failure) => (failure.outcome.as_str(), Some(failure.message.clone()), None),
    };
    Ok(InvocationRecord {
        id: InvocationId::ordered()?,
        tenant: target.tenant.clone(),
        install: target.id.clone(),
        plugin: target.plugin.clone(),
        version: target.version.to_string(),
        event_id: event.id.clone(),
        event_type: event.event_type.clone(),
        started_at,
        duration_us: number(|r| r.duration_us),
        outcome: outcome.to_string(),
        error,
        fuel_used: number(|r| r.fuel_used),
        peak_memory_bytes: number(|r| r.peak_memory_bytes),
        http_requests: number(|r| r.http_requests),
        kv_writes: i64::try_from(kv_writes).unwrap_or(i64::MAX),
        denials: number(Report::denied_calls),
        usage: report.map(|r| r.usage.clone()).unwrap_or_default(),
        logs: report.map(|r| records::kept_logs(&r.logs)).unwrap_or_default(),
        stderr: report.map(|r| records::kept_stderr(&r.stderr)).unwrap_or_default(),
        data: answer.and_then(|answer| answer.data.clone()),
        actions: answer.map(|answer| answer.actions.clone()).unwrap_or_default(),
    })
}

/// After the row is durable: metrics, the circuit breaker, the answer (the record's: the
/// same as every later answer about this invocation).
async fn finish(
    market: &Market,
    target: Target,
    row: InvocationRecord,
    clock: Instant,
    failure: Option<Failure>,
    report: Option<&Report>,
) -> Result<Delivery, MarketError> {
    market.runner.metrics.record_invocation(&target.plugin.to_string(), &row.outcome, clock.elapsed());
    super::actions::enqueue_actions(market, &row).await?;
    let paused = match &failure {
        None => installs::record_health(market, &target, None).await?,
        Some(failure) if failure.counts => {
            let reason = format!("{}: {}", failure.outcome, failure.message);
            installs::record_health(market, &target, Some(&reason)).await?
        }
        Some(_) => false,
    };
    let retryable = failure.as_ref().is_some_and(|failure| failure.retryable);
    Ok(Delivery {
        invocation: row.id,
        install: target.id,
        plugin: target.plugin.clone(),
        version: target.version.to_string(),
        outcome: row.outcome,
        duration_us: report.map_or(0, |r| r.duration_us),
        data: row.data,
        actions: row.actions,
        error: row.error,
        paused,
        retryable,
        replayed: false,
    })
}
