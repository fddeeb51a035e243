//! The request log: one line per request a site received, `x: POST /2/tweets → 201 tweet 1234`,
//! so that a person watching sees Herald's calls and what each fake made of them. A line names
//! the site, the method, the path (never the query, where Graph calls carry their token), the
//! status and a few words read from the answer: the id of what was published, a processing
//! status, or the platform's error message. It never holds a token or a body.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use serde_json::Value;

use crate::Site;

/// How many lines the log keeps (the pages show the newest).
pub const KEPT_LINES: usize = 2000;

/// The shared log of every site.
#[derive(Debug, Clone)]
pub(crate) struct Log {
    lines: Arc<Mutex<VecDeque<(Site, String)>>>,
    echo: bool,
}

impl Log {
    pub(crate) fn new(echo: bool) -> Self {
        Self { lines: Arc::default(), echo }
    }

    /// Adds a line for `site` (stamped with the time, and printed on stderr when echoing).
    pub(crate) fn line(&self, site: Site, text: &str) {
        let line = format!("{} {}: {text}", chrono::Local::now().format("%H:%M:%S"), site.name());
        if self.echo {
            eprintln!("{line}");
        }
        let mut lines = self.lines.lock().expect("log");
        if lines.len() == KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back((site, line));
    }

    /// The lines of one site, or of all, oldest first.
    pub(crate) fn lines(&self, site: Option<Site>) -> Vec<String> {
        let lines = self.lines.lock().expect("log");
        lines.iter().filter(|(s, _)| site.is_none_or(|site| *s == site)).map(|(_, line)| line.clone()).collect()
    }
}

/// What a publishing call created, by site, method and path: the word a log line uses for it.
fn noun(site: Site, method: &str, path: &str) -> Option<&'static str> {
    if method != "POST" {
        return None;
    }
    let ends = |suffix: &str| path.ends_with(suffix);
    Some(match site {
        Site::X if path == "/2/tweets" => "tweet",
        Site::X if path == "/2/media/upload" || ends("/finalize") => "media",
        Site::Linkedin if path == "/rest/posts" => "post",
        Site::Facebook if ends("/feed") => "post",
        Site::Facebook if ends("/photos") => "photo",
        Site::Facebook if ends("/videos") => "video",
        Site::Instagram if ends("/media_publish") => "published media",
        Site::Instagram if ends("/media") => "container",
        Site::Tiktok if ends("/init/") => "publish",
        _ => return None,
    })
}

/// A string or number at `pointer`.
fn text_at(body: &Value, pointer: &str) -> Option<String> {
    match body.pointer(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The platform's own words for a failure, in whichever shape it answers with.
fn error_text(body: &Value) -> Option<String> {
    // TikTok answers `error: {code: "ok"}` on success too.
    if body.pointer("/error/code").and_then(Value::as_str) == Some("ok") {
        return None;
    }
    ["/error/message", "/error_description", "/error_message", "/detail", "/message", "/error", "/title"]
        .iter()
        .find_map(|pointer| text_at(body, pointer))
}

/// The words after the status: what a call created or how it failed. `restli_id` is LinkedIn's
/// `x-restli-id` header (its post URN).
pub(crate) fn summary(
    site: Site,
    method: &str,
    path: &str,
    status: u16,
    restli_id: Option<&str>,
    body: Option<&Value>,
) -> String {
    if status >= 400 {
        return body.and_then(error_text).map(|e| format!(" {e}")).unwrap_or_default();
    }
    // A Facebook photo answers its photo `id` and the `post_id` Herald records: the post's.
    let id = restli_id.map(str::to_owned).or_else(|| {
        let body = body?;
        ["/data/publish_id", "/data/id", "/post_id", "/id", "/media_id_string"].iter().find_map(|p| text_at(body, p))
    });
    let status = body.and_then(|body| {
        ["/data/status", "/status_code", "/data/processing_info/state", "/status/video_status"]
            .iter()
            .find_map(|p| text_at(body, p))
    });
    let mut words = Vec::new();
    match (noun(site, method, path), id) {
        (Some(noun), Some(id)) => words.push(format!("{noun} {id}")),
        (None, Some(id)) if method == "POST" => words.push(format!("id {id}")),
        _ => {}
    }
    words.extend(status);
    words.iter().map(|w| format!(" {w}")).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_publish_names_what_it_created_and_a_failure_the_platforms_words() {
        let tweet = json!({"data": {"id": "1234", "text": "hi"}});
        assert_eq!(summary(Site::X, "POST", "/2/tweets", 201, None, Some(&tweet)), " tweet 1234");
        assert_eq!(
            summary(Site::Linkedin, "POST", "/rest/posts", 201, Some("urn:li:share:7"), None),
            " post urn:li:share:7"
        );
        let init = json!({"data": {"publish_id": "v_pub_file~v2-1.1"}, "error": {"code": "ok", "message": ""}});
        assert_eq!(
            summary(Site::Tiktok, "POST", "/v2/post/publish/video/init/", 200, None, Some(&init)),
            " publish v_pub_file~v2-1.1"
        );
        let status = json!({"data": {"status": "PUBLISH_COMPLETE"}, "error": {"code": "ok"}});
        assert_eq!(
            summary(Site::Tiktok, "POST", "/v2/post/publish/status/fetch/", 200, None, Some(&status)),
            " PUBLISH_COMPLETE"
        );
        let photo = json!({"id": "122100000000000002", "post_id": "102_122100000000000003"});
        assert_eq!(
            summary(Site::Facebook, "POST", "/v26.0/102/photos", 200, None, Some(&photo)),
            " photo 102_122100000000000003"
        );
        let graph = json!({"error": {"message": "(#100) Invalid parameter", "code": 100}});
        assert_eq!(
            summary(Site::Facebook, "POST", "/v26.0/101/feed", 400, None, Some(&graph)),
            " (#100) Invalid parameter"
        );
        let token = json!({"access_token": "secret", "token_type": "bearer"});
        assert_eq!(summary(Site::X, "POST", "/2/oauth2/token", 200, None, Some(&token)), "", "nothing of a token");
    }
}
