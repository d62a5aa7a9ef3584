//! Picking the version an install gets: the highest published, non-yanked version that
//! matches a semver requirement.

use semver::{Version, VersionReq};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResolveError {
    #[error("version requirement {text:?} is invalid: {reason}")]
    InvalidRequirement { text: String, reason: String },
}

impl ResolveError {
    pub fn code(&self) -> crate::ErrorCode {
        match self {
            Self::InvalidRequirement { .. } => crate::ErrorCode::InvalidRequirement,
        }
    }
}

/// Parses a requirement as Cargo writes them (`1.2` means `^1.2`). Blank and `*` mean any
/// version, so a caller can pass an absent requirement through unchanged.
pub fn parse_requirement(text: &str) -> Result<VersionReq, ResolveError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "*" {
        return Ok(VersionReq::STAR);
    }
    VersionReq::parse(trimmed)
        .map_err(|e| ResolveError::InvalidRequirement { text: text.to_string(), reason: e.to_string() })
}

/// The highest non-yanked candidate matching `requirement`, in one pass over unsorted
/// candidates. Pre-releases match only when the requirement names a pre-release of the same
/// `major.minor.patch`, which is `VersionReq::matches`' own rule (as in Cargo).
pub fn resolve<'a>(
    requirement: &VersionReq,
    candidates: impl IntoIterator<Item = (&'a Version, bool)>,
) -> Option<&'a Version> {
    candidates
        .into_iter()
        .filter(|&(version, yanked)| !yanked && requirement.matches(version))
        .map(|(version, _)| version)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (requirement, [(version, yanked)], expected)
    type Case = (&'static str, &'static [(&'static str, bool)], Option<&'static str>);

    const PLAIN: &[(&str, bool)] = &[
        ("0.9.0", false),
        ("1.0.0", false),
        ("1.2.0", false),
        ("1.2.7", false),
        ("1.4.3", false),
        ("1.4.9", false),
        ("1.5.0", false),
        ("2.0.0", false),
        ("2.1.0", false),
    ];

    const PRE: &[(&str, bool)] = &[
        ("1.0.0-beta.1", false),
        ("1.0.0-beta.2", false),
        ("1.0.0-beta.3", false),
        ("1.0.0", false),
        ("1.1.0-rc.1", false),
    ];

    const CASES: &[Case] = &[
        ("^1.2", PLAIN, Some("1.5.0")),
        ("1.2", PLAIN, Some("1.5.0")),
        ("~1.4.3", PLAIN, Some("1.4.9")),
        ("~1.2", PLAIN, Some("1.2.7")),
        ("=2.0.0", PLAIN, Some("2.0.0")),
        ("=1.3.0", PLAIN, None),
        ("*", PLAIN, Some("2.1.0")),
        (">=1.0", PLAIN, Some("2.1.0")),
        ("<2.0", PLAIN, Some("1.5.0")),
        (">=1.2, <1.4", PLAIN, Some("1.2.7")),
        ("^0.9", PLAIN, Some("0.9.0")),
        ("^3", PLAIN, None),
        // Pre-releases: only when the requirement names one on the same major.minor.patch.
        ("^1.0.0-beta.2", PRE, Some("1.0.0")),
        ("^1.0.0-beta.2", &[("1.0.0-beta.1", false), ("1.0.0-beta.3", false)], Some("1.0.0-beta.3")),
        ("=1.0.0-beta.2", PRE, Some("1.0.0-beta.2")),
        ("^1.0", &[("1.0.0", false), ("1.1.0-rc.1", false)], Some("1.0.0")),
        ("^1.0", &[("1.1.0-rc.1", false)], None),
        ("*", &[("1.0.0-beta.1", false)], None),
        (">=1.0.0-beta.1", &[("1.0.0-beta.3", false), ("1.1.0-rc.1", false)], Some("1.0.0-beta.3")),
        ("^1.1.0-rc.1", PRE, Some("1.1.0-rc.1")),
        // Yanked versions are never chosen.
        ("^1", &[("1.0.0", false), ("1.9.0", true), ("1.8.0", false)], Some("1.8.0")),
        ("=1.9.0", &[("1.9.0", true)], None),
        ("^1", &[("1.0.0", true), ("1.1.0", true)], None),
        ("*", &[], None),
    ];

    #[test]
    fn resolves_the_highest_matching_non_yanked_version() {
        assert!(CASES.len() >= 20);
        for &(requirement, candidates, expected) in CASES {
            let req = parse_requirement(requirement).unwrap();
            let versions: Vec<(Version, bool)> =
                candidates.iter().map(|&(v, yanked)| (Version::parse(v).unwrap(), yanked)).collect();
            let chosen = resolve(&req, versions.iter().map(|(v, yanked)| (v, *yanked)));
            assert_eq!(chosen.map(ToString::to_string).as_deref(), expected, "{requirement} over {candidates:?}");
        }
    }

    #[test]
    fn blank_and_star_mean_any() {
        for text in ["", "  ", "*", " * "] {
            assert_eq!(parse_requirement(text).unwrap(), VersionReq::STAR, "{text:?}");
        }
        assert_eq!(parse_requirement(" ^1.2 ").unwrap(), VersionReq::parse("^1.2").unwrap());
    }

    #[test]
    fn invalid_requirements_name_the_text() {
        let err = parse_requirement("one.two").unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::InvalidRequirement);
        assert_eq!(
            err.to_string(),
            r#"version requirement "one.two" is invalid: unexpected character 'o' while parsing major version number"#
        );
    }

    #[test]
    fn handles_ten_thousand_unsorted_versions() {
        // Shuffled deterministically so the winner is neither first nor last.
        let versions: Vec<Version> = (0..10_000u64).map(|i| Version::new(1, (i * 7919) % 10_000, 0)).collect();
        let chosen = resolve(&VersionReq::STAR, versions.iter().map(|v| (v, v.minor == 9_999)));
        assert_eq!(chosen, Some(&Version::new(1, 9_998, 0)));
    }
}
