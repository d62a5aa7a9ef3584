//! Conservation across the whole money pipeline, through the crate's public API only: usage
//! is rated into a charge, the charge is split under a tiered policy, refunded in pieces,
//! posted to a double-entry ledger, and plans are prorated over calendar months.
//!
//! The ledger workload is checked the way TigerBeetle's auditor checks its simulator: an
//! in-memory model of every charge is kept beside the balances the postings produce, and the
//! two are compared after every operation. proptest generates the operations, so a failure
//! shrinks to the shortest sequence that breaks a rule. No floats anywhere: every expected
//! value is integer (i128 where a product could pass i64).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use nexus_money::ledger::{Account, Posting, collected_charge};
use nexus_money::period::{Interval, MS_PER_DAY, Period, period_at, prorate};
use nexus_money::rating::UsagePrice;
use nexus_money::share::{BASIS_POINTS, Policy, Split, Tier, refunded_fee};
use nexus_money::{Currency, Money, MoneyError, allocate, round_half_up};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// One currency of each exponent: JPY 0, EUR 2, KWD 3.
const CURRENCIES: [&str; 3] = ["EUR", "JPY", "KWD"];
const PARTNERS: usize = 3;
const TENANTS: usize = 4;

fn currency(code: &str) -> Currency {
    Currency::from_code(code).expect("an ISO 4217 code with minor units")
}

fn tenant_id(tenant: usize) -> String {
    format!("t{tenant}")
}

fn partner_id(partner: usize) -> String {
    format!("p{partner}")
}

fn payable(partner: usize) -> String {
    Account::PartnerPayable(partner_id(partner)).name()
}

fn receivable(tenant: usize) -> String {
    Account::TenantReceivable(tenant_id(tenant)).name()
}

/// A valid tiered policy with `bounded` bounded tiers: bounds built as running sums of
/// positive gaps (so ascending and positive), the last tier unbounded, rates 0–100%. Gaps are
/// small enough that the charges below cross tiers often.
fn policy_with(bounded: std::ops::Range<usize>) -> impl Strategy<Value = Policy> {
    (vec((1i64..200_000, 0i64..=BASIS_POINTS), bounded), 0i64..=BASIS_POINTS).prop_map(|(tiers, last_rate)| {
        let mut bound = 0;
        let mut tiers: Vec<Tier> = tiers
            .into_iter()
            .map(|(gap, rate_bp)| {
                bound += gap;
                Tier { up_to: Some(bound), rate_bp }
            })
            .collect();
        tiers.push(Tier { up_to: None, rate_bp: last_rate });
        Policy::new(tiers).expect("ascending positive bounds and rates in range make a valid policy")
    })
}

/// The exact fee in basis-point minor units of `gross` from lifetime position `from`: each
/// tier's overlap with `[from, from + gross)` at its rate. Rounded by the caller, once.
fn exact_fee_bp(policy: &Policy, from: i64, gross: i64) -> i128 {
    let (end, mut lower) = (i128::from(from) + i128::from(gross), 0i128);
    let mut weighted = 0;
    for tier in policy.tiers() {
        let upper = tier.up_to.map_or(i128::MAX, i128::from);
        let overlap = (end.min(upper) - i128::from(from).max(lower)).max(0);
        weighted += overlap * i128::from(tier.rate_bp);
        lower = upper;
    }
    weighted
}

// 1. usage → charge → split → refunds

/// Refunds the first `count` of `pieces` one by one, then what remains in one go, checking
/// after each refund that the fee and the partner's share come back in proportion and never
/// more than was split.
fn refund_in_pieces(split: Split, pieces: &[i64], count: usize) -> Result<(), TestCaseError> {
    let (mut refunded, mut fee_back, mut partner_back) = (0i64, 0i64, 0i64);
    let last = split.gross - pieces.iter().take(count).sum::<i64>();
    for &piece in pieces.iter().take(count).chain([last].iter()) {
        if piece == 0 {
            prop_assert!(matches!(refunded_fee(split, refunded, 0), Err(MoneyError::InvalidAmount(..))));
            continue;
        }
        let back = refunded_fee(split, refunded, piece).unwrap();
        prop_assert!(back >= 0, "a refund of {} returned a fee of {}", piece, back);
        prop_assert!(back <= piece, "a refund of {} returned a fee of {}: the partner would pay in", piece, back);
        (refunded, fee_back, partner_back) = (refunded + piece, fee_back + back, partner_back + piece - back);
        prop_assert!(fee_back <= split.fee && partner_back <= split.partner);
        // Cumulative and rounded once: the fee back so far is the fee in proportion to all refunded.
        let proportional = round_half_up(split.fee.into(), refunded.into(), split.gross.into()).unwrap();
        prop_assert_eq!(fee_back, proportional);
        let remaining = split.gross - refunded;
        let over = refunded_fee(split, refunded, remaining + 1);
        prop_assert_eq!(over, Err(MoneyError::RefundExceedsCharge { requested: remaining + 1, remaining }));
    }
    prop_assert_eq!(refunded, split.gross);
    prop_assert_eq!((fee_back, partner_back), (split.fee, split.partner), "a full refund returns the split exactly");
    Ok(())
}

proptest! {
    #[test]
    fn usage_is_charged_split_and_refunded_without_losing_a_unit(
        code in prop::sample::select(CURRENCIES.to_vec()),
        unit in 0i64..100_000,
        included in 0u64..1_000,
        cap in proptest::option::of(0i64..5_000_000),
        units in 0u64..100_000,
        policy in policy_with(0..4),
        lifetime in 0i64..1_000_000,
        cuts in vec(1u64..100, 1..8),
        count in any::<Index>(),
    ) {
        let currency = currency(code);
        let price = UsagePrice::new(Money::new(unit, currency), included, cap.map(|c| Money::new(c, currency))).unwrap();
        let line = price.rate(units).unwrap();
        prop_assert_eq!(line.amount.currency, currency);
        prop_assert_eq!(line.billable_units + line.included_units, units);
        let uncapped = i128::from(unit) * i128::from(line.billable_units);
        prop_assert_eq!(i128::from(line.amount.minor), cap.map_or(uncapped, |cap| uncapped.min(cap.into())));
        if let Some(cap) = cap {
            prop_assert!(line.amount.minor <= cap);
            prop_assert_eq!(line.capped_at.is_some(), uncapped > i128::from(cap));
        }

        let split = policy.split(lifetime, line.amount.minor).unwrap();
        prop_assert_eq!(split.gross, line.amount.minor);
        prop_assert_eq!(split.fee + split.partner, split.gross);
        prop_assert!((0..=split.gross).contains(&split.fee));

        let pieces = allocate(split.gross, &cuts).unwrap();
        prop_assert_eq!(pieces.iter().sum::<i64>(), split.gross);
        refund_in_pieces(split, &pieces, count.index(pieces.len() + 1))?;
    }
}

// 2. Tier crossings

proptest! {
    #[test]
    fn a_sale_in_pieces_pays_the_fee_of_the_whole_within_a_unit_per_piece(
        policy in policy_with(0..4),
        lifetime in 0i64..600_000,
        pieces in vec(0i64..150_000, 1..10),
    ) {
        let total: i64 = pieces.iter().sum();
        let whole = policy.split(lifetime, total).unwrap();
        prop_assert_eq!(whole.fee, round_half_up(exact_fee_bp(&policy, lifetime, total), 1, BASIS_POINTS.into()).unwrap());
        let (mut position, mut fees, mut shares) = (lifetime, 0i64, 0i64);
        for &piece in &pieces {
            let split = policy.split(position, piece).unwrap();
            prop_assert_eq!(split.fee + split.partner, piece);
            (position, fees, shares) = (position + piece, fees + split.fee, shares + split.partner);
        }
        prop_assert_eq!(fees + shares, total);
        prop_assert!((fees - whole.fee).abs() <= pieces.len() as i64, "pieces {} vs whole {}", fees, whole.fee);
    }

    #[test]
    fn a_charge_up_to_a_boundary_pays_the_lower_rate_and_from_it_the_upper(
        policy in policy_with(1..4),
        tier in any::<Index>(),
        below in any::<Index>(),
        above in 0i64..300_000,
    ) {
        let tiers = policy.tiers();
        let index = tier.index(tiers.len() - 1);
        let lower = if index == 0 { 0 } else { tiers[index - 1].up_to.unwrap() };
        let bound = tiers[index].up_to.unwrap();
        let (rate, next) = (i128::from(tiers[index].rate_bp), tiers[index + 1]);
        let x = 1 + below.index(usize::try_from(bound - lower).unwrap()) as i64; // 1..=the tier's width
        let y = next.up_to.map_or(above, |upper| above.min(upper - bound));
        let bp = i128::from(BASIS_POINTS);
        prop_assert_eq!(policy.split(bound - x, x).unwrap().fee, round_half_up(x.into(), rate, bp).unwrap());
        let upper_rate = i128::from(next.rate_bp);
        prop_assert_eq!(policy.split(bound, y).unwrap().fee, round_half_up(y.into(), upper_rate, bp).unwrap());
        // Across the boundary: each side at its own rate, summed exactly, rounded once.
        let crossing = i128::from(x) * rate + i128::from(y) * upper_rate;
        prop_assert_eq!(policy.split(bound - x, x + y).unwrap().fee, round_half_up(crossing, 1, bp).unwrap());
    }
}

// 3. A random workload against a model, audited after every operation

#[derive(Debug, Clone)]
enum Price {
    Usage { unit: i64, included: u64, cap: Option<i64>, units: u64 },
    Flat(i64),
}

#[derive(Debug, Clone)]
enum Op {
    Charge {
        tenant: usize,
        partner: usize,
        currency: usize,
        price: Price,
    },
    Collect(Index),
    /// Refunds `weight`/1000 of what remains (at least one minor unit).
    Refund {
        charge: Index,
        weight: u64,
    },
    /// Asks for `excess` more than remains: refused, and nothing moves.
    RefundTooMuch {
        charge: Index,
        excess: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let price = prop_oneof![
        (0i64..1_000, 0u64..100, proptest::option::of(0i64..300_000), 0u64..1_000)
            .prop_map(|(unit, included, cap, units)| Price::Usage { unit, included, cap, units }),
        (0i64..200_000).prop_map(Price::Flat),
    ];
    prop_oneof![
        3 => (0..TENANTS, 0..PARTNERS, 0..CURRENCIES.len(), price)
            .prop_map(|(tenant, partner, currency, price)| Op::Charge { tenant, partner, currency, price }),
        3 => any::<Index>().prop_map(Op::Collect),
        // A quarter of the refunds take all that remains, so charges end fully refunded too.
        3 => (any::<Index>(), prop_oneof![1 => Just(1000u64), 3 => 1u64..1000])
            .prop_map(|(charge, weight)| Op::Refund { charge, weight }),
        1 => (any::<Index>(), 1i64..1_000).prop_map(|(charge, excess)| Op::RefundTooMuch { charge, excess }),
    ]
}

/// The model's record of one charge: what it billed, its split once collected, and what
/// its refunds returned.
#[derive(Debug, Clone, PartialEq)]
struct Charge {
    tenant: usize,
    partner: usize,
    currency: Currency,
    gross: i64,
    split: Option<Split>,
    refunded: i64,
    fee_back: i64,
}

/// Balances per (account, currency), built only from postings (positive is a debit).
#[derive(Debug, Default, Clone, PartialEq)]
struct Books {
    balances: BTreeMap<(String, Currency), i64>,
}

impl Books {
    fn post(&mut self, posting: &Posting) -> Result<(), TestCaseError> {
        let entries = posting.entries();
        prop_assert!(entries.len() >= 2 && entries.iter().all(|e| e.amount.minor != 0), "{:?}", posting);
        let currencies: BTreeSet<Currency> = entries.iter().map(|e| e.amount.currency).collect();
        prop_assert_eq!(currencies.len(), 1, "a posting never mixes currencies: {:?}", posting);
        let sum: i128 = entries.iter().map(|e| i128::from(e.amount.minor)).sum();
        prop_assert_eq!(sum, 0, "a posting balances: {:?}", posting);
        for entry in entries {
            *self.balances.entry((entry.account.clone(), entry.amount.currency)).or_default() += entry.amount.minor;
        }
        Ok(())
    }

    fn balance(&self, account: &str, currency: Currency) -> i64 {
        self.balances.get(&(account.to_owned(), currency)).copied().unwrap_or(0)
    }
}

struct World {
    policy: Policy,
    charges: Vec<Charge>,
    /// Each partner's lifetime gross collected per currency: its position in the tiers.
    lifetime: BTreeMap<(usize, Currency), i64>,
    books: Books,
}

impl World {
    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Charge { tenant, partner, currency: index, price } => {
                let currency = currency(CURRENCIES[*index]);
                let gross = match *price {
                    Price::Usage { unit, included, cap, units } => {
                        let cap = cap.map(|cap| Money::new(cap, currency));
                        let line =
                            UsagePrice::new(Money::new(unit, currency), included, cap).unwrap().rate(units).unwrap();
                        prop_assert!(cap.is_none_or(|cap| line.amount.minor <= cap.minor));
                        line.amount.minor
                    }
                    Price::Flat(minor) => minor,
                };
                let (tenant, partner) = (*tenant, *partner);
                // Billing it: the tenant owes it, a sale not yet collected.
                let billed =
                    [(Account::TenantReceivable(tenant_id(tenant)), gross), (Account::PlatformUnsettledSales, -gross)];
                match Posting::of_legs(currency, &billed) {
                    Ok(posting) => self.books.post(&posting)?,
                    Err(error) => {
                        prop_assert!(gross == 0 && matches!(error, MoneyError::InvalidPosting(_)), "{}", error)
                    }
                }
                self.charges.push(Charge { tenant, partner, currency, gross, split: None, refunded: 0, fee_back: 0 });
            }
            Op::Collect(pick) => {
                if let Some(index) = self.pick(pick, |c| c.split.is_none()) {
                    self.collect(index)?;
                }
            }
            Op::Refund { charge, weight } => {
                if let Some(index) = self.pick(charge, |c| c.split.is_some() && c.refunded < c.gross) {
                    let remaining = self.charges[index].gross - self.charges[index].refunded;
                    let amount = allocate(remaining, &[*weight, 1000 - *weight]).unwrap()[0].max(1);
                    let refunded = self.refund(index, amount);
                    prop_assert_eq!(refunded, Ok(()), "a refund of {} of the {} that remain", amount, remaining);
                }
            }
            Op::RefundTooMuch { charge, excess } => {
                if let Some(index) = self.pick(charge, |c| c.split.is_some()) {
                    let (before, charge) = (self.books.clone(), self.charges[index].clone());
                    let remaining = charge.gross - charge.refunded;
                    let refused = self.refund(index, remaining + excess);
                    prop_assert_eq!(
                        refused,
                        Err(MoneyError::RefundExceedsCharge { requested: remaining + excess, remaining })
                    );
                    prop_assert_eq!(&self.books, &before, "a refused refund leaves every balance unchanged");
                    prop_assert_eq!(&self.charges[index], &charge);
                }
            }
        }
        Ok(())
    }

    fn pick(&self, pick: &Index, eligible: impl Fn(&Charge) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.charges.len()).filter(|i| eligible(&self.charges[*i])).collect();
        (!candidates.is_empty()).then(|| candidates[pick.index(candidates.len())])
    }

    fn collect(&mut self, index: usize) -> Result<(), TestCaseError> {
        let Charge { tenant, partner, currency, gross, .. } = self.charges[index];
        let lifetime = self.lifetime.entry((partner, currency)).or_default();
        let split = self.policy.split(*lifetime, gross).unwrap();
        prop_assert_eq!(split.fee + split.partner, gross);
        prop_assert!((0..=gross).contains(&split.fee));
        match collected_charge(split, currency, &tenant_id(tenant), &partner_id(partner)) {
            Ok(posting) => self.books.post(&posting)?,
            // Nothing to collect: every leg would be zero, so there is no posting.
            Err(error) => prop_assert!(gross == 0 && matches!(error, MoneyError::InvalidPosting(_)), "{}", error),
        }
        *lifetime += gross;
        self.charges[index].split = Some(split);
        Ok(())
    }

    /// Refunds `amount` of a collected charge: cash out, the fee and the share back in
    /// proportion. Nothing changes when it is refused.
    fn refund(&mut self, index: usize, amount: i64) -> Result<(), MoneyError> {
        let charge = &self.charges[index];
        let split = charge.split.expect("only collected charges are refunded");
        let fee_back = refunded_fee(split, charge.refunded, amount)?;
        let legs = [
            (Account::PlatformCash, -amount),
            (Account::PlatformFeeRevenue, fee_back),
            (Account::PartnerPayable(partner_id(charge.partner)), amount - fee_back),
        ];
        let posting = Posting::of_legs(charge.currency, &legs)?;
        self.books.post(&posting).expect("a refund posting balances in one currency");
        let charge = &mut self.charges[index];
        (charge.refunded, charge.fee_back) = (charge.refunded + amount, charge.fee_back + fee_back);
        Ok(())
    }

    /// The books against the model, per currency.
    fn audit(&self) -> Result<(), TestCaseError> {
        for charge in &self.charges {
            prop_assert!((0..=charge.gross).contains(&charge.refunded));
            let fee = charge.split.map_or(0, |split| split.fee);
            prop_assert!((0..=fee).contains(&charge.fee_back));
            prop_assert!(charge.refunded - charge.fee_back <= charge.gross - fee);
            if charge.split.is_some() && charge.refunded == charge.gross {
                prop_assert_eq!(charge.fee_back, fee, "a fully refunded charge returns its whole fee");
            }
        }
        for code in CURRENCIES {
            let currency = currency(code);
            let collected: Vec<&Charge> =
                self.charges.iter().filter(|c| c.currency == currency && c.split.is_some()).collect();
            let balance = |account: Account| self.books.balance(&account.name(), currency);
            let (cash, revenue) = (balance(Account::PlatformCash), balance(Account::PlatformFeeRevenue));
            let payables: i64 = (0..PARTNERS).map(|p| self.books.balance(&payable(p), currency)).sum();
            prop_assert_eq!(cash, -revenue - payables, "{}: cash = fee revenue + partner payables", code);
            let paid: i64 = (0..TENANTS)
                .map(|t| collected.iter().filter(|c| c.tenant == t).map(|c| c.gross - c.refunded).sum::<i64>())
                .sum();
            prop_assert_eq!(cash, paid, "{}: cash is what tenants paid net of refunds", code);
            let fees: i64 = collected.iter().map(|c| c.split.map_or(0, |s| s.fee) - c.fee_back).sum();
            prop_assert_eq!(-revenue, fees, "{}: fee revenue", code);
            for partner in 0..PARTNERS {
                let mine = collected.iter().filter(|c| c.partner == partner);
                let shares: i64 = mine.clone().map(|c| c.split.map_or(0, |s| s.partner)).sum();
                let returned: i64 = mine.clone().map(|c| c.refunded - c.fee_back).sum();
                let owed = -self.books.balance(&payable(partner), currency);
                prop_assert_eq!(owed, shares - returned, "{}: partner {} payable", code, partner);
                prop_assert!(owed >= 0);
                let lifetime = self.lifetime.get(&(partner, currency)).copied().unwrap_or(0);
                prop_assert_eq!(lifetime, mine.map(|c| c.gross).sum::<i64>());
            }
            prop_assert!(cash >= 0 && revenue <= 0);
            // What is billed and not collected is owed by its tenant and unsettled; a
            // collection settles both.
            let uncollected = self.charges.iter().filter(|c| c.currency == currency && c.split.is_none());
            for tenant in 0..TENANTS {
                let owed: i64 = uncollected.clone().filter(|c| c.tenant == tenant).map(|c| c.gross).sum();
                prop_assert_eq!(self.books.balance(&receivable(tenant), currency), owed, "{}: tenant {}", code, tenant);
            }
            let unsettled: i64 = uncollected.map(|c| c.gross).sum();
            prop_assert_eq!(balance(Account::PlatformUnsettledSales), -unsettled, "{}: unsettled sales", code);
        }
        let platform = [Account::PlatformCash, Account::PlatformFeeRevenue, Account::PlatformUnsettledSales];
        let known: BTreeSet<String> = platform
            .iter()
            .map(Account::name)
            .chain((0..PARTNERS).map(payable))
            .chain((0..TENANTS).map(receivable))
            .collect();
        prop_assert!(self.books.balances.keys().all(|(account, _)| known.contains(account)), "{:?}", self.books);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_random_workload_keeps_the_books_equal_to_the_model(policy in policy_with(0..4), ops in vec(op(), 1..60)) {
        let mut world = World { policy, charges: Vec::new(), lifetime: BTreeMap::new(), books: Books::default() };
        for op in &ops {
            world.apply(op)?;
            world.audit()?;
        }
    }
}

// 4. Proration over a 28–31 day month

proptest! {
    #[test]
    fn a_plan_change_credits_the_old_plan_and_charges_the_new(
        anchor in 0i64..4_000_000_000_000,
        old in 0i64..10_000_000,
        new in 0i64..10_000_000,
        change in any::<Index>(),
        on_a_day in any::<bool>(),
    ) {
        let period = period_at(anchor, Interval::Month, 0).unwrap();
        let Period { start_ms: start, end_ms: end } = period;
        let length = end - start;
        prop_assert!((28 * MS_PER_DAY..=31 * MS_PER_DAY).contains(&length) && length % MS_PER_DAY == 0);
        let at = if on_a_day {
            start + change.index(usize::try_from(length / MS_PER_DAY).unwrap() + 1) as i64 * MS_PER_DAY
        } else {
            start + change.index(usize::try_from(length).unwrap() + 1) as i64
        };
        let left = i128::from(end - at);

        let credit = prorate(old, period, at).unwrap();
        let charge = prorate(new, period, at).unwrap();
        prop_assert_eq!(credit, round_half_up(old.into(), left, length.into()).unwrap());
        prop_assert_eq!(charge, round_half_up(new.into(), left, length.into()).unwrap());
        let used = old - credit;
        prop_assert!((0..=old).contains(&credit) && (0..=old).contains(&used));
        prop_assert_eq!(credit + used, old);
        // The change costs the prorated difference, within the one unit two roundings can differ by.
        prop_assert!((charge - credit - prorate(new - old, period, at).unwrap()).abs() <= 1);
        // The month costs the old plan's used part plus the new plan's remainder, within a unit
        // of the exact time-weighted price: |length × paid − (old × used time + new × left)| ≤ length.
        let exact = i128::from(old) * i128::from(at - start) + i128::from(new) * left;
        let paid = i128::from(used + charge);
        prop_assert!((paid * i128::from(length) - exact).abs() <= i128::from(length));
    }
}
