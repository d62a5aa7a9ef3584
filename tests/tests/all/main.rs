//! End-to-end tests across the parts: sample plugins built from source, run by one host for
//! many tenants at once, as the marketplace will.

// Tests report failure by panicking, and a scenario reads top to bottom: the 60-line rule
// (`clippy::too_many_lines`) is for the code under test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::too_many_lines)]

mod code_shape;
mod guest_bindings;
mod module_graph;
mod tenants;
