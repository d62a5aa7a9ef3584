//! Integration tests of the registry, each against SQLite and a real PostgreSQL.

// Tests report failure by panicking, and a scenario reads top to bottom: the 60-line rule
// (`clippy::too_many_lines`) is for the code under test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::too_many_lines)]

mod common;
mod credentials;
mod fuzz;
mod publish;
mod versions;
