//! Integration tests of the `nexus` binary, run as a user runs it.

// Tests report failure by panicking.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod plugin_run;
mod registry_api;
mod registry_cli;
