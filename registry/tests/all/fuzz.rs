//! Random and mutated uploads always get an error, never a panic.

use nexus_registry::publish::validate;
use nexus_registry::{Credential, PublishRequest, Scope};
use proptest::prelude::*;

use crate::common::{component, manifest};

fn caller() -> Credential {
    Credential {
        token_id: "t".into(),
        publisher: "nexus-labs".parse().unwrap(),
        scopes: [Scope::Publish].into_iter().collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let request = PublishRequest { manifest: manifest("echo", "1.0.0"), component: bytes, claimed_digest: None, signature: None };
        prop_assert_eq!(validate(&caller(), &request).map(|_| ()).map_err(|e| e.code().as_str()), Err("not_a_component"));
    }

    #[test]
    fn mutated_components_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = component("echo");
        for (index, value) in flips {
            let at = index.index(bytes.len());
            bytes[at] ^= value | 1;
        }
        let request = PublishRequest { manifest: manifest("echo", "1.0.0"), component: bytes, claimed_digest: None, signature: None };
        // Some flips land in custom sections or names and still validate; none may panic,
        // and every refusal is one of the component errors.
        if let Err(error) = validate(&caller(), &request) {
            let known = ["not_a_component", "unsupported_import", "unsupported_contract", "undeclared_capability"];
            prop_assert!(known.contains(&error.code().as_str()), "{}", error);
        }
    }

    #[test]
    fn mutated_manifests_never_panic(cut in 0usize..2000, insert in "[ -~\n]{0,40}") {
        let mut text = manifest("echo", "1.0.0");
        let at = cut.min(text.len());
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.insert_str(at, &insert);
        let request = PublishRequest { manifest: text, component: component("echo"), claimed_digest: None, signature: None };
        if let Err(error) = validate(&caller(), &request) {
            let known = [
                "manifest_syntax", "manifest_missing_field", "manifest_invalid_field", "namespace_not_owned",
                "contract_mismatch", "undeclared_capability", "unsupported_contract",
            ];
            prop_assert!(known.contains(&error.code().as_str()), "{}", error);
        }
    }
}
