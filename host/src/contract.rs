//! Which contract version a component targets, read from its exports, and which imports it
//! may have. Components that import anything else are refused at load.

use std::fmt;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use wasmparser::{Parser, Payload, Validator};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadError;
use crate::grants::Capability;

/// The contract versions this host runs, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ContractVersion {
    /// `nexus:plugin@1.0.0`, the published contract.
    #[serde(rename = "1.0")]
    V1_0,
    /// `nexus:plugin@1.1.0`, test-only: it proves two versions run side by side and is
    /// not offered to builders (see wit/README.md).
    #[serde(rename = "1.1")]
    V1_1,
}

impl ContractVersion {
    pub const ALL: [ContractVersion; 2] = [Self::V1_0, Self::V1_1];

    /// Whether builders may publish plugins against this version.
    pub fn is_published(self) -> bool {
        matches!(self, Self::V1_0)
    }

    fn minor(self) -> u64 {
        match self {
            Self::V1_0 => 0,
            Self::V1_1 => 1,
        }
    }
}

impl fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nexus:plugin@1.{}.0", self.minor())
    }
}

/// The export every plugin has; its version names the contract.
const HANDLER: &str = "nexus:plugin/handler@";

/// Interfaces a component may import: the contract's capabilities, and the WASI 0.2
/// interfaces a `wasm32-wasip2` standard library links (all served empty or denied).
const ALLOWED_IMPORTS: &[&str] = &[
    "nexus:plugin/types@1.",
    "nexus:plugin/log@1.",
    "nexus:plugin/config@1.",
    "nexus:plugin/kv@1.",
    "nexus:plugin/http@1.",
    "nexus:plugin/usage@1.",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// Reads the contract version from the handler export and checks every import.
pub fn detect(engine: &Engine, component: &Component) -> Result<ContractVersion, LoadError> {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(name, _)| name.to_string()).collect();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_string()).collect();
    classify(&imports, &exports)
}

/// What a component asks of the host, read without compiling it: the registry uses this to
/// validate uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub contract: ContractVersion,
    /// Every top-level import name, such as `nexus:plugin/kv@1.0.0`.
    pub imports: Vec<String>,
    /// The capabilities the imports need. Importing `config` needs `config` or `secrets`
    /// (one interface holds both); it is listed as `config`.
    pub capabilities: BTreeSet<Capability>,
}

/// Validates `bytes` as a component and reads its contract version and imports.
pub fn inspect(bytes: &[u8]) -> Result<Inspection, LoadError> {
    if Parser::is_core_wasm(bytes) {
        return Err(LoadError::NotAComponent(
            "it is a core WebAssembly module; build it as a component (wasm32-wasip2)".into(),
        ));
    }
    if !Parser::is_component(bytes) {
        return Err(LoadError::NotAComponent("the bytes do not start with the WebAssembly component header".into()));
    }
    Validator::new().validate_all(bytes).map_err(|e| LoadError::NotAComponent(e.to_string()))?;
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    // Nested modules and components have sections of their own; only depth 1 is the
    // component's interface to the host.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| LoadError::NotAComponent(e.to_string()))? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    imports.push(import.map_err(|e| LoadError::NotAComponent(e.to_string()))?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    exports.push(export.map_err(|e| LoadError::NotAComponent(e.to_string()))?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    let contract = classify(&imports, &exports)?;
    let capabilities = imports.iter().filter_map(|name| capability_of(name)).collect();
    Ok(Inspection { contract, imports, capabilities })
}

/// The capability an import needs, if it is a contract interface that needs one.
fn capability_of(import: &str) -> Option<Capability> {
    let interface = import.strip_prefix("nexus:plugin/")?.split('@').next()?;
    match interface {
        "log" => Some(Capability::Log),
        "config" => Some(Capability::Config),
        "kv" => Some(Capability::Kv),
        "http" => Some(Capability::Http),
        "usage" => Some(Capability::Usage),
        _ => None,
    }
}

fn classify(imports: &[String], exports: &[String]) -> Result<ContractVersion, LoadError> {
    if let Some(name) = imports.iter().find(|name| !ALLOWED_IMPORTS.iter().any(|prefix| name.starts_with(prefix))) {
        return Err(LoadError::UnsupportedImport(name.clone()));
    }
    let handler = exports
        .iter()
        .find_map(|name| name.strip_prefix(HANDLER))
        .ok_or_else(|| LoadError::UnsupportedContract("it exports no nexus:plugin/handler interface".into()))?;
    parse_version(handler)
}

fn parse_version(version: &str) -> Result<ContractVersion, LoadError> {
    let unsupported = || {
        let known: Vec<String> = ContractVersion::ALL.iter().map(ToString::to_string).collect();
        LoadError::UnsupportedContract(format!(
            "it targets nexus:plugin@{version}; this host runs {}",
            known.join(", ")
        ))
    };
    let mut parts = version.split('.').map(str::parse::<u64>);
    let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
        return Err(unsupported());
    };
    // A patch release never changes the contract's shape, so any patch of a known minor runs.
    match (major, minor) {
        (1, 0) => Ok(ContractVersion::V1_0),
        (1, 1) => Ok(ContractVersion::V1_1),
        _ => Err(unsupported()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_by_major_and_minor() {
        assert_eq!(parse_version("1.0.0").ok(), Some(ContractVersion::V1_0));
        assert_eq!(parse_version("1.0.7").ok(), Some(ContractVersion::V1_0));
        assert_eq!(parse_version("1.1.0").ok(), Some(ContractVersion::V1_1));
        let err = parse_version("2.0.0").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "the component targets no supported contract version: it targets nexus:plugin@2.0.0; \
                 this host runs nexus:plugin@1.0.0, nexus:plugin@1.1.0"
            )
        );
        assert!(parse_version("x").is_err());
    }
}
