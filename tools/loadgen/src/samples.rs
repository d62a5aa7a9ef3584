//! The sample plugins the load generator publishes, moved into the `bench` namespace: their
//! manifests (`nexus.toml`, optionally at another version) and component bytes, as built by
//! `nexus-sample-plugins`. Both the server's seed and the `market` publisher read them.

use anyhow::Context;

/// The namespace every published sample is moved into.
pub const PUBLISHER: &str = "bench";

/// The sample's `nexus.toml` with its id moved to `bench/<sample>` and, when given, its
/// version replaced.
pub fn manifest(sample: &str, version: Option<&str>) -> anyhow::Result<String> {
    let (_, _, manifest) = publishable(sample)?;
    let original = format!("id = \"nexus-labs/{sample}\"");
    anyhow::ensure!(manifest.contains(&original), "the {sample} manifest no longer says {original}");
    let moved = manifest.replacen(&original, &format!("id = \"{PUBLISHER}/{sample}\""), 1);
    let Some(version) = version else { return Ok(moved) };
    let line = moved
        .lines()
        .find(|line| line.starts_with("version = "))
        .with_context(|| format!("the {sample} manifest has no version line"))?;
    Ok(moved.replacen(line, &format!("version = \"{version}\""), 1))
}

/// The sample's component bytes.
pub fn component(sample: &str) -> anyhow::Result<Vec<u8>> {
    let (_, path, _) = publishable(sample)?;
    nexus_sample_plugins::bytes(path).with_context(|| format!("reading {path}"))
}

fn publishable(sample: &str) -> anyhow::Result<&'static (&'static str, &'static str, &'static str)> {
    nexus_sample_plugins::PUBLISHABLE
        .iter()
        .find(|(name, ..)| *name == sample)
        .with_context(|| format!("{sample} is not among the publishable samples"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_move_to_the_bench_namespace_and_version() {
        let manifest = manifest("echo", None).unwrap();
        assert!(manifest.contains("id = \"bench/echo\""), "{manifest}");
        assert!(!manifest.contains("\"nexus-labs/"), "no id in the old namespace is left: {manifest}");
        let moved = super::manifest("pii-redactor", Some("0.1.7")).unwrap();
        assert!(moved.contains("id = \"bench/pii-redactor\"") && moved.contains("version = \"0.1.7\""), "{moved}");
        assert_eq!(moved.matches("version = ").count(), 1, "{moved}");
    }
}
