//! Listing media through the API: an icon and screenshots go up as raw bodies, show on the
//! listing and its card, and are served by digest with their type and cache headers, encoded
//! again without their metadata. Disguised, oversized, cut-off and misshapen images are
//! refused with their code and a message naming the problem, and nothing is stored. Only the
//! plugin's publisher puts images up; uploads of several clients at once all land. And
//! `nexus publish` puts up a project's `[media]`.

use std::io::Cursor;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::{Value, json};
use sha2::Digest as _;

use super::common::{Env, RealMarket, nexus, on_both, runtime};

/// A `width` × `height` PNG of a gradient (RGB, 8 bits).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    encoded(width, height, image::ImageFormat::Png)
}

fn encoded(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let pixels = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, 90]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(pixels).write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

/// CRC-32 as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFF_u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    out
}

const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// `png` with a `tEXt` chunk right after its header.
fn with_text(png: &[u8], text: &str) -> Vec<u8> {
    let header_end = SIGNATURE.len() + 25;
    let mut out = png[..header_end].to_vec();
    out.extend(chunk(b"tEXt", format!("Comment\0{text}").as_bytes()));
    out.extend_from_slice(&png[header_end..]);
    out
}

/// A valid PNG header claiming `side` × `side` pixels, with a token IDAT: a decompression
/// bomb's shape, without its pixels.
fn bomb(side: u32) -> Vec<u8> {
    let mut header = side.to_be_bytes().to_vec();
    header.extend(side.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]);
    let mut out = SIGNATURE.to_vec();
    out.extend(chunk(b"IHDR", &header));
    out.extend(chunk(b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    out.extend(chunk(b"IEND", &[]));
    out
}

/// Sends `bytes` as the body of `method uri` (a Content-Type that says nothing true).
async fn send(env: &Env, method: &str, uri: &str, token: Option<&str>, bytes: Vec<u8>) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri).header(header::CONTENT_TYPE, "text/plain");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let (status, _, body) = env.raw(request.body(Body::from(bytes)).unwrap()).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn fetch(env: &Env, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
    env.raw(Request::get(path).body(Body::empty()).unwrap()).await
}

const ECHO: &str = "/v1/plugins/nexus-labs/echo/media";

async fn audited(env: &Env, action: &str) -> Vec<Value> {
    let (_, log) = env.get(&format!("/v1/audit?action={action}&per_page=100"), &env.operator).await;
    log["items"].as_array().cloned().unwrap_or_default()
}

async fn stored(env: &Env) -> (i64, i64) {
    let count = |table: &'static str| async move {
        sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&env.market.db.pool)
            .await
            .unwrap()
    };
    (count("media_files").await, count("listing_media").await)
}

#[test]
fn images_go_up_show_on_the_listing_and_are_served_with_their_headers() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let icon = with_text(&png(128, 128), "secret-comment: the designer's home address");
        let (status, put) = send(&env, "PUT", &format!("{ECHO}/icon"), Some(&env.publisher), icon).await;
        assert_eq!(status, StatusCode::OK, "{put}");
        assert_eq!(
            (&put["slot"], &put["position"], &put["content_type"], &put["width"], &put["height"]),
            (&json!("icon"), &json!(0), &json!("image/png"), &json!(128), &json!(128)),
            "{put}"
        );
        let icon_url = put["url"].as_str().unwrap().to_string();
        let jpeg = encoded(800, 450, image::ImageFormat::Jpeg);
        let uri = format!("{ECHO}/screenshots/1?caption=The%20event%20log");
        let (status, first) = send(&env, "PUT", &uri, Some(&env.publisher), jpeg).await;
        assert_eq!(
            (status, &first["content_type"], &first["caption"]),
            (StatusCode::OK, &json!("image/jpeg"), &json!("The event log")),
            "{first}"
        );
        let (status, second) =
            send(&env, "PUT", &format!("{ECHO}/screenshots/2"), Some(&env.publisher), png(640, 400)).await;
        assert_eq!(status, StatusCode::OK, "{second}");

        // The listing shows them, its card the icon.
        let (_, detail) = env.call("GET", "/v1/catalog/nexus-labs/echo", None, None).await;
        assert_eq!(detail["icon"], json!({ "url": icon_url, "width": 128, "height": 128 }), "{detail}");
        assert_eq!(detail["icon_url"], json!(icon_url));
        assert_eq!(
            detail["screenshots"],
            json!([
                { "url": first["url"], "width": 800, "height": 450, "caption": "The event log" },
                { "url": second["url"], "width": 640, "height": 400 },
            ])
        );
        let (_, cards) = env.call("GET", "/v1/catalog?q=echo", None, None).await;
        assert_eq!(cards["items"][0]["icon_url"], json!(icon_url), "{cards}");
        let (_, listed) = env.call("GET", ECHO, None, None).await;
        assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");

        // The console's listing page shows them, sized, the screenshots lazy with their
        // captions as alt text; its CSP lets images of this origin display.
        let (status, headers, page) = fetch(&env, "/console/catalog/nexus-labs/echo").await;
        let page = String::from_utf8(page).unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("img-src 'self'"));
        let icon_tag = format!(
            "<img class=\"listing-icon\" src=\"{icon_url}\" width=\"96\" height=\"96\" alt=\"nexus-labs/echo icon\">"
        );
        assert!(page.contains(&icon_tag), "{page}");
        let shot = format!(
            "<img src=\"{}\" width=\"800\" height=\"450\" loading=\"lazy\" alt=\"The event log\">",
            first["url"].as_str().unwrap()
        );
        assert!(page.contains(&shot) && page.contains("<figcaption>The event log</figcaption>"), "{page}");
        assert!(page.contains("alt=\"Screenshot 2 of nexus-labs/echo\""), "{page}");

        // Served as kept: the type stored, cacheable for a year, never sniffed, inert; the
        // bytes hash to their address and carry no text chunk any more.
        let (status, headers, bytes) = fetch(&env, &icon_url).await;
        assert_eq!(status, StatusCode::OK);
        let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(header(header::CONTENT_TYPE).as_deref(), Some("image/png"));
        assert_eq!(header(header::CACHE_CONTROL).as_deref(), Some("public, max-age=31536000, immutable"));
        assert_eq!(header(header::X_CONTENT_TYPE_OPTIONS).as_deref(), Some("nosniff"));
        assert_eq!(header(header::CONTENT_SECURITY_POLICY).as_deref(), Some("default-src 'none'; sandbox"));
        assert_eq!(format!("/media/{}", hex::encode(sha2::Sha256::digest(&bytes))), icon_url);
        assert_eq!(put["digest"], json!(format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))));
        assert!(!bytes.windows(4).any(|w| w == b"tEXt"), "the text chunk survived");
        assert!(!String::from_utf8_lossy(&bytes).contains("secret-comment"));
        let decoded = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(decoded, image::load_from_memory(&png(128, 128)).unwrap().to_rgb8(), "the pixels are kept");
        let (status, headers, _) = fetch(&env, first["url"].as_str().unwrap()).await;
        assert_eq!(
            (status, headers.get(header::CONTENT_TYPE).unwrap()),
            (StatusCode::OK, &"image/jpeg".parse().unwrap())
        );

        // Audited by digest, never with the bytes.
        let set = audited(&env, "listing.media_set").await;
        assert_eq!(set.len(), 3);
        assert_eq!(set[2]["detail"]["digest"], put["digest"]);
        assert_eq!(
            (set[2]["target"].as_str(), set[2]["detail"]["bytes"].as_u64()),
            (Some("nexus-labs/echo"), put["bytes"].as_u64())
        );

        // Removed from the listing, still served (pages cached with it keep working).
        let (status, _) = env.call("DELETE", &format!("{ECHO}/screenshots/2"), Some(&env.publisher), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, again) = env.call("DELETE", &format!("{ECHO}/screenshots/2"), Some(&env.publisher), None).await;
        assert_eq!((status, again["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        let (_, detail) = env.call("GET", "/v1/catalog/nexus-labs/echo", None, None).await;
        assert_eq!(detail["screenshots"].as_array().map(Vec::len), Some(1));
        assert_eq!(fetch(&env, second["url"].as_str().unwrap()).await.0, StatusCode::OK);
        let removed = audited(&env, "listing.media_removed").await;
        assert_eq!(removed[0]["detail"], json!({ "slot": "screenshot", "position": 2, "digest": second["digest"] }));

        // Only listing images are served: not a component, not an unknown digest.
        let (_, version) = env.call("GET", "/v1/plugins/nexus-labs/echo/versions/0.1.0", None, None).await;
        let component = version["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
        for path in [format!("/media/{component}"), format!("/media/{}", "0".repeat(64)), "/media/not-hex".into()] {
            let (status, _, body) = fetch(&env, &path).await;
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{path}");
        }
    });
}

/// A bad upload: what it is, where it goes, its bytes, and the status, code and message.
type Refusal = (&'static str, String, Vec<u8>, u16, &'static str, String);

#[test]
fn bad_images_are_refused_with_what_is_wrong_and_nothing_is_stored() {
    runtime().block_on(async {
        let env = Env::new(false).await;
        let mut svg = SIGNATURE.to_vec();
        svg.extend_from_slice(b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>");
        let whole = png(128, 128);
        let cases: Vec<Refusal> = vec![
            ("PNG header on SVG", "icon".into(), svg, 400, "invalid_media", "not a valid PNG image: its header cannot be read".into()),
            ("bomb", "screenshots/1".into(), bomb(30_000), 413, "media_too_large", "30000×30000 pixels is larger than 4096×4096".into()),
            ("truncated", "icon".into(), whole[..whole.len() - 30].to_vec(), 400, "invalid_media", "the PNG image is truncated".into()),
            ("GIF", "icon".into(), b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec(), 415, "unsupported_image", "not a PNG, JPEG or WebP image (its bytes are Gif)".into()),
            ("oversized", "icon".into(), vec![0x89; (1 << 20) + 1], 413, "media_too_large", "the icon is more than 1048576 bytes; it may be at most 1048576 bytes (1 MiB)".into()),
            ("not square", "icon".into(), png(128, 64), 400, "invalid_media", "an icon must be square; this one is 128×64 pixels".into()),
            ("narrow screenshot", "screenshots/3".into(), png(200, 400), 400, "invalid_media", "a screenshot must be at least 320 pixels wide; this one is 200×400".into()),
            ("position 9", "screenshots/9".into(), png(640, 400), 400, "invalid_media", "screenshot position 9 is outside 1 to 8".into()),
            ("position 0", "screenshots/0".into(), png(640, 400), 400, "invalid_media", "screenshot position 0 is outside 1 to 8".into()),
        ];
        for (case, place, bytes, status, code, message) in cases {
            let (got, body) = send(&env, "PUT", &format!("{ECHO}/{place}"), Some(&env.publisher), bytes).await;
            assert_eq!(
                (got.as_u16(), body["error"]["code"].as_str(), body["error"]["message"].as_str()),
                (status, Some(code), Some(message.as_str())),
                "{case}"
            );
        }
        assert_eq!(stored(&env).await, (0, 0), "nothing stored");
        assert!(audited(&env, "listing.media_set").await.is_empty());
        let (_, listed) = env.call("GET", ECHO, None, None).await;
        assert_eq!(listed, json!([]));
    });
}

#[test]
fn only_the_plugin_s_publisher_puts_images_up_and_operators_take_them_down() {
    runtime().block_on(async {
        let env = Env::new(false).await;
        let globex = env.tenant("globex").await;
        let (_, acme) =
            env.post("/v1/publishers", &env.operator, json!({ "id": "acme", "display_name": "Acme" })).await;
        let acme = acme["secret"].as_str().unwrap().to_string();
        let (_, keys_only) = env
            .post("/v1/publishers/nexus-labs/tokens", &env.publisher, json!({ "scopes": ["keys"], "label": "k" }))
            .await;
        let keys_only = keys_only["secret"].as_str().unwrap().to_string();
        let refused = [
            (None, 401, "unauthenticated"),
            (Some(acme.as_str()), 403, "namespace_not_owned"),
            (Some(globex.as_str()), 403, "forbidden"),
            (Some(env.operator.as_str()), 403, "forbidden"),
            (Some(keys_only.as_str()), 403, "missing_scope"),
        ];
        for (token, status, code) in refused {
            let (got, body) = send(&env, "PUT", &format!("{ECHO}/icon"), token, png(64, 64)).await;
            assert_eq!((got.as_u16(), body["error"]["code"].as_str()), (status, Some(code)), "{body}");
        }
        assert_eq!(stored(&env).await, (0, 0));
        let (status, _) = send(&env, "PUT", &format!("{ECHO}/icon"), Some(&env.publisher), png(64, 64)).await;
        assert_eq!(status, StatusCode::OK);
        for (token, code) in [(&acme, "namespace_not_owned"), (&globex, "forbidden")] {
            let (status, body) = env.call("DELETE", &format!("{ECHO}/icon"), Some(token), None).await;
            assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some(code)));
        }
        let (status, _) = env.call("DELETE", &format!("{ECHO}/icon"), Some(&env.operator), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let removed = audited(&env, "listing.media_removed").await;
        assert!(removed[0]["actor"].as_str().unwrap().starts_with("operator:"), "{removed:?}");
        // A delisted listing's images are listed to its publisher and operators only, as the
        // listing is shown.
        let (status, _) =
            env.post("/v1/catalog/nexus-labs/echo/delist", &env.operator, json!({ "reason": "broken" })).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = env.call("GET", ECHO, None, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        assert_eq!(env.call("GET", ECHO, Some(&globex), None).await.0, StatusCode::NOT_FOUND);
        assert_eq!(env.call("GET", ECHO, Some(&env.publisher), None).await.0, StatusCode::OK);
        assert_eq!(env.call("GET", ECHO, Some(&env.operator), None).await.0, StatusCode::OK);
        // A plugin nobody published has no listing to dress.
        let (status, body) =
            send(&env, "PUT", "/v1/plugins/nexus-labs/ghost/media/icon", Some(&env.publisher), png(64, 64)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    });
}

#[test]
fn screenshots_uploaded_by_several_clients_at_once_all_land() {
    on_both(|postgres| async move {
        let env = Arc::new(Env::new(postgres).await);
        let uploads: Vec<_> = (1..=8u32)
            .map(|position| {
                let env = env.clone();
                tokio::spawn(async move {
                    let uri = format!("{ECHO}/screenshots/{position}?caption=Shot%20{position}");
                    let bytes = png(320 + position * 10, 240);
                    send(&env, "PUT", &uri, Some(&env.publisher), bytes).await
                })
            })
            .collect();
        for upload in uploads {
            let (status, body) = upload.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let (_, detail) = env.call("GET", "/v1/catalog/nexus-labs/echo", None, None).await;
        let shots = detail["screenshots"].as_array().unwrap();
        assert_eq!(shots.len(), 8);
        for (index, shot) in shots.iter().enumerate() {
            let position = index as u32 + 1;
            assert_eq!(
                (&shot["width"], &shot["caption"]),
                (&json!(320 + position * 10), &json!(format!("Shot {position}")))
            );
        }
        assert_eq!(stored(&env).await, (8, 8));
        assert_eq!(audited(&env, "listing.media_set").await.len(), 8);
    });
}

#[test]
fn nexus_publish_puts_up_the_project_s_media_and_a_missing_file_stops_it_first() {
    let market = RealMarket::new();
    let server = market.serve(&[], &[]);
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-plugins");
    let env = [("NEXUS_REGISTRY", server.url.as_str()), ("NEXUS_TOKEN", market.publisher.as_str())];

    // A manifest whose icon is not in its folder: refused before anything is sent.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(samples.join("echo/nexus.toml"), dir.path().join("nexus.toml")).unwrap();
    let manifest = dir.path().join("nexus.toml");
    let args = ["publish", nexus_sample_plugins::ECHO, "--manifest", manifest.to_str().unwrap(), "--no-sign"];
    let refused = nexus(&args, &env);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    let missing = dir.path().join("media/icon.png");
    assert!(
        said.contains(&format!(
            "media.icon in nexus.toml names media/icon.png, which cannot be read at {}",
            missing.display()
        )) && said.contains("add the image there, or correct or remove `media.icon` under [media]"),
        "{said}"
    );
    let status = blocking::status(&format!("{}/v1/plugins/nexus-labs/echo/versions", server.url));
    assert_eq!(status, 404, "nothing was published");

    // From the sample's own folder: published, then its icon and two screenshots go up.
    market.publish(&server.url, "echo");
    let detail = blocking::json(&format!("{}/v1/catalog/nexus-labs/echo", server.url));
    assert_eq!(detail["icon"]["width"], 128, "{detail}");
    assert_eq!(detail["screenshots"].as_array().map(Vec::len), Some(2), "{detail}");

    // Replaced without a version: one screenshot with a caption; the second is removed.
    let shot = samples.join("tax-calculator/media/screenshot-2.png");
    let replaced = nexus(
        &["listing", "media", "nexus-labs/echo", "--screenshot", shot.to_str().unwrap(), "--caption", "Daily totals"],
        &env,
    );
    let output = String::from_utf8_lossy(&replaced.stdout);
    assert!(replaced.status.success(), "{output}{}", String::from_utf8_lossy(&replaced.stderr));
    assert!(
        output.contains("screenshot 1")
            && output.contains("\"Daily totals\"")
            && output.contains("removed   screenshot 2"),
        "{output}"
    );
    let detail = blocking::json(&format!("{}/v1/catalog/nexus-labs/echo", server.url));
    assert_eq!(detail["screenshots"][0]["caption"], "Daily totals", "{detail}");
    assert_eq!(detail["screenshots"].as_array().map(Vec::len), Some(1), "{detail}");
}

/// Blocking reads of a real server, for the CLI test (which runs outside the runtime).
mod blocking {
    use serde_json::Value;

    pub fn status(url: &str) -> u16 {
        super::runtime().block_on(async { ::reqwest::get(url).await.unwrap().status().as_u16() })
    }

    pub fn json(url: &str) -> Value {
        super::runtime().block_on(async { ::reqwest::get(url).await.unwrap().json().await.unwrap() })
    }
}
