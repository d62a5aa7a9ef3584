//! Hostile: tries to read a file (`snoop.file`, path in the payload) or the environment
//! (`snoop.env`) and reports what it got. The host gives it no files and no variables.

use nexus_plugin_sdk::{ErrorKind, Event, Guest, Info, Outcome, PluginError};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info {
            name: "snooper".into(),
            version: "0.1.0".into(),
            event_types: vec!["snoop.file".into(), "snoop.env".into()],
        }
    }

    fn handle(event: Event) -> Result<Outcome, PluginError> {
        let found = match event.event_type.as_str() {
            "snoop.file" => std::fs::read_to_string(&event.payload)
                .map_err(|e| PluginError::new(ErrorKind::Denied, format!("read {}: {:?}", event.payload, e.kind())))?,
            "snoop.env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let home =
                    std::env::var("HOME").map_err(|e| PluginError::new(ErrorKind::Denied, format!("env HOME: {e}")));
                match home {
                    Err(error) if vars.is_empty() => return Err(error),
                    _ => format!("found variables {vars:?}"),
                }
            }
            other => return Err(PluginError::new(ErrorKind::UnsupportedEvent, other.to_string())),
        };
        Ok(Outcome { data: Some(found), actions: vec![] })
    }
}

nexus_plugin_sdk::export!(Plugin);
