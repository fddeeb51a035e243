//! The consent page a person sees in the sandbox. The fakes consent at once when their authorize
//! URL is opened (the tests drive them without a browser); in the sandbox that URL answers a page
//! naming the platform, the account it signs in as, the app and the scopes it asks for, with
//! Allow and Deny. The page posts the decision, with the authorize request's own parameters, back
//! to the same path, and the sandbox hands that request to the fake: for Deny after asking the
//! fake to refuse, so that the redirect back is the fake's, in the platform's own error shape
//! (`error=access_denied`, LinkedIn's `user_cancelled_authorize`, Facebook's `error_reason`).
//! This module never builds a redirect itself.

use crate::{Site, escape};

/// The form field that carries the decision (no platform uses the name).
pub const DECISION_FIELD: &str = "sandbox_decision";

/// What the person chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Grant the app the scopes.
    Allow,
    /// Refuse.
    Deny,
}

impl Decision {
    /// The button's word.
    pub fn word(self) -> &'static str {
        match self {
            Self::Allow => "Allow",
            Self::Deny => "Deny",
        }
    }
}

/// The scopes an authorize request asks for (space-separated at X and LinkedIn, comma-separated
/// at Meta and TikTok).
pub fn scopes(query: &[(String, String)]) -> Vec<String> {
    query
        .iter()
        .filter(|(name, _)| name == "scope")
        .flat_map(|(_, value)| value.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// Splits a posted consent form into the decision and the authorize request's parameters.
pub fn decision(form: Vec<(String, String)>) -> Option<(Decision, Vec<(String, String)>)> {
    let mut decision = None;
    let mut query = Vec::new();
    for (name, value) in form {
        if name == DECISION_FIELD {
            decision = match value.as_str() {
                "allow" => Some(Decision::Allow),
                "deny" => Some(Decision::Deny),
                _ => return None,
            };
        } else {
            query.push((name, value));
        }
    }
    Some((decision?, query))
}

/// Where a redirect back goes and what it carries, for the log: the code itself is left out.
pub fn describe_redirect(location: &str) -> String {
    let Ok(url) = url::Url::parse(location) else { return format!("302 to {location}") };
    let error = url.query_pairs().find(|(name, _)| name == "error").map(|(_, value)| value.into_owned());
    let carries = match error {
        Some(error) => format!("error={error}"),
        None if url.query_pairs().any(|(name, _)| name == "code") => "a code".to_owned(),
        None => "nothing".to_owned(),
    };
    format!("302 back to {}{} with {carries}", url.origin().ascii_serialization(), url.path())
}

/// The consent page for an authorize request to `path` with `query`.
pub fn page(site: Site, path: &str, query: &[(String, String)]) -> String {
    let get = |key: &str| query.iter().find(|(name, _)| name == key).map(|(_, v)| v.as_str()).unwrap_or("");
    // TikTok names the client `client_key`.
    let client = if get("client_id").is_empty() { get("client_key") } else { get("client_id") };
    let redirect = get("redirect_uri");
    let scopes: String =
        scopes(query).iter().map(|scope| format!("      <li><code>{}</code></li>\n", escape(scope))).collect();
    let hidden: String = query
        .iter()
        .map(|(name, value)| {
            format!("    <input type=\"hidden\" name=\"{}\" value=\"{}\">\n", escape(name), escape(value))
        })
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<title>{title} (sandbox): authorize this app?</title>
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 30rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
  .badge {{ display: inline-block; background: #fde68a; border-radius: 1rem; padding: .2rem .7rem; font-size: .85rem; }}
  button {{ font-size: 1rem; padding: .5rem 1.5rem; margin-right: .5rem; border-radius: .4rem; border: 1px solid #888; cursor: pointer; }}
  button[value=allow] {{ background: #2563eb; color: white; border-color: #2563eb; }}
  code {{ background: #f3f4f6; padding: 0 .2rem; }}
</style>
</head>
<body>
  <p class="badge">Herald sandbox · fake {title}: not the real {title}</p>
  <h1>Authorize this app to use your {title} account?</h1>
  <p>You are signed in as <b>{account}</b>.</p>
  <p>The app <code>{client}</code> asks for:</p>
  <ul>
{scopes}  </ul>
  <p>Either way you go back to <code>{redirect}</code>.</p>
  <form method="post" action="{action}">
{hidden}    <button type="submit" name="{field}" value="allow">Allow</button>
    <button type="submit" name="{field}" value="deny">Deny</button>
  </form>
</body>
</html>
"#,
        title = escape(site.title()),
        account = escape(&site.account()),
        client = escape(client),
        redirect = escape(redirect),
        action = escape(path),
        field = DECISION_FIELD,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_decision_is_split_from_the_authorize_parameters_in_their_order() {
        let form = pairs(&[("client_id", "a"), ("state", "s\"<"), (DECISION_FIELD, "deny"), ("scope", "x y")]);
        let (decision, query) = decision(form).expect("a decision");
        assert_eq!(decision, Decision::Deny);
        assert_eq!(query, pairs(&[("client_id", "a"), ("state", "s\"<"), ("scope", "x y")]));
        assert_eq!(super::decision(pairs(&[("state", "s")])), None, "no decision");
        assert_eq!(super::decision(pairs(&[(DECISION_FIELD, "maybe")])), None, "not a decision");
    }

    #[test]
    fn the_page_escapes_what_it_echoes_and_names_the_scopes() {
        let query =
            pairs(&[("client_id", "app"), ("scope", "pages_show_list,pages_manage_posts"), ("state", "\"><script>")]);
        let html = page(Site::Facebook, "/v26.0/dialog/oauth", &query);
        assert!(
            html.contains("<code>pages_show_list</code>") && html.contains("<code>pages_manage_posts</code>"),
            "{html}"
        );
        assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;\"") && !html.contains("\"><script>"), "{html}");
        assert!(html.contains("Herald Cafe (101)"), "the account and its Pages: {html}");
    }

    #[test]
    fn a_redirect_is_described_without_its_code() {
        let code = describe_redirect("http://localhost:8080/api/v1/auth/social/callback/twitter?state=s&code=secret");
        assert_eq!(code, "302 back to http://localhost:8080/api/v1/auth/social/callback/twitter with a code");
        let denied = describe_redirect("http://localhost:8080/cb?error=access_denied&state=s#_=_");
        assert_eq!(denied, "302 back to http://localhost:8080/cb with error=access_denied");
    }
}
