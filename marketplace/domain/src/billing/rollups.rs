//! Money rollups: the figures the money reports read (GMV, sales, statements, payouts,
//! `/metrics`), kept beside the ledger so that a report reads a few rows per partner and
//! period instead of every entry of its window. Three tables (migrations 0014 and 0015):
//!
//! - `money_rollups`: per UTC day and per UTC calendar month, currency, partner, plugin and
//!   plan: collections, gross, fees, refunds, fees returned, partner earnings, payable
//!   movement, payouts paid, and the refunds of the charges collected in that day or month;
//! - `partner_balances`: per partner and currency, the same figures since the beginning (the
//!   payable balance among them);
//! - `partner_entries`: each posting that moved a partner's payable, by ledger order and time,
//!   as its statement line (what the transaction records, the charge's plugin, plan and line,
//!   and the payable, gross and fee figures).
//!
//! They stay exact because they are written in one place, [`apply`], called by
//! [`ledger::post_many`](super::ledger::post_many) inside the database transaction that
//! writes the postings: a posting and its rollups commit or roll back together. Each figure is
//! a sum of entries chosen by transaction kind and account ([`figures`], pure and unit
//! tested), so the same sums recomputed in SQL from the ledger ([`rebuild`]) give the same
//! rows, and [`checks`] (run by `ledger verify`) reports every row that differs.
//!
//! A posting is rolled up under a partner: the one whose payable it moves, else its charge's
//! publisher, else its payout's ('' for none); and under its charge's plugin and plan ('' for
//! none). Postings that move no cash, fee revenue or payable (a charge billed) are not.

use std::collections::BTreeMap;

use nexus_money::ledger::Posting;
use nexus_money::period;
use serde::Serialize;

use super::ledger::{Account, Kind};

const DAY_MS: i64 = super::DAY_MS;

/// The figure columns of `money_rollups`, in [`Figures::values`] order; `partner_balances`
/// has all but the last two.
pub const FIGURES: [&str; 11] = [
    "collections",
    "gross_minor",
    "fees_minor",
    "refunds",
    "refunded_minor",
    "fees_returned_minor",
    "earned_minor",
    "payable_minor",
    "paid_out_minor",
    "sold_refunded_minor",
    "sold_fees_returned_minor",
];
/// The figures `partner_balances` keeps (the "sold" pair only means something per period).
const BALANCE_FIGURES: usize = 9;
const KEY: [&str; 6] = ["grain", "start_day", "currency", "publisher", "plugin_id", "plan_key"];

/// What postings add to a rollup row. Amounts in minor units; credits to the partner positive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    /// Collections (their cash entries) and the cash they brought in.
    pub collections: i64,
    pub gross_minor: i64,
    /// Fee revenue of collections.
    pub fees_minor: i64,
    /// Refunds (their cash entries), the cash they returned and the fee revenue they gave back.
    pub refunds: i64,
    pub refunded_minor: i64,
    pub fees_returned_minor: i64,
    /// Partners' payables moved by collections and refunds: shares less refunded shares.
    pub earned_minor: i64,
    /// Partners' payables moved by any posting.
    pub payable_minor: i64,
    /// Cash out to partners (confirmed payouts).
    pub paid_out_minor: i64,
    /// A refund's cash and fee again, counted on the day and month its charge was collected.
    pub sold_refunded_minor: i64,
    pub sold_fees_returned_minor: i64,
}

impl Figures {
    pub fn values(&self) -> [i64; 11] {
        [
            self.collections,
            self.gross_minor,
            self.fees_minor,
            self.refunds,
            self.refunded_minor,
            self.fees_returned_minor,
            self.earned_minor,
            self.payable_minor,
            self.paid_out_minor,
            self.sold_refunded_minor,
            self.sold_fees_returned_minor,
        ]
    }

    fn from_values(v: [i64; 11]) -> Self {
        Self {
            collections: v[0],
            gross_minor: v[1],
            fees_minor: v[2],
            refunds: v[3],
            refunded_minor: v[4],
            fees_returned_minor: v[5],
            earned_minor: v[6],
            payable_minor: v[7],
            paid_out_minor: v[8],
            sold_refunded_minor: v[9],
            sold_fees_returned_minor: v[10],
        }
    }

    pub fn add(&mut self, other: &Self) {
        let (mine, theirs) = (self.values(), other.values());
        *self = Self::from_values(std::array::from_fn(|i| mine[i] + theirs[i]));
    }

    pub fn is_zero(&self) -> bool {
        self.values() == [0; 11]
    }

    /// The figures that belong to the posting's own day, and the "sold" pair, which belongs
    /// to the day its charge was collected.
    fn split_sold(self) -> (Self, Self) {
        let sold = Self {
            sold_refunded_minor: self.sold_refunded_minor,
            sold_fees_returned_minor: self.sold_fees_returned_minor,
            ..Self::default()
        };
        (Self { sold_refunded_minor: 0, sold_fees_returned_minor: 0, ..self }, sold)
    }
}

/// The partner whose payable `account` is, if it is one.
pub fn payee(account: &str) -> Option<String> {
    match Account::parse(account)? {
        Account::PartnerPayable(publisher) => Some(publisher),
        _ => None,
    }
}

/// One currency of a posting: its figures and the partner whose payable it moves (the first
/// by name if several).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leg {
    pub figures: Figures,
    pub payee: Option<String>,
}

/// What a posting of `kind` adds to the rollups, per currency. Pure: the SQL of [`rebuild`]
/// sums the same entries by the same rules.
pub fn figures(kind: Kind, posting: &Posting) -> BTreeMap<String, Leg> {
    let mut out: BTreeMap<String, Leg> = BTreeMap::new();
    for entry in posting.entries() {
        let leg = out.entry(entry.amount.currency.code().to_string()).or_default();
        let (f, minor) = (&mut leg.figures, entry.amount.minor);
        match (Account::parse(&entry.account), kind) {
            (Some(Account::PlatformCash), Kind::Collection) => {
                f.collections += 1;
                f.gross_minor += minor;
            }
            (Some(Account::PlatformCash), Kind::Refund) => {
                f.refunds += 1;
                f.refunded_minor -= minor;
                f.sold_refunded_minor -= minor;
            }
            (Some(Account::PlatformCash), Kind::PayoutPaid) => f.paid_out_minor -= minor,
            (Some(Account::PlatformFeeRevenue), Kind::Collection) => f.fees_minor -= minor,
            (Some(Account::PlatformFeeRevenue), Kind::Refund) => {
                f.fees_returned_minor += minor;
                f.sold_fees_returned_minor += minor;
            }
            (Some(Account::PartnerPayable(partner)), kind) => {
                f.payable_minor -= minor;
                if matches!(kind, Kind::Collection | Kind::Refund) {
                    f.earned_minor -= minor;
                }
                if leg.payee.as_deref().is_none_or(|first| partner.as_str() < first) {
                    leg.payee = Some(partner);
                }
            }
            _ => {}
        }
    }
    out
}

/// What a posting did to each partner's payable, per (partner, currency): credit positive.
pub fn payable_moves(posting: &Posting) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for entry in posting.entries() {
        if let Some(partner) = payee(&entry.account) {
            let key = (partner, entry.amount.currency.code().to_string());
            *out.entry(key).or_default() -= entry.amount.minor;
        }
    }
    out
}

/// A posting's statement-line figures per currency: the gross of a sale or refund (its cash)
/// and the fee (fee revenue taken, positive, or returned, negative).
pub fn line_figures(kind: Kind, posting: &Posting) -> BTreeMap<String, (i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for entry in posting.entries() {
        let (gross, fee) = out.entry(entry.amount.currency.code().to_string()).or_default();
        match Account::parse(&entry.account) {
            Some(Account::PlatformCash) if matches!(kind, Kind::Collection | Kind::Refund) => {
                *gross += entry.amount.minor
            }
            Some(Account::PlatformFeeRevenue) => *fee -= entry.amount.minor,
            _ => {}
        }
    }
    out
}

/// The UTC day of a moment, as SQL computes it (`posted_at / 86400000`).
pub fn day_of(at: i64) -> i64 {
    at / DAY_MS
}

/// The first day of the UTC calendar month of `day`.
pub fn month_of_day(day: i64) -> i64 {
    let (_, _, day_of_month) = period::civil(day * DAY_MS);
    day - (i64::from(day_of_month) - 1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grain {
    Day,
    Month,
}

impl Grain {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
        }
    }
}

mod apply;
mod recompute;

pub(crate) use apply::{Posted, apply};
pub use recompute::{RebuildReport, checks, rebuild};

#[cfg(test)]
mod tests {
    use nexus_money::{Currency, Money};

    use super::*;
    use crate::billing::ledger::{Account, posting};

    fn eur() -> Currency {
        Currency::from_code("EUR").unwrap()
    }

    fn only(legs: BTreeMap<String, Leg>) -> Leg {
        assert_eq!(legs.len(), 1, "{legs:?}");
        legs.into_values().next().unwrap()
    }

    #[test]
    fn a_collection_counts_its_gross_fee_and_share_under_its_partner() {
        let legs = [
            (Account::PlatformCash, 1000),
            (Account::TenantReceivable("globex".into()), -1000),
            (Account::PlatformUnsettledSales, 1000),
            (Account::PlatformFeeRevenue, -150),
            (Account::PartnerPayable("acme".into()), -850),
        ];
        let leg = only(figures(Kind::Collection, &posting(eur(), &legs).unwrap()));
        let expected = Figures {
            collections: 1,
            gross_minor: 1000,
            fees_minor: 150,
            earned_minor: 850,
            payable_minor: 850,
            ..Figures::default()
        };
        assert_eq!((leg.figures, leg.payee.as_deref()), (expected, Some("acme")));
        let lines = line_figures(Kind::Collection, &posting(eur(), &legs).unwrap());
        assert_eq!(lines.into_iter().collect::<Vec<_>>(), [("EUR".to_string(), (1000, 150))]);
    }

    #[test]
    fn a_refund_counts_on_its_day_and_again_on_its_sale() {
        let legs = [
            (Account::PlatformCash, -400),
            (Account::PlatformFeeRevenue, 60),
            (Account::PartnerPayable("acme".into()), 340),
        ];
        let leg = only(figures(Kind::Refund, &posting(eur(), &legs).unwrap()));
        let (own, sold) = leg.figures.split_sold();
        let expected_own = Figures {
            refunds: 1,
            refunded_minor: 400,
            fees_returned_minor: 60,
            earned_minor: -340,
            payable_minor: -340,
            ..Figures::default()
        };
        let expected_sold = Figures { sold_refunded_minor: 400, sold_fees_returned_minor: 60, ..Figures::default() };
        assert_eq!((own, sold), (expected_own, expected_sold));
        let lines = line_figures(Kind::Refund, &posting(eur(), &legs).unwrap());
        assert_eq!(lines.into_iter().collect::<Vec<_>>(), [("EUR".to_string(), (-400, -60))]);
    }

    #[test]
    fn payouts_move_the_payable_and_only_a_paid_one_moves_cash() {
        let out = [(Account::PartnerPayable("acme".into()), 5000), (Account::PlatformPayoutsInTransit, -5000)];
        let leg = only(figures(Kind::Payout, &posting(eur(), &out).unwrap()));
        assert_eq!(leg.figures, Figures { payable_minor: -5000, ..Figures::default() });
        let paid = [(Account::PlatformPayoutsInTransit, 5000), (Account::PlatformCash, -5000)];
        let leg = only(figures(Kind::PayoutPaid, &posting(eur(), &paid).unwrap()));
        assert_eq!((leg.figures, leg.payee), (Figures { paid_out_minor: 5000, ..Figures::default() }, None));
        let back = [(Account::PlatformPayoutsInTransit, 5000), (Account::PartnerPayable("acme".into()), -5000)];
        let leg = only(figures(Kind::PayoutReturned, &posting(eur(), &back).unwrap()));
        assert_eq!(leg.figures, Figures { payable_minor: 5000, ..Figures::default() });
        let adjusted = [(Account::PartnerPayable("acme".into()), -700), (Account::PlatformAdjustments, 700)];
        let leg = only(figures(Kind::Adjustment, &posting(eur(), &adjusted).unwrap()));
        assert_eq!(leg.figures, Figures { payable_minor: 700, ..Figures::default() });
    }

    #[test]
    fn a_charge_billed_is_not_rolled_up() {
        let legs = [(Account::TenantReceivable("globex".into()), 1000), (Account::PlatformUnsettledSales, -1000)];
        assert!(only(figures(Kind::Charge, &posting(eur(), &legs).unwrap())).figures.is_zero());
    }

    #[test]
    fn payable_moves_are_per_partner_and_currency_credit_positive() {
        let usd = Currency::from_code("USD").unwrap();
        let entries = vec![
            nexus_money::ledger::Entry { account: "partner:b:payable".into(), amount: Money::new(-3, eur()) },
            nexus_money::ledger::Entry { account: "platform:cash".into(), amount: Money::new(3, eur()) },
            nexus_money::ledger::Entry { account: "partner:a:payable".into(), amount: Money::new(-5, usd) },
            nexus_money::ledger::Entry { account: "platform:cash".into(), amount: Money::new(5, usd) },
        ];
        let posting = Posting::new(entries).unwrap();
        let moves = payable_moves(&posting);
        assert_eq!(
            moves.into_iter().collect::<Vec<_>>(),
            [(("a".into(), "USD".into()), 5), (("b".into(), "EUR".into()), 3)]
        );
        assert_eq!(payee("partner:acme-tools:payable").as_deref(), Some("acme-tools"));
        assert_eq!(payee("tenant:acme:receivable"), None);
    }

    #[test]
    fn months_start_on_their_first_day() {
        // 2024-02-29 is day 19782; its month starts on 2024-02-01, day 19754.
        assert_eq!(month_of_day(19_782), 19_754);
        assert_eq!(month_of_day(19_754), 19_754);
        assert_eq!(month_of_day(0), 0);
        assert_eq!(day_of(19_782 * DAY_MS + DAY_MS - 1), 19_782);
    }
}
