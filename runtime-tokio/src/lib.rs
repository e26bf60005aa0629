//! The production runtime.
