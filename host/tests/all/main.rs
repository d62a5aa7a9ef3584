//! Integration tests of the host: one binary (see STYLE.md), one shared host and runtime.

// Tests report failure by panicking.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod cache;
mod capacity;
mod common;
mod hardening;
mod hostile;
mod limits;
mod samples;
mod sandbox;
mod versions;
