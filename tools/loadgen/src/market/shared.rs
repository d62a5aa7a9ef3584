//! What the clients share: the budget that stops them (a number of requests or a moment),
//! how often a keyed request is sent again and the dice that decide it, and the counters of
//! the progress line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::tally::Retry;

/// When the load stops: at `until`, or when `left` first sends have been made.
#[derive(Debug)]
pub struct Budget {
    left: Option<AtomicU64>,
    until: Instant,
}

impl Budget {
    pub fn new(operations: Option<u64>, until: Instant) -> Self {
        Self { left: operations.map(AtomicU64::new), until }
    }

    /// Takes one request from the budget; false once it is spent.
    pub fn take(&self) -> bool {
        if Instant::now() >= self.until {
            return false;
        }
        let Some(left) = &self.left else { return true };
        left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1)).is_ok()
    }

    /// Whether the budget ran out by its number of requests (rather than its time).
    pub fn operations_spent(&self) -> bool {
        self.left.as_ref().is_some_and(|left| left.load(Ordering::Relaxed) == 0)
    }
}

/// Percentages of keyed requests sent twice: beside the first, or after it answered.
#[derive(Debug, Clone, Copy)]
pub struct RetryMix {
    pub concurrent_percent: u8,
    pub after_percent: u8,
}

/// A small deterministic generator (SplitMix64): the same seed gives every client the same
/// sequence of retries on every run.
#[derive(Debug, Clone)]
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64, client: u64) -> Self {
        Self(seed ^ client.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Whether (and how) the next keyed request is sent again.
    pub fn retry(&mut self, mix: RetryMix) -> Option<Retry> {
        let roll = self.next() % 100;
        let (concurrent, after) = (u64::from(mix.concurrent_percent), u64::from(mix.after_percent));
        if roll < concurrent {
            Some(Retry::Concurrent)
        } else if roll < concurrent + after {
            Some(Retry::After)
        } else {
            None
        }
    }
}

/// Requests answered and failures seen so far, for the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub answered: AtomicU64,
    pub failed: AtomicU64,
}

impl Progress {
    pub fn answered(&self, count: u64, failed: bool) {
        self.answered.fetch_add(count, Ordering::Relaxed);
        self.failed.fetch_add(u64::from(failed), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_of_operations_runs_out() {
        let budget = Budget::new(Some(2), Instant::now() + std::time::Duration::from_secs(60));
        assert_eq!([budget.take(), budget.take(), budget.take()], [true, true, false]);
        assert!(!Budget::new(None, Instant::now()).take());
    }

    #[test]
    fn dice_follow_the_mix() {
        let mut dice = Dice::new(1, 0);
        let mix = RetryMix { concurrent_percent: 10, after_percent: 20 };
        let rolls: Vec<_> = (0..10_000).map(|_| dice.retry(mix)).collect();
        let count = |want: Option<Retry>| rolls.iter().filter(|r| **r == want).count();
        assert!((800..1200).contains(&count(Some(Retry::Concurrent))), "{}", count(Some(Retry::Concurrent)));
        assert!((1700..2300).contains(&count(Some(Retry::After))), "{}", count(Some(Retry::After)));
        assert_eq!(Dice::new(1, 0).retry(mix), rolls[0]);
        let none = RetryMix { concurrent_percent: 0, after_percent: 0 };
        assert!((0..100).all(|_| dice.retry(none).is_none()));
    }
}
