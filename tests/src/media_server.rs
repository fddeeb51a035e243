//! A test media server: plain http on loopback serving generated media files, the stand-in for
//! the public URLs Herald and the platforms download media from. Every file is generated from its
//! kind and size alone (a real magic-number header, then a counter pattern, then the kind's
//! trailer), streamed in chunks so a 300 MB video never sits in memory, and reproducible by
//! [`expected_sha256`] without downloading it.
//!
//! Paths (all answer `HEAD` with the same headers and no body; `Range: bytes=…` gets a 206):
//! * `/media/{name}.{jpg,jpeg,png,gif,webp,mp4,mov}?bytes=N` — default sizes
//!   [`DEFAULT_IMAGE_BYTES`] and [`DEFAULT_VIDEO_BYTES`]; the name is free.
//! * `/media/mislabelled.jpg` — [`MISLABELLED_BODY`] served as `image/jpeg`.
//! * `/media/page.html` — [`PAGE_HTML`] served as `text/html`.
//! * `/slow/{name}.{ext}?bytes=N&bps=B` — the same file, dripped at `B` bytes per second.
//! * `/redirect?to=<url>` — `302 Found` to `to`.
//! * `/status/{code}` — answers `code` with a short text body (a failing download).
//!
//! Options on any media path: `length=none` (no `Content-Length`: chunked transfer),
//! `abort_after=N` (the connection is cut after `N` body bytes), `content_type=…` (another
//! `Content-Type` for the same bytes). On a video, `seconds=S` ends the file with a movie box
//! (`moov` holding an `mvhd` of `S` seconds) after the media, as files not made for streaming
//! have it; without it a video has no movie box and tells no duration.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use poem::{
    Body, EndpointExt, Request, Response, Route, handler,
    http::{Method, StatusCode, header},
    web::{Data, Path},
};
use sha2::{Digest, Sha256};

use crate::{Recorder, Serve, serve_fake_with};

/// Size of a generated image when `bytes` is absent.
pub const DEFAULT_IMAGE_BYTES: u64 = 50_000;
/// Size of a generated video when `bytes` is absent.
pub const DEFAULT_VIDEO_BYTES: u64 = 3_000_000;
/// The body of `/media/mislabelled.jpg`: text, served as `image/jpeg`.
pub const MISLABELLED_BODY: &[u8] = b"this is not an image";
/// The body of `/media/page.html`.
pub const PAGE_HTML: &str =
    "<!doctype html>\n<html><head><title>Not media</title></head><body><p>This is a web page.</p></body></html>\n";
/// Width and height written in generated image headers.
pub const IMAGE_SIDE: u32 = 1080;

/// Bytes per chunk of a streamed body.
const CHUNK: usize = 64 * 1024;
/// The padding repeats every `PERIOD` bytes: byte `i` of the file's padding is `i % 251`, which is
/// never `0xFF`, so it never forms a JPEG marker.
const PERIOD: usize = 251;

/// A kind of generated media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// JFIF JPEG.
    Jpeg,
    /// PNG.
    Png,
    /// GIF89a.
    Gif,
    /// WebP (lossy `VP8 ` chunk).
    Webp,
    /// MP4 (`ftyp` isom + `mdat`).
    Mp4,
    /// QuickTime (`ftyp` `qt  ` + `mdat`).
    Mov,
}

impl Kind {
    /// The kind a file extension names (`jpg`, `jpeg`, `png`, `gif`, `webp`, `mp4`, `mov`).
    pub fn from_extension(ext: &str) -> Option<Self> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "jpg" | "jpeg" => Self::Jpeg,
            "png" => Self::Png,
            "gif" => Self::Gif,
            "webp" => Self::Webp,
            "mp4" => Self::Mp4,
            "mov" => Self::Mov,
            _ => return None,
        })
    }

    /// Its `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
            Self::Mp4 => "video/mp4",
            Self::Mov => "video/quicktime",
        }
    }

    /// Whether it is a video kind.
    pub fn is_video(self) -> bool {
        matches!(self, Self::Mp4 | Self::Mov)
    }

    /// Its size when `bytes` is absent.
    pub fn default_bytes(self) -> u64 {
        if self.is_video() { DEFAULT_VIDEO_BYTES } else { DEFAULT_IMAGE_BYTES }
    }

    /// The bytes a file of this kind starts with, for a file of `total` bytes that ends with
    /// `tail` bytes after its media.
    fn header(self, total: u64, tail: u64) -> Vec<u8> {
        let side = IMAGE_SIDE;
        let mut out = Vec::new();
        match self {
            Self::Jpeg => {
                out.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10]);
                out.extend_from_slice(b"JFIF\0");
                out.extend_from_slice(&[0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00]);
            }
            Self::Png => {
                out.extend_from_slice(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]);
                let mut chunk = b"IHDR".to_vec();
                chunk.extend_from_slice(&side.to_be_bytes());
                chunk.extend_from_slice(&side.to_be_bytes());
                chunk.extend_from_slice(&[8, 2, 0, 0, 0]);
                out.extend_from_slice(&13u32.to_be_bytes());
                out.extend_from_slice(&chunk);
                out.extend_from_slice(&crc32(&chunk).to_be_bytes());
            }
            Self::Gif => {
                out.extend_from_slice(b"GIF89a");
                let side = u16::try_from(side).expect("side fits a GIF");
                out.extend_from_slice(&side.to_le_bytes());
                out.extend_from_slice(&side.to_le_bytes());
                out.extend_from_slice(&[0x00, 0x00, 0x00]);
            }
            Self::Webp => {
                let riff = u32::try_from(total.saturating_sub(8)).unwrap_or(u32::MAX);
                let vp8 = u32::try_from(total.saturating_sub(20)).unwrap_or(u32::MAX);
                out.extend_from_slice(b"RIFF");
                out.extend_from_slice(&riff.to_le_bytes());
                out.extend_from_slice(b"WEBPVP8 ");
                out.extend_from_slice(&vp8.to_le_bytes());
            }
            Self::Mp4 | Self::Mov => {
                if self == Self::Mp4 {
                    out.extend_from_slice(&[0x00, 0x00, 0x00, 0x20]);
                    out.extend_from_slice(b"ftypisom");
                    out.extend_from_slice(&[0x00, 0x00, 0x02, 0x00]);
                    out.extend_from_slice(b"isomiso2avc1mp41");
                } else {
                    out.extend_from_slice(&[0x00, 0x00, 0x00, 0x14]);
                    out.extend_from_slice(b"ftypqt  ");
                    out.extend_from_slice(&[0x00, 0x00, 0x02, 0x00]);
                    out.extend_from_slice(b"qt  ");
                }
                let mdat = total.saturating_sub(out.len() as u64 + tail);
                match u32::try_from(mdat) {
                    Ok(size) => {
                        out.extend_from_slice(&size.to_be_bytes());
                        out.extend_from_slice(b"mdat");
                    }
                    Err(_) => {
                        out.extend_from_slice(&1u32.to_be_bytes());
                        out.extend_from_slice(b"mdat");
                        out.extend_from_slice(&mdat.to_be_bytes());
                    }
                }
            }
        }
        out
    }

    /// The bytes a file of this kind ends with; a video of `seconds` ends with its movie box.
    fn trailer(self, seconds: Option<u32>) -> Vec<u8> {
        match self {
            Self::Jpeg => vec![0xFF, 0xD9],
            Self::Png => vec![0x00, 0x00, 0x00, 0x00, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82],
            Self::Gif => vec![0x3B],
            Self::Webp => Vec::new(),
            Self::Mp4 | Self::Mov => seconds.map(movie_box).unwrap_or_default(),
        }
    }
}

/// A `moov` box holding a version 0 `mvhd` (ISO/IEC 14496-12 §8.2.2) of `seconds` at a timescale
/// of 1000, with the identity matrix and no tracks.
fn movie_box(seconds: u32) -> Vec<u8> {
    let mut mvhd = vec![0u8; 4 + 8];
    mvhd.extend_from_slice(&1000u32.to_be_bytes());
    mvhd.extend_from_slice(&seconds.saturating_mul(1000).to_be_bytes());
    mvhd.extend_from_slice(&0x0001_0000u32.to_be_bytes());
    mvhd.extend_from_slice(&0x0100u16.to_be_bytes());
    mvhd.extend_from_slice(&[0; 10]);
    for cell in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        mvhd.extend_from_slice(&cell.to_be_bytes());
    }
    mvhd.extend_from_slice(&[0; 24]);
    mvhd.extend_from_slice(&2u32.to_be_bytes());
    let boxed = |kind: &[u8], body: &[u8]| {
        [&u32::try_from(body.len() + 8).expect("small box").to_be_bytes()[..], kind, body].concat()
    };
    boxed(b"moov", &boxed(b"mvhd", &mvhd))
}

/// CRC-32 (ISO-HDLC, as PNG uses).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// `PERIOD * 256` bytes of the padding pattern, starting at a multiple of `PERIOD`.
fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| (0..PERIOD * 256).map(|i| (i % PERIOD) as u8).collect())
}

/// What a path serves: its bytes are computed from it, by offset.
#[derive(Debug, Clone)]
enum Content {
    /// Generated media: `head`, then padding, then `tail`, `total` bytes in all.
    Generated { kind: Kind, total: u64, head: Vec<u8>, tail: Vec<u8> },
    /// Fixed bytes.
    Fixed { bytes: &'static [u8], content_type: &'static str },
}

impl Content {
    fn generated(kind: Kind, total: u64, seconds: Option<u32>) -> Self {
        let mut tail = kind.trailer(seconds);
        let mut head = kind.header(total, tail.len() as u64);
        if ((head.len() + tail.len()) as u64) > total {
            // Too small for its own structure: the first `total` bytes of header + trailer.
            head.append(&mut tail);
            head.truncate(usize::try_from(total).expect("tiny size"));
        }
        Self::Generated { kind, total, head, tail }
    }

    fn len(&self) -> u64 {
        match self {
            Self::Generated { total, .. } => *total,
            Self::Fixed { bytes, .. } => bytes.len() as u64,
        }
    }

    fn content_type(&self) -> &'static str {
        match self {
            Self::Generated { kind, .. } => kind.content_type(),
            Self::Fixed { content_type, .. } => content_type,
        }
    }

    /// Appends bytes `offset .. offset + len` (clamped to the content) to `out`.
    fn fill(&self, offset: u64, len: usize, out: &mut Vec<u8>) {
        let end = (offset + len as u64).min(self.len());
        if offset >= end {
            return;
        }
        match self {
            Self::Fixed { bytes, .. } => out.extend_from_slice(&bytes[offset as usize..end as usize]),
            Self::Generated { total, head, tail, .. } => {
                let head_end = head.len() as u64;
                let tail_start = total - tail.len() as u64;
                let mut at = offset;
                while at < end {
                    if at < head_end {
                        let stop = end.min(head_end);
                        out.extend_from_slice(&head[at as usize..stop as usize]);
                        at = stop;
                    } else if at < tail_start {
                        let stop = end.min(tail_start);
                        let pattern = pattern();
                        let start = (at % PERIOD as u64) as usize;
                        let n = ((stop - at) as usize).min(pattern.len() - start);
                        out.extend_from_slice(&pattern[start..start + n]);
                        at += n as u64;
                    } else {
                        let from = (at - tail_start) as usize;
                        let to = (end - tail_start) as usize;
                        out.extend_from_slice(&tail[from..to]);
                        at = end;
                    }
                }
            }
        }
    }

    /// SHA-256 hex of the whole content (cached per kind, size and trailer).
    fn sha256(&self) -> String {
        /// Kind, size and trailer: what makes one generated file differ from another.
        type Key = (Kind, u64, Vec<u8>);
        static CACHE: OnceLock<Mutex<HashMap<Key, String>>> = OnceLock::new();
        let key = match self {
            Self::Generated { kind, total, tail, .. } => Some((*kind, *total, tail.clone())),
            Self::Fixed { .. } => None,
        };
        let cache = CACHE.get_or_init(Mutex::default);
        if let Some(key) = &key
            && let Some(hex) = cache.lock().expect("sha cache").get(key)
        {
            return hex.clone();
        }
        let mut hasher = Sha256::new();
        let mut buffer = Vec::with_capacity(1 << 20);
        let mut offset = 0;
        while offset < self.len() {
            buffer.clear();
            self.fill(offset, 1 << 20, &mut buffer);
            hasher.update(&buffer);
            offset += buffer.len() as u64;
        }
        let hex = format!("{:x}", hasher.finalize());
        if let Some(key) = key {
            cache.lock().expect("sha cache").insert(key, hex.clone());
        }
        hex
    }
}

fn query_map(query: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// The content of a media file name (`name.ext`, `mislabelled.jpg`, `page.html`) with its query;
/// `Err` holds the status and message to answer instead.
fn resolve(file: &str, query: &HashMap<String, String>) -> Result<Content, (u16, String)> {
    match file {
        "mislabelled.jpg" => return Ok(Content::Fixed { bytes: MISLABELLED_BODY, content_type: "image/jpeg" }),
        "page.html" => {
            return Ok(Content::Fixed { bytes: PAGE_HTML.as_bytes(), content_type: "text/html; charset=utf-8" });
        }
        _ => {}
    }
    let kind = file
        .rsplit_once('.')
        .and_then(|(_, ext)| Kind::from_extension(ext))
        .ok_or_else(|| (404, format!("no such media: {file}")))?;
    let total = match query.get("bytes") {
        Some(value) => value.parse().map_err(|_| (400, format!("bad bytes: {value}")))?,
        None => kind.default_bytes(),
    };
    let seconds = match query.get("seconds") {
        Some(value) if kind.is_video() => Some(value.parse().map_err(|_| (400, format!("bad seconds: {value}")))?),
        Some(_) => return Err((400, "seconds is for videos".into())),
        None => None,
    };
    Ok(Content::generated(kind, total, seconds))
}

/// Splits a URL or a path with query into the media file name and query, for the helpers below.
fn resolve_path(path_and_query: &str) -> Content {
    let rest = match path_and_query.split_once("://") {
        Some((_, after)) => after.find('/').map_or("/", |i| &after[i..]),
        None => path_and_query,
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let file = path
        .strip_prefix("/media/")
        .or_else(|| path.strip_prefix("/slow/"))
        .unwrap_or_else(|| panic!("not a media path: {path_and_query}"));
    resolve(file, &query_map(query)).unwrap_or_else(|(_, message)| panic!("{message}"))
}

/// SHA-256 (lower-case hex) of what a media path serves (`/media/a.mp4?bytes=N`, `/slow/…`, or a
/// full URL of the server), computed without a server; cached per kind and size.
pub fn expected_sha256(path_and_query: &str) -> String {
    resolve_path(path_and_query).sha256()
}

/// The full length in bytes of what a media path serves.
pub fn expected_len(path_and_query: &str) -> u64 {
    resolve_path(path_and_query).len()
}

/// Bytes `offset .. offset + len` (clamped) of what a media path serves.
pub fn expected_range(path_and_query: &str, offset: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    resolve_path(path_and_query).fill(offset, len, &mut out);
    out
}

/// One answered media request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// `GET` or `HEAD`.
    pub method: String,
    /// Path and query as requested.
    pub path_and_query: String,
    /// Status answered.
    pub status: u16,
    /// Body bytes the server has handed to the connection so far.
    pub bytes_sent: u64,
    /// Whether the whole body was sent (false while streaming, or if the client went away).
    pub complete: bool,
}

#[derive(Debug, Default)]
struct State {
    served: Vec<Served>,
}

/// The test media server.
#[derive(Debug, Clone)]
pub struct MediaServer {
    /// `http://127.0.0.1:{port}`.
    pub base_url: String,
    state: Arc<Mutex<State>>,
    recorder: Recorder,
}

impl MediaServer {
    /// Starts the server on a free loopback port.
    pub async fn start() -> Self {
        Self::start_with(Serve::default()).await
    }

    /// Starts it where and as `serve` says (the sandbox's fixed ports and wrapping).
    pub async fn start_with(serve: Serve) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let recorder = Recorder::default();
        let routes = Route::new()
            .at("/media/:file", poem::get(media).head(media))
            .at("/slow/:file", poem::get(slow).head(slow))
            .at("/redirect", poem::get(redirect).head(redirect))
            .at("/status/:code", poem::get(status_code).head(status_code))
            .data(state.clone());
        let base_url = serve_fake_with(routes, recorder.clone(), serve).await;
        Self { base_url, state, recorder }
    }

    /// An absolute URL of the server (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The URL of a generated file: `/media/{name}?bytes={bytes}`.
    pub fn media_url(&self, name: &str, bytes: u64) -> String {
        self.url(&format!("/media/{name}?bytes={bytes}"))
    }

    /// A URL that redirects (302) to `target`.
    pub fn redirect_url(&self, target: &str) -> String {
        let to: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
        self.url(&format!("/redirect?to={to}"))
    }

    /// Every media request answered so far, with the body bytes sent for each.
    pub fn served(&self) -> Vec<Served> {
        self.state.lock().expect("media state").served.clone()
    }

    /// Body bytes sent so far over all requests whose path and query contain `needle`.
    pub fn bytes_sent_for(&self, needle: &str) -> u64 {
        self.served().iter().filter(|s| s.path_and_query.contains(needle)).map(|s| s.bytes_sent).sum()
    }
}

impl crate::Fake for MediaServer {
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}

fn text(status: u16, body: String) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("valid status"))
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body)
}

/// Parses a single `bytes=a-b` / `bytes=a-` / `bytes=-n` range: `Some(Ok((start, end_inclusive)))`,
/// `Some(Err(()))` when unsatisfiable, `None` when absent or not understood (whole body).
fn parse_range(value: Option<&str>, total: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let range = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            if n == 0 || total == 0 {
                return Some(Err(()));
            }
            (total.saturating_sub(n), total - 1)
        }
        (start, "") => (start.parse().ok()?, total.saturating_sub(1)),
        (start, end) => {
            let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
            if end < start {
                return None;
            }
            (start, end.min(total.saturating_sub(1)))
        }
    };
    if range.0 >= total {
        return Some(Err(()));
    }
    Some(Ok(range))
}

/// Answers a media request for `file`, dripping at `bps` bytes per second if given.
fn serve(req: &Request, file: &str, bps: Option<u64>, state: &Arc<Mutex<State>>) -> Response {
    let query = query_map(req.uri().query().unwrap_or(""));
    let content = match resolve(file, &query) {
        Ok(content) => content,
        Err((code, message)) => return text(code, message),
    };
    let total = content.len();
    let content_type = query.get("content_type").cloned().unwrap_or_else(|| content.content_type().to_owned());
    let mut builder =
        Response::builder().header(header::CONTENT_TYPE, content_type).header(header::ACCEPT_RANGES, "bytes");
    let (status, start, len) = match parse_range(req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()), total)
    {
        None => (200, 0, total),
        Some(Ok((start, end))) => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{total}"));
            (206, start, end - start + 1)
        }
        Some(Err(())) => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{total}"))
                .body(Body::empty());
        }
    };
    if query.get("length").is_none_or(|v| v != "none") {
        builder = builder.header(header::CONTENT_LENGTH, len);
    }
    let builder = builder.status(StatusCode::from_u16(status).expect("valid status"));
    let head = req.method() == Method::HEAD;
    let index = {
        let mut state = state.lock().expect("media state");
        state.served.push(Served {
            method: req.method().to_string(),
            path_and_query: req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default(),
            status,
            bytes_sent: 0,
            complete: head || len == 0,
        });
        state.served.len() - 1
    };
    if head {
        return builder.body(Body::empty());
    }
    let abort_after: Option<u64> = query.get("abort_after").and_then(|v| v.parse().ok());
    let chunk = match bps {
        Some(bps) => usize::try_from((bps / 10).clamp(1, CHUNK as u64)).expect("chunk size"),
        None => CHUNK,
    };
    let state = state.clone();
    let stream = futures::stream::unfold(0u64, move |sent| {
        let content = content.clone();
        let state = state.clone();
        async move {
            if sent >= len {
                return None;
            }
            if abort_after.is_some_and(|limit| sent >= limit) {
                let error = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "abort_after");
                return Some((Err(error), len));
            }
            let mut size = (len - sent).min(chunk as u64);
            if let Some(limit) = abort_after {
                size = size.min(limit - sent).max(1);
            }
            if let Some(bps) = bps {
                tokio::time::sleep(Duration::from_secs_f64(size as f64 / bps as f64)).await;
            }
            let mut bytes = Vec::with_capacity(size as usize);
            content.fill(start + sent, size as usize, &mut bytes);
            let sent = sent + size;
            {
                let mut state = state.lock().expect("media state");
                let served = &mut state.served[index];
                served.bytes_sent = sent;
                served.complete = sent == len;
            }
            Some((Ok::<_, std::io::Error>(bytes), sent))
        }
    });
    builder.body(Body::from_bytes_stream(stream))
}

#[handler]
fn media(req: &Request, Path(file): Path<String>, state: Data<&Arc<Mutex<State>>>) -> Response {
    serve(req, &file, None, state.0)
}

#[handler]
fn slow(req: &Request, Path(file): Path<String>, state: Data<&Arc<Mutex<State>>>) -> Response {
    let query = query_map(req.uri().query().unwrap_or(""));
    match query.get("bps").and_then(|v| v.parse::<u64>().ok()).filter(|bps| *bps > 0) {
        Some(bps) => serve(req, &file, Some(bps), state.0),
        None => text(400, "bps (bytes per second, > 0) is required".into()),
    }
}

#[handler]
fn redirect(req: &Request) -> Response {
    match query_map(req.uri().query().unwrap_or("")).get("to") {
        Some(to) => {
            Response::builder().status(StatusCode::FOUND).header(header::LOCATION, to.as_str()).body(Body::empty())
        }
        None => text(400, "to is required".into()),
    }
}

#[handler]
fn status_code(Path(code): Path<u16>) -> Response {
    match StatusCode::from_u16(code) {
        Ok(status) => text(status.as_u16(), format!("status {code}\n")),
        Err(_) => text(400, format!("bad status: {code}")),
    }
}
