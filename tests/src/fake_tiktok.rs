//! Fake tiktok (being written).
