//! Integration tests of the host: one binary (see STYLE.md), one shared host and runtime.

mod cache;
mod common;
mod hostile;
mod limits;
mod sandbox;
mod samples;
mod versions;
