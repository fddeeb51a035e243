//! The page the OAuth callback answers with. It posts `{type, platform, status, username | error}`
//! to the opener window with `FRONTEND_ORIGIN` as the target origin (so no other page can read
//! it) and closes itself; with no opener it goes to `FRONTEND_URL`. It never contains a token or
//! an authorization code.

use serde_json::json;
use shared::{config::Settings, connect::Connected, db::connections::Upserted};

/// Serializes a value for a `<script>` block: `<`, `>` and `&` are escaped so platform-supplied
/// text (a username) cannot close the script element.
fn script_json(value: &serde_json::Value) -> String {
    value.to_string().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Renders the popup page for a callback result.
pub fn render(settings: &Settings, platform: &str, result: Result<&Connected, (&str, String)>) -> String {
    let (message, text) = match &result {
        Ok(connected) => {
            let username = &connected.username;
            let outcome = match connected.outcome {
                Upserted::Created => "created",
                Upserted::Reconnected => "reconnected",
                Upserted::Replaced => "replaced",
            };
            let mut message = json!({"type": "herald:oauth", "platform": platform, "status": "connected", "username": username, "connection": outcome});
            // Platforms that publish to a Page: the choice the frontend offers next.
            if let Some(pages) = &connected.pages {
                let list: Vec<_> =
                    pages.iter().map(|p| json!({"id": p.id, "name": p.name, "selected": p.selected})).collect();
                message["pages"] = json!(list);
                message["needs_page_selection"] = json!(!pages.iter().any(|p| p.selected));
            }
            (
                message,
                format!(
                    "Connected {platform}{}. You can close this window.",
                    username.as_deref().map(|u| format!(" as {u}")).unwrap_or_default()
                ),
            )
        }
        Err((code, detail)) => (
            json!({"type": "herald:oauth", "platform": platform, "status": "error", "error": code, "message": detail}),
            format!("Could not connect {platform}: {detail}"),
        ),
    };
    let mut fallback = settings.frontend_url.clone();
    fallback
        .query_pairs_mut()
        .append_pair("platform", platform)
        .append_pair("status", if result.is_ok() { "connected" } else { "error" });
    format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><title>Herald</title></head>
<body>
<p>{text}</p>
<script>
(function () {{
  var message = {message};
  var origins = {origins};
  if (window.opener && !window.opener.closed) {{
    // Delivered only to an opener on one of these origins; the others drop it.
    origins.forEach(function (origin) {{ window.opener.postMessage(message, origin); }});
    window.close();
  }} else {{
    window.location.replace({fallback});
  }}
}})();
</script>
</body>
</html>
"#,
        text = escape_html(&text),
        message = script_json(&message),
        origins = script_json(&json!(settings.frontend_origins)),
        fallback = script_json(&json!(fallback.as_str())),
    )
}
