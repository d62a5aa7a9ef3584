//! What every page shows around its content: who is signed in, the navigation of their
//! role with the current page marked, and the CSRF value of the page's forms.

use super::ASKED;
use crate::accounts::Caller;
use crate::sessions::Session;

/// A link of the header's navigation.
#[derive(Debug, Clone)]
pub struct NavLink {
    pub href: String,
    pub label: &'static str,
    /// The page shown is this link's (or under it, when no longer link matches).
    pub current: bool,
}

/// What every page shows around its content: who is signed in, the links for that role,
/// and the CSRF value its forms carry.
#[derive(Debug, Clone, Default)]
pub struct Chrome {
    pub title: String,
    /// `operator`, `publisher` or `tenant`; empty when signed out.
    pub role: &'static str,
    /// How the caller is named: the tenant, the publisher, or "operator".
    pub who: String,
    pub csrf: String,
    /// The partner pages of a publisher (its own name).
    pub publisher: String,
    /// Signed in as a person (rather than with an API token).
    pub person: bool,
    /// A person's organizations, to switch between (the current one marked).
    pub orgs: Vec<OrgChoice>,
    /// The role's navigation, the current page's link marked.
    pub nav: Vec<NavLink>,
}

/// One organization in the header's switcher.
#[derive(Debug, Default, Clone)]
pub struct OrgChoice {
    pub kind: String,
    pub id: String,
    pub current: bool,
}

impl Chrome {
    pub fn new(title: impl Into<String>, session: Option<&Session>) -> Self {
        let mut chrome = Self { title: title.into(), ..Self::default() };
        if let Some(session) = session {
            chrome.role = session.caller.role();
            chrome.csrf = session.csrf.clone();
            chrome.person = session.person.is_some();
            let (kind, id) = match &session.caller {
                Caller::Tenant { tenant, .. } => ("tenant", tenant.to_string()),
                Caller::Publisher(credential) => ("publisher", credential.publisher.to_string()),
                Caller::Operator { .. } => ("operator", String::new()),
            };
            chrome.orgs = session
                .memberships
                .iter()
                .map(|m| OrgChoice {
                    kind: m.org_kind.clone(),
                    id: m.org_id.clone(),
                    current: m.org_kind == kind && m.org_id == id,
                })
                .collect();
            chrome.who = match &session.caller {
                Caller::Operator { .. } => "operator".to_string(),
                Caller::Publisher(credential) => credential.publisher.to_string(),
                Caller::Tenant { tenant, .. } => tenant.to_string(),
            };
            if let Caller::Publisher(credential) = &session.caller {
                chrome.publisher = credential.publisher.to_string();
            }
        }
        chrome.nav = navigation(&chrome);
        chrome
    }
}

/// The links of the header for the signed-in role, with the page shown marked: the
/// longest link the path starts with.
fn navigation(chrome: &Chrome) -> Vec<NavLink> {
    let mut links: Vec<(String, &'static str)> = vec![("/console/catalog".into(), "Catalog")];
    match chrome.role {
        "tenant" => links.extend([
            ("/console/installs".into(), "Installs"),
            ("/console/deliveries".into(), "Deliveries"),
            ("/console/bills".into(), "Bills"),
        ]),
        "publisher" => links.push((format!("/console/partners/{}", chrome.publisher), "Earnings and payouts")),
        _ => {}
    }
    if chrome.person {
        links.extend([
            ("/console/organization".into(), "Members"),
            ("/console/organization/tokens".into(), "API tokens"),
            ("/console/partner-program".into(), "Partner program"),
            ("/console/security".into(), "Security"),
        ]);
    }
    if chrome.role == "operator" {
        links.extend([
            ("/console/operator".into(), "Operator"),
            ("/console/operator/tenants".into(), "Tenants"),
            ("/console/operator/partners".into(), "Partners"),
            ("/console/operator/applications".into(), "Applications"),
            ("/console/operator/audit".into(), "Audit log"),
            ("/console/deliveries".into(), "Deliveries"),
            ("/console/operator/ledger".into(), "Ledger check"),
        ]);
    }
    let path = ASKED.try_with(|asked| asked.path.clone()).unwrap_or_default();
    let under = |href: &str| path == href || path.starts_with(&format!("{href}/"));
    let best = links.iter().filter(|(href, _)| under(href)).map(|(href, _)| href.len()).max();
    links
        .into_iter()
        .map(|(href, label)| NavLink { current: Some(href.len()) == best && under(&href), href, label })
        .collect()
}
