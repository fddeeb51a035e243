//! Post content: counting per platform, hashtag checks and rendering, on arbitrary text.
//!
//! Input: one byte choosing the platform (low bits) and whether the post has media (bit 7), then
//! the text; lines after a line `---` are the hashtags, one per line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::domain::{Platform, PostContent, max_length};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let has_media = which & 0x80 != 0;
    let rest = String::from_utf8_lossy(rest);
    let (text, tags) = rest.split_once("\n---\n").unwrap_or((&rest, ""));
    let text = text.to_owned();
    let hashtags: Vec<String> =
        if tags.is_empty() { Vec::new() } else { tags.split('\n').map(str::to_owned).collect() };
    let platform = Platform::ALL[usize::from(which & 0x7f) % Platform::ALL.len()];

    // What the dry run counts for refused content: any text, as stored, on every platform.
    let stored = PostContent::from_stored(text.clone(), hashtags.clone());
    for platform in Platform::ALL {
        let length = stored.length(platform);
        let rendered = stored.rendered();
        if platform != Platform::Twitter {
            // Code points: never more than the bytes, and exactly the bytes for ASCII. (X weighs
            // URLs as 23 whatever their length, so it has no such bound.)
            assert!(length <= rendered.len());
            if rendered.is_ascii() {
                assert_eq!(length, rendered.len());
            }
        }
    }

    if !has_media {
        assert_eq!(
            PostContent::parse(platform, &text, &hashtags),
            PostContent::parse_with_media(platform, &text, &hashtags, false)
        );
    }
    let Ok(content) = PostContent::parse_with_media(platform, &text, &hashtags, has_media) else { return };

    // Accepted content fits the platform's limit, and is not empty unless media carries it.
    assert!(content.length(platform) <= max_length(platform));
    assert!(has_media || !content.rendered().is_empty());
    assert_eq!(content.hashtags().len(), hashtags.len());

    // Rendering: the text, then each hashtag with its `#`, in order.
    let rendered = content.rendered();
    assert!(rendered.starts_with(content.text()));
    let tags: Vec<String> = content.hashtags().iter().map(|t| format!("#{t}")).collect();
    assert!(rendered.ends_with(&tags.join(" ")));

    // Round trips: what was stored reads back the same, and parses again to the same content.
    assert_eq!(PostContent::from_stored(content.text().to_owned(), content.hashtags().to_vec()), content);
    let again = PostContent::parse_with_media(platform, content.text(), content.hashtags(), has_media)
        .expect("accepted content is accepted again");
    assert_eq!(again, content);
});
