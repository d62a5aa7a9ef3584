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

/// The listing images of the publishable samples, by (package name, path in its `[media]`),
/// so the demo can put them up without the source tree. `webhook-relay`, the demo's second
/// publisher's listing built on the echo component, has its images in echo's folder.
pub const MEDIA: &[(&str, &str, &[u8])] = &[
    ("chat-notifier", "media/icon.png", include_bytes!("../../chat-notifier/media/icon.png")),
    ("chat-notifier", "media/screenshot-1.png", include_bytes!("../../chat-notifier/media/screenshot-1.png")),
    ("chat-notifier", "media/screenshot-2.png", include_bytes!("../../chat-notifier/media/screenshot-2.png")),
    ("pii-redactor", "media/icon.png", include_bytes!("../../pii-redactor/media/icon.png")),
    ("pii-redactor", "media/screenshot-1.png", include_bytes!("../../pii-redactor/media/screenshot-1.png")),
    ("pii-redactor", "media/screenshot-2.png", include_bytes!("../../pii-redactor/media/screenshot-2.png")),
    ("tax-calculator", "media/icon.png", include_bytes!("../../tax-calculator/media/icon.png")),
    ("tax-calculator", "media/screenshot-1.png", include_bytes!("../../tax-calculator/media/screenshot-1.png")),
    ("tax-calculator", "media/screenshot-2.png", include_bytes!("../../tax-calculator/media/screenshot-2.png")),
    ("echo", "media/icon.png", include_bytes!("../../echo/media/icon.png")),
    ("echo", "media/screenshot-1.png", include_bytes!("../../echo/media/screenshot-1.png")),
    ("echo", "media/screenshot-2.png", include_bytes!("../../echo/media/screenshot-2.png")),
    ("webhook-relay", "media/relay-icon.png", include_bytes!("../../echo/media/relay-icon.png")),
    ("webhook-relay", "media/relay-screenshot-1.png", include_bytes!("../../echo/media/relay-screenshot-1.png")),
    ("webhook-relay", "media/relay-screenshot-2.png", include_bytes!("../../echo/media/relay-screenshot-2.png")),
];

/// The bytes of a sample's listing image named `path` in its `[media]`.
pub fn media(package: &str, path: &str) -> Option<&'static [u8]> {
    MEDIA.iter().find(|(p, file, _)| *p == package && *file == path).map(|(_, _, bytes)| *bytes)
}
