//! End-to-end tests across the parts: sample plugins built from source, run by one host for
//! many tenants at once, as the marketplace will.

// Tests report failure by panicking.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod guest_bindings;
mod tenants;
