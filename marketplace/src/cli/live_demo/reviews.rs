//! What the demo's tenants say after their month of use: reviews, a publisher's reply, a
//! helpful mark, and nexus-labs' publisher profile.

use super::Seeded;
use crate::accounts::Caller;
use crate::market::Market;
use crate::reviews::{self, ReviewInput};

/// The reviews: which of the seeded tenants (by index) writes it, about which plugin (it
/// runs it), the rating, title and body.
const REVIEWS: [(usize, &str, i64, &str, &str); 5] = [
    (
        0,
        "nexus-labs/echo",
        5,
        "Our first stop for testing an integration",
        "We point every new event source at echo first: what it answers is exactly what our plugins will get.",
    ),
    (
        0,
        "nexus-labs/tax-calculator",
        4,
        "Exact to the cent, wish it knew Canada",
        "Totals per region match our accountant's to the cent. Canadian provinces would make it five stars.",
    ),
    (
        0,
        "nexus-labs/pii-redactor",
        5,
        "Keeps phone numbers out of our ticket tool",
        "Set up in a minute; support tickets reach our tools with [phone] and [email] instead of the real thing.",
    ),
    (
        1,
        "nexus-labs/tax-calculator",
        5,
        "Set up in five minutes",
        "Rates in, totals out. The half-up rounding option matched our old system.",
    ),
    (
        1,
        "acme-tools/webhook-relay",
        3,
        "Does what it says, docs are thin",
        "Relays everything as promised; we had to read the source to find the prefix setting.",
    ),
];

/// Reviews the demo's tenants leave after their month of use (each ran what it reviews),
/// nexus-labs' reply to one, and a helpful mark.
pub(super) async fn seed(market: &Market, seeded: &Seeded) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    for (tenant, plugin, rating, title, body) in REVIEWS {
        let input = ReviewInput { rating, title: title.into(), body: body.into() };
        let review = reviews::write(market, &seeded.callers[tenant], &plugin.parse()?, &input, true).await?;
        println!("  {} reviewed {plugin}: {rating} stars", seeded.tenants[tenant].0);
        ids.push(review.id);
    }
    let nexus_labs = Caller::Publisher(market.registry.authenticate(&seeded.publisher).await?);
    let reply = "Thank you! Canadian provinces and territories are planned for 0.2; follow the changelog.";
    reviews::reply(market, &nexus_labs, &ids[1], Some(reply)).await?;
    reviews::mark_helpful(market, &seeded.callers[1], &ids[1], true).await?;
    println!("  nexus-labs replied to globex's tax-calculator review; initech found it helpful");
    set_profile(market, &nexus_labs).await
}

/// nexus-labs' public profile: website, support address and what it builds.
async fn set_profile(market: &Market, nexus_labs: &Caller) -> anyhow::Result<()> {
    let profile = crate::publisher_profiles::ProfileEdit {
        website: Some("https://nexus-labs.example".into()),
        support: Some("mailto:support@nexus-labs.example".into()),
        about: "Nexus Labs builds the marketplace's first-party plugins: **tax**, **privacy** and \
                **messaging** building blocks, each open source and priced per use where it can be."
            .into(),
    };
    crate::publisher_profiles::set(&market.db, nexus_labs, "nexus-labs", &profile).await?;
    Ok(())
}
