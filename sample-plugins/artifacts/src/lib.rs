//! Paths of the sample and hostile plugins in `sample-plugins/`, compiled for
//! `wasm32-wasip2` by this crate's build script, and the manifests (`nexus.toml`) of the
//! samples that are published. Tests, benchmarks and the demo use these; no `.wasm` file is
//! ever committed.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// Reads a plugin's component bytes.
pub fn bytes(path: &str) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

/// The publishable samples: (package name, component path, `nexus.toml` text).
pub const PUBLISHABLE: &[(&str, &str, &str)] = &[
    ("chat-notifier", CHAT_NOTIFIER, include_str!("../../chat-notifier/nexus.toml")),
    ("pii-redactor", PII_REDACTOR, include_str!("../../pii-redactor/nexus.toml")),
    ("tax-calculator", TAX_CALCULATOR, include_str!("../../tax-calculator/nexus.toml")),
    ("echo", ECHO, include_str!("../../echo/nexus.toml")),
];
