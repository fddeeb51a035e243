//! Media (DESIGN §10): what each platform takes, checked when a post is scheduled and again on the
//! bytes when it is published, and the one way Herald fetches a user's media URL.
//!
//! Address rules: `https` only, no credentials in the URL, and no connection to a loopback,
//! private, link-local, CGNAT, multicast or otherwise reserved address (the cloud metadata
//! addresses are link-local). Names are checked on the address each connection actually uses,
//! through a resolver that drops forbidden addresses, so a name that resolves to a private address
//! (or rebinds to one between a check and the connection) is never connected to; literal
//! addresses and every redirect hop are checked before the request is made. No proxy is used, so
//! no one else resolves names for the fetcher. `MEDIA_ALLOW_PRIVATE=true` (tests, local use)
//! lifts both rules.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::Serialize;

use crate::domain::{Platform, ValidationError};

pub mod mp4;

/// Media URLs one post may carry, whatever the platform.
pub const MAX_MEDIA_PER_POST: usize = 35;
/// Longest media URL accepted.
const MAX_URL_LEN: usize = 2048;
/// Redirects a media fetch follows.
const MAX_REDIRECTS: usize = 5;
/// Bytes read to tell a file's type.
const SNIFF_BYTES: usize = 32;
/// Bytes asked for by each ranged read while looking for a video's duration.
const BOX_READ_BYTES: u64 = 64 * 1024;
/// Ranged reads made at most while looking for it: each skips one box too large for a read.
const BOX_READS: usize = 8;

/// Image or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// A still image (GIF included; X counts GIF as video).
    Image,
    /// A video.
    Video,
}

/// A media file format, as its bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JPEG.
    Jpeg,
    /// PNG.
    Png,
    /// GIF.
    Gif,
    /// WebP.
    Webp,
    /// MP4 (ISO base media).
    Mp4,
    /// QuickTime.
    Mov,
    /// WebM.
    Webm,
}

impl Format {
    /// Image or video.
    pub fn kind(self) -> MediaKind {
        match self {
            Format::Jpeg | Format::Png | Format::Gif | Format::Webp => MediaKind::Image,
            Format::Mp4 | Format::Mov | Format::Webm => MediaKind::Video,
        }
    }

    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
            Format::Webp => "image/webp",
            Format::Mp4 => "video/mp4",
            Format::Mov => "video/quicktime",
            Format::Webm => "video/webm",
        }
    }

    /// The format a URL's path names by its extension, if any.
    pub fn from_url(url: &url::Url) -> Option<Format> {
        let name = url.path().rsplit('/').next()?;
        let (_, extension) = name.rsplit_once('.')?;
        Some(match extension.to_ascii_lowercase().as_str() {
            "jpg" | "jpeg" => Format::Jpeg,
            "png" => Format::Png,
            "gif" => Format::Gif,
            "webp" => Format::Webp,
            "mp4" | "m4v" => Format::Mp4,
            "mov" => Format::Mov,
            "webm" => Format::Webm,
            _ => return None,
        })
    }

    /// The format the first bytes of a file show (its magic numbers), if it is one Herald knows.
    pub fn sniff(bytes: &[u8]) -> Option<Format> {
        match bytes {
            [0xFF, 0xD8, 0xFF, ..] => Some(Format::Jpeg),
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(Format::Png),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(Format::Gif),
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(Format::Webp),
            [0x1A, 0x45, 0xDF, 0xA3, ..] => Some(Format::Webm),
            [_, _, _, _, b'f', b't', b'y', b'p', brand @ ..] if brand.len() >= 4 => {
                Some(if &brand[..4] == b"qt  " { Format::Mov } else { Format::Mp4 })
            }
            _ => None,
        }
    }
}

/// What one platform takes in one post (DESIGN §10, PLATFORMS.md).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Image formats taken.
    pub image_formats: &'static [Format],
    /// Video formats taken.
    pub video_formats: &'static [Format],
    /// Most images in one post.
    pub max_images: usize,
    /// Most videos in one post.
    pub max_videos: usize,
    /// Whether images and videos may be mixed (Instagram carousels).
    pub mixed: bool,
    /// Whether a post must carry media.
    pub required: bool,
    /// Largest image, in bytes.
    pub max_image_bytes: u64,
    /// Largest video, in bytes.
    pub max_video_bytes: u64,
    /// Whether a GIF counts as a video (X: one GIF alone).
    pub gif_is_video: bool,
}

const MB: u64 = 1024 * 1024;

impl Limits {
    /// The limits of `platform`.
    pub fn of(platform: Platform) -> Limits {
        use Format::*;
        match platform {
            // PLATFORMS.md §2.4: up to 4 photos, or 1 GIF, or 1 video; images 5 MB, video 512 MB.
            Platform::Twitter => Limits {
                image_formats: &[Jpeg, Png, Gif, Webp],
                video_formats: &[Mp4, Mov],
                max_images: 4,
                max_videos: 1,
                mixed: false,
                required: false,
                max_image_bytes: 5 * MB,
                max_video_bytes: 512 * MB,
                gif_is_video: true,
            },
            // §1.5: up to 20 images (multiImage) or 1 video; images ~5 MB, video 500 MB MP4.
            Platform::Linkedin => Limits {
                image_formats: &[Jpeg, Png, Gif],
                video_formats: &[Mp4],
                max_images: 20,
                max_videos: 1,
                mixed: false,
                required: false,
                max_image_bytes: 5 * MB,
                max_video_bytes: 500 * MB,
                gif_is_video: false,
            },
            // §3.6: one image or reel, or a carousel of 2-10 (mixed); images 8 MB JPEG/PNG,
            // reels 1 GB MP4/MOV.
            Platform::Instagram => Limits {
                image_formats: &[Jpeg, Png],
                video_formats: &[Mp4, Mov],
                max_images: 10,
                max_videos: 10,
                mixed: true,
                required: true,
                max_image_bytes: 8 * MB,
                max_video_bytes: 1024 * MB,
                gif_is_video: false,
            },
            // §4.2-4.3: photos (4 MB JPG/PNG) attached to one post, or one video (1 GB by URL).
            Platform::Facebook => Limits {
                image_formats: &[Jpeg, Png, Gif, Webp],
                video_formats: &[Mp4, Mov],
                max_images: 10,
                max_videos: 1,
                mixed: false,
                required: false,
                max_image_bytes: 4 * MB,
                max_video_bytes: 1024 * MB,
                gif_is_video: false,
            },
            // §5.4: one video (4 GB MP4/WebM/MOV) or up to 35 photos (JPEG/WebP, 20 MB).
            Platform::Tiktok => Limits {
                image_formats: &[Jpeg, Webp],
                video_formats: &[Mp4, Webm, Mov],
                max_images: 35,
                max_videos: 1,
                mixed: false,
                required: true,
                max_image_bytes: 20 * MB,
                max_video_bytes: 4096 * MB,
                gif_is_video: false,
            },
        }
    }

    /// Whether `format` is taken, and its size limit.
    pub fn accepts(&self, format: Format) -> Option<u64> {
        if self.gif_is_video && format == Format::Gif {
            // X: animated GIFs up to 15 MB (PLATFORMS.md §2.4).
            Some(15 * MB)
        } else if self.image_formats.contains(&format) {
            Some(self.max_image_bytes)
        } else if self.video_formats.contains(&format) {
            Some(self.max_video_bytes)
        } else {
            None
        }
    }

    /// Checks the count and kinds of a post's media; `None` for a format not known yet (a URL
    /// without an extension, decided by its bytes when published).
    pub fn check(&self, platform: Platform, formats: &[Option<Format>]) -> Result<(), ValidationError> {
        let error = |message: String| Err(ValidationError::new("media_urls", message));
        if formats.is_empty() {
            if self.required {
                return error(format!("{platform} posts need an image or a video"));
            }
            return Ok(());
        }
        for format in formats.iter().flatten() {
            if self.accepts(*format).is_none() {
                let taken: Vec<&str> = self.image_formats.iter().chain(self.video_formats).map(|f| f.mime()).collect();
                return error(format!("{platform} does not take {}; it takes {}", format.mime(), taken.join(", ")));
            }
        }
        let videos = formats
            .iter()
            .flatten()
            .filter(|f| f.kind() == MediaKind::Video || (self.gif_is_video && **f == Format::Gif))
            .count();
        let images = formats.iter().flatten().count() - videos;
        if self.mixed {
            if formats.len() > self.max_images {
                return error(format!("{platform} takes at most {} media in one post", self.max_images));
            }
            return Ok(());
        }
        if videos > 0 && formats.len() > 1 {
            let what = if self.gif_is_video { "a video or a GIF" } else { "a video" };
            return error(format!("{platform} takes {what} alone, not with other media"));
        }
        if videos == 0 && images + formats.iter().filter(|f| f.is_none()).count() > self.max_images {
            return error(format!("{platform} takes at most {} images in one post", self.max_images));
        }
        Ok(())
    }
}

/// Whether an address is one Herald never connects to for a user's URL: unspecified, loopback,
/// private, link-local (cloud metadata included), CGNAT, benchmarking, multicast, broadcast,
/// documentation and other reserved ranges, and IPv6 forms of them (mapped, NAT64, unique local).
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let segments = v6.segments();
            // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = segments[6].to_be_bytes();
                let [c, d] = segments[7].to_be_bytes();
                return forbidden_v4(Ipv4Addr::new(a, b, c, d));
            }
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (segments[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7 (fd00:ec2::254 included)
                || (segments[0] & 0xffc0) == 0xfe80 // link-local
                || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || segments[0] == 0x2001 && segments[1] == 0x0db8 // documentation
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1)
                || segments[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240 // reserved
}

/// Why a media URL or file was refused, or could not be fetched.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MediaError {
    /// The URL or the file breaks a rule: not retried.
    #[error("{0}")]
    Refused(String),
    /// The media server failed or was slow: worth another attempt.
    #[error("{0}")]
    Unavailable(String),
}

/// Checks a media URL against the address rules, without resolving its name: the scheme, no
/// credentials, a host, and no forbidden literal address or `localhost`. Used when a post is
/// scheduled and on every hop of a fetch.
pub fn check_url(url: &url::Url, allow_private: bool) -> Result<(), String> {
    if url.as_str().len() > MAX_URL_LEN {
        return Err(format!("is longer than {MAX_URL_LEN} characters"));
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err("must be an https URL".into()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password".into());
    }
    let forbidden_host = match url.host() {
        None => return Err("must name a host".into()),
        Some(_) if allow_private => false,
        Some(url::Host::Ipv4(ip)) => forbidden(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => forbidden(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost") || name.ends_with(".internal")
        }
    };
    if forbidden_host {
        return Err("points at a private or reserved address; media must be on a public server".into());
    }
    Ok(())
}

/// Parses and checks a media URL given at schedule time; the format its extension names, if any.
pub fn parse_url(text: &str, allow_private: bool) -> Result<(url::Url, Option<Format>), String> {
    let url = url::Url::parse(text.trim()).map_err(|_| format!("`{}` is not a URL", shorten(text)))?;
    check_url(&url, allow_private).map_err(|reason| format!("`{}` {reason}", shorten(text)))?;
    let format = Format::from_url(&url);
    Ok((url, format))
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(80).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// Resolves names with the system resolver and keeps only the addresses Herald may connect to:
/// every connection (redirects included) resolves through it, so the address checked is the
/// address used.
#[derive(Debug)]
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.into_iter().filter(|a| !forbidden(a.ip())).collect();
            if allowed.is_empty() {
                let error = std::io::Error::other(format!("{host} resolves only to private or reserved addresses"));
                return Err(Box::new(error) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Follows up to [`MAX_REDIRECTS`] redirects, each hop's URL checked by the address rules before
/// anything connects to it.
fn redirect_policy(allow_private: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        match check_url(attempt.url(), allow_private) {
            Ok(()) => attempt.follow(),
            Err(reason) => attempt.error(format!("redirected to a URL that {reason}")),
        }
    })
}

/// A client for users' URLs (media, webhook endpoints): no proxy, a total time limit, the given
/// redirect policy, and, unless `allow_private`, the [`PublicOnly`] resolver, so the address
/// checked is the address connected to.
pub fn guarded_client(allow_private: bool, timeout: Duration, redirect: reqwest::redirect::Policy) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .redirect(redirect)
        .no_proxy()
        .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")));
    if !allow_private {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    builder.build().expect("a rustls client with static settings builds")
}

/// Fetches users' media URLs under the address rules, with a total time limit.
#[derive(Debug, Clone)]
pub struct MediaFetcher {
    client: reqwest::Client,
    allow_private: bool,
}

/// The start of a media file and a stream of the rest.
pub struct Download {
    /// The format its bytes show.
    pub format: Format,
    /// Its size, when the server said (`Content-Length`).
    pub length: Option<u64>,
    limit: u64,
    read: u64,
    buffer: BytesMut,
    stream: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    url: String,
}

impl MediaFetcher {
    /// A fetcher; `allow_private` is `MEDIA_ALLOW_PRIVATE`, `timeout` the total time of a fetch.
    pub fn new(allow_private: bool, timeout: Duration) -> Self {
        Self { client: guarded_client(allow_private, timeout, redirect_policy(allow_private)), allow_private }
    }

    /// Opens `url` and reads enough to tell its type: refused unless `limits` take that format
    /// and its announced size fits. The rest is read in chunks with [`Download::chunk`].
    pub async fn open(&self, url: &str, limits: &Limits) -> Result<Download, MediaError> {
        self.start(url, limits, false).await
    }

    /// Checks a URL a platform will fetch itself (Instagram, Facebook, a TikTok pull): the same
    /// rules, and the type and size from the first bytes (a ranged request), nothing more read.
    pub async fn probe(&self, url: &str, limits: &Limits) -> Result<Download, MediaError> {
        self.start(url, limits, true).await
    }

    /// The duration an MP4 or QuickTime video's movie header gives ([`mp4`]), found by a few
    /// ranged reads that skip the boxes before it, whether it comes before the media or after it;
    /// the same address rules. `None` when the server does not answer ranges or the file tells
    /// no duration within [`BOX_READS`] reads: the platform then judges the length itself.
    pub async fn video_duration(&self, url: &str) -> Result<Option<Duration>, MediaError> {
        let (parsed, _) = parse_url(url, self.allow_private).map_err(MediaError::Refused)?;
        let shown = shorten(url);
        let mut offset = 0u64;
        for _ in 0..BOX_READS {
            let range = format!("bytes={offset}-{}", offset.saturating_add(BOX_READ_BYTES - 1));
            let request = self.client.get(parsed.clone()).header(reqwest::header::RANGE, range);
            let mut response = request.send().await.map_err(|error| fetch_error(&shown, &error))?;
            if response.status() != reqwest::StatusCode::PARTIAL_CONTENT {
                return Ok(None);
            }
            let size = file_size(&response).unwrap_or(u64::MAX);
            // A server that sends more than was asked for is not read past the read's size.
            let mut bytes = Vec::new();
            while (bytes.len() as u64) < BOX_READ_BYTES {
                match response.chunk().await.map_err(|error| fetch_error(&shown, &error))? {
                    Some(chunk) => bytes.extend_from_slice(&chunk),
                    None => break,
                }
            }
            bytes.truncate(BOX_READ_BYTES as usize);
            match mp4::walk(&bytes, offset) {
                mp4::Walk::Duration(duration) => return Ok(Some(duration)),
                mp4::Walk::Next(next) if next > offset && next < size => offset = next,
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    async fn start(&self, url: &str, limits: &Limits, probe: bool) -> Result<Download, MediaError> {
        let (parsed, _) = parse_url(url, self.allow_private).map_err(MediaError::Refused)?;
        let shown = shorten(url);
        let mut request = self.client.get(parsed);
        if probe {
            request = request.header(reqwest::header::RANGE, format!("bytes=0-{}", SNIFF_BYTES - 1));
        }
        let response = request.send().await.map_err(|error| fetch_error(&shown, &error))?;
        let status = response.status();
        if !status.is_success() {
            let message = format!("fetching media {shown} answered HTTP {}", status.as_u16());
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                MediaError::Unavailable(message)
            } else {
                MediaError::Refused(message)
            });
        }
        let length = if status == reqwest::StatusCode::PARTIAL_CONTENT {
            file_size(&response)
        } else {
            response.content_length()
        };
        let mut download = Download {
            format: Format::Jpeg,
            length,
            limit: u64::MAX,
            read: 0,
            buffer: BytesMut::new(),
            stream: response.bytes_stream().boxed(),
            url: shown.clone(),
        };
        while download.buffer.len() < SNIFF_BYTES {
            match download.stream.next().await {
                Some(Ok(bytes)) => download.buffer.extend_from_slice(&bytes),
                Some(Err(error)) => return Err(fetch_error(&shown, &error)),
                None => break,
            }
        }
        let Some(format) = Format::sniff(&download.buffer) else {
            return Err(MediaError::Refused(format!("{shown} is not an image or video Herald can publish")));
        };
        let Some(limit) = limits.accepts(format) else {
            return Err(MediaError::Refused(format!(
                "{shown} is {}, which this platform does not take",
                format.mime()
            )));
        };
        if let Some(length) = length
            && length > limit
        {
            return Err(MediaError::Refused(format!(
                "{shown} is {:.1} MB, over the limit of {} MB",
                length as f64 / MB as f64,
                limit / MB
            )));
        }
        download.format = format;
        download.limit = limit;
        download.read = download.buffer.len() as u64;
        Ok(download)
    }
}

/// The whole file's size a ranged answer gives: `Content-Range: bytes 0-31/12345`.
fn file_size(response: &reqwest::Response) -> Option<u64> {
    let range = response.headers().get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    range.rsplit('/').next()?.parse().ok()
}

fn fetch_error(url: &str, error: &reqwest::Error) -> MediaError {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        reason = format!("{reason}: {inner}");
        source = inner.source();
    }
    let reason = reason.replace(url, "");
    if error.is_redirect() || reason.contains("private or reserved") {
        MediaError::Refused(format!("fetching media {url} was refused: {reason}"))
    } else {
        MediaError::Unavailable(format!("fetching media {url} failed: {reason}"))
    }
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download").field("format", &self.format).field("length", &self.length).finish_non_exhaustive()
    }
}

impl Download {
    /// The next `size` bytes (fewer at the end of the file, `None` after it), never more than
    /// `size` held at once; an over-limit file is refused as soon as it passes the limit.
    pub async fn chunk(&mut self, size: usize) -> Result<Option<Bytes>, MediaError> {
        while self.buffer.len() < size {
            match self.stream.next().await {
                Some(Ok(bytes)) => {
                    self.read += bytes.len() as u64;
                    if self.read > self.limit {
                        return Err(MediaError::Refused(format!(
                            "{} is over the limit of {} MB",
                            self.url,
                            self.limit / MB
                        )));
                    }
                    self.buffer.extend_from_slice(&bytes);
                }
                Some(Err(error)) => return Err(fetch_error(&self.url, &error)),
                None => break,
            }
        }
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let take = size.min(self.buffer.len());
        Ok(Some(self.buffer.split_to(take).freeze()))
    }

    /// The whole file (for images, which are small).
    pub async fn all(mut self) -> Result<Bytes, MediaError> {
        let size = usize::try_from(self.limit).unwrap_or(usize::MAX).saturating_add(1);
        let bytes = self.chunk(size).await?.unwrap_or_default();
        if let Some(length) = self.length
            && length != bytes.len() as u64
        {
            return Err(MediaError::Unavailable(format!("{} ended after {} of {length} bytes", self.url, bytes.len())));
        }
        Ok(bytes)
    }

    /// Its size, which chunked uploads must announce first; refused when the server did not say.
    pub fn size(&self) -> Result<u64, MediaError> {
        self.length.ok_or_else(|| {
            MediaError::Refused(format!(
                "{} has no Content-Length; videos must come from a server that sends one",
                self.url
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(forbidden(ip.parse().expect("ip")), "{ip} must be forbidden");
        }
        for ip in ["8.8.8.8", "151.101.1.140", "2606:4700::6810:85e5", "100.128.0.1"] {
            assert!(!forbidden(ip.parse().expect("ip")), "{ip} is public");
        }
    }

    #[test]
    fn urls_are_checked_before_resolving() {
        let refused = |text: &str| parse_url(text, false).expect_err(text);
        assert!(refused("http://cdn.example.com/a.jpg").contains("https"));
        assert!(refused("https://127.0.0.1/a.jpg").contains("private"));
        assert!(refused("https://[::ffff:169.254.169.254]/a.jpg").contains("private"));
        assert!(refused("https://localhost:8443/a.jpg").contains("private"));
        assert!(refused("https://metadata.google.internal/a.jpg").contains("private"));
        assert!(refused("https://user:pw@cdn.example.com/a.jpg").contains("password"));
        assert!(refused("file:///etc/passwd").contains("https"));
        let (_, format) = parse_url("https://cdn.example.com/a/b.JPG?sig=1", false).expect("public");
        assert_eq!(format, Some(Format::Jpeg));
        assert!(parse_url("http://127.0.0.1:9000/v.mp4", true).is_ok(), "the switch lifts both rules");
    }

    #[test]
    fn formats_come_from_bytes() {
        assert_eq!(Format::sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]), Some(Format::Jpeg));
        assert_eq!(Format::sniff(b"\x89PNG\r\n\x1a\n...."), Some(Format::Png));
        assert_eq!(Format::sniff(b"GIF89a...."), Some(Format::Gif));
        assert_eq!(Format::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::Webp));
        assert_eq!(Format::sniff(b"\0\0\0\x20ftypisom\0\0\x02\0"), Some(Format::Mp4));
        assert_eq!(Format::sniff(b"\0\0\0\x14ftypqt  \0\0\x02\0"), Some(Format::Mov));
        assert_eq!(Format::sniff(b"<html><body>"), None);
    }

    #[test]
    fn counts_and_kinds_per_platform() {
        use Format::*;
        let check = |p: Platform, f: &[Option<Format>]| Limits::of(p).check(p, f).map_err(|e| e.message);
        assert!(check(Platform::Twitter, &[Some(Jpeg); 4]).is_ok());
        assert!(check(Platform::Twitter, &[Some(Jpeg); 5]).expect_err("5").contains("at most 4"));
        assert!(check(Platform::Twitter, &[Some(Mp4), Some(Jpeg)]).expect_err("mix").contains("alone"));
        assert!(check(Platform::Twitter, &[Some(Gif), Some(Jpeg)]).expect_err("gif").contains("GIF"));
        assert!(check(Platform::Instagram, &[]).expect_err("none").contains("need"));
        assert!(check(Platform::Instagram, &[Some(Jpeg), Some(Mp4)]).is_ok(), "a mixed carousel");
        assert!(check(Platform::Instagram, &[Some(Jpeg); 11]).expect_err("11").contains("at most 10"));
        assert!(check(Platform::Instagram, &[Some(Gif)]).expect_err("gif").contains("does not take image/gif"));
        assert!(check(Platform::Tiktok, &[Some(Png)]).expect_err("png").contains("does not take"));
        assert!(check(Platform::Linkedin, &[Some(Jpeg); 20]).is_ok());
        assert!(check(Platform::Facebook, &[Some(Mp4), Some(Mp4)]).expect_err("2 videos").contains("alone"));
        assert!(check(Platform::Twitter, &[None, None]).is_ok(), "decided by the bytes later");
    }

    #[tokio::test]
    async fn the_guarded_client_never_connects_to_a_name_that_resolves_privately() {
        // A name the URL check would let through if it looked only at the text, resolving to
        // loopback: the resolver refuses it on the connection itself, so nothing connects.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client = guarded_client(false, Duration::from_secs(5), reqwest::redirect::Policy::none());
        let error = client.get(format!("http://localhost:{port}/hook")).send().await.expect_err("refused");
        let chain = std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        assert!(chain.contains("private or reserved"), "{chain}");
        // The request has failed: a connection, had it been made, would be waiting now.
        let accepted = tokio::time::timeout(Duration::from_millis(1), listener.accept()).await;
        assert!(accepted.is_err(), "the client connected to loopback");
        // The same client with the switch on does connect (the test can tell).
        let open = guarded_client(true, Duration::from_secs(5), reqwest::redirect::Policy::none());
        let request = tokio::spawn(async move { open.get(format!("http://localhost:{port}/hook")).send().await });
        let (stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("a connection")
            .expect("accept");
        drop(stream);
        let _ = request.await;
    }

    /// Answers every request on `listener` with a `302` to `to`.
    async fn redirect_to(listener: tokio::net::TcpListener, to: String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let answer =
                format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    }

    #[tokio::test]
    async fn every_redirect_hop_is_held_to_the_address_rules_before_connecting() {
        // The first hop is a local server, reached by a client whose resolver lets it through
        // (no public https server can be started here); the fetcher's redirect policy, with the
        // rules on, judges where it sends the request next.
        let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = target.local_addr().expect("addr").port();
        let client = guarded_client(true, Duration::from_secs(5), redirect_policy(false));
        for to in [
            format!("https://127.0.0.1:{port}/a.jpg"),
            format!("https://localhost:{port}/a.jpg"),
            format!("http://127.0.0.1:{port}/a.jpg"),
            "https://169.254.169.254/latest/meta-data/a.jpg".to_owned(),
            "https://[::ffff:10.0.0.1]/a.jpg".to_owned(),
        ] {
            let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let url = format!("http://127.0.0.1:{}/start.jpg", first.local_addr().expect("addr").port());
            let server = tokio::spawn(redirect_to(first, to.clone()));
            let error = client.get(url).send().await.expect_err("the redirect is refused");
            server.abort();
            assert!(error.is_redirect(), "{to}: {error}");
            let shown = fetch_error("start.jpg", &error).to_string();
            assert!(shown.contains("redirected to a URL that") && shown.contains("refused"), "{to}: {shown}");
            // The request has failed: a connection to the next hop, had it been made, would be
            // waiting now.
            let accepted = tokio::time::timeout(Duration::from_millis(1), target.accept()).await;
            assert!(accepted.is_err(), "{to}: the redirect was followed");
        }
        // With the switch on the same redirect is followed (the test can tell).
        let open = guarded_client(true, Duration::from_secs(5), redirect_policy(true));
        let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://127.0.0.1:{}/start.jpg", first.local_addr().expect("addr").port());
        let server = tokio::spawn(redirect_to(first, format!("http://127.0.0.1:{port}/a.jpg")));
        let request = tokio::spawn(async move { open.get(url).send().await });
        let (stream, _) =
            tokio::time::timeout(Duration::from_secs(5), target.accept()).await.expect("followed").expect("accept");
        drop(stream);
        let _ = request.await;
        server.abort();
    }
}
