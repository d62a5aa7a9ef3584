//! One bindings module per supported contract version. The newest is [`latest`]; older
//! versions reuse its types wherever the WIT is unchanged, so the host has one
//! implementation of every capability and converts at the edges.
//!
//! Imports are linked once, at the newest version: wasmtime's linker satisfies an import of
//! `nexus:plugin/log@1.0.0` with `nexus:plugin/log@1.1.0` because the two are
//! semver-compatible, and 1.1 only adds functions. Exports differ per version, so each
//! version has its own `PluginPre`.

pub mod latest;
pub mod since_v1_0;
