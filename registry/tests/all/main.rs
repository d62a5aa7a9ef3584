//! Integration tests of the registry, each against SQLite and a real PostgreSQL.

// Tests report failure by panicking.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;
mod credentials;
mod fuzz;
mod publish;
mod versions;
