//! Integration tests of the host: one binary (see STYLE.md), one shared host and runtime.

// Tests report failure by panicking, and a scenario reads top to bottom: the 60-line rule
// (`clippy::too_many_lines`) is for the code under test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::too_many_lines)]

mod cache;
mod capacity;
mod common;
mod hardening;
mod hostile;
mod limits;
mod samples;
mod sandbox;
mod versions;
