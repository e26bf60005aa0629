//! A setting that makes no sense, named by its broker.conf key, so an operator reads which
//! line to fix.

/// A setting whose value cannot work, with the key it is set by.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct InvalidSetting {
    /// The broker.conf key (RocketMQ's name where it has one).
    pub key: &'static str,
    /// What is wrong with its value.
    pub problem: String,
}

impl InvalidSetting {
    /// `key`'s value is wrong because of `problem`.
    #[must_use]
    pub fn new(key: &'static str, problem: impl Into<String>) -> Self {
        Self { key, problem: problem.into() }
    }
}
