//! The load generator's integration tests: its scenarios run end to end against the server
//! child they start, at sizes small enough for a test. No timings are asserted.

// Tests report failure by panicking.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod market;
