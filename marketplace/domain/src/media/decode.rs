//! Deciding whether uploaded bytes are a listing image, and making the bytes we keep: pure
//! functions, no SQL. The format is guessed from the bytes (never from a name or a
//! Content-Type); the size in pixels is read from the header before anything is decoded, so
//! a decompression bomb is refused without allocating its pixels; the image is then decoded
//! whole (a truncated file is refused) and encoded again, which drops every chunk and
//! segment that is not pixels (EXIF, text chunks, ICC profiles, comments).
//!
//! Encodings kept: PNG stays PNG, JPEG stays JPEG (quality [`JPEG_QUALITY`]), WebP becomes
//! lossless WebP (the only WebP encoder the `image` crate has).

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use nexus_registry::ErrorCode;

use crate::error::MarketError;

/// The most bytes an icon upload may have: an icon is shown at 64 to 128 pixels, and a
/// 1024 × 1024 PNG of a logo is far smaller than this.
pub const MAX_ICON_BYTES: usize = 1 << 20;
/// The most bytes a screenshot upload may have: a full-HD PNG of a busy screen fits.
pub const MAX_SCREENSHOT_BYTES: usize = 5 << 20;
/// The widest and tallest image accepted, checked from the header before decoding: twice a
/// 4K screen's width is more than any listing shows.
pub const MAX_SIDE: u32 = 4096;
/// What decoding may allocate: the pixels of a [`MAX_SIDE`]-square 8-bit RGBA image. A
/// 16-bit image that large is refused rather than given twice the memory.
pub const MAX_DECODE_BYTES: u64 = MAX_SIDE as u64 * MAX_SIDE as u64 * 4;
/// An icon's smallest and largest side: smaller looks blurred on the listing page, larger
/// is only bytes.
pub const ICON_SIDES: std::ops::RangeInclusive<u32> = 64..=1024;
/// A screenshot's narrowest width: narrower shows nothing a tenant can read.
pub const MIN_SCREENSHOT_WIDTH: u32 = 320;
/// JPEG's quality when a JPEG is encoded again: visually the same, metadata gone.
pub const JPEG_QUALITY: u8 = 90;

/// Where an image goes on a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Icon,
    Screenshot,
}

impl Slot {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Icon => "icon",
            Self::Screenshot => "screenshot",
        }
    }

    /// The most bytes an upload for this slot may have.
    pub fn max_bytes(self) -> usize {
        match self {
            Self::Icon => MAX_ICON_BYTES,
            Self::Screenshot => MAX_SCREENSHOT_BYTES,
        }
    }
}

/// An accepted image, encoded again: the bytes to store and what the listing says of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub bytes: Vec<u8>,
    /// `image/png`, `image/jpeg` or `image/webp`.
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

fn invalid(message: impl Into<String>) -> MarketError {
    MarketError::invalid(ErrorCode::InvalidMedia, message)
}

fn too_large(message: impl Into<String>) -> MarketError {
    MarketError::invalid(ErrorCode::MediaTooLarge, message)
}

/// The formats accepted, and the name messages use.
fn accepted_format(format: Option<ImageFormat>) -> Result<(ImageFormat, &'static str), MarketError> {
    match format {
        Some(ImageFormat::Png) => Ok((ImageFormat::Png, "PNG")),
        Some(ImageFormat::Jpeg) => Ok((ImageFormat::Jpeg, "JPEG")),
        Some(ImageFormat::WebP) => Ok((ImageFormat::WebP, "WebP")),
        Some(other) => Err(MarketError::invalid(
            ErrorCode::UnsupportedImage,
            format!("not a PNG, JPEG or WebP image (its bytes are {other:?})"),
        )),
        None => Err(MarketError::invalid(
            ErrorCode::UnsupportedImage,
            "not a PNG, JPEG or WebP image (its bytes are no image format we know)",
        )),
    }
}

fn reader(bytes: &[u8], format: ImageFormat) -> ImageReader<Cursor<&[u8]>> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader
}

/// Checks `bytes` as an image for `slot` and encodes it again. Every refusal names the
/// problem: `unsupported_image` (not PNG, JPEG or WebP), `media_too_large` (bytes or
/// pixels), `invalid_media` (truncated, corrupt, or against the slot's rules).
pub fn accept(slot: Slot, bytes: &[u8]) -> Result<Accepted, MarketError> {
    if bytes.len() > slot.max_bytes() {
        return Err(too_large(format!(
            "the {} is {} bytes; it may be at most {} bytes ({} MiB)",
            slot.as_str(),
            bytes.len(),
            slot.max_bytes(),
            slot.max_bytes() >> 20
        )));
    }
    let guessed = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| invalid(format!("the image could not be read: {e}")))?
        .format();
    let (format, name) = accepted_format(guessed)?;
    // The header alone: no pixel is allocated before the size is known to be within bounds.
    let mut header = ImageReader::with_format(Cursor::new(bytes), format);
    header.no_limits();
    // The decoder's own words go to the log: they name its internals, not the file's fault.
    let (width, height) = header.into_dimensions().map_err(|e| {
        tracing::debug!(error = %e, "an uploaded image's header cannot be read");
        invalid(format!("not a valid {name} image: its header cannot be read"))
    })?;
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(too_large(format!("{width}×{height} pixels is larger than {MAX_SIDE}×{MAX_SIDE}")));
    }
    check_slot(slot, width, height)?;
    check_complete(format, name, bytes)?;
    let image = reader(bytes, format).decode().map_err(|e| match e {
        image::ImageError::Limits(limit) => too_large(format!(
            "decoding the {width}×{height} {name} image would need more than {} MiB: {limit}",
            MAX_DECODE_BYTES >> 20
        )),
        other => invalid(format!("the {name} image is truncated or corrupt: {other}")),
    })?;
    encode(&image, format, name)
}

/// The slot's rules on the size in pixels.
pub fn check_slot(slot: Slot, width: u32, height: u32) -> Result<(), MarketError> {
    match slot {
        Slot::Icon if width != height => {
            Err(invalid(format!("an icon must be square; this one is {width}×{height} pixels")))
        }
        Slot::Icon if !ICON_SIDES.contains(&width) => Err(invalid(format!(
            "an icon must be {} to {} pixels wide; this one is {width}×{height}",
            ICON_SIDES.start(),
            ICON_SIDES.end()
        ))),
        Slot::Screenshot if width < MIN_SCREENSHOT_WIDTH => Err(invalid(format!(
            "a screenshot must be at least {MIN_SCREENSHOT_WIDTH} pixels wide; this one is {width}×{height}"
        ))),
        _ => Ok(()),
    }
}

/// Whether the file reaches the end its format marks. Some decoders fill in what is
/// missing from a cut-off file; we would rather refuse it. Bytes after that end (a camera's
/// trailer) are allowed: encoding again drops them.
fn check_complete(format: ImageFormat, name: &str, bytes: &[u8]) -> Result<(), MarketError> {
    let complete = match format {
        // An IEND chunk: length 0, then its type.
        ImageFormat::Png => bytes.windows(8).any(|w| w == b"\0\0\0\0IEND"),
        // An end-of-image marker after the last start-of-scan (a thumbnail's own end comes
        // before the image's scans; the scans cannot hold the marker, 0xFF is stuffed there).
        ImageFormat::Jpeg => {
            let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap_or(0);
            bytes[last_scan..].windows(2).any(|w| w == [0xFF, 0xD9])
        }
        // The RIFF header's size counts every byte after the first eight.
        ImageFormat::WebP => bytes
            .get(4..8)
            .and_then(|size| size.try_into().ok())
            .is_some_and(|size: [u8; 4]| u32::from_le_bytes(size) as usize + 8 <= bytes.len()),
        _ => false,
    };
    if complete { Ok(()) } else { Err(invalid(format!("the {name} image is truncated"))) }
}

/// Encodes the decoded pixels again in the kept format: nothing but pixels survives.
fn encode(image: &DynamicImage, format: ImageFormat, name: &str) -> Result<Accepted, MarketError> {
    let mut out = Vec::new();
    let encoded = match format {
        ImageFormat::Jpeg => {
            // JPEG holds no alpha and no 16-bit samples: 8-bit grey or RGB.
            let pixels = if image.color().has_color() {
                DynamicImage::ImageRgb8(image.to_rgb8())
            } else {
                DynamicImage::ImageLuma8(image.to_luma8())
            };
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY);
            pixels.write_with_encoder(encoder).map(|()| "image/jpeg")
        }
        ImageFormat::WebP => {
            // The lossless encoder takes 8-bit RGB or RGBA.
            let pixels = if image.color().has_alpha() {
                DynamicImage::ImageRgba8(image.to_rgba8())
            } else {
                DynamicImage::ImageRgb8(image.to_rgb8())
            };
            let encoder = image::codecs::webp::WebPEncoder::new_lossless(&mut out);
            pixels.write_with_encoder(encoder).map(|()| "image/webp")
        }
        _ => {
            let encoder = image::codecs::png::PngEncoder::new(&mut out);
            image.write_with_encoder(encoder).map(|()| "image/png")
        }
    };
    let content_type = encoded.map_err(|e| invalid(format!("the {name} image could not be encoded again: {e}")))?;
    Ok(Accepted { bytes: out, content_type, width: image.width(), height: image.height() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        }));
        let mut out = Vec::new();
        image.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).unwrap_or_default();
        out
    }

    fn refusal(slot: Slot, bytes: &[u8]) -> (ErrorCode, String) {
        match accept(slot, bytes) {
            Ok(_) => panic!("accepted"),
            Err(error) => (error.code(), error.to_string()),
        }
    }

    #[test]
    fn a_png_icon_is_accepted_and_encoded_again() {
        let accepted = accept(Slot::Icon, &png(64, 64)).map_err(|e| e.to_string());
        let accepted = accepted.as_ref().map(|a| (a.content_type, a.width, a.height));
        assert_eq!(accepted, Ok(("image/png", 64, 64)));
    }

    #[test]
    fn a_webp_stays_webp_losslessly() {
        let image = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(400, 300, image::Rgba([0, 90, 200, 128])));
        let mut webp = Vec::new();
        image.write_to(&mut Cursor::new(&mut webp), ImageFormat::WebP).unwrap_or_default();
        let accepted = accept(Slot::Screenshot, &webp).map_err(|e| e.to_string());
        let decoded = accepted.as_ref().map(|a| image::load_from_memory(&a.bytes).map(|i| i.to_rgba8()).ok());
        assert_eq!(accepted.as_ref().map(|a| a.content_type), Ok("image/webp"));
        assert_eq!(decoded, Ok(Some(image.to_rgba8())), "lossless: the same pixels");
    }

    #[test]
    fn slot_rules_name_the_size() {
        assert_eq!(
            refusal(Slot::Icon, &png(128, 64)),
            (ErrorCode::InvalidMedia, "an icon must be square; this one is 128×64 pixels".into())
        );
        assert_eq!(
            refusal(Slot::Icon, &png(32, 32)),
            (ErrorCode::InvalidMedia, "an icon must be 64 to 1024 pixels wide; this one is 32×32".into())
        );
        assert_eq!(
            refusal(Slot::Screenshot, &png(300, 200)),
            (ErrorCode::InvalidMedia, "a screenshot must be at least 320 pixels wide; this one is 300×200".into())
        );
    }

    #[test]
    fn other_formats_and_noise_are_unsupported() {
        let (code, message) = refusal(Slot::Icon, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;");
        assert_eq!(
            (code, message.as_str()),
            (ErrorCode::UnsupportedImage, "not a PNG, JPEG or WebP image (its bytes are Gif)")
        );
        let (code, _) = refusal(Slot::Icon, b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>");
        assert_eq!(code, ErrorCode::UnsupportedImage);
    }

    #[test]
    fn a_cut_off_jpeg_is_truncated_and_a_trailer_is_dropped() {
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(400, 300, image::Rgb([200, 10, 10])));
        let mut whole = Vec::new();
        image.write_to(&mut Cursor::new(&mut whole), ImageFormat::Jpeg).unwrap_or_default();
        let (code, message) = refusal(Slot::Screenshot, &whole[..whole.len() - 2]);
        assert_eq!((code, message.as_str()), (ErrorCode::InvalidMedia, "the JPEG image is truncated"));
        let mut trailer = whole.clone();
        trailer.extend_from_slice(b"camera trailer");
        let kept = accept(Slot::Screenshot, &trailer).map(|a| (a.content_type, a.bytes.ends_with(&[0xFF, 0xD9])));
        assert_eq!(kept.map_err(|e| e.to_string()), Ok(("image/jpeg", true)));
    }

    #[test]
    fn a_cut_off_png_is_truncated() {
        let whole = png(64, 64);
        let (code, message) = refusal(Slot::Icon, &whole[..whole.len() - 20]);
        assert_eq!((code, message.as_str()), (ErrorCode::InvalidMedia, "the PNG image is truncated"));
    }
}
