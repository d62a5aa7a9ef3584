//! Search over listed plugins: the query's words and filters as SQL over `listings`, the
//! sort orders, and the facet counts.

use nexus_host::Capability;
use nexus_registry::text::MAX_QUERY_CHARS;
use nexus_registry::{Backend, Db, ErrorCode};
use serde::{Deserialize, Serialize};

use super::{COLUMNS, Listing, ListingRow, set_items, words};
use crate::error::{MarketError, Page};
use crate::plans::PlanModel;

const MAX_TERMS: usize = 8;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Sort {
    /// Most installs first (the default without a query).
    #[default]
    Popular,
    /// Most recently listed first.
    Newest,
    /// Best match first (the default with a query): how well the words match, then
    /// installs and rating; without words, installs and rating.
    Relevance,
    /// Most recently published or updated first.
    Updated,
    /// Highest average rating first.
    TopRated,
    /// By id.
    Name,
}

/// Search parameters; every field is optional.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Words to find; each must occur. At most 200 characters.
    #[param(max_length = 200)]
    pub q: Option<String>,
    pub category: Option<String>,
    /// A plan model offered: `free`, `one-time`, `subscription` or `usage` (the manifest's
    /// older names `flat` and `per-unit` are read as `subscription` and `usage`).
    pub pricing: Option<String>,
    /// A requested capability: `log`, `config`, `secrets`, `kv`, `http`, `usage`.
    pub capability: Option<String>,
    pub featured: Option<bool>,
    pub sort: Option<Sort>,
    /// 1-based.
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

/// The pricing filter's values: the plan models, and the manifest's older names for two.
const PRICING_FILTER: [(&str, PlanModel); 6] = [
    ("free", PlanModel::Free),
    ("one-time", PlanModel::OneTime),
    ("subscription", PlanModel::Subscription),
    ("usage", PlanModel::Usage),
    ("flat", PlanModel::Subscription),
    ("per-unit", PlanModel::Usage),
];

/// The words of a query, as listings' words are made (at most [`MAX_TERMS`]).
fn terms(q: &str) -> Vec<String> {
    words(q).into_iter().take(MAX_TERMS).collect()
}

fn filter_value(field: &str, value: Option<&String>, allowed: &[&str]) -> Result<Option<String>, MarketError> {
    match value {
        None => Ok(None),
        Some(v) if allowed.contains(&v.as_str()) => Ok(Some(format!(",{v},"))),
        Some(v) => Err(MarketError::invalid(
            ErrorCode::InvalidQuery,
            format!("unknown {field} `{v}`; expected one of: {}", allowed.join(", ")),
        )),
    }
}

/// How many listed plugins each category and plan model would find with the query's other
/// filters: a category's count keeps the pricing filter and drops the category filter, and
/// the other way round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Facets {
    pub categories: std::collections::BTreeMap<String, i64>,
    pub pricing: std::collections::BTreeMap<String, i64>,
}

/// A page of search results and the facet counts of the whole search.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SearchResults {
    #[serde(flatten)]
    pub page: Page<Listing>,
    pub facets: Facets,
}

/// A query checked and turned into SQL conditions over `listings`.
struct Filter {
    terms: Vec<String>,
    /// `,category,` and `,model,` set members, as stored.
    category: Option<String>,
    pricing: Option<String>,
    capability: Option<String>,
    featured: Option<bool>,
}

impl Filter {
    fn of(query: &SearchQuery) -> Result<Self, MarketError> {
        let q = query.q.as_deref().unwrap_or_default();
        MarketError::check_text(ErrorCode::InvalidQuery, "q", q, MAX_QUERY_CHARS)?;
        let capabilities: Vec<&str> = Capability::ALL.iter().map(|c| c.as_str()).collect();
        let pricing_names: Vec<&str> = PRICING_FILTER.iter().map(|(name, _)| *name).collect();
        let pricing = filter_value("pricing", query.pricing.as_ref(), &pricing_names)?.map(|_| {
            let model =
                PRICING_FILTER.iter().find(|(name, _)| Some(*name) == query.pricing.as_deref()).map(|(_, m)| *m);
            format!(",{},", model.map_or("", PlanModel::as_str))
        });
        Ok(Self {
            terms: terms(q),
            category: filter_value("category", query.category.as_ref(), &nexus_registry::manifest::CATEGORIES)?,
            pricing,
            capability: filter_value("capability", query.capability.as_ref(), &capabilities)?,
            featured: query.featured,
        })
    }

    /// The WHERE clause and its binds (numbered from `$1`); `facet` leaves out the category
    /// and pricing filters, which facet counts apply themselves.
    fn sql(&self, backend: Backend, facet: bool) -> (String, Vec<String>) {
        let mut binds: Vec<String> = Vec::new();
        let mut sql = String::from("delisted_at IS NULL AND latest_version <> ''");
        if !self.terms.is_empty() {
            // Every word must begin a word of the listing.
            match backend {
                Backend::Sqlite => {
                    let words: Vec<String> = self.terms.iter().map(|w| format!("\"{w}\"*")).collect();
                    binds.push(words.join(" AND "));
                    sql.push_str(&format!(
                        " AND listings.rowid IN (SELECT rowid FROM listings_fts WHERE listings_fts MATCH ${})",
                        binds.len()
                    ));
                }
                Backend::Postgres => {
                    let words: Vec<String> = self.terms.iter().map(|w| format!("{w}:*")).collect();
                    binds.push(words.join(" & "));
                    sql.push_str(&format!(" AND search_vector @@ to_tsquery('simple', ${})", binds.len()));
                }
            }
        }
        let sets = [
            ("categories", if facet { None } else { self.category.as_ref() }),
            ("pricing_models", if facet { None } else { self.pricing.as_ref() }),
            ("capabilities", self.capability.as_ref()),
        ];
        for (column, member) in sets {
            if let Some(member) = member {
                binds.push(format!("%{member}%"));
                sql.push_str(&format!(" AND {column} LIKE ${}", binds.len()));
            }
        }
        match self.featured {
            Some(true) => sql.push_str(" AND featured_at IS NOT NULL"),
            Some(false) => sql.push_str(" AND featured_at IS NULL"),
            None => {}
        }
        (sql, binds)
    }
}

/// Popularity as ranking weighs it (integers, so both backends order alike): installs in
/// steps of ten times (0, 1-9, 10-99, 100-999, 1000+ give 0 to 8), plus the average rating's
/// distance from 3 stars (-4 to +4) once three reviews rate it.
const POPULARITY: &str = "(CASE WHEN install_count >= 1000 THEN 8 WHEN install_count >= 100 THEN 6 \
                          WHEN install_count >= 10 THEN 4 WHEN install_count >= 1 THEN 2 ELSE 0 END \
                          + CASE WHEN rating_count >= 3 THEN rating_total * 2 / rating_count - 6 ELSE 0 END)";

/// Searches listed plugins.
pub async fn search(db: &Db, query: &SearchQuery) -> Result<Page<Listing>, MarketError> {
    let per_page = crate::error::per_page(query.per_page, 20)?;
    let page = query.page.unwrap_or(1).max(1);
    let filter = Filter::of(query)?;
    let (where_sql, mut binds) = filter.sql(db.backend, false);
    let total = {
        let count_sql = format!("SELECT COUNT(*) FROM listings WHERE {where_sql}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for value in &binds {
            count = count.bind(value.as_str());
        }
        count.fetch_one(&db.pool).await?
    };
    let terms = &filter.terms;
    let sort = query.sort.unwrap_or(if terms.is_empty() { Sort::Popular } else { Sort::Relevance });
    let order = match sort {
        Sort::Popular => "install_count DESC, plugin_id".to_string(),
        Sort::Newest => "created_at DESC, plugin_id".to_string(),
        Sort::Updated => "updated_at DESC, plugin_id".to_string(),
        Sort::TopRated => "CASE WHEN rating_count > 0 THEN rating_total * 1000 / rating_count ELSE 0 END DESC, \
                           rating_count DESC, install_count DESC, plugin_id"
            .to_string(),
        Sort::Name => "plugin_id".to_string(),
        Sort::Relevance if terms.is_empty() => format!("{POPULARITY} DESC, install_count DESC, plugin_id"),
        Sort::Relevance => {
            // Each word scores 40 in the name, 20 in the summary, 10 elsewhere; popularity
            // then moves a listing by less than one such step.
            let mut score = Vec::new();
            for term in terms {
                binds.push(format!("%{term}%"));
                let like = format!("${}", binds.len());
                score.push(format!(
                    "(CASE WHEN name LIKE {like} THEN 40 WHEN LOWER(summary) LIKE {like} THEN 20 ELSE 10 END)"
                ));
            }
            format!("({} + {POPULARITY}) DESC, install_count DESC, plugin_id", score.join(" + "))
        }
    };
    let limit = binds.len() + 1;
    let sql = format!(
        "SELECT {COLUMNS} FROM listings WHERE {where_sql} ORDER BY {order} LIMIT ${limit} OFFSET ${}",
        limit + 1
    );
    let mut select = sqlx::query_as::<_, ListingRow>(&sql);
    for value in &binds {
        select = select.bind(value.as_str());
    }
    let rows =
        select.bind(i64::from(per_page)).bind(i64::from(page - 1) * i64::from(per_page)).fetch_all(&db.pool).await?;
    let items = rows.into_iter().map(|row| row.into_listing(false)).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::new(items, page, per_page, total))
}

/// The facet counts of a search (its page and sort do not matter): the matching rows
/// grouped by their (categories, plan models) sets, a few hundred groups at most, then
/// counted here, each facet applying the other facet's filter.
pub async fn facets(db: &Db, query: &SearchQuery) -> Result<Facets, MarketError> {
    let filter = Filter::of(query)?;
    let (where_sql, binds) = filter.sql(db.backend, true);
    let sql = format!(
        "SELECT categories, pricing_models, COUNT(*) FROM listings WHERE {where_sql} \
         GROUP BY categories, pricing_models"
    );
    let mut select = sqlx::query_as::<_, (String, String, i64)>(&sql);
    for value in &binds {
        select = select.bind(value.as_str());
    }
    let groups = select.fetch_all(&db.pool).await?;
    let mut facets = Facets::default();
    for category in nexus_registry::manifest::CATEGORIES {
        facets.categories.insert(category.to_string(), 0);
    }
    for model in [PlanModel::Free, PlanModel::OneTime, PlanModel::Subscription, PlanModel::Usage] {
        facets.pricing.insert(model.as_str().to_string(), 0);
    }
    let has = |set: &str, member: &Option<String>| member.as_deref().is_none_or(|m| set.contains(m));
    for (categories, pricing, count) in &groups {
        if has(pricing, &filter.pricing) {
            for category in set_items(categories) {
                *facets.categories.entry(category).or_default() += count;
            }
        }
        if has(categories, &filter.category) {
            for model in set_items(pricing) {
                *facets.pricing.entry(model).or_default() += count;
            }
        }
    }
    Ok(facets)
}
