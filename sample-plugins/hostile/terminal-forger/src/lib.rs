//! Hostile: puts terminal control characters in its log lines, data and actions: escape
//! sequences that clear the screen or set the window title, a carriage return that
//! overwrites a line, and a newline that forges a line of output. Whatever shows this text
//! to a person must make the characters visible rather than let a terminal act on them.

use nexus_plugin_sdk::{Action, Event, Guest, Info, Outcome, PluginError, log};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "terminal-forger".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(_event: Event) -> Result<Outcome, PluginError> {
        log::info("\x1b[2J\x1b[Hscreen cleared");
        log::info("line one\rOVERWRITTEN");
        log::info("ok\nfake: outcome ok");
        let action = Action { kind: "email.send\x1b[31m".into(), payload: "{\"to\":\"a\u{0007}\"}".into() };
        Ok(Outcome { data: Some("\x1b]0;pwned\x07done\u{0008}".into()), actions: vec![action] })
    }
}

nexus_plugin_sdk::export!(Plugin);
