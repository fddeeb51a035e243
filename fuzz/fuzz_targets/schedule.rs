//! Scheduling requests from arbitrary JSON: the campaign id, times, the layout options and the
//! dry run (`posts::validate`) over all of them.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use shared::{
    domain::PostOptions,
    layout::{Layout, SchedulingOptions},
    posts::{self, MAX_POSTS_PER_REQUEST, PostDraft, ScheduleRequest},
};

/// The request body as the API reads it (shared's `ScheduleRequest` is built from the API's DTO,
/// which lives in the api crate; this mirrors its field names).
#[derive(Deserialize)]
struct Request {
    campaign_id: String,
    posts: Vec<Post>,
    #[serde(default)]
    scheduling_options: Option<Options>,
}

#[derive(Deserialize)]
struct Post {
    content: String,
    platforms: Vec<String>,
    #[serde(default)]
    scheduled_time: Option<String>,
    #[serde(default)]
    hashtags: Vec<String>,
    #[serde(default)]
    media_urls: Vec<String>,
    #[serde(default)]
    options: PostOptions,
}

#[derive(Deserialize)]
struct Options {
    interval_hours: f64,
    start_time: String,
    #[serde(default)]
    timezone: Option<String>,
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        strings(text);
    }
    let Ok(request) = serde_json::from_slice::<Request>(data) else { return };
    let request = ScheduleRequest {
        campaign_id: request.campaign_id,
        posts: request
            .posts
            .into_iter()
            .map(|p| PostDraft {
                content: p.content,
                platforms: p.platforms,
                scheduled_time: p.scheduled_time,
                hashtags: p.hashtags,
                media_urls: p.media_urls,
                options: p.options,
            })
            .collect(),
        scheduling_options: request.scheduling_options.map(|o| SchedulingOptions {
            interval_hours: o.interval_hours,
            start_time: o.start_time,
            timezone: o.timezone,
        }),
    };
    if let Some(options) = &request.scheduling_options {
        layout(options, request.posts.len());
    }
    for allow_private in [false, true] {
        if let Ok(checks) = posts::validate(&request, allow_private) {
            for check in checks {
                assert!(check.index < request.posts.len());
                if let (Some(length), Some(limit), None) = (check.length, check.limit, &check.error) {
                    assert!(length <= limit);
                }
            }
        }
    }
});

/// The one-string parsers, on the whole input.
fn strings(text: &str) {
    if let Ok(id) = posts::parse_campaign_id(text) {
        assert!(!id.is_empty() && id.len() <= 128 && id.is_ascii());
    }
    if let Ok(at) = posts::parse_time("scheduled_time", text) {
        // A parsed time prints as RFC 3339 and reads back the same.
        let printed = at.to_rfc3339();
        assert_eq!(posts::parse_time("scheduled_time", &printed).ok(), Some(at));
    }
}

/// Layout options: parsed, then laid out for as many posts as a request may carry, from a fixed
/// instant so that runs repeat.
fn layout(options: &SchedulingOptions, posts: usize) {
    let Ok(layout) = Layout::parse(options) else { return };
    let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("a valid instant");
    let times = layout.times(posts.min(MAX_POSTS_PER_REQUEST), now);
    // Every laid-out time is ahead of now, and each comes after the one before.
    if let Some(first) = times.first() {
        assert!(*first > now, "first post at {first}, not after {now}");
    }
    for pair in times.windows(2) {
        assert!(pair[0] < pair[1], "{} is not before {}", pair[0], pair[1]);
    }
}
