//! One batch of a billing run: the installs locked, what each owes decided
//! ([`schedule::owed`]), the usage of every segment read and rated, the charges and the
//! installs' new billing state written, all in one write transaction with multi-row
//! statements.

use std::collections::BTreeMap;

use nexus_money::period::Period;

use super::Billing;
use crate::accounts::TenantId;
use crate::billing::charges::{self, Billed, NewCharge};
use crate::billing::plans::{self, Plan};
use crate::billing::schedule::{self, Line, Owed, Position};
use crate::error::{MarketError, storage};
use crate::ids::PlanId;
use crate::installs::billing_state::{self, Advanced, Billable};
use crate::installs::{InstallStatus, PauseCause};
use crate::market::Market;
use crate::records::usage_hours;

/// Bills `installs` up to `until` in one write transaction: their rows locked, what each owes
/// computed, the usage of every segment summed in a few statements, the charges and their
/// ledger transactions written in multi-row statements, the installs' billing state updated
/// in one. Per install (in id order), what it created, or why it could not be billed (then
/// nothing of it is written); an error of the transaction itself writes nothing at all.
pub(super) async fn bill_many(
    market: &Market,
    installs: &[String],
    until: i64,
) -> Result<Vec<(String, Billing)>, MarketError> {
    if installs.is_empty() {
        return Ok(Vec::new());
    }
    let now = until;
    let mut tx = market.db.write_tx().await?;
    let locked = billing_state::lock_many(&mut tx, installs).await?;
    let plans = plans_of(&mut tx, &locked).await?;
    let mut outcomes: BTreeMap<String, Billing> = installs.iter().map(|id| (id.clone(), Ok(Vec::new()))).collect();
    let due = owed_by_each(locked, &plans, until, &mut outcomes)?;
    let segments: Vec<(&str, &str, Period)> = due.iter().flat_map(Due::usage_segments).collect();
    let units = usage_hours::segment_units(&mut tx, &segments).await?;
    let (owners, rated_lines) = rate_each(due, &units, &mut outcomes);
    let lines: Vec<(Billed, NewCharge)> =
        rated_lines.into_iter().map(|(owner, line)| (owners[owner].billed(), line)).collect();
    let written = charges::insert_many(&mut tx, &lines, now).await?;
    for ((billed, line), id) in lines.iter().zip(&written) {
        // A subscription period counts as created even at 0 (a free period); usage only when
        // something was used.
        if id.is_some()
            && (line.amount_minor > 0 || line.line == "subscription")
            && let Some(Ok(created)) = outcomes.get_mut(billed.install)
        {
            created.push((line.currency.code().to_string(), line.amount_minor));
        }
    }
    let advanced: Vec<Advanced> = owners.iter().map(Due::advanced).collect();
    billing_state::save_many(&mut tx, &advanced).await?;
    tx.commit().await?;
    Ok(outcomes.into_iter().collect())
}

/// The plans of the locked installs, each read once.
async fn plans_of(conn: &mut sqlx::AnyConnection, locked: &[Billable]) -> Result<BTreeMap<PlanId, Plan>, MarketError> {
    let mut plans: BTreeMap<PlanId, Plan> = BTreeMap::new();
    for install in locked {
        if !plans.contains_key(&install.plan_id) {
            let plan = plans::get_in(conn, &install.plan_id).await?;
            plans.insert(install.plan_id.clone(), plan);
        }
    }
    Ok(plans)
}

/// An install of a batch with what it owes and where its billing stands after.
struct Due<'a> {
    install: String,
    tenant: TenantId,
    plugin: String,
    publisher: String,
    plan: &'a Plan,
    owed: Owed,
}

impl<'a> Due<'a> {
    fn new(install: Billable, plan: &'a Plan, until: i64) -> Result<Self, (String, MarketError)> {
        let live = install.status != InstallStatus::Uninstalled && install.uninstalled_at.is_none();
        let paused_for_payment =
            install.status == InstallStatus::Paused && install.paused_for == Some(PauseCause::Payment);
        let position = Position {
            anchor: install.anchor.unwrap_or(0),
            paid_through: install.paid_through,
            usage_billed_until: install.usage_billed_until,
            uninstalled_at: install.uninstalled_at,
            charges_new_periods: live && !paused_for_payment,
        };
        match schedule::owed(position, plan, until) {
            Ok(owed) => Ok(Due {
                publisher: install.plugin.split('/').next().unwrap_or_default().to_string(),
                install: install.id.into(),
                tenant: install.tenant,
                plugin: install.plugin,
                plan,
                owed,
            }),
            Err(error) => Err((install.id.into(), error)),
        }
    }

    /// The usage segments waiting for their units: (install, meter, segment).
    fn usage_segments(&self) -> impl Iterator<Item = (&str, &str, Period)> {
        let meter = self.plan.usage.as_ref().map_or("", |usage| usage.meter.as_str());
        self.owed.lines.iter().filter_map(move |line| match line {
            Line::Usage(segment) => Some((self.install.as_str(), meter, *segment)),
            Line::Ready(_) => None,
        })
    }

    fn billed(&self) -> Billed<'_> {
        Billed {
            install: &self.install,
            tenant: &self.tenant,
            plugin: &self.plugin,
            publisher: &self.publisher,
            plan: self.plan,
        }
    }

    fn advanced(&self) -> Advanced<'_> {
        Advanced {
            install: &self.install,
            paid_through: self.owed.position.paid_through,
            usage_billed_until: self.owed.position.usage_billed_until,
            next_bill_at: self.owed.next_bill_at,
        }
    }
}

/// What each locked install owes; an install whose schedule cannot be computed gets its
/// error in `outcomes` and is left as it was.
fn owed_by_each<'a>(
    locked: Vec<Billable>,
    plans: &'a BTreeMap<PlanId, Plan>,
    until: i64,
    outcomes: &mut BTreeMap<String, Billing>,
) -> Result<Vec<Due<'a>>, MarketError> {
    let mut due = Vec::with_capacity(locked.len());
    for install in locked {
        let plan_id = install.plan_id.clone();
        let plan = plans.get(&plan_id).ok_or_else(|| storage(format!("plan {plan_id} was not read")))?;
        match Due::new(install, plan, until) {
            Ok(owing) => due.push(owing),
            Err((install, error)) => {
                outcomes.insert(install, Err(error));
            }
        }
    }
    Ok(due)
}

/// The rated lines of each install (by its index among the installs returned); an install
/// whose usage cannot be rated gets its error in `outcomes` and is left as it was.
fn rate_each<'a>(
    due: Vec<Due<'a>>,
    units: &BTreeMap<(String, i64), i64>,
    outcomes: &mut BTreeMap<String, Billing>,
) -> (Vec<Due<'a>>, Vec<(usize, NewCharge)>) {
    let mut owners = Vec::new();
    let mut rated_lines = Vec::new();
    for mut owing in due {
        let lines = std::mem::take(&mut owing.owed.lines);
        let rated: Result<Vec<NewCharge>, MarketError> = lines
            .into_iter()
            .map(|line| match line {
                Line::Ready(charge) => Ok(*charge),
                Line::Usage(segment) => {
                    let reported = units.get(&(owing.install.clone(), segment.start_ms)).copied().unwrap_or(0);
                    schedule::rate_usage(owing.plan, segment, reported)
                }
            })
            .collect();
        match rated {
            Ok(lines) => {
                rated_lines.extend(lines.into_iter().map(|line| (owners.len(), line)));
                owners.push(owing);
            }
            Err(error) => {
                outcomes.insert(owing.install, Err(error));
            }
        }
    }
    (owners, rated_lines)
}
