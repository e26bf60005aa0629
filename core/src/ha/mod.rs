//! Master/slave replication (issue 16): the stream between a master's CommitLog and its
//! slaves'. So far the wire codec; the replication machines build on it.

pub mod wire;
