//! The smallest useful plugin: returns the event payload as its data, prefixed by the
//! install's `prefix` config. One host call per event; the benchmarks use it as the
//! "trivial plugin". Its `fail-with` setting makes every event fail with that error kind,
//! so an integration's failure handling (retries, dead deliveries, replays) can be tried
//! end to end and then healed by changing the setting; its `emit` setting makes every event
//! ask for one action of that kind (for the tenant's webhooks).

use nexus_plugin_sdk::{Action, ErrorKind, Event, Guest, Info, Outcome, PluginError, config};

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
        // `emit = <kind>` asks the platform for one action of that kind per event, carrying
        // the payload: a stream of actions for the tenant's webhooks, as load for them.
        let actions = match config::get("emit")?.filter(|kind| !kind.is_empty()) {
            Some(kind) => vec![Action { kind, payload: event.payload.clone() }],
            None => vec![],
        };
        Ok(Outcome { data: Some(format!("{prefix}{}", event.payload)), actions })
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
