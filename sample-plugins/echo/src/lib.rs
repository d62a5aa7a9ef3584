//! The smallest useful plugin: returns the event payload as its data, prefixed by the
//! install's `prefix` config. One host call per event; the benchmarks use it as the
//! "trivial plugin". Its `fail-with` setting makes every event fail with that error kind,
//! so an integration's failure handling (retries, dead deliveries, replays) can be tried
//! end to end and then healed by changing the setting.

use nexus_plugin_sdk::{ErrorKind, Event, Guest, Info, Outcome, PluginError, config};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "echo".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(event: Event) -> Result<Outcome, PluginError> {
        let prefix = config::get("prefix")?.unwrap_or_default();
        if let Some(kind) = config::get("fail-with")?.filter(|kind| !kind.is_empty()) {
            return Err(configured_failure(&kind));
        }
        Ok(Outcome { data: Some(format!("{prefix}{}", event.payload)), actions: vec![] })
    }
}

nexus_plugin_sdk::export!(Plugin);

/// The error `fail-with = <kind>` asks for: `upstream`, `internal`, `invalid-payload`,
/// `unsupported-event` or `invalid-config`; any other value is itself an invalid config.
pub fn configured_failure(kind: &str) -> PluginError {
    let known = match kind {
        "upstream" => Some(ErrorKind::Upstream),
        "internal" => Some(ErrorKind::Internal),
        "invalid-payload" => Some(ErrorKind::InvalidPayload),
        "unsupported-event" => Some(ErrorKind::UnsupportedEvent),
        "invalid-config" => Some(ErrorKind::InvalidConfig),
        _ => None,
    };
    match known {
        Some(kind_of) => PluginError::new(kind_of, format!("failing as configured (fail-with = {kind})")),
        None => PluginError::invalid_config(format!(
            "fail-with = {kind:?} is not an error kind: use upstream, internal, invalid-payload, unsupported-event \
             or invalid-config"
        )),
    }
}
