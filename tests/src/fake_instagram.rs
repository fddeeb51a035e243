//! Fake instagram (being written).
