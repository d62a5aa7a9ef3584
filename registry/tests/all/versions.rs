//! Resolution against stored versions, and yanking.

use nexus_registry::PluginId;
use nexus_registry::resolve::parse_requirement;

use crate::common::*;

#[test]
fn resolution_picks_the_highest_matching_version_that_is_not_yanked() {
    on_both(|f| async move {
        for version in ["1.0.0", "1.2.0", "1.2.5", "1.4.3", "1.4.9", "2.0.0", "2.1.0-beta.1", "3.0.0-rc.1"] {
            f.registry.publish(&f.caller, request("echo", version)).await.unwrap();
        }
        let id: PluginId = "nexus-labs/echo".parse().unwrap();
        let yank = |version: &str| {
            let (registry, caller, id) = (&f.registry, f.caller.clone(), id.clone());
            let version = version.parse().unwrap();
            async move { registry.yank(&caller, &id, &version, "bad build", Some(&"1.4.3".parse().unwrap())).await }
        };
        let yanked = yank("1.4.9").await.unwrap();
        assert_eq!(
            yanked.yank.as_ref().map(|y| (y.reason.as_str(), y.successor.as_deref())),
            Some(("bad build", Some("1.4.3")))
        );

        let cases = [
            ("^1.2", Some("1.4.3")),
            ("~1.4.3", Some("1.4.3")),
            ("~1.2", Some("1.2.5")),
            ("=2.0.0", Some("2.0.0")),
            ("*", Some("2.0.0")),
            ("^2.1.0-beta.1", Some("2.1.0-beta.1")),
            ("^3", None),
            ("=1.4.9", None),
            ("<1.2", Some("1.0.0")),
        ];
        for (requirement, expected) in cases {
            let resolved = f.registry.resolve(&id, &parse_requirement(requirement).unwrap()).await;
            let got = resolved.as_ref().map(|r| r.version.to_string()).ok();
            assert_eq!(got.as_deref(), expected, "{requirement}");
            if expected.is_none() {
                assert_eq!(resolved.unwrap_err().code().as_str(), "no_matching_version");
            }
        }

        let listed: Vec<String> =
            f.registry.versions(&id).await.unwrap().iter().map(|r| r.version.to_string()).collect();
        assert_eq!(listed[..3], ["3.0.0-rc.1", "2.1.0-beta.1", "2.0.0"]);
        // A successor that is itself yanked is refused.
        let error = f
            .registry
            .yank(&f.caller, &id, &"1.0.0".parse().unwrap(), "old", Some(&"1.4.9".parse().unwrap()))
            .await
            .unwrap_err();
        assert_eq!(error.code().as_str(), "invalid_request");
        assert_eq!(
            code(f.registry.resolve(&"nexus-labs/nothing".parse().unwrap(), &parse_requirement("*").unwrap()).await),
            "no_matching_version"
        );
    });
}
