//! The local sandbox: the end-to-end harness's fake platforms (X, LinkedIn, Instagram, Facebook,
//! TikTok) and its media server, served on fixed ports so that a person can point Herald at them
//! with the `{P}_AUTH_URL` / `{P}_TOKEN_URL` / `{P}_API_BASE` overrides and try every flow without
//! a developer account. Around each fake it adds only what a person needs and a test does not: a
//! consent page with Allow and Deny ([`consent`]), a log line per request ([`log`]) and a `GET /`
//! page listing what the fake published ([`pages`]). What the fakes accept, answer and publish is
//! theirs; this crate never answers a platform call itself, and Herald's code knows nothing of it.

pub mod consent;
mod front;
pub mod log;
pub mod pages;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, OnceLock},
};

use anyhow::{Context, bail};
use tests::{
    Serve, fake_facebook::FakeFacebook, fake_instagram::FakeInstagram, fake_linkedin::FakeLinkedin,
    fake_tiktok::FakeTiktok, fake_x::FakeX, media_server::MediaServer,
};

use crate::{log::Log, pages::Hosted};

/// The first port when `--port-base` is not given: the home page; the sites follow it.
pub const DEFAULT_PORT_BASE: u16 = 8800;

/// Where the sandbox listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The address every site binds and every printed URL names (`--bind`, default 127.0.0.1).
    pub bind: IpAddr,
    /// The home page's port; site `n` of [`Site::ALL`] listens on `port_base + n`. 0: free ports
    /// (what tests use; the environment is then known only once started).
    pub port_base: u16,
}

impl Default for Options {
    fn default() -> Self {
        Self { bind: IpAddr::V4(Ipv4Addr::LOCALHOST), port_base: DEFAULT_PORT_BASE }
    }
}

impl Options {
    /// The address of `site` (port 0 when the port base is 0).
    pub fn addr(&self, site: Site) -> SocketAddr {
        let port = if self.port_base == 0 { 0 } else { self.port_base + site.offset() };
        SocketAddr::new(self.bind, port)
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start the fakes, print the environment, run until Ctrl-C.
    Run(Options),
    /// Print the environment for these options and exit (the sandbox runs elsewhere).
    PrintEnv(Options),
    /// Print the usage.
    Help,
}

/// The usage text.
pub const USAGE: &str = "\
usage: sandbox [--bind ADDRESS] [--port-base PORT] [--print-env]

Starts fake X, LinkedIn, Instagram, Facebook and TikTok servers (and a media server) that speak
the platforms' wire formats, and prints on stdout the environment that points Herald at them.

  --bind ADDRESS    the address to listen on and name in URLs (default 127.0.0.1)
  --port-base PORT  the home page's port; the sites take the next six (default 8800)
  --print-env       print the `export` lines for these options and exit, starting nothing:
                    eval \"$(cargo run -q -p sandbox -- --print-env)\"
";

impl Command {
    /// Parses the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Self> {
        let mut options = Options::default();
        let mut print_env = false;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let mut value = || inline.clone().or_else(|| args.next()).with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--bind" => options.bind = value()?.parse().context("--bind takes an IP address, such as 127.0.0.1")?,
                "--port-base" => options.port_base = value()?.parse().context("--port-base takes a port number")?,
                "--print-env" => print_env = true,
                "-h" | "--help" => return Ok(Self::Help),
                other => bail!("unknown argument {other}\n\n{USAGE}"),
            }
        }
        if options.bind.is_unspecified() {
            bail!("--bind needs one address that a browser can reach (the printed URLs name it), not {}", options.bind);
        }
        if options.port_base > u16::MAX - Site::ALL.len() as u16 {
            bail!("--port-base {} leaves no room for the {} sites after it", options.port_base, Site::ALL.len() - 1);
        }
        if print_env && options.port_base == 0 {
            bail!("--print-env needs the fixed ports of a running sandbox: give its --port-base");
        }
        Ok(if print_env { Self::PrintEnv(options) } else { Self::Run(options) })
    }
}

/// One server of the sandbox, in port order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Site {
    /// The home page: every site, the sample media, the log.
    Home,
    /// The fake X.
    X,
    /// The fake LinkedIn.
    Linkedin,
    /// The fake Instagram.
    Instagram,
    /// The fake Facebook.
    Facebook,
    /// The fake TikTok.
    Tiktok,
    /// The media server posts' `media_urls` can name.
    Media,
}

impl Site {
    /// Every site, in port order.
    pub const ALL: [Self; 7] =
        [Self::Home, Self::X, Self::Linkedin, Self::Instagram, Self::Facebook, Self::Tiktok, Self::Media];

    /// The five platforms.
    pub const PLATFORMS: [Self; 5] = [Self::X, Self::Linkedin, Self::Instagram, Self::Facebook, Self::Tiktok];

    fn offset(self) -> u16 {
        Self::ALL.iter().position(|s| *s == self).expect("listed") as u16
    }

    /// The short name log lines start with.
    pub fn name(self) -> &'static str {
        match self {
            Self::Home => "home",
            Self::X => "x",
            Self::Linkedin => "linkedin",
            Self::Instagram => "instagram",
            Self::Facebook => "facebook",
            Self::Tiktok => "tiktok",
            Self::Media => "media",
        }
    }

    /// The name a person reads.
    pub fn title(self) -> &'static str {
        match self {
            Self::Home => "Home page",
            Self::X => "X",
            Self::Linkedin => "LinkedIn",
            Self::Instagram => "Instagram",
            Self::Facebook => "Facebook",
            Self::Tiktok => "TikTok",
            Self::Media => "Media server",
        }
    }

    /// The account every consent on this platform signs in as.
    pub fn account(self) -> String {
        use tests::{fake_facebook, fake_instagram, fake_linkedin, fake_tiktok, fake_x};
        match self {
            Self::X => format!("@{} (user {})", fake_x::USERNAME, fake_x::USER_ID),
            Self::Linkedin => format!("{} (member {})", fake_linkedin::DISPLAY_NAME, fake_linkedin::USER_ID),
            Self::Instagram => format!("@{}, a professional account", fake_instagram::USERNAME),
            Self::Facebook => {
                let pages: Vec<String> =
                    fake_facebook::DEFAULT_PAGES.iter().map(|(id, name)| format!("{name} ({id})")).collect();
                format!("{}, who manages the Pages {}", fake_facebook::USER_NAME, pages.join(" and "))
            }
            Self::Tiktok => format!("@{} ({})", fake_tiktok::USERNAME, fake_tiktok::DISPLAY_NAME),
            Self::Home | Self::Media => String::new(),
        }
    }

    /// The variables that point Herald at this site's fake served at `base_url` (the fake's own).
    fn env_at(self, base_url: &str) -> Vec<(String, String)> {
        match self {
            Self::X => FakeX::env_at(base_url),
            Self::Linkedin => FakeLinkedin::env_at(base_url),
            Self::Instagram => FakeInstagram::env_at(base_url),
            Self::Facebook => FakeFacebook::env_at(base_url),
            Self::Tiktok => FakeTiktok::env_at(base_url),
            Self::Home | Self::Media => Vec::new(),
        }
    }

    /// The path of this platform's authorize URL at `base_url`, read from its `{P}_AUTH_URL`.
    fn auth_path(self, base_url: &str) -> Option<String> {
        let (_, url) = self.env_at(base_url).into_iter().find(|(name, _)| name.ends_with("_AUTH_URL"))?;
        Some(url::Url::parse(&url).ok()?.path().to_owned())
    }
}

/// The media prefix TikTok treats as verified (its pulls and photo posts need one).
fn media_prefix(media_url: &str) -> String {
    format!("{media_url}/media/")
}

/// The environment that points Herald at the sites found at `url(site)`: every fake's own
/// variables (credentials it accepts, authorize, token and API URLs), plus what lets Herald and
/// the fakes fetch media from a plain-http loopback server.
fn env_with(url: impl Fn(Site) -> String) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Site::PLATFORMS.iter().flat_map(|site| site.env_at(&url(*site))).collect();
    env.push(("MEDIA_ALLOW_PRIVATE".into(), "true".into()));
    env.push(("TIKTOK_VERIFIED_URL_PREFIXES".into(), media_prefix(&url(Site::Media))));
    env
}

/// The environment for a sandbox on `options`' fixed ports, without starting it.
pub fn env_for(options: &Options) -> Vec<(String, String)> {
    env_with(|site| format!("http://{}", options.addr(site)))
}

/// `export NAME='value'` lines, for `eval` or `source`.
pub fn exports(env: &[(String, String)]) -> String {
    env.iter().map(|(name, value)| format!("export {name}='{}'\n", value.replace('\'', r"'\''"))).collect()
}

/// Text for HTML, escaped.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A running sandbox. Its servers run on the current Tokio runtime until it stops.
#[derive(Debug)]
pub struct Sandbox {
    /// The fake X.
    pub x: FakeX,
    /// The fake LinkedIn.
    pub linkedin: FakeLinkedin,
    /// The fake Instagram.
    pub instagram: FakeInstagram,
    /// The fake Facebook.
    pub facebook: FakeFacebook,
    /// The fake TikTok.
    pub tiktok: FakeTiktok,
    /// The media server.
    pub media: MediaServer,
    /// The home page's URL.
    pub home_url: String,
    log: Log,
}

async fn bind(options: &Options, site: Site) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = options.addr(site);
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for {} (another sandbox running? try --port-base)", site.title())
    })
}

/// The started sites, for the home page: (site, base URL, fake).
pub(crate) type Hosts = Vec<(Site, String, Arc<dyn Hosted>)>;

/// Starts one fake with the sandbox's front (consent page, log, `GET /` page) around it, and
/// adds it to `hosts`.
async fn host<F, Fut>(
    site: Site,
    listener: tokio::net::TcpListener,
    log: &Log,
    hosts: &mut Hosts,
    start: impl FnOnce(Serve) -> Fut,
) -> F
where
    F: Hosted + Clone + 'static,
    Fut: Future<Output = F>,
{
    let base_url = format!("http://{}", listener.local_addr().expect("bound"));
    let slot: Arc<OnceLock<Arc<dyn Hosted>>> = Arc::default();
    let wrap = front::wrap(site, site.auth_path(&base_url), slot.clone(), log.clone());
    let fake = start(Serve { listener: Some(listener), wrap: Some(wrap) }).await;
    let hosted: Arc<dyn Hosted> = Arc::new(fake.clone());
    let _ = slot.set(hosted.clone());
    hosts.push((site, base_url, hosted));
    fake
}

impl Sandbox {
    /// Binds every site on `options`' ports and starts the fakes; `echo` also prints each log
    /// line on stderr as it happens.
    pub async fn start(options: &Options, echo: bool) -> anyhow::Result<Self> {
        // Bind everything first: a port in use fails the start before anything runs.
        let mut listeners = Vec::new();
        for site in Site::ALL {
            listeners.push(bind(options, site).await?);
        }
        let mut listeners = listeners.into_iter();
        let mut next = || listeners.next().expect("one listener per site");
        let log = Log::new(echo);
        let home = next();
        let mut hosts = Hosts::new();
        let x = host(Site::X, next(), &log, &mut hosts, FakeX::start_with).await;
        let linkedin = host(Site::Linkedin, next(), &log, &mut hosts, FakeLinkedin::start_with).await;
        let instagram = host(Site::Instagram, next(), &log, &mut hosts, FakeInstagram::start_with).await;
        let facebook = host(Site::Facebook, next(), &log, &mut hosts, FakeFacebook::start_with).await;
        let tiktok = host(Site::Tiktok, next(), &log, &mut hosts, FakeTiktok::start_with).await;
        let media = host(Site::Media, next(), &log, &mut hosts, MediaServer::start_with).await;
        tiktok.set_verified_prefixes(&[&media_prefix(&media.base_url)]);
        let home_url = format!("http://{}", home.local_addr()?);
        let sandbox = Self { x, linkedin, instagram, facebook, tiktok, media, home_url, log };
        pages::serve_home(home, hosts, &sandbox)?;
        Ok(sandbox)
    }

    /// The base URL of a site.
    pub fn url(&self, site: Site) -> String {
        match site {
            Site::Home => self.home_url.clone(),
            Site::X => self.x.base_url.clone(),
            Site::Linkedin => self.linkedin.base_url.clone(),
            Site::Instagram => self.instagram.base_url.clone(),
            Site::Facebook => self.facebook.base_url.clone(),
            Site::Tiktok => self.tiktok.base_url.clone(),
            Site::Media => self.media.base_url.clone(),
        }
    }

    /// The environment that points Herald at this sandbox.
    pub fn env(&self) -> Vec<(String, String)> {
        env_with(|site| self.url(site))
    }

    /// A sample image every platform takes (50 kB JPEG).
    pub fn sample_image_url(&self) -> String {
        self.media.media_url("sample.jpg", tests::media_server::DEFAULT_IMAGE_BYTES)
    }

    /// A sample video every platform takes (3 MB MP4).
    pub fn sample_video_url(&self) -> String {
        self.media.media_url("sample.mp4", tests::media_server::DEFAULT_VIDEO_BYTES)
    }

    /// Every log line so far (the last [`log::KEPT_LINES`]), oldest first.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lines(None)
    }

    /// What a person reads on start: where each site is, how to point Herald at it, what to try.
    pub fn summary(&self, options: &Options) -> String {
        let mut text = String::from("Herald sandbox: fake platforms, no developer accounts needed.\n\n");
        for site in Site::ALL {
            let account = site.account();
            let account = if account.is_empty() { String::new() } else { format!("  signs in as {account}") };
            text.push_str(&format!("  {:<14} {}/{account}\n", site.title(), self.url(site)));
        }
        let mut flags = String::new();
        if options.bind != Options::default().bind {
            flags.push_str(&format!(" --bind {}", options.bind));
        }
        if options.port_base != DEFAULT_PORT_BASE {
            flags.push_str(&format!(" --port-base {}", options.port_base));
        }
        let point = if options.port_base == 0 {
            "source the `export` lines printed on stdout (free ports: --print-env cannot know them)".to_owned()
        } else {
            format!("eval \"$(cargo run -q -p sandbox -- --print-env{flags})\"")
        };
        text.push_str(&format!(
            "\nIn another terminal, point Herald at it and start it:\n\n  \
             {point}\n  \
             cargo run --release -p api\n\n\
             Open http://localhost:8080/, paste a token from `cargo run -q --release -p api -- token alice`,\n\
             connect each platform (the popup shows the fake's consent page: Allow or Deny), schedule.\n\
             Instagram and TikTok posts need media: the console sends text only, so use curl with\n  \
             \"media_urls\": [\"{image}\"] (Instagram) or [\"{video}\"] (TikTok).\n\n\
             Each fake lists what it published at its own URL; every request is logged below. Ctrl-C stops.\n",
            image = self.sample_image_url(),
            video = self.sample_video_url(),
        ));
        text
    }
}

#[cfg(test)]
mod command_line {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Command> {
        Command::parse(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn flags_take_their_value_after_a_space_or_an_equals_sign() {
        assert_eq!(parse(&[]).expect("no flags"), Command::Run(Options::default()));
        let options = Options { bind: "127.0.0.2".parse().expect("ip"), port_base: 9100 };
        assert_eq!(parse(&["--bind", "127.0.0.2", "--port-base=9100"]).expect("flags"), Command::Run(options));
        assert_eq!(
            parse(&["--port-base", "9100", "--print-env", "--bind=127.0.0.2"]).expect("flags"),
            Command::PrintEnv(options)
        );
        assert_eq!(parse(&["--help"]).expect("help"), Command::Help);
    }

    #[test]
    fn what_cannot_work_is_refused_with_the_reason() {
        let refused = |args: &[&str]| parse(args).expect_err("refused").to_string();
        assert!(refused(&["--bind", "0.0.0.0"]).contains("one address that a browser can reach"));
        assert!(refused(&["--port-base", "65533"]).contains("leaves no room"));
        assert!(refused(&["--print-env", "--port-base", "0"]).contains("fixed ports"));
        assert!(refused(&["--port-base"]).contains("--port-base needs a value"));
        assert!(refused(&["--verbose"]).contains("unknown argument --verbose"));
    }

    #[test]
    fn the_environment_names_each_site_on_its_port_and_quotes_for_the_shell() {
        let env = env_for(&Options { port_base: 9100, ..Options::default() });
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("TWITTER_API_BASE"), Some("http://127.0.0.1:9101"));
        assert_eq!(get("LINKEDIN_AUTH_URL"), Some("http://127.0.0.1:9102/oauth/v2/authorization"));
        assert_eq!(get("INSTAGRAM_TOKEN_URL"), Some("http://127.0.0.1:9103/oauth/access_token"));
        assert_eq!(get("FACEBOOK_VIDEO_API_BASE"), Some("http://127.0.0.1:9104"));
        assert_eq!(get("TIKTOK_API_BASE"), Some("http://127.0.0.1:9105"));
        assert_eq!(get("TIKTOK_VERIFIED_URL_PREFIXES"), Some("http://127.0.0.1:9106/media/"));
        assert_eq!(exports(&[("A".into(), "it's".into())]), "export A='it'\\''s'\n");
    }
}
