//! Fake facebook (being written).
