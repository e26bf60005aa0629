//! Configuration files as operators write them for RocketMQ: Java `.properties` (`key=value`,
//! `key: value`, `#` comments, line continuations, `\uXXXX` escapes). Unknown keys are
//! warned about by name, since Java silently ignores a mistyped key.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A value does not parse as its key's type.
    #[error("bad value for {key}: {value:?}")]
    BadValue {
        /// The key.
        key: String,
        /// What was given.
        value: String,
    },
}

/// The keys and values of a properties file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties(BTreeMap<String, String>);

impl Properties {
    /// Read a properties file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = std::fs::File::open(path)
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        let map = java_properties::read(std::io::BufReader::new(file))
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        Ok(Self(map.into_iter().map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect()))
    }

    /// Parse properties text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let map = java_properties::read(text.as_bytes())
            .map_err(|e| ConfigError::Read { path: "<text>".into(), reason: e.to_string() })?;
        Ok(Self(map.into_iter().map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect()))
    }

    /// The value of `key` parsed as `T`, if present.
    pub fn get<T: FromStr>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(value) => value
                .parse()
                .map(Some)
                .map_err(|_| ConfigError::BadValue { key: key.to_owned(), value: value.clone() }),
        }
    }

    /// The raw value of `key`.
    #[must_use]
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Keys not in `known`, each logged as a warning; returned for `-p` and tests.
    #[must_use]
    pub fn unknown_keys(&self, known: &[&str]) -> Vec<String> {
        let unknown: Vec<String> = self.0.keys().filter(|k| !known.contains(&k.as_str())).cloned().collect();
        for key in &unknown {
            tracing::warn!(%key, "unknown configuration key ignored (check its spelling)");
        }
        unknown
    }
}

/// Name server settings and the `.properties` keys they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesrvSettings {
    /// `listenPort`: where clients and brokers connect (9876).
    pub listen_port: u16,
    /// `scanNotActiveBrokerInterval`: ms between expiry scans (5000).
    pub scan_interval_ms: u64,
}

impl NamesrvSettings {
    /// Keys the name server understands.
    pub const KEYS: &'static [&'static str] = &["listenPort", "scanNotActiveBrokerInterval"];

    /// Settings from properties (defaults for what is absent); unknown keys are warned about.
    pub fn from_properties(props: &Properties) -> Result<Self, ConfigError> {
        let _ = props.unknown_keys(Self::KEYS);
        Ok(Self {
            listen_port: props.get("listenPort")?.unwrap_or(9876),
            scan_interval_ms: props.get("scanNotActiveBrokerInterval")?.unwrap_or(5000),
        })
    }

    /// The effective configuration as properties text (what `-p` prints).
    #[must_use]
    pub fn to_properties(&self) -> String {
        format!("listenPort={}\nscanNotActiveBrokerInterval={}\n", self.listen_port, self.scan_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_java_properties_and_names_unknown_keys() {
        let props = Properties::parse(
            "# comment\nlistenPort = 19876\nlistenPrt=1\nscanNotActiveBrokerInterval: 2000\n",
        )
        .unwrap();
        let settings = NamesrvSettings::from_properties(&props).unwrap();
        assert_eq!(settings, NamesrvSettings { listen_port: 19876, scan_interval_ms: 2000 });
        assert_eq!(props.unknown_keys(NamesrvSettings::KEYS), vec!["listenPrt".to_owned()]);
        let bad = Properties::parse("listenPort=abc\n").unwrap();
        assert!(matches!(NamesrvSettings::from_properties(&bad), Err(ConfigError::BadValue { .. })));
        assert_eq!(
            Properties::parse(&settings.to_properties()).unwrap(),
            Properties::parse("listenPort=19876\nscanNotActiveBrokerInterval=2000").unwrap()
        );
    }
}
