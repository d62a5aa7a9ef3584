//! Listing media: a listing's icon and up to [`MAX_SCREENSHOTS`] screenshots. Uploads are
//! checked and encoded again by [`decode`]; the bytes kept are stored by sha256 in the
//! registry's artifact store (a data folder, or the `artifacts` table that nodes sharing a
//! PostgreSQL share), and the rows here say which listing shows which image where.
//!
//! This module owns the `media_files` table (every digest ever accepted as a listing image:
//! what `/media/<hex>` may serve, so a page cached with an old icon still finds it) and the
//! `listing_media` table (each listing's current images). A digest that is not in
//! `media_files` is never served as media, so components and other artifacts never are.

pub mod decode;

use nexus_host::Digest;
use nexus_registry::db::now_ms;
use nexus_registry::manifest::MAX_SCREENSHOTS;
use nexus_registry::{Db, ErrorCode, PluginId, Registry, Scope};
use serde::Serialize;
use serde_json::json;

use crate::accounts::Caller;
use crate::audit;
use crate::error::MarketError;
pub use decode::Slot;

/// The longest caption (the screenshot's alt text) a publisher may give.
pub const MAX_CAPTION_CHARS: usize = 200;

/// Images decoded at once on one node: each may hold [`decode::MAX_DECODE_BYTES`] (64 MiB)
/// of pixels and the encoder's copy, and two keep both cores busy; more uploads wait.
pub const MAX_CONCURRENT_DECODES: usize = 2;

static DECODING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_DECODES);

/// One image of a listing, as the media list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MediaItem {
    /// `icon` or `screenshot`.
    pub slot: String,
    /// 1 to 8 for a screenshot; 0 for the icon.
    pub position: u32,
    /// Where the bytes are served: `/media/<sha256 hex>`.
    pub url: String,
    /// `sha256:<hex>` of the bytes served (as encoded again, not as uploaded).
    pub digest: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    pub uploaded_at: i64,
}

/// An image as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Image {
    /// `/media/<sha256 hex>`, on this server.
    pub url: String,
    pub width: u32,
    pub height: u32,
    /// The alt text; absent for an icon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
}

/// A listing's icon and screenshots in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListingMedia {
    pub icon: Option<Image>,
    pub screenshots: Vec<Image>,
}

/// Where `digest` (`sha256:<hex>` as stored) is served.
pub fn url_of(digest: &str) -> String {
    format!("/media/{}", digest.strip_prefix("sha256:").unwrap_or(digest))
}

/// Where an image goes: the slot and the position in it (the icon's is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub slot: Slot,
    pub position: u32,
}

impl Place {
    pub const ICON: Place = Place { slot: Slot::Icon, position: 0 };

    /// Screenshot `position`, 1 to [`MAX_SCREENSHOTS`].
    pub fn screenshot(position: u32) -> Result<Self, MarketError> {
        if position == 0 || position as usize > MAX_SCREENSHOTS {
            return Err(MarketError::invalid(
                ErrorCode::InvalidMedia,
                format!("screenshot position {position} is outside 1 to {MAX_SCREENSHOTS}"),
            ));
        }
        Ok(Self { slot: Slot::Screenshot, position })
    }
}

/// Who may change a listing's images: its publisher with the `publish` scope (what may
/// publish the plugin may dress its listing). Operators may take an image down
/// ([`may_remove`]) but do not put up images of their own.
pub fn may_upload(caller: &Caller, publisher: &str) -> Result<(), MarketError> {
    match caller {
        Caller::Operator { .. } => {
            Err(MarketError::Forbidden("only the plugin's publisher uploads its listing's images".into()))
        }
        other => {
            other.may_act_for_publisher(publisher)?;
            publish_scope(other)
        }
    }
}

/// Who may remove an image: the publisher (with `publish`) or an operator.
pub fn may_remove(caller: &Caller, publisher: &str) -> Result<(), MarketError> {
    caller.may_act_for_publisher(publisher)?;
    publish_scope(caller)
}

fn publish_scope(caller: &Caller) -> Result<(), MarketError> {
    match caller {
        Caller::Publisher(credential) => Ok(credential.require(Scope::Publish)?),
        _ => Ok(()),
    }
}

/// Whether the listing exists and may be seen by `caller`: a delisted listing's images are
/// its publisher's and the operators' to see, as the listing is.
async fn visible(db: &Db, id: &PluginId, caller: Option<&Caller>) -> Result<(), MarketError> {
    let delisted: Option<Option<i64>> = sqlx::query_scalar("SELECT delisted_at FROM listings WHERE plugin_id = $1")
        .bind(id.to_string())
        .fetch_optional(&db.pool)
        .await?;
    let privileged = caller.is_some_and(|c| c.may_act_for_publisher(id.publisher.as_str()).is_ok());
    match delisted {
        Some(None) => Ok(()),
        Some(Some(_)) if privileged => Ok(()),
        _ => Err(MarketError::NotFound(format!("plugin {id}"))),
    }
}

/// Checks `bytes` for `place` on the listing of `id`, stores what is kept and shows it
/// there (replacing what was): audited, digest and size only. Nothing is stored when any
/// check fails.
pub async fn put(
    db: &Db,
    registry: &Registry,
    caller: &Caller,
    id: &PluginId,
    place: Place,
    caption: Option<&str>,
    bytes: Vec<u8>,
) -> Result<MediaItem, MarketError> {
    may_upload(caller, id.publisher.as_str())?;
    let caption = caption.map(str::trim).filter(|c| !c.is_empty());
    if let Some(caption) = caption {
        MarketError::check_text(ErrorCode::InvalidQuery, "caption", caption, MAX_CAPTION_CHARS)?;
    }
    visible(db, id, Some(caller)).await?;
    let accepted = decoded(place.slot, bytes).await?;
    let digest = Digest::of(&accepted.bytes);
    // Content-addressed: a retry, or two listings with the same image, write the same file.
    registry.artifacts().put(&digest, &accepted.bytes).await?;
    let now = now_ms();
    let item = MediaItem {
        slot: place.slot.as_str().to_string(),
        position: place.position,
        url: url_of(&digest.to_string()),
        digest: digest.to_string(),
        content_type: accepted.content_type.to_string(),
        width: accepted.width,
        height: accepted.height,
        bytes: accepted.bytes.len() as u64,
        caption: caption.map(str::to_string),
        uploaded_at: now,
    };
    let mut tx = db.write_tx().await?;
    insert(&mut tx, id, &item, &caller.actor()).await?;
    let detail = json!({ "slot": item.slot, "position": item.position, "digest": item.digest,
                         "content_type": item.content_type, "width": item.width, "height": item.height,
                         "bytes": item.bytes, "caption": item.caption });
    audit::record(&mut *tx, &caller.actor(), "listing.media_set", &id.to_string(), detail).await?;
    tx.commit().await?;
    Ok(item)
}

/// [`decode::accept`] off the async threads, a bounded number at once: decoding a large
/// image takes a while and much memory.
async fn decoded(slot: Slot, bytes: Vec<u8>) -> Result<decode::Accepted, MarketError> {
    let turn = DECODING.acquire().await.map_err(|e| crate::error::storage(format!("checking an image: {e}")))?;
    let accepted = tokio::task::spawn_blocking(move || decode::accept(slot, &bytes))
        .await
        .map_err(|e| crate::error::storage(format!("checking an image: {e}")))??;
    drop(turn);
    Ok(accepted)
}

/// Records `item`'s file (once per digest) and shows it at its place on the listing of
/// `id`, replacing what was there; in `tx`.
async fn insert(tx: &mut sqlx::AnyConnection, id: &PluginId, item: &MediaItem, actor: &str) -> Result<(), MarketError> {
    sqlx::query(
        "INSERT INTO media_files (digest, content_type, byte_size, width, height, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (digest) DO NOTHING",
    )
    .bind(&item.digest)
    .bind(&item.content_type)
    .bind(item.bytes as i64)
    .bind(i64::from(item.width))
    .bind(i64::from(item.height))
    .bind(item.uploaded_at)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO listing_media (plugin_id, slot, position, digest, content_type, width, height, byte_size, \
         caption, uploaded_at, uploaded_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (plugin_id, slot, position) DO UPDATE SET digest = excluded.digest, \
         content_type = excluded.content_type, width = excluded.width, height = excluded.height, \
         byte_size = excluded.byte_size, caption = excluded.caption, uploaded_at = excluded.uploaded_at, \
         uploaded_by = excluded.uploaded_by",
    )
    .bind(id.to_string())
    .bind(&item.slot)
    .bind(i64::from(item.position))
    .bind(&item.digest)
    .bind(&item.content_type)
    .bind(i64::from(item.width))
    .bind(i64::from(item.height))
    .bind(item.bytes as i64)
    .bind(&item.caption)
    .bind(item.uploaded_at)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Takes the image at `place` off the listing of `id` (its bytes stay served: pages cached
/// with it keep working). Audited with the digest removed.
pub async fn remove(db: &Db, caller: &Caller, id: &PluginId, place: Place) -> Result<(), MarketError> {
    may_remove(caller, id.publisher.as_str())?;
    let mut tx = db.write_tx().await?;
    let digest: Option<String> = sqlx::query_scalar(
        "DELETE FROM listing_media WHERE plugin_id = $1 AND slot = $2 AND position = $3 RETURNING digest",
    )
    .bind(id.to_string())
    .bind(place.slot.as_str())
    .bind(i64::from(place.position))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(digest) = digest else {
        let what = match place.slot {
            Slot::Icon => "an icon".to_string(),
            Slot::Screenshot => format!("a screenshot at position {}", place.position),
        };
        return Err(MarketError::NotFound(format!("{what} of {id}")));
    };
    let detail = json!({ "slot": place.slot.as_str(), "position": place.position, "digest": digest });
    audit::record(&mut *tx, &caller.actor(), "listing.media_removed", &id.to_string(), detail).await?;
    tx.commit().await?;
    Ok(())
}

/// A row of `listing_media`, as stored.
#[derive(sqlx::FromRow)]
struct MediaRow {
    slot: String,
    position: i64,
    digest: String,
    content_type: String,
    width: i64,
    height: i64,
    byte_size: i64,
    caption: Option<String>,
    uploaded_at: i64,
}

impl TryFrom<MediaRow> for MediaItem {
    type Error = MarketError;

    fn try_from(row: MediaRow) -> Result<Self, MarketError> {
        let number = |column: &str, value: i64| -> Result<u32, MarketError> {
            u32::try_from(value).map_err(|e| crate::error::storage(format!("{column}: {e}")))
        };
        Ok(MediaItem {
            position: number("position", row.position)?,
            url: url_of(&row.digest),
            width: number("width", row.width)?,
            height: number("height", row.height)?,
            bytes: u64::try_from(row.byte_size).unwrap_or(0),
            slot: row.slot,
            content_type: row.content_type,
            caption: row.caption,
            uploaded_at: row.uploaded_at,
            digest: row.digest,
        })
    }
}

async fn rows(db: &Db, id: &PluginId) -> Result<Vec<MediaItem>, MarketError> {
    let rows = sqlx::query_as::<_, MediaRow>(
        "SELECT slot, position, digest, content_type, width, height, byte_size, caption, uploaded_at \
         FROM listing_media WHERE plugin_id = $1 ORDER BY slot, position",
    )
    .bind(id.to_string())
    .fetch_all(&db.pool)
    .await?;
    rows.into_iter().map(MediaItem::try_from).collect()
}

/// The listing's images, the icon first, for whoever may see the listing.
pub async fn list(db: &Db, id: &PluginId, caller: Option<&Caller>) -> Result<Vec<MediaItem>, MarketError> {
    visible(db, id, caller).await?;
    rows(db, id).await
}

/// The listing's icon and screenshots as its page shows them (visibility is the caller's
/// to have checked, as `catalog::detail` does).
pub async fn of_listing(db: &Db, id: &PluginId) -> Result<ListingMedia, MarketError> {
    let mut media = ListingMedia::default();
    for item in rows(db, id).await? {
        let image = Image { url: item.url, width: item.width, height: item.height, caption: item.caption };
        match item.slot.as_str() {
            "icon" => media.icon = Some(image),
            _ => media.screenshots.push(image),
        }
    }
    Ok(media)
}

/// The bytes served at `/media/<hex>` and their type: only a digest accepted as a listing
/// image, verified against its digest as it is read. Anything else is not found.
pub async fn served(db: &Db, registry: &Registry, hex: &str) -> Result<(String, Vec<u8>), MarketError> {
    let not_found = || MarketError::NotFound(format!("media {hex}"));
    let well_formed = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return Err(not_found());
    }
    let digest: Digest = hex.parse().map_err(|_| not_found())?;
    let content_type: String = sqlx::query_scalar("SELECT content_type FROM media_files WHERE digest = $1")
        .bind(digest.to_string())
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(not_found)?;
    Ok((content_type, registry.artifacts().get(&digest).await?))
}
