//! The builder's path through the real binaries: an operator creates a publisher, the
//! builder generates and registers a key, publishes (signed), sees immutability, yanks.

use std::process::Output;

use super::common::{nexus, serve};

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn operator_and_builder_publish_sign_and_yank_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data);

    // From a folder with no marketplace the command refuses, naming the folder, instead of
    // creating an empty one whose tokens no server knows.
    let elsewhere = dir.path().join("elsewhere");
    let refused = nexus(&["publisher", "create", "nexus-labs", "--data-dir", elsewhere.to_str().unwrap()], &[]);
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains(&format!("no marketplace in {}", elsewhere.display())) && said.contains("--init"), "{said}");
    assert!(!elsewhere.join("registry.db").exists());
    let created = nexus(&["publisher", "create", "nexus-labs", "--data-dir", data.to_str().unwrap()], &[]);
    assert!(created.status.success(), "{}", text(&created));
    assert!(
        text(&created).contains(&format!("created publisher nexus-labs in {}", data.display())),
        "{}",
        text(&created)
    );
    let stdout = String::from_utf8_lossy(&created.stdout).into_owned();
    let token = stdout.lines().find_map(|l| l.strip_prefix("token     ")).unwrap().trim().to_string();
    let config = dir.path().join("config");
    let env = [
        ("NEXUS_REGISTRY", server.url.as_str()),
        ("NEXUS_TOKEN", token.as_str()),
        ("XDG_CONFIG_HOME", config.to_str().unwrap()),
    ];

    let generated = nexus(&["keys", "generate"], &env);
    assert!(generated.status.success(), "{}", text(&generated));
    let fingerprint = String::from_utf8_lossy(&generated.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint ").map(str::to_owned))
        .unwrap();
    let added = nexus(&["keys", "add"], &env);
    assert_eq!(String::from_utf8_lossy(&added.stdout), format!("registered key {fingerprint} for nexus-labs\n"));

    let (_, component, _) = nexus_sample_plugins::PUBLISHABLE.iter().find(|(n, ..)| *n == "tax-calculator").unwrap();
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-plugins/tax-calculator/nexus.toml");
    let args = ["publish", component, "--manifest", manifest.to_str().unwrap()];
    let published = nexus(&args, &env);
    let output = text(&published);
    assert!(published.status.success(), "{output}");
    assert!(output.contains("published nexus-labs/tax-calculator@0.1.0"), "{output}");
    assert!(output.contains(&format!("signed by {fingerprint}")), "{output}");
    assert!(output.contains(&format!("listing   {}/v1/plugins/nexus-labs/tax-calculator/versions/0.1.0", server.url)));

    let again = nexus(&args, &env);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("[version_exists] — bump `version` in nexus.toml"), "{}", text(&again));

    let yanked = nexus(&["yank", "nexus-labs/tax-calculator@0.1.0", "--reason", "rounding bug"], &env);
    assert_eq!(String::from_utf8_lossy(&yanked.stdout), "yanked nexus-labs/tax-calculator@0.1.0: rounding bug\n");

    let no_token = nexus(&["keys", "list"], &[("NEXUS_REGISTRY", server.url.as_str())]);
    assert_eq!(no_token.status.code(), Some(2));
    assert!(
        text(&no_token)
            .contains("no API token: run `nexus login` (profile `default`), or pass --token or set NEXUS_TOKEN")
    );
    let revoked = nexus(&["keys", "revoke", &fingerprint], &env);
    assert!(revoked.status.success(), "{}", text(&revoked));
    let listed = nexus(&["keys", "list"], &env);
    assert!(
        String::from_utf8_lossy(&listed.stdout).starts_with(&format!("{fingerprint}  revoked")),
        "{}",
        text(&listed)
    );
}
