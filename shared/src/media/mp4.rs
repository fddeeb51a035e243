//! A video's duration from its ISO base media boxes (MP4 and QuickTime: ISO/IEC 14496-12 §4.2 and
//! §8.2.2), read from a few ranged reads of the file rather than the whole of it.
//!
//! A file is a run of top-level boxes, each `size` (32 bits; 1 means a 64-bit `largesize`
//! follows the type, 0 means "to the end of the file") and a four-letter type. The movie box
//! (`moov`) holds the movie header (`mvhd`), whose `timescale` and `duration` give the length.
//! `moov` comes before the media (`mdat`) in files made for streaming and after it otherwise, so
//! the walk skips over boxes by their sizes, never reading what is in them.

use std::time::Duration;

/// Where a walk over a file's top-level boxes stands after reading some of its bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Walk {
    /// The movie's duration, from `moov`/`mvhd`.
    Duration(Duration),
    /// The next box starts at this offset of the file, past the bytes read.
    Next(u64),
    /// The file tells no duration: no `moov` before a box that runs to its end, a movie header
    /// without one, or a malformed box.
    Unknown,
}

/// A box's size (its header included), type and header length, if `bytes` hold its header.
fn header(bytes: &[u8]) -> Option<(u64, [u8; 4], usize)> {
    let size = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
    let kind: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
    if size == 1 {
        let large = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        return Some((large, kind, 16));
    }
    Some((u64::from(size), kind, 8))
}

/// Walks the top-level boxes in `bytes`, which are the file's bytes from `offset` on and start at
/// a box boundary.
pub fn walk(bytes: &[u8], offset: u64) -> Walk {
    let mut at = 0usize;
    while let Some((size, kind, header_len)) = header(&bytes[at..]) {
        if size != 0 && size < header_len as u64 {
            return Walk::Unknown;
        }
        if &kind == b"moov" {
            let end = if size == 0 { bytes.len() } else { usize::try_from(size).map_or(bytes.len(), |s| at + s) };
            if let Some(duration) = movie_duration(&bytes[at + header_len..end.min(bytes.len())]) {
                return Walk::Duration(duration);
            }
            // A movie box cut short by the read is read again from its start.
            return if end > bytes.len() && at > 0 { next(offset, at as u64) } else { Walk::Unknown };
        }
        if size == 0 {
            return Walk::Unknown;
        }
        match usize::try_from(size).ok().and_then(|s| at.checked_add(s)).filter(|next| *next <= bytes.len()) {
            Some(next) => at = next,
            None => return (at as u64).checked_add(size).map_or(Walk::Unknown, |past| next(offset, past)),
        }
    }
    next(offset, at as u64)
}

/// The walk goes on at `past` bytes after `offset`, unless that is past any file's end.
fn next(offset: u64, past: u64) -> Walk {
    offset.checked_add(past).map_or(Walk::Unknown, Walk::Next)
}

/// The duration in the `mvhd` among a movie box's children (§8.2.2: version 0 has 32-bit times
/// and duration, version 1 64-bit ones); `None` without one, with a zero timescale, or with a
/// duration of zero or all ones (unknown; a fragmented file keeps its length elsewhere).
fn movie_duration(children: &[u8]) -> Option<Duration> {
    let mut at = 0usize;
    while let Some((size, kind, header_len)) = header(&children[at..]) {
        let body = &children[at + header_len..];
        if &kind == b"mvhd" {
            let (timescale, duration) = match *body.first()? {
                0 => (be32(body, 12)?, u64::from(be32(body, 16)?)),
                1 => (be32(body, 20)?, u64::from_be_bytes(body.get(24..32)?.try_into().ok()?)),
                _ => return None,
            };
            let unknown = if body[0] == 0 { u64::from(u32::MAX) } else { u64::MAX };
            if timescale == 0 || duration == 0 || duration == unknown {
                return None;
            }
            let millis = u128::from(duration) * 1000 / u128::from(timescale);
            return Some(Duration::from_millis(u64::try_from(millis).ok()?));
        }
        if size < header_len as u64 {
            return None;
        }
        at = usize::try_from(size).ok().and_then(|s| at.checked_add(s)).filter(|next| *next <= children.len())?;
    }
    None
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A box of `kind` around `body`, with a 64-bit size when `large`.
    fn boxed(kind: &[u8; 4], body: &[u8], large: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if large {
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(kind);
            out.extend_from_slice(&(body.len() as u64 + 16).to_be_bytes());
        } else {
            out.extend_from_slice(&(body.len() as u32 + 8).to_be_bytes());
            out.extend_from_slice(kind);
        }
        out.extend_from_slice(body);
        out
    }

    fn mvhd(version: u8, timescale: u32, duration: u64) -> Vec<u8> {
        let mut body = vec![version, 0, 0, 0];
        let times = if version == 0 { 8 } else { 16 };
        body.extend(std::iter::repeat_n(0, times));
        body.extend_from_slice(&timescale.to_be_bytes());
        if version == 0 {
            body.extend_from_slice(&u32::try_from(duration).expect("v0").to_be_bytes());
        } else {
            body.extend_from_slice(&duration.to_be_bytes());
        }
        body.extend(std::iter::repeat_n(0, 80));
        boxed(b"mvhd", &body, false)
    }

    fn ftyp() -> Vec<u8> {
        boxed(b"ftyp", b"isom\0\0\x02\0isomiso2avc1mp41", false)
    }

    #[test]
    fn the_movie_header_up_front_gives_the_duration() {
        let moov = boxed(b"moov", &[boxed(b"udta", b"xx", false), mvhd(0, 600, 54_000)].concat(), false);
        let file = [ftyp(), moov, boxed(b"mdat", &[7; 100], false)].concat();
        assert_eq!(walk(&file, 0), Walk::Duration(Duration::from_secs(90)));
        let moov = boxed(b"moov", &mvhd(1, 90_000, 90_000 * 3600 * 5), true);
        assert_eq!(walk(&[ftyp(), moov].concat(), 0), Walk::Duration(Duration::from_secs(5 * 3600)));
    }

    #[test]
    fn a_movie_header_after_the_media_is_found_past_it() {
        // Only the header of a 5 GB `mdat` was read: the walk says where the next box starts.
        let mdat_header = [&1u32.to_be_bytes()[..], b"mdat", &5_000_000_000u64.to_be_bytes()].concat();
        let head = [ftyp(), mdat_header].concat();
        let next = 32 + 5_000_000_000;
        assert_eq!(walk(&head, 0), Walk::Next(next));
        let moov = boxed(b"moov", &mvhd(0, 1000, 12_345), false);
        assert_eq!(walk(&moov, next), Walk::Duration(Duration::from_millis(12_345)));
        // A read that ends inside a box header continues from that header.
        assert_eq!(walk(&ftyp()[..20], 4096), Walk::Next(4096 + 32));
        assert_eq!(walk(&[ftyp(), vec![0, 0]].concat(), 0), Walk::Next(32));
    }

    #[test]
    fn files_without_a_usable_duration_say_so() {
        let to_the_end = [ftyp(), [&0u32.to_be_bytes()[..], b"mdat", &[1; 40]].concat()].concat();
        assert_eq!(walk(&to_the_end, 0), Walk::Unknown, "an mdat to the end of the file, no moov before it");
        let bad_size = [&4u32.to_be_bytes()[..], b"ftyp"].concat();
        assert_eq!(walk(&bad_size, 0), Walk::Unknown, "a box smaller than its header");
        for header in [mvhd(0, 0, 10), mvhd(0, 1000, 0), mvhd(0, 1000, u64::from(u32::MAX)), mvhd(1, 1000, u64::MAX)] {
            assert_eq!(walk(&boxed(b"moov", &header, false), 0), Walk::Unknown, "{header:?}");
        }
        assert_eq!(walk(&boxed(b"moov", &boxed(b"trak", b"", false), false), 0), Walk::Unknown, "no mvhd");
        let truncated = boxed(b"moov", &mvhd(0, 1000, 5000), false);
        assert_eq!(walk(&truncated[..30], 0), Walk::Unknown, "a movie header cut short");
        assert_eq!(walk(&[ftyp(), truncated[..30].to_vec()].concat(), 0), Walk::Next(32), "read again from moov");
    }
}
