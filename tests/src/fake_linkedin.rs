//! Fake linkedin (being written).
