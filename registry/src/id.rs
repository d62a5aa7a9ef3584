//! Typed plugin identifiers: `publisher/name`, both parts validated when parsed.
//!
//! The rules match what URLs, file names and package-manager style ids can carry without
//! escaping: lowercase ASCII letters, digits and single `-` between them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest publisher name; the same bound GitHub puts on account names, which publishers
/// often mirror.
pub const MAX_PUBLISHER_LEN: usize = 39;

/// Longest plugin name; room for descriptive names without making ids unwieldy in URLs.
pub const MAX_PLUGIN_NAME_LEN: usize = 64;

/// Which part of an id a name error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Publisher,
    Plugin,
}

impl NameKind {
    fn max_len(self) -> usize {
        match self {
            Self::Publisher => MAX_PUBLISHER_LEN,
            Self::Plugin => MAX_PLUGIN_NAME_LEN,
        }
    }
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Publisher => "publisher",
            Self::Plugin => "plugin name",
        })
    }
}

/// The first rule a name breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    Empty,
    BadCharacter,
    TooLong { max: usize },
    FirstNotLetter,
    TrailingHyphen,
    DoubleHyphen,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("must not be empty"),
            Self::BadCharacter => f.write_str("must be lowercase letters, digits and '-'"),
            Self::TooLong { max } => write!(f, "must be at most {max} characters"),
            Self::FirstNotLetter => f.write_str("must start with a letter"),
            Self::TrailingHyphen => f.write_str("must not end with '-'"),
            Self::DoubleHyphen => f.write_str("must not contain \"--\""),
        }
    }
}

/// A publisher or plugin name that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind} {name:?} {problem}")]
pub struct NameError {
    pub kind: NameKind,
    pub name: String,
    pub problem: NameProblem,
}

/// Why a `publisher/name` text is not a plugin id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("plugin id {id:?} is invalid: expected \"publisher/name\"")]
    Shape { id: String },
    #[error("plugin id {id:?} is invalid: {source}")]
    Name { id: String, source: NameError },
}

fn check_name(kind: NameKind, name: &str) -> Result<(), NameError> {
    let problem = if name.is_empty() {
        Some(NameProblem::Empty)
    } else if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        Some(NameProblem::BadCharacter)
    } else if name.len() > kind.max_len() {
        // All bytes are ASCII by now, so bytes and characters agree.
        Some(NameProblem::TooLong { max: kind.max_len() })
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some(NameProblem::FirstNotLetter)
    } else if name.ends_with('-') {
        Some(NameProblem::TrailingHyphen)
    } else if name.contains("--") {
        Some(NameProblem::DoubleHyphen)
    } else {
        None
    };
    match problem {
        Some(problem) => Err(NameError { kind, name: name.to_string(), problem }),
        None => Ok(()),
    }
}

/// Implements parsing, display and string serde for a validated name newtype.
macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                check_name($kind, s)?;
                Ok(Self(s.to_string()))
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                check_name($kind, &value)?;
                Ok(Self(value))
            }
        }

        impl From<$ty> for String {
            fn from(name: $ty) -> Self {
                name.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// The namespace a publisher owns: 1 to 39 of `a-z`, `0-9`, `-`.
    PublisherName,
    NameKind::Publisher
);

name_type!(
    /// A plugin's name within its publisher: 1 to 64 of `a-z`, `0-9`, `-`.
    PluginName,
    NameKind::Plugin
);

/// A plugin's marketplace-wide id, written `publisher/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PluginId {
    pub publisher: PublisherName,
    pub name: PluginName,
}

impl PluginId {
    pub fn new(publisher: PublisherName, name: PluginName) -> Self {
        Self { publisher, name }
    }
}

impl FromStr for PluginId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((publisher, name)) = s.split_once('/') else {
            return Err(IdError::Shape { id: s.to_string() });
        };
        if name.contains('/') {
            return Err(IdError::Shape { id: s.to_string() });
        }
        let named = |source| IdError::Name { id: s.to_string(), source };
        Ok(Self { publisher: publisher.parse().map_err(named)?, name: name.parse().map_err(named)? })
    }
}

impl TryFrom<String> for PluginId {
    type Error = IdError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<PluginId> for String {
    fn from(id: PluginId) -> Self {
        id.to_string()
    }
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.publisher, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_error(text: &str) -> String {
        text.parse::<PluginId>().unwrap_err().to_string()
    }

    #[test]
    fn parses_and_displays_ids() {
        let id: PluginId = "acme/chat-notifier".parse().unwrap();
        assert_eq!(id.publisher.as_str(), "acme");
        assert_eq!(id.name.as_str(), "chat-notifier");
        assert_eq!(id.to_string(), "acme/chat-notifier");
        let id: PluginId = "a1/b".parse().unwrap();
        assert_eq!(id, PluginId::new("a1".parse().unwrap(), "b".parse().unwrap()));
    }

    #[test]
    fn serde_uses_the_string_form() {
        let id: PluginId = "acme/x-2".parse().unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"acme/x-2\"");
        assert_eq!(serde_json::from_str::<PluginId>(&json).unwrap(), id);
        let err = serde_json::from_str::<PluginId>("\"Acme/x\"").unwrap_err().to_string();
        assert_eq!(err, r#"plugin id "Acme/x" is invalid: publisher "Acme" must be lowercase letters, digits and '-'"#);
        assert_eq!(serde_json::to_string(&"acme".parse::<PublisherName>().unwrap()).unwrap(), "\"acme\"");
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("Acme/x", r#"plugin id "Acme/x" is invalid: publisher "Acme" must be lowercase letters, digits and '-'"#),
            ("acme", r#"plugin id "acme" is invalid: expected "publisher/name""#),
            ("acme/x/y", r#"plugin id "acme/x/y" is invalid: expected "publisher/name""#),
            ("/x", r#"plugin id "/x" is invalid: publisher "" must not be empty"#),
            ("acme/", r#"plugin id "acme/" is invalid: plugin name "" must not be empty"#),
            ("1acme/x", r#"plugin id "1acme/x" is invalid: publisher "1acme" must start with a letter"#),
            ("-acme/x", r#"plugin id "-acme/x" is invalid: publisher "-acme" must start with a letter"#),
            ("acme-/x", r#"plugin id "acme-/x" is invalid: publisher "acme-" must not end with '-'"#),
            ("ac--me/x", r#"plugin id "ac--me/x" is invalid: publisher "ac--me" must not contain "--""#),
            (
                "acme/x_y",
                r#"plugin id "acme/x_y" is invalid: plugin name "x_y" must be lowercase letters, digits and '-'"#,
            ),
            (
                "acme/x y",
                r#"plugin id "acme/x y" is invalid: plugin name "x y" must be lowercase letters, digits and '-'"#,
            ),
            ("acme/é", r#"plugin id "acme/é" is invalid: plugin name "é" must be lowercase letters, digits and '-'"#),
        ];
        for (text, expected) in cases {
            assert_eq!(id_error(text), expected, "{text}");
        }
    }

    #[test]
    fn length_limits_differ_for_publishers_and_plugins() {
        let p39 = format!("a{}", "b".repeat(38));
        let p40 = format!("a{}", "b".repeat(39));
        assert_eq!(p39.parse::<PublisherName>().unwrap().as_str(), p39);
        assert_eq!(
            p40.parse::<PublisherName>().unwrap_err().to_string(),
            format!("publisher {p40:?} must be at most 39 characters")
        );
        let n64 = "n".repeat(64);
        let n65 = "n".repeat(65);
        assert_eq!(n64.parse::<PluginName>().unwrap().as_str(), n64);
        assert_eq!(
            n65.parse::<PluginName>().unwrap_err(),
            NameError { kind: NameKind::Plugin, name: n65.clone(), problem: NameProblem::TooLong { max: 64 } }
        );
    }

    #[test]
    fn ids_order_by_publisher_then_name() {
        let mut ids: Vec<PluginId> = ["b/a", "a/z", "a/b"].iter().map(|s| s.parse().unwrap()).collect();
        ids.sort();
        let sorted: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(sorted, ["a/b", "a/z", "b/a"]);
    }
}
