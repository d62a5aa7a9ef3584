//! The demo's people, who sign in with a password, and its partner tiers.

use crate::accounts::Caller;
use crate::market::Market;
use crate::people::Role;

/// A person to seed: address, name, password (anyone reading the demo's output may use
/// it), the organization (kind, id) and the role there.
type DemoPersonSeed = (&'static str, &'static str, &'static str, (&'static str, &'static str), Role);

const DEMO_PEOPLE: [DemoPersonSeed; 6] = [
    ("grace@nexus.example", "Grace Operator", "nexus-demo-password", ("operator", "marketplace"), Role::Owner),
    ("lin@nexus-labs.example", "Lin Labs", "nexus-demo-password", ("publisher", "nexus-labs"), Role::Owner),
    ("sam@nexus-labs.example", "Sam Finance", "nexus-demo-password", ("publisher", "nexus-labs"), Role::Finance),
    ("ada@globex.example", "Ada Globex", "globex-demo-password", ("tenant", "globex"), Role::Owner),
    ("bo@globex.example", "Bo Globex", "nexus-demo-password", ("tenant", "globex"), Role::Admin),
    ("kim@initech.example", "Kim Initech", "nexus-demo-password", ("tenant", "initech"), Role::Owner),
];

/// The people seeded, as the welcome prints them: address, password, what they are.
pub(super) struct DemoPerson {
    pub(super) email: &'static str,
    pub(super) password: &'static str,
    pub(super) about: String,
}

/// People who sign in with a password: an operator (with two-step sign-in, its key
/// printed), nexus-labs' owner and a finance member, globex's owner and an admin, and
/// initech's owner, whose partner application waits in the operators' queue.
pub(super) async fn seed_people(market: &Market) -> anyhow::Result<Vec<DemoPerson>> {
    let mut people = Vec::new();
    for (email, name, password, org, role) in DEMO_PEOPLE {
        let person = crate::people::add_confirmed_member(market, email, name, password, org, role).await?;
        let mut about = format!("{} of {}", role.as_str(), crate::people::login::org_name(org.0, org.1));
        if org.0 == "operator" {
            let key = crate::people::second_factor::set_up_for_demo(market, &person).await?;
            about = format!("operator; two-step key {key}");
        }
        if org.1 == "initech" {
            let application = crate::partner_program::Application {
                company: "Initech Labs".into(),
                namespace: "initech-labs".into(),
                website: "https://initech.example".into(),
                support_email: "help@initech.example".into(),
                agreement_version: crate::partner_program::AGREEMENT_VERSION.into(),
            };
            crate::partner_program::apply(market, &person, application).await?;
            about.push_str("; partner application pending");
        }
        people.push(DemoPerson { email, password, about });
    }
    Ok(people)
}

/// Three partner tiers: Registered (everyone), Select (50.00 EUR or 50.00 USD collected over
/// twelve months, with 10% above the first 1,000), Premier (by hand); today's run places the
/// partners.
pub(super) async fn seed_partner_tiers(market: &Market, operator: &Caller) -> anyhow::Result<()> {
    use crate::billing::share::TierSpec;
    use crate::partner_tiers::{self, TierRequest};
    let tier = |name: &str, rank, automatic, thresholds: &[(&str, i64)], share_tiers| TierRequest {
        name: name.to_string(),
        rank,
        automatic,
        thresholds: thresholds.iter().map(|(code, minor)| (code.to_string(), *minor)).collect(),
        share_tiers,
        badge: None,
    };
    let select = vec![TierSpec { up_to: Some(1000), rate_bp: 0 }, TierSpec { up_to: None, rate_bp: 1000 }];
    partner_tiers::put(market, operator, "registered", tier("Registered", 1, true, &[], None)).await?;
    let thresholds = [("EUR", 5000), ("USD", 5000)];
    partner_tiers::put(market, operator, "select", tier("Select", 2, true, &thresholds, Some(select))).await?;
    partner_tiers::put(market, operator, "premier", tier("Premier", 3, false, &[], None)).await?;
    for change in partner_tiers::run_if_due(market).await?.unwrap_or_default() {
        println!("  partner tier: {} is {}", change.publisher, change.to);
    }
    Ok(())
}
