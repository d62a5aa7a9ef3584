// A test reads top to bottom: the 60-line rule is for the code under test.
#![allow(clippy::too_many_lines)]

use super::*;

const VALID: &str = include_str!("../../tests/data/nexus.toml");

fn valid() -> Manifest {
    Manifest::from_toml(VALID).unwrap()
}

/// Parses `VALID` with `from` replaced by `to`; the edit must apply.
fn edited(from: &str, to: &str) -> Result<Manifest, ManifestError> {
    assert!(VALID.contains(from), "{from:?} not in the example");
    Manifest::from_toml(&VALID.replacen(from, to, 1))
}

fn invalid_err(field: &str, problem: &str) -> ManifestError {
    ManifestError::Invalid { field: field.into(), problem: problem.into() }
}

fn host(text: &str) -> HostPattern {
    text.parse().unwrap()
}

#[test]
fn parses_every_field_of_the_full_example() {
    let m = valid();
    assert_eq!(m.id.to_string(), "acme/chat-notifier");
    assert_eq!(m.version, Version::new(1, 2, 0));
    assert_eq!(m.summary, "Post marketplace events to your team chat");
    assert_eq!(
        m.description.as_deref(),
        Some("Posts a message to your team chat for each event.\n\nStore the webhook URL as the secret `webhook-url`.")
    );
    assert_eq!(m.categories, ["messaging", "notifications"]);
    assert_eq!(m.license, "Apache-2.0");
    assert_eq!(m.homepage.as_deref(), Some("https://example.com"));
    assert_eq!(m.repository.as_deref(), Some("https://github.com/acme/chat-notifier"));
    assert_eq!(m.contract, ContractVersion::V1_0);
    assert_eq!(m.event_types, ["invoice.paid", "user.signup"]);

    let request = |reason: &str, hosts: Vec<HostRequest>| CapabilityRequest { reason: reason.into(), hosts };
    let expected_capabilities = BTreeMap::from([
        (Capability::Log, request("Records what was sent", vec![])),
        (Capability::Secrets, request("Stores the webhook URL", vec![])),
        (
            Capability::Http,
            request(
                "Posts to your chat webhook",
                vec![
                    HostRequest { host: host("hooks.slack.com"), reason: "Slack incoming webhooks".into() },
                    HostRequest { host: host("*.webhook.office.com:443"), reason: "Microsoft Teams webhooks".into() },
                ],
            ),
        ),
        (Capability::Usage, request("Counts messages sent, for per-message pricing", vec![])),
    ]);
    assert_eq!(m.capabilities, expected_capabilities);

    let usd: Currency = "USD".parse().unwrap();
    let eur: Currency = "EUR".parse().unwrap();
    assert_eq!((usd.to_string(), format!("{eur:?}")), ("USD".to_string(), "Currency(EUR)".to_string()));
    let plan = |id: &str, name: &str, model| PricingPlan { id: id.into(), name: name.into(), model };
    assert_eq!(
        m.pricing,
        [
            plan("free", "Free", PricingModel::Free),
            plan(
                "team",
                "Team",
                PricingModel::Subscription {
                    amount_minor: 900,
                    currency: usd,
                    interval: Interval::Month,
                    trial_days: 0
                }
            ),
            plan(
                "per-message",
                "Pay as you go",
                PricingModel::Usage {
                    meter: "messages-sent".into(),
                    unit_amount_minor: 2,
                    currency: eur,
                    included_units: 1000,
                    cap_minor: None,
                }
            ),
        ]
    );
    assert_eq!(m.requested_hosts(), [host("hooks.slack.com"), host("*.webhook.office.com:443")]);
    assert_eq!(
        m.capability_set(),
        BTreeSet::from([Capability::Log, Capability::Secrets, Capability::Http, Capability::Usage])
    );
}

#[test]
fn minimal_manifest_uses_defaults() {
    let text = r#"
        id = "a/b"
        version = "0.1.0-alpha.1"
        summary = "S"
        categories = ["tax"]
        license = "MIT OR Apache-2.0"
        contract = "1.1"
        event-types = ["*"]
        [[pricing]]
        id = "p"
        name = "Metered"
        model = "per-unit"
        meter = "calls"
        unit-amount-minor = 1
        currency = "JPY"
    "#;
    let m = Manifest::from_toml(text).unwrap();
    assert_eq!(m.version, Version::parse("0.1.0-alpha.1").unwrap());
    assert_eq!((&m.description, &m.homepage, &m.repository), (&None, &None, &None));
    assert_eq!(m.contract, ContractVersion::V1_1);
    assert_eq!(m.capabilities, BTreeMap::new());
    assert_eq!(m.requested_hosts(), []);
    let PricingModel::Usage { included_units, .. } = &m.pricing[0].model else { panic!("{:?}", m.pricing[0]) };
    assert_eq!(*included_units, 0);
}

#[test]
fn json_form_has_the_toml_shape_and_round_trips() {
    let m = valid();
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["event-types"], serde_json::json!(["invoice.paid", "user.signup"]));
    assert_eq!(json["contract"], "1.0");
    assert_eq!(json["version"], "1.2.0");
    assert_eq!(
        json["capabilities"]["http"]["hosts"][1],
        serde_json::json!({"host": "*.webhook.office.com:443", "reason": "Microsoft Teams webhooks"})
    );
    assert_eq!(json["capabilities"]["log"], serde_json::json!({"reason": "Records what was sent"}));
    assert_eq!(
        json["pricing"][1],
        serde_json::json!({"id": "team", "name": "Team", "model": "subscription", "amount-minor": 900, "currency": "USD", "interval": "month"})
    );
    assert_eq!(json["pricing"][0], serde_json::json!({"id": "free", "name": "Free", "model": "free"}));
    let back: Manifest = serde_json::from_value(json).unwrap();
    assert_eq!(back, m);
}

#[test]
fn validate_checks_manifests_read_from_json() {
    let mut m = valid();
    m.pricing.clear();
    assert_eq!(m.validate(), Err(invalid_err("pricing", "must list at least one plan")));

    let mut m = valid();
    m.capabilities.insert(
        Capability::Kv,
        CapabilityRequest {
            reason: "State".into(),
            hosts: vec![HostRequest { host: host("x.com"), reason: "r".into() }],
        },
    );
    assert_eq!(m.validate(), Err(invalid_err("capabilities.kv.hosts", "is only allowed for http")));

    let mut json = serde_json::to_value(valid()).unwrap();
    json["pricing"][1]["currency"] = "usd".into();
    let err = serde_json::from_value::<Manifest>(json).unwrap_err().to_string();
    assert_eq!(err, "unknown currency `usd`: expected an ISO 4217 code with minor units, such as EUR, JPY or KWD");
}

#[test]
fn syntax_errors_say_where() {
    let cases = [
        (
            ("id = \"acme/chat-notifier\"", "id = \"acme/chat-notifier"),
            "line 2, column 25: invalid basic string, expected `\"`",
        ),
        (
            ("license = \"Apache-2.0\"", "license = \"Apache-2.0\"\ncolour = \"red\""),
            "line 11, column 1: unknown field `colour`, expected one of `id`, `version`, `summary`, `description`, \
             `categories`, `license`, `homepage`, `repository`, `contract`, `event-types`, `ordered-delivery`, `schedules`, `capabilities`, `settings`, `pricing`, `changelog`, `links`, `media`",
        ),
        (
            ("reason = \"Records what was sent\"", "reasn = \"Records what was sent\""),
            "line 17, column 1: unknown field `reasn`, expected `reason` or `hosts`",
        ),
        (("version = \"1.2.0\"", "version = 1"), "line 3, column 11: invalid type: integer `1`, expected a string"),
        (
            ("categories = [\"messaging\", \"notifications\"]", "categories = \"messaging\""),
            "line 9, column 14: invalid type: string \"messaging\", expected a sequence",
        ),
    ];
    for ((from, to), expected) in cases {
        let err = edited(from, to).unwrap_err();
        assert_eq!(
            (err.code().as_str(), err.to_string()),
            ("manifest_syntax", format!("manifest syntax error: {expected}"))
        );
    }
}

#[test]
fn missing_fields_are_named() {
    for (line, field) in [
        ("id = \"acme/chat-notifier\"\n", "id"),
        ("version = \"1.2.0\"\n", "version"),
        ("summary = \"Post marketplace events to your team chat\"\n", "summary"),
        ("categories = [\"messaging\", \"notifications\"]\n", "categories"),
        ("license = \"Apache-2.0\"\n", "license"),
        ("contract = \"1.0\"\n", "contract"),
        ("event-types = [\"invoice.paid\", \"user.signup\"]\n", "event-types"),
    ] {
        let err = edited(line, "").unwrap_err();
        assert_eq!(err, ManifestError::Missing { field });
        assert_eq!(err.code(), "manifest_missing_field");
        assert_eq!(err.to_string(), format!("manifest is missing the required field {field}"));
    }
    let without_pricing = &VALID[..VALID.find("[[pricing]]").unwrap()];
    let err = Manifest::from_toml(without_pricing).unwrap_err();
    assert_eq!(err.to_string(), "manifest is missing the required field pricing");
}

/// (edit from, edit to, field, problem)
const REJECTIONS: &[(&str, &str, &str, &str)] = &[
    // Identity
    (
        r#""acme/chat-notifier""#,
        r#""Acme/chat-notifier""#,
        "id",
        r#"publisher "Acme" must be lowercase letters, digits and '-'"#,
    ),
    (r#""acme/chat-notifier""#, r#""chat-notifier""#, "id", r#""chat-notifier" must be "publisher/name""#),
    (
        r#""1.2.0""#,
        r#""1.2""#,
        "version",
        r#""1.2" is not a semver version: unexpected end of input while parsing minor version number"#,
    ),
    // Listing text
    ("summary = \"Post marketplace events to your team chat\"", "summary = \"  \"", "summary", "must not be empty"),
    (
        "summary = \"Post marketplace events to your team chat\"",
        "summary = \"one\\ntwo\"",
        "summary",
        "must be a single line",
    ),
    ("[\"messaging\", \"notifications\"]", "[]", "categories", "must list 1 to 5 categories, got 0"),
    (
        "[\"messaging\", \"notifications\"]",
        "[\"tax\", \"crm\", \"billing\", \"finance\", \"support\", \"security\"]",
        "categories",
        "must list 1 to 5 categories, got 6",
    ),
    (
        "[\"messaging\", \"notifications\"]",
        "[\"messaging\", \"games\"]",
        "categories[1]",
        "\"games\" is not a category (expected one of analytics, billing, compliance, crm, developer-tools, \
         finance, marketing, messaging, notifications, productivity, security, support, tax)",
    ),
    (
        "[\"messaging\", \"notifications\"]",
        "[\"messaging\", \"messaging\"]",
        "categories[1]",
        "\"messaging\" is listed twice",
    ),
    (
        "\"Apache-2.0\"",
        "\"MIT/X11\"",
        "license",
        "\"MIT/X11\" must be an SPDX license expression: 1 to 64 letters, digits, spaces and . + - ( )",
    ),
    ("\"https://example.com\"", "\"ftp://example.com\"", "homepage", "\"ftp://example.com\" must be an http(s) URL"),
    (
        "\"https://github.com/acme/chat-notifier\"",
        "\"github.com/acme\"",
        "repository",
        "\"github.com/acme\" must be an http(s) URL",
    ),
    ("contract = \"1.0\"", "contract = \"2.0\"", "contract", "unknown variant `2.0`, expected `1.0` or `1.1`"),
    // Event types
    ("[\"invoice.paid\", \"user.signup\"]", "[]", "event-types", "must list 1 to 64 event types, got 0"),
    (
        "[\"invoice.paid\", \"user.signup\"]",
        "[\"invoice.paid\", \"Invoice.Paid\"]",
        "event-types[1]",
        "\"Invoice.Paid\" must be \"*\" or dot-separated segments of lowercase letters, digits, '_' and '-'",
    ),
    (
        "[\"invoice.paid\", \"user.signup\"]",
        "[\"invoice..paid\"]",
        "event-types[0]",
        "\"invoice..paid\" must be \"*\" or dot-separated segments of lowercase letters, digits, '_' and '-'",
    ),
    (
        "[\"invoice.paid\", \"user.signup\"]",
        "[\"user.signup\", \"user.signup\"]",
        "event-types[1]",
        "\"user.signup\" is listed twice",
    ),
    // Capabilities
    (
        "[capabilities.secrets]",
        "[capabilities.email]",
        "capabilities.email",
        "unknown capability `email` (expected one of log, config, secrets, kv, http, usage)",
    ),
    ("reason = \"Records what was sent\"", "", "capabilities.log", "is missing the required key reason"),
    ("reason = \"Records what was sent\"", "reason = \"\"", "capabilities.log.reason", "must not be empty"),
    (
        "reason = \"Stores the webhook URL\"",
        "reason = \"x\"\nhosts = []",
        "capabilities.secrets.hosts",
        "is only allowed for http",
    ),
    (
        "{ host = \"hooks.slack.com\", reason = \"Slack incoming webhooks\" }",
        "{ host = \"hooks slack.com\", reason = \"Slack incoming webhooks\" }",
        "capabilities.http.hosts[0].host",
        "invalid allowed host `hooks slack.com`: expected a host name, host:port or *.domain",
    ),
    (
        "{ host = \"hooks.slack.com\", reason = \"Slack incoming webhooks\" }",
        "{ host = \"hooks.slack.com\" }",
        "capabilities.http.hosts[0]",
        "is missing the required key reason",
    ),
    (
        "{ host = \"*.webhook.office.com:443\", reason = \"Microsoft Teams webhooks\" }",
        "{ host = \"hooks.slack.com\", reason = \"again\" }",
        "capabilities.http.hosts[1].host",
        "\"hooks.slack.com\" is listed twice",
    ),
    // Pricing
    ("id = \"free\"", "id = \"Free\"", "pricing[0].id", "\"Free\" must be 1 to 32 of a-z, 0-9 and '-'"),
    ("id = \"team\"", "id = \"free\"", "pricing[1].id", "\"free\" is already used by pricing[0]"),
    ("name = \"Free\"\n", "", "pricing[0]", "is missing the required key name"),
    ("name = \"Team\"", "name = \"\"", "pricing[1].name", "must not be empty"),
    (
        "model = \"free\"",
        "model = \"tiered\"",
        "pricing[0].model",
        "\"tiered\" must be one of free, subscription, usage, one-time",
    ),
    (
        "model = \"free\"",
        "model = \"free\"\ncurrency = \"USD\"",
        "pricing[0].currency",
        "is not allowed for model \"free\"",
    ),
    ("interval = \"month\"\n", "", "pricing[1]", "model \"subscription\" requires interval"),
    ("interval = \"month\"", "interval = \"week\"", "pricing[1].interval", "\"week\" must be \"month\" or \"year\""),
    (
        "currency = \"USD\"",
        "currency = \"usd\"",
        "pricing[1].currency",
        "unknown currency `usd`: expected an ISO 4217 code with minor units, such as EUR, JPY or KWD",
    ),
    (
        "currency = \"EUR\"",
        "currency = \"EURO\"",
        "pricing[2].currency",
        "unknown currency `EURO`: expected an ISO 4217 code with minor units, such as EUR, JPY or KWD",
    ),
    (
        "amount-minor = 900",
        "amount-minor = 9.00",
        "pricing[1].amount-minor",
        "must be a whole number of minor units (write 999 for 9.99), got 9.0",
    ),
    ("amount-minor = 900", "amount-minor = \"900\"", "pricing[1].amount-minor", "must be an integer, got a string"),
    ("amount-minor = 900", "amount-minor = 0", "pricing[1].amount-minor", "must be greater than 0, got 0"),
    (
        "unit-amount-minor = 2",
        "unit-amount-minor = -2",
        "pricing[2].unit-amount-minor",
        "must be greater than 0, got -2",
    ),
    (
        "unit-amount-minor = 2",
        "unit-amount-minor = 0.02",
        "pricing[2].unit-amount-minor",
        "must be a whole number of minor units (write 999 for 9.99), got 0.02",
    ),
    (
        "meter = \"messages-sent\"",
        "meter = \"Messages\"",
        "pricing[2].meter",
        "\"Messages\" must be 1 to 64 of a-z, 0-9 and '-', not starting with '-'",
    ),
    ("meter = \"messages-sent\"\n", "", "pricing[2]", "model \"usage\" requires meter"),
    ("included-units = 1000", "included-units = -1", "pricing[2].included-units", "must be 0 or more, got -1"),
    ("included-units = 1000", "included-units = 1.5", "pricing[2].included-units", "must be a whole number, got 1.5"),
    ("included-units = 1000", "interval = \"month\"", "pricing[2].interval", "is not allowed for model \"usage\""),
];

#[test]
fn each_rule_rejects_with_a_named_field() {
    for &(from, to, field, problem) in REJECTIONS {
        let err = edited(from, to).unwrap_err();
        assert_eq!(err, invalid_err(field, problem), "{from:?} -> {to:?}");
        assert_eq!(err.code(), "manifest_invalid_field");
        assert_eq!(err.to_string(), format!("manifest field {field} is invalid: {problem}"));
    }
}

#[test]
fn http_needs_hosts() {
    let without_hosts = VALID.replacen(
        "hosts = [\n  { host = \"hooks.slack.com\", reason = \"Slack incoming webhooks\" },\n  \
         { host = \"*.webhook.office.com:443\", reason = \"Microsoft Teams webhooks\" },\n]\n",
        "",
        1,
    );
    assert_ne!(without_hosts, VALID);
    let err = Manifest::from_toml(&without_hosts).unwrap_err();
    assert_eq!(err, invalid_err("capabilities.http", "is missing the required key hosts"));
    let empty_hosts =
        without_hosts.replacen("reason = \"Posts to your chat webhook\"", "reason = \"x\"\nhosts = []", 1);
    let err = Manifest::from_toml(&empty_hosts).unwrap_err();
    assert_eq!(err, invalid_err("capabilities.http.hosts", "must list at least one host"));
}

#[test]
fn length_limits_are_exact() {
    let at = |n: usize| "x".repeat(n);
    let summary = |s: &str| edited("Post marketplace events to your team chat", s);
    assert_eq!(summary(&at(140)).unwrap().summary.len(), 140);
    assert_eq!(summary(&at(141)).unwrap_err(), invalid_err("summary", "must be at most 140 characters, got 141"));
    // Characters, not bytes: 140 two-byte characters fit.
    assert_eq!(summary(&"é".repeat(140)).unwrap().summary.chars().count(), 140);

    let description = |n: usize| edited("description = \"\"\"", &format!("description = \"{}\"\nx = \"\"\"", at(n)));
    assert!(matches!(description(0), Err(ManifestError::Syntax(_))));
    let mut m = valid();
    m.description = Some(at(20_000));
    assert_eq!(m.validate(), Ok(()));
    m.description = Some(at(20_001));
    assert_eq!(m.validate(), Err(invalid_err("description", "must be at most 20000 characters, got 20001")));

    let reason = |s: &str| edited("\"Records what was sent\"", &format!("{s:?}"));
    assert_eq!(reason(&at(280)).unwrap().capabilities[&Capability::Log].reason.len(), 280);
    assert_eq!(
        reason(&at(281)).unwrap_err(),
        invalid_err("capabilities.log.reason", "must be at most 280 characters, got 281")
    );

    let event = |s: &str| edited("\"user.signup\"", &format!("{s:?}"));
    assert_eq!(event(&at(64)).unwrap().event_types[1], at(64));
    assert_eq!(event(&at(65)).unwrap_err(), invalid_err("event-types[1]", "must be at most 64 characters, got 65"));
    let many: Vec<String> = (0..65).map(|i| format!("e{i}")).collect();
    let err = edited("[\"invoice.paid\", \"user.signup\"]", &format!("{many:?}")).unwrap_err();
    assert_eq!(err, invalid_err("event-types", "must list 1 to 64 event types, got 65"));

    let plan_id = |s: &str| edited("id = \"free\"", &format!("id = {s:?}"));
    assert_eq!(plan_id(&at(32)).unwrap().pricing[0].id, at(32));
    assert_eq!(
        plan_id(&at(33)).unwrap_err(),
        invalid_err("pricing[0].id", &format!("{:?} must be 1 to 32 of a-z, 0-9 and '-'", at(33)))
    );
    let plan_name = |s: &str| edited("name = \"Free\"", &format!("name = {s:?}"));
    assert_eq!(plan_name(&at(64)).unwrap().pricing[0].name, at(64));
    assert_eq!(
        plan_name(&at(65)).unwrap_err(),
        invalid_err("pricing[0].name", "must be at most 64 characters, got 65")
    );

    let license = |s: &str| edited("\"Apache-2.0\"", &format!("{s:?}"));
    assert_eq!(
        license("(MIT OR Apache-2.0) AND BSD-3-Clause").unwrap().license,
        "(MIT OR Apache-2.0) AND BSD-3-Clause"
    );
    assert_eq!(license(&at(64)).unwrap().license, at(64));
    assert!(license(&at(65)).is_err_and(|e| e.code() == "manifest_invalid_field"));
}

mod never_panics {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    /// Applies byte flips and line deletions to the valid example.
    fn mutate(flips: &[(Index, u8)], deletions: &[Index]) -> String {
        let mut bytes = VALID.as_bytes().to_vec();
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at.index(len)] ^= value;
        }
        let text = String::from_utf8_lossy(&bytes);
        let mut lines: Vec<&str> = text.lines().collect();
        for at in deletions {
            if !lines.is_empty() {
                lines.remove(at.index(lines.len()));
            }
        }
        lines.join("\n")
    }

    /// Whatever parses is valid and survives the JSON storage round trip unchanged.
    fn check(text: &str) -> Result<(), TestCaseError> {
        if let Ok(manifest) = Manifest::from_toml(text) {
            prop_assert_eq!(manifest.validate(), Ok(()));
            let json = serde_json::to_string(&manifest).unwrap();
            prop_assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), manifest);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn arbitrary_text(text in any::<String>()) {
            check(&text)?;
        }

        #[test]
        fn mutated_valid_manifests(
            flips in proptest::collection::vec((any::<Index>(), 1..=255u8), 0..6),
            deletions in proptest::collection::vec(any::<Index>(), 0..4),
        ) {
            check(&mutate(&flips, &deletions))?;
        }
    }
}

#[test]
fn trials_caps_and_one_time_prices_are_read_and_checked() {
    let pricing = r#"
[[pricing]]
id = "team"
name = "Team"
model = "flat"
amount-minor = 2900
currency = "USD"
interval = "month"
trial-days = 14

[[pricing]]
id = "metered"
name = "Metered"
model = "per-unit"
meter = "messages-sent"
unit-amount-minor = 2
currency = "EUR"
cap-minor = 5000

[[pricing]]
id = "lifetime"
name = "Lifetime"
model = "one-time"
amount-minor = 4900
currency = "JPY"
"#;
    let text = format!("{}{pricing}", &VALID[..VALID.find("[[pricing]]").unwrap()]);
    let m = Manifest::from_toml(&text).unwrap();
    let currency = |code: &str| code.parse::<Currency>().unwrap();
    assert_eq!(
        m.pricing.iter().map(|p| p.model.clone()).collect::<Vec<_>>(),
        [
            PricingModel::Subscription {
                amount_minor: 2900,
                currency: currency("USD"),
                interval: Interval::Month,
                trial_days: 14
            },
            PricingModel::Usage {
                meter: "messages-sent".into(),
                unit_amount_minor: 2,
                currency: currency("EUR"),
                included_units: 0,
                cap_minor: Some(5000),
            },
            PricingModel::OneTime { amount_minor: 4900, currency: currency("JPY") },
        ]
    );
    let refused = [
        ("trial-days = 14", "trial-days = 400", "pricing[0].trial-days", "must be at most 365, got 400"),
        ("trial-days = 14", "trial-days = -1", "pricing[0].trial-days", "must be 0 or more, got -1"),
        ("cap-minor = 5000", "cap-minor = 0", "pricing[1].cap-minor", "must be greater than 0, got 0"),
        (
            "cap-minor = 5000",
            "cap-minor = 50.5",
            "pricing[1].cap-minor",
            "must be a whole number of minor units (write 999 for 9.99), got 50.5",
        ),
        (
            "currency = \"JPY\"",
            "currency = \"XTS\"",
            "pricing[2].currency",
            "unknown currency `XTS`: expected an ISO 4217 code with minor units, such as EUR, JPY or KWD",
        ),
        (
            "currency = \"JPY\"",
            "currency = \"JPY\"\ninterval = \"month\"",
            "pricing[2].interval",
            "is not allowed for model \"one-time\"",
        ),
    ];
    for (from, to, field, problem) in refused {
        let edited = text.replacen(from, to, 1);
        assert_eq!(Manifest::from_toml(&edited).map(drop), Err(invalid_err(field, problem)), "{to}");
    }
}

#[test]
fn ordered_delivery_is_off_unless_set_to_true() {
    assert!(!valid().ordered_delivery);
    let ordered = edited("event-types = ", "ordered-delivery = true\nevent-types = ").unwrap();
    assert!(ordered.ordered_delivery);
    let json = serde_json::to_value(&ordered).unwrap();
    assert_eq!(json["ordered-delivery"], true);
    assert_eq!(serde_json::from_value::<Manifest>(json).unwrap(), ordered);
    assert!(serde_json::to_value(valid()).unwrap().get("ordered-delivery").is_none());
    assert_eq!(
        edited("event-types = ", "ordered-delivery = \"yes\"\nevent-types = ").map(drop),
        Err(invalid_err("ordered-delivery", "must be true or false, not a string"))
    );
}

#[test]
fn schedules_are_checked_field_by_field() {
    let with = |schedules: &str| {
        edited(
            "event-types = [\"invoice.paid\", \"user.signup\"]",
            &format!("event-types = [\"schedule.tick\"]\n{schedules}"),
        )
    };
    let nightly = with("[[schedules]]\nid = \"nightly\"\ncron = \"0  3 * * *\"\n[[schedules]]\nid = \"catch\"\ncron = \"*/5 * * * *\"\nmissed = \"catch-up\"").unwrap();
    assert_eq!(
        nightly.schedules,
        [
            Schedule { id: "nightly".into(), cron: "0 3 * * *".into(), missed: Missed::Skip },
            Schedule { id: "catch".into(), cron: "*/5 * * * *".into(), missed: Missed::CatchUp },
        ]
    );
    let refused = [
        (
            "[[schedules]]\nid = \"a\"\ncron = \"* * * * * *\"",
            "schedules[0].cron",
            "has a seconds field; schedules fire at most once a minute: use 5 fields",
        ),
        (
            "[[schedules]]\nid = \"A b\"\ncron = \"* * * * *\"",
            "schedules[0].id",
            "\"A b\" must be 1 to 32 of a-z, 0-9 and -",
        ),
        (
            "[[schedules]]\nid = \"a\"\ncron = \"* * * * *\"\nmissed = \"all\"",
            "schedules[0].missed",
            "\"all\" must be \"skip\" or \"catch-up\"",
        ),
        (
            "[[schedules]]\nid = \"a\"\ncron = \"* * * * *\"\n[[schedules]]\nid = \"a\"\ncron = \"0 * * * *\"",
            "schedules[1].id",
            "\"a\" is used by another schedule",
        ),
        ("[[schedules]]\nid = \"a\"", "schedules[0]", "is missing the required key cron"),
    ];
    for (schedules, field, problem) in refused {
        assert_eq!(with(schedules).map(drop), Err(invalid_err(field, problem)), "{schedules}");
    }
    let untyped = edited("[capabilities.log]", "[[schedules]]\nid = \"a\"\ncron = \"* * * * *\"\n\n[capabilities.log]");
    assert_eq!(
        untyped.map(drop),
        Err(invalid_err("event-types", "must include schedule.tick for the plugin's schedules"))
    );
}

#[test]
fn declared_settings_are_read_and_checked() {
    let with =
        |settings: &str| edited("[[pricing]]\nid = \"free\"", &format!("{settings}\n[[pricing]]\nid = \"free\""));
    let secret = "[[settings]]\nname = \"webhook-url\"\ndescription = \"The incoming webhook's URL\"\nsecret = true\nrequired = true\n";
    let m = with(secret).unwrap();
    assert_eq!(
        m.settings,
        [Setting {
            name: "webhook-url".into(),
            description: "The incoming webhook's URL".into(),
            secret: true,
            required: true
        }]
    );
    assert!(valid().settings.is_empty(), "none declared: none asked for");
    // A plain setting needs the config capability, which the example does not request.
    let channel = "[[settings]]\nname = \"channel\"\ndescription = \"Where to post\"\n";
    assert_eq!(
        with(channel).unwrap_err(),
        invalid_err("settings[0]", "\"channel\" is a setting, so the plugin must request the `config` capability")
    );
    let twice = format!("{secret}{secret}");
    assert_eq!(with(&twice).unwrap_err(), invalid_err("settings[1].name", "\"webhook-url\" is declared twice"));
    let bad_name = secret.replace("webhook-url", "Webhook URL");
    assert!(
        matches!(with(&bad_name).unwrap_err(), ManifestError::Invalid { field, .. } if field == "settings[0].name")
    );
    let no_description = "[[settings]]\nname = \"token\"\nsecret = true\n";
    assert_eq!(
        with(no_description).unwrap_err(),
        invalid_err("settings[0]", "is missing the required key description")
    );
    let not_a_flag = secret.replace("required = true", "required = \"yes\"");
    assert_eq!(
        with(&not_a_flag).unwrap_err(),
        invalid_err("settings[0].required", "must be true or false, not a string")
    );
}

#[test]
fn listing_links_media_and_changelog_are_read_and_checked() {
    let with = |extra: &str| edited("[[pricing]]\nid = \"free\"", &format!("{extra}\n[[pricing]]\nid = \"free\""));
    let m = with(
        "[links]\ndocumentation = \"https://docs.example.com\"\nsupport = \"mailto:help@example.com\"\n\
         [media]\nicon = \"media/icon.png\"\nscreenshots = [\"media/one.jpg\", \"shots/two.webp\"]\n",
    )
    .unwrap();
    let top = |line: &str| edited("contract = \"1.0\"", &format!("contract = \"1.0\"\n{line}"));
    assert_eq!(
        top("changelog = \"Adds **Teams** support.\"").unwrap().changelog.as_deref(),
        Some("Adds **Teams** support.")
    );
    assert_eq!(m.links.documentation.as_deref(), Some("https://docs.example.com"));
    assert_eq!(m.links.support.as_deref(), Some("mailto:help@example.com"));
    assert_eq!(m.media.icon.as_deref(), Some("media/icon.png"));
    assert_eq!(m.media.screenshots, ["media/one.jpg", "shots/two.webp"]);
    // The JSON form round-trips, and a manifest without them stores none of the keys.
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
    let plain = serde_json::to_value(valid()).unwrap();
    assert!(plain.get("links").is_none() && plain.get("media").is_none() && plain.get("changelog").is_none());

    let err = |extra: &str| with(extra).unwrap_err();
    assert_eq!(
        err("[links]\nsupport = \"mailto:nobody\"\n"),
        invalid_err("links.support", "\"mailto:nobody\" is not a mailto: address")
    );
    assert_eq!(
        err("[links]\nterms = \"javascript:alert(1)\"\n"),
        invalid_err("links.terms", "\"javascript:alert(1)\" must be an http(s) URL")
    );
    assert_eq!(
        err("[media]\nicon = \"../secret.png\"\n"),
        invalid_err("media.icon", "\"../secret.png\" must be a path inside the project folder, such as media/icon.png")
    );
    assert_eq!(
        err("[media]\nicon = \"logo.svg\"\n"),
        invalid_err("media.icon", "\"logo.svg\" must be a .png, .jpg, .jpeg or .webp image")
    );
    let nine = (0..9).map(|i| format!("\"s{i}.png\"")).collect::<Vec<_>>().join(", ");
    assert_eq!(
        err(&format!("[media]\nscreenshots = [{nine}]\n")),
        invalid_err("media.screenshots", "at most 8 screenshots, got 9")
    );
    assert!(matches!(err("[links]\nblog = \"https://x.io\"\n"), ManifestError::Syntax(_)));
    let long = "x".repeat(4_001);
    assert_eq!(
        top(&format!("changelog = \"{long}\"")).unwrap_err(),
        invalid_err("changelog", "must be at most 4000 characters, got 4001")
    );
}

/// The vocabulary the CLI, API and console use: `subscription`/`usage` and decimal amounts in
/// the plan's currency read exactly as the older `flat`/`per-unit` and minor units, which are
/// still accepted with one deprecation warning per use.
#[test]
fn plans_read_the_same_in_decimals_and_in_the_older_minor_units() {
    let head = &VALID[..VALID.find("[[pricing]]").unwrap()];
    let new = r#"
[[pricing]]
id = "team"
name = "Team"
model = "subscription"
price = "29.00"
currency = "USD"
interval = "month"

[[pricing]]
id = "metered"
name = "Metered"
model = "usage"
meter = "messages-sent"
unit-price = "0.125"
currency = "KWD"
cap = "50"

[[pricing]]
id = "lifetime"
name = "Lifetime"
model = "one-time"
price = "4900"
currency = "JPY"
"#;
    let old = r#"
[[pricing]]
id = "team"
name = "Team"
model = "flat"
amount-minor = 2900
currency = "USD"
interval = "month"

[[pricing]]
id = "metered"
name = "Metered"
model = "per-unit"
meter = "messages-sent"
unit-amount-minor = 125
currency = "KWD"
cap-minor = 50000

[[pricing]]
id = "lifetime"
name = "Lifetime"
model = "one-time"
amount-minor = 4900
currency = "JPY"
"#;
    let (new_text, old_text) = (format!("{head}{new}"), format!("{head}{old}"));
    let (from_new, from_old) = (Manifest::from_toml(&new_text).unwrap(), Manifest::from_toml(&old_text).unwrap());
    assert_eq!(from_new, from_old);
    assert_eq!(
        from_new.pricing[1].model,
        PricingModel::Usage {
            meter: "messages-sent".into(),
            unit_amount_minor: 125,
            currency: Currency::from_code("KWD").unwrap(),
            included_units: 0,
            cap_minor: Some(50_000),
        }
    );
    assert_eq!(Manifest::deprecations(&new_text), Vec::<String>::new());
    assert_eq!(
        Manifest::deprecations(&old_text),
        [
            "pricing[0].model \"flat\" is deprecated: write model = \"subscription\" (the name the CLI, API and console use)",
            "pricing[0].amount-minor is deprecated: write price = \"29.00\" (a decimal in the plan's currency)",
            "pricing[1].model \"per-unit\" is deprecated: write model = \"usage\" (the name the CLI, API and console use)",
            "pricing[1].unit-amount-minor is deprecated: write unit-price = \"0.125\" (a decimal in the plan's currency)",
            "pricing[1].cap-minor is deprecated: write cap = \"50.000\" (a decimal in the plan's currency)",
            "pricing[2].amount-minor is deprecated: write price = \"4900\" (a decimal in the plan's currency)",
        ]
    );
    // The JSON form names the model as the API does, and a stored older one still reads.
    let json = serde_json::to_value(&from_old).unwrap();
    assert_eq!(json["pricing"][0]["model"], "subscription");
    assert_eq!(json["pricing"][1]["model"], "usage");
    let mut stored = json.clone();
    stored["pricing"][0]["model"] = "flat".into();
    stored["pricing"][1]["model"] = "per-unit".into();
    assert_eq!(serde_json::from_value::<Manifest>(stored).unwrap(), from_old);

    let refused =
        |from: &str, to: &str| Manifest::from_toml(&format!("{head}{}", new.replacen(from, to, 1))).unwrap_err();
    for (from, to, field, problem) in [
        (
            "price = \"29.00\"",
            "price = 29",
            "pricing[0].price",
            "must be a decimal string in USD, such as \"9.99\"; got 29",
        ),
        (
            "price = \"29.00\"",
            "price = 29.5",
            "pricing[0].price",
            "must be a decimal string in USD, such as \"9.99\"; got 29.5",
        ),
        (
            "price = \"29.00\"",
            "price = \"29.001\"",
            "pricing[0].price",
            "invalid amount `29.001`: more decimals than the currency has minor units; write it like \"9.99\"",
        ),
        ("price = \"29.00\"", "price = \"0\"", "pricing[0].price", "must be greater than 0, got \"0\""),
        (
            "price = \"29.00\"",
            "price = \"29.00\"\namount-minor = 2900",
            "pricing[0].amount-minor",
            "give price or amount-minor, not both (write price = \"9.00\")",
        ),
        (
            "price = \"4900\"",
            "price = \"49.5\"",
            "pricing[2].price",
            "invalid amount `49.5`: more decimals than the currency has minor units; write it like \"1200\"",
        ),
        ("unit-price = \"0.125\"\n", "", "pricing[1]", "model \"usage\" requires unit-price"),
        ("cap = \"50\"", "price = \"50\"", "pricing[1].price", "is not allowed for model \"usage\""),
    ] {
        assert_eq!(refused(from, to), invalid_err(field, problem), "{from:?} -> {to:?}");
    }
}
