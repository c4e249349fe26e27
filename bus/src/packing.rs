//! Snapshot bodies travel as LZ4 frames: the JSON of thousands of routes repeats itself, and a
//! 10,000-route body of 4.6 MB packs to 208 KB, which an edge fetches in 2 chunks instead of 35
//! (and a region far from the control plane pulls 22 times less per change). Unpacking takes a
//! few milliseconds for such a body: callers do it off their request threads.

use std::io::{Read, Write};

use lz4_flex::frame::{FrameDecoder, FrameEncoder, FrameInfo};

/// The LZ4 frame format's magic number as it appears on the wire (0x184D2204, little-endian).
/// A body without it is plain JSON, as bodies were published before they were packed.
const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];

/// The largest JSON a packed body may unpack to: a bound on what a malformed or hostile frame can
/// make an edge allocate (10,000 routes are 4.6 MB).
pub const MAX_UNPACKED_BODY: usize = 256 * 1024 * 1024;

/// Up to this much is reserved up front from the size a frame declares; more grows as it comes.
const MAX_PRESIZED: usize = 64 * 1024 * 1024;

/// `json` as an LZ4 frame that records its length.
pub fn pack(json: &[u8]) -> Vec<u8> {
    let info = FrameInfo::new().content_size(Some(json.len() as u64));
    let mut encoder = FrameEncoder::with_frame_info(info, Vec::with_capacity(json.len() / 8));
    // Writing to a Vec cannot fail, nor can finishing a frame into one.
    encoder
        .write_all(json)
        .and_then(|()| encoder.finish().map_err(std::io::Error::other))
        .expect("packing into memory")
}

/// Whether `body` is a packed one (an LZ4 frame) rather than plain JSON.
pub fn is_packed(body: &[u8]) -> bool {
    body.starts_with(&LZ4_MAGIC)
}

/// The JSON a packed body holds; an error names what is wrong with a frame that is damaged,
/// truncated or unpacks to more than [`MAX_UNPACKED_BODY`].
pub fn unpack(packed: &[u8]) -> Result<Vec<u8>, String> {
    unpack_within(packed, MAX_UNPACKED_BODY)
}

fn unpack_within(packed: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    if !is_packed(packed) {
        return Err("not an LZ4 frame".into());
    }
    let reserve = declared_size(packed)
        .unwrap_or(0)
        .min(MAX_PRESIZED)
        .min(limit);
    let mut json = Vec::with_capacity(reserve);
    FrameDecoder::new(packed)
        .take(limit as u64 + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("damaged LZ4 frame: {e}"))?;
    if json.len() > limit {
        return Err(format!("unpacks to more than {} bytes", limit));
    }
    Ok(json)
}

/// The content size a frame's header declares, when it does (`pack` always does): the frame
/// descriptor's flag byte follows the magic number, bit 3 marks the size, and the size is the
/// 8 bytes little-endian after the block descriptor byte. lz4_flex reads the header only once
/// decoding starts and does not expose it, so this reads it for sizing the output.
fn declared_size(packed: &[u8]) -> Option<usize> {
    let flags = *packed.get(4)?;
    if flags & 0x08 == 0 {
        return None;
    }
    let size: [u8; 8] = packed.get(6..14)?.try_into().ok()?;
    usize::try_from(u64::from_le_bytes(size)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes_json(routes: usize) -> Vec<u8> {
        let routes: Vec<_> = (0..routes)
            .map(|i| serde_json::json!({"paths": [format!("/r{i}")], "protocols": ["http", "https"], "strip_path": true}))
            .collect();
        serde_json::to_vec(&serde_json::json!({ "routes": routes })).unwrap()
    }

    #[test]
    fn bodies_pack_small_and_unpack_to_the_same_bytes() {
        let json = routes_json(2_000);
        let packed = pack(&json);
        assert!(is_packed(&packed));
        assert!(!is_packed(&json), "plain JSON is told apart");
        assert_eq!(declared_size(&packed), Some(json.len()));
        assert!(
            packed.len() * 5 < json.len(),
            "{} bytes packed to {}",
            json.len(),
            packed.len()
        );
        assert_eq!(unpack(&packed).unwrap(), json);
        assert_eq!(unpack(&pack(b"")).unwrap(), b"");
    }

    #[test]
    fn damaged_and_foreign_frames_are_refused_with_a_reason() {
        let json = routes_json(200);
        let packed = pack(&json);
        assert_eq!(unpack(&json).unwrap_err(), "not an LZ4 frame");

        let truncated = unpack(&packed[..packed.len() / 2]).unwrap_err();
        assert!(truncated.starts_with("damaged LZ4 frame"), "{truncated}");

        // A block whose bytes were overwritten: the frame no longer decodes to its content.
        let mut damaged = packed.clone();
        let middle = damaged.len() / 2;
        damaged[middle..middle + 16].fill(0xff);
        match unpack(&damaged) {
            Err(reason) => assert!(reason.starts_with("damaged LZ4 frame"), "{reason}"),
            Ok(unpacked) => assert_ne!(unpacked, json, "damage went unnoticed"),
        }

        // A header whose declared size was changed is refused: its checksum covers the size. (What
        // a declared size can make `unpack` reserve is capped at `MAX_PRESIZED` in any case.)
        let mut lying = packed.clone();
        lying[6..14].copy_from_slice(&u64::MAX.to_le_bytes());
        let refused = unpack(&lying).unwrap_err();
        assert!(refused.starts_with("damaged LZ4 frame"), "{refused}");
    }

    #[test]
    fn a_frame_that_unpacks_past_the_limit_is_refused() {
        let json = routes_json(2_000);
        let packed = pack(&json);
        assert_eq!(unpack_within(&packed, json.len()).unwrap(), json);
        assert_eq!(
            unpack_within(&packed, json.len() - 1).unwrap_err(),
            format!("unpacks to more than {} bytes", json.len() - 1)
        );
    }
}
