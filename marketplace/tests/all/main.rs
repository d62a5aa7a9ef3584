//! Integration tests of the marketplace: the HTTP API in process (on SQLite and on a
//! throwaway PostgreSQL) and the `nexus` binary, run as a user runs it.

// Tests report failure by panicking, and a scenario reads top to bottom: the 60-line rule
// (`clippy::too_many_lines`) is for the code under test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::too_many_lines)]

mod async_crash;
mod async_events;
mod authz;
mod browser;
mod builder;
mod catalog;
mod common;
mod connections;
mod console;
mod conventions;
mod crash;
mod dev;
mod exactly_once;
mod fuzz;
mod installs;
mod isolation;
mod live_demo;
mod logins;
mod media;
mod money;
mod partners;
mod people;
mod plugin_run;
mod quickstarts;
mod registry_api;
mod registry_cli;
mod reviews;
mod scale_out;
mod schedules;
mod tenant_cli;
mod under_load;
mod usage_hours;
mod webhooks;
