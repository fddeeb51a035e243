//! The pages a person watches: each fake's `GET /` lists what it published (read from the fake's
//! own state, so it shows what the fake holds, not what Herald believes) with the site's log
//! lines, and the home page links every site, names the sample media and repeats the
//! environment. Both refresh themselves every few seconds.

use std::sync::Arc;

use poem::{
    EndpointExt, Route, handler,
    web::{Data, Html},
};
use tests::{
    fake_facebook::FakeFacebook, fake_instagram::FakeInstagram, fake_linkedin::FakeLinkedin, fake_tiktok::FakeTiktok,
    fake_x::FakeX, media_server::MediaServer,
};

use crate::{Sandbox, Site, escape, exports, log::Log};

/// How many log lines a page shows.
const PAGE_LOG_LINES: usize = 100;

/// One thing a fake published (or, for the media server, one file it served).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The platform's id for it.
    pub id: String,
    /// Its text.
    pub content: String,
    /// What else is worth seeing: media, the Page, the processing status.
    pub details: String,
}

/// What the sandbox asks of a started fake.
pub trait Hosted: Send + Sync {
    /// Makes the next valid consent a refusal, redirected back in the platform's error shape.
    fn deny_next_consent(&self);
    /// What it published, oldest first.
    fn published(&self) -> Vec<Published>;
}

impl Hosted for FakeX {
    fn deny_next_consent(&self) {
        FakeX::deny_next_consent(self);
    }
    fn published(&self) -> Vec<Published> {
        let media = self.media_tweets();
        self.tweets()
            .into_iter()
            .map(|(id, content)| {
                let ids = media.iter().find(|(tweet, _, _)| *tweet == id).map(|(_, _, ids)| ids.join(", "));
                Published { id, content, details: ids.map(|ids| format!("media {ids}")).unwrap_or_default() }
            })
            .collect()
    }
}

impl Hosted for FakeLinkedin {
    fn deny_next_consent(&self) {
        FakeLinkedin::deny_next_consent(self);
    }
    fn published(&self) -> Vec<Published> {
        self.created_posts()
            .into_iter()
            .map(|post| Published {
                content: post.body["commentary"].as_str().unwrap_or_default().to_owned(),
                details: if post.media.is_empty() { String::new() } else { format!("media {}", post.media.join(", ")) },
                id: post.urn,
            })
            .collect()
    }
}

impl Hosted for FakeInstagram {
    fn deny_next_consent(&self) {
        FakeInstagram::deny_next_consent(self);
    }
    fn published(&self) -> Vec<Published> {
        self.published_media()
            .into_iter()
            .map(|media| Published {
                details: format!("{} {}, {}", media.media_product_type(), media.media_type(), media.permalink),
                content: media.caption.unwrap_or_default(),
                id: media.media_id,
            })
            .collect()
    }
}

impl Hosted for FakeFacebook {
    fn deny_next_consent(&self) {
        FakeFacebook::deny_next_consent(self);
    }
    fn published(&self) -> Vec<Published> {
        self.page_posts()
            .into_iter()
            .map(|post| Published {
                details: format!("{:?} post on Page {}", post.kind, post.page_id),
                content: post.message,
                id: post.id,
            })
            .collect()
    }
}

impl Hosted for FakeTiktok {
    fn deny_next_consent(&self) {
        FakeTiktok::deny_next_consent(self);
    }
    fn published(&self) -> Vec<Published> {
        self.publishes()
            .into_iter()
            .map(|publish| Published {
                details: format!(
                    "{:?}, {}, {} bytes{}",
                    publish.kind,
                    publish.status.as_str(),
                    publish.bytes_received,
                    publish.post_id.map(|id| format!(", post {id}")).unwrap_or_default()
                ),
                content: if publish.title.is_empty() { publish.description } else { publish.title },
                id: publish.publish_id,
            })
            .collect()
    }
}

impl Hosted for MediaServer {
    /// The media server has no consent.
    fn deny_next_consent(&self) {}
    fn published(&self) -> Vec<Published> {
        self.served()
            .into_iter()
            .map(|served| Published {
                id: served.path_and_query,
                content: format!("{} → {}", served.method, served.status),
                details: format!("{} bytes sent{}", served.bytes_sent, if served.complete { "" } else { " (so far)" }),
            })
            .collect()
    }
}

/// The page's frame: a title, a refresh every 3 s, a little style.
fn frame(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta http-equiv="refresh" content="3"><title>{title}</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
  table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }}
  pre {{ background: #f3f4f6; padding: .5rem; overflow-x: auto; }}
</style>
</head>
<body>
<h1>{title}</h1>
{body}</body>
</html>
"#,
        title = escape(title),
    )
}

fn log_block(log: &Log, site: Option<Site>) -> String {
    let lines = log.lines(site);
    let start = lines.len().saturating_sub(PAGE_LOG_LINES);
    let text: String = lines[start..].iter().map(|line| escape(line) + "\n").collect();
    format!("<h2>Requests, newest last</h2>\n<pre>{text}</pre>\n")
}

/// A fake's `GET /`: what it published and its log lines.
pub(crate) fn site_page(site: Site, hosted: &dyn Hosted, log: &Log) -> String {
    let published = hosted.published();
    let (heading, columns) = match site {
        Site::Media => ("Files served", ["path", "request", "details"]),
        _ => ("Published", ["id", "content", "details"]),
    };
    let mut body = String::new();
    let account = site.account();
    if !account.is_empty() {
        body.push_str(&format!("<p>Every consent signs in as <b>{}</b>.</p>\n", escape(&account)));
    }
    body.push_str(&format!("<h2>{heading}: {}</h2>\n<table>\n<tr>", published.len()));
    for column in columns {
        body.push_str(&format!("<th>{column}</th>"));
    }
    body.push_str("</tr>\n");
    for item in published.iter().rev() {
        body.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
            escape(&item.id),
            escape(&item.content),
            escape(&item.details)
        ));
    }
    body.push_str("</table>\n");
    body.push_str(&log_block(log, Some(site)));
    frame(&format!("Fake {} (Herald sandbox)", site.title()), &body)
}

struct Home {
    sites: Vec<(Site, String, Arc<dyn Hosted>)>,
    samples: [String; 2],
    env: String,
    log: Log,
}

#[handler]
fn home_page(home: Data<&Arc<Home>>) -> Html<String> {
    let mut body = String::from(
        "<p>Fake platforms for Herald: point Herald at them with the environment below, connect in the \
         console, schedule, and watch each fake's page.</p>\n<table>\n<tr><th>site</th><th>signs in as</th><th>published</th></tr>\n",
    );
    for (site, url, hosted) in &home.sites {
        body.push_str(&format!(
            "<tr><td><a href=\"{url}/\">{}</a></td><td>{}</td><td>{}</td></tr>\n",
            escape(site.title()),
            escape(&site.account()),
            hosted.published().len(),
            url = escape(url),
        ));
    }
    body.push_str(&format!(
        "</table>\n<p>Sample media for <code>media_urls</code>: <code>{}</code> (image), <code>{}</code> (video).</p>\n",
        escape(&home.samples[0]),
        escape(&home.samples[1]),
    ));
    body.push_str(&format!("<h2>Environment</h2>\n<pre>{}</pre>\n", escape(&home.env)));
    body.push_str(&log_block(&home.log, None));
    Html(frame("Herald sandbox", &body))
}

/// Serves the home page of `sandbox`, whose sites are `hosts`, on `listener`.
pub(crate) fn serve_home(
    listener: tokio::net::TcpListener,
    hosts: crate::Hosts,
    sandbox: &Sandbox,
) -> anyhow::Result<()> {
    let home = Home {
        sites: hosts,
        samples: [sandbox.sample_image_url(), sandbox.sample_video_url()],
        env: exports(&sandbox.env()),
        log: sandbox.log.clone(),
    };
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener)?;
    let routes = Route::new().at("/", poem::get(home_page)).data(Arc::new(home));
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(routes));
    Ok(())
}
