//! What the OpenAPI document says beyond what poem-openapi writes, added to its output once:
//!
//! - `additionalProperties: false` on request objects: they are all `deny_unknown_fields`
//!   (an unknown field is a 400, so a typo such as `scheduled_at` never goes unnoticed), which
//!   poem-openapi 5.1 enforces but does not document; and `nullable` on their optional fields,
//!   where it reads `null` as absent.
//! - The names a string takes, where the server takes only a fixed set: platforms, post
//!   statuses, chat roles, webhook events (from the `shared` enums, so they cannot drift), and
//!   the patterns of the campaign id and the `Idempotency-Key`. The server keeps its own checks and messages; a generated client
//!   gets typed values.
//! - Response `links` (OpenAPI 3.0 §4.7.20), which poem-openapi cannot express: a scheduled post
//!   leads to reading, editing, cancelling, publishing and retrying it; a created webhook to its
//!   other routes. Schemathesis follows them in CI (`.ci/schemathesis`).

use serde_json::json;
use serde_yaml::{Mapping, Value};
use shared::domain::{ChatRole, Platform, PostStatus, WebhookEvent};

/// The campaign id as `shared::posts::parse_campaign_id` takes it.
const CAMPAIGN_ID: &str = "^[A-Za-z0-9._:-]{1,128}$";

/// `spec` (poem-openapi's JSON) with the additions above. Worked on as YAML values, whose
/// mappings keep poem-openapi's order (serde_json's sort their keys).
pub fn complete(spec: &str) -> Value {
    let mut doc: Value = serde_json::from_str(spec).unwrap_or_default();
    let requests = request_schemas(&doc);
    close_request_objects(&mut doc, &requests);
    name_values(&mut doc, &requests);
    add_links(&mut doc);
    doc
}

fn yaml(value: serde_json::Value) -> Value {
    serde_yaml::to_value(value).unwrap_or_default()
}

/// Sets `key` of a mapping (nothing for any other value).
fn set(value: &mut Value, key: &str, to: Value) {
    if let Some(map) = value.as_mapping_mut() {
        map.insert(Value::from(key), to);
    }
}

fn mappings(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_mapping().into_iter().flat_map(Mapping::values)
}

/// A comma-separated list of `names` (the `status` filter).
fn list_of(names: &[&str]) -> String {
    let one = names.join("|");
    format!("^({one})(,({one}))*$")
}

fn platforms() -> Value {
    let mut names: Vec<&str> = Platform::ALL.iter().map(|p| p.as_str()).collect();
    names.push("x");
    yaml(json!(names))
}

fn subscribable_events() -> Value {
    yaml(json!(WebhookEvent::SUBSCRIBABLE.iter().map(|e| e.as_str()).collect::<Vec<_>>()))
}

fn operations(doc: &Value) -> impl Iterator<Item = &Value> {
    mappings(&doc["paths"]).flat_map(mappings)
}

/// The component schemas a request body can hold, directly or nested.
fn request_schemas(doc: &Value) -> Vec<String> {
    let mut pending: Vec<String> = Vec::new();
    for operation in operations(doc) {
        collect_refs(&operation["requestBody"], &mut pending);
    }
    let mut seen: Vec<String> = Vec::new();
    while let Some(name) = pending.pop() {
        if seen.contains(&name) {
            continue;
        }
        collect_refs(&doc["components"]["schemas"][name.as_str()], &mut pending);
        seen.push(name);
    }
    seen
}

fn collect_refs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Mapping(map) => {
            let reference = map.get("$ref").and_then(Value::as_str);
            if let Some(name) = reference.and_then(|r| r.strip_prefix("#/components/schemas/")) {
                into.push(name.to_owned());
            }
            map.values().for_each(|v| collect_refs(v, into));
        }
        Value::Sequence(items) => items.iter().for_each(|v| collect_refs(v, into)),
        _ => {}
    }
}

fn schema_mut<'a>(doc: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    doc.get_mut("components")?.get_mut("schemas")?.get_mut(name)
}

fn close_request_objects(doc: &mut Value, requests: &[String]) {
    for name in requests {
        let Some(schema) = schema_mut(doc, name) else { continue };
        if schema["type"].as_str() != Some("object") || schema.get("properties").is_none() {
            continue;
        }
        set(schema, "additionalProperties", Value::Bool(false));
        // poem-openapi reads `null` as absent for an optional field: say so.
        let required: Vec<String> = schema["required"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect();
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_mapping_mut) else { continue };
        for (field, property) in properties.iter_mut() {
            if !field.as_str().is_some_and(|f| required.iter().any(|r| r == f)) {
                set(property, "nullable", Value::Bool(true));
            }
        }
    }
}

fn name_values(doc: &mut Value, requests: &[String]) {
    for name in requests {
        let Some(properties) = schema_mut(doc, name).and_then(|s| s.get_mut("properties")) else { continue };
        let Some(properties) = properties.as_mapping_mut() else { continue };
        for (field, schema) in properties.iter_mut() {
            match (name.as_str(), field.as_str().unwrap_or_default()) {
                (_, "platform") => set(schema, "enum", platforms()),
                (_, "campaign_id") => set(schema, "pattern", Value::from(CAMPAIGN_ID)),
                (_, "platforms") => schema.get_mut("items").into_iter().for_each(|i| set(i, "enum", platforms())),
                ("NewMessage", "role") => set(schema, "enum", yaml(json!(ChatRole::NAMES))),
                ("WebhookBody", "events") => {
                    schema.get_mut("items").into_iter().for_each(|i| set(i, "enum", subscribable_events()));
                }
                _ => {}
            }
        }
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_mapping_mut) else { return };
    for operation in paths.values_mut().filter_map(Value::as_mapping_mut).flat_map(|item| item.values_mut()) {
        let Some(parameters) = operation.get_mut("parameters").and_then(Value::as_sequence_mut) else { continue };
        for parameter in parameters {
            let value = match parameter["name"].as_str() {
                Some("platform") => ("enum", platforms()),
                Some("status") => ("pattern", Value::from(list_of(PostStatus::NAMES))),
                Some("Idempotency-Key") => ("pattern", Value::from("^[!-~]{1,255}$")),
                Some("campaign_id") => ("pattern", Value::from(CAMPAIGN_ID)),
                _ => continue,
            };
            if let Some(schema) = parameter.get_mut("schema") {
                set(schema, value.0, value.1);
            }
        }
    }
}

/// Links `(name, target path, target method, parameter, runtime expression)` on one response.
fn link(doc: &mut Value, path: &str, method: &str, status: &str, links: &[(&str, &str, &str, &str, &str)]) {
    let response = doc
        .get_mut("paths")
        .and_then(|p| p.get_mut(path))
        .and_then(|p| p.get_mut(method))
        .and_then(|o| o.get_mut("responses"))
        .and_then(|r| r.get_mut(status));
    let Some(response) = response else { return };
    let mut map = serde_json::Map::new();
    for (name, target_path, target_method, parameter, value) in links {
        let pointer = target_path.replace('~', "~0").replace('/', "~1");
        let mut parameters = serde_json::Map::new();
        parameters.insert((*parameter).to_owned(), json!(value));
        let target = json!({"operationRef": format!("#/paths/{pointer}/{target_method}"), "parameters": parameters});
        map.insert((*name).to_owned(), target);
    }
    set(response, "links", yaml(serde_json::Value::Object(map)));
}

fn add_links(doc: &mut Value) {
    let post = "$response.body#/posts/0/id";
    let campaign = "$response.body#/posts/0/campaign_id";
    link(
        doc,
        "/api/v1/posts/schedule",
        "post",
        "201",
        &[
            ("GetPost", "/api/v1/posts/{post_id}", "get", "post_id", post),
            ("EditPost", "/api/v1/posts/{post_id}", "patch", "post_id", post),
            ("CancelPost", "/api/v1/posts/cancel/{post_id}", "delete", "post_id", post),
            ("PublishPost", "/api/v1/posts/publish/{post_id}", "post", "post_id", post),
            ("RetryPost", "/api/v1/posts/retry/{post_id}", "post", "post_id", post),
            ("CampaignPosts", "/api/v1/posts/scheduled/{campaign_id}", "get", "campaign_id", campaign),
        ],
    );
    let edited = "$response.body#/id";
    link(
        doc,
        "/api/v1/posts/{post_id}",
        "patch",
        "200",
        &[
            ("GetPost", "/api/v1/posts/{post_id}", "get", "post_id", edited),
            ("CancelPost", "/api/v1/posts/cancel/{post_id}", "delete", "post_id", edited),
        ],
    );
    let webhook = "$response.body#/webhook/id";
    link(
        doc,
        "/api/v1/webhooks",
        "post",
        "201",
        &[
            ("GetWebhook", "/api/v1/webhooks/{webhook_id}", "get", "webhook_id", webhook),
            ("WebhookDeliveries", "/api/v1/webhooks/{webhook_id}/deliveries", "get", "webhook_id", webhook),
            ("TestWebhook", "/api/v1/webhooks/{webhook_id}/test", "post", "webhook_id", webhook),
            ("RotateSecret", "/api/v1/webhooks/{webhook_id}/rotate-secret", "post", "webhook_id", webhook),
            ("EnableWebhook", "/api/v1/webhooks/{webhook_id}/enable", "post", "webhook_id", webhook),
            ("DeleteWebhook", "/api/v1/webhooks/{webhook_id}", "delete", "webhook_id", webhook),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_link_names_an_operation_and_its_parameter() {
        let doc: serde_json::Value = serde_json::to_value(complete(&crate::api_service().spec())).expect("json");
        let mut count = 0;
        let values =
            |v: &serde_json::Value| v.as_object().into_iter().flat_map(|m| m.values()).cloned().collect::<Vec<_>>();
        for operation in values(&doc["paths"]).iter().flat_map(values) {
            for response in values(&operation["responses"]) {
                for link in values(&response["links"]) {
                    let reference = link["operationRef"].as_str().expect("operationRef");
                    let target =
                        doc.pointer(reference.trim_start_matches('#')).unwrap_or_else(|| panic!("{reference}"));
                    let names: Vec<&str> = target["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p["name"].as_str())
                        .collect();
                    for parameter in link["parameters"].as_object().expect("parameters").keys() {
                        assert!(names.contains(&parameter.as_str()), "{reference} has no {parameter}");
                    }
                    count += 1;
                }
            }
        }
        assert_eq!(count, 14);
    }

    #[test]
    fn request_objects_are_closed_and_responses_are_not() {
        let doc: serde_json::Value = serde_json::to_value(complete(&crate::api_service().spec())).expect("json");
        let schemas = &doc["components"]["schemas"];
        for name in
            ["CampaignSchedule", "PostDraft", "SingleSchedule", "PostEditBody", "InitiateRequest", "WebhookBody"]
        {
            assert_eq!(schemas[name]["additionalProperties"], false, "{name}");
        }
        for name in ["Post", "Scheduled", "ErrorBody"] {
            assert!(schemas[name].get("additionalProperties").is_none(), "{name}");
        }
        assert_eq!(schemas["InitiateRequest"]["properties"]["platform"]["enum"][5], "x");
    }
}
