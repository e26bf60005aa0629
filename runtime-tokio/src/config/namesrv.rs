//! Name server and controller settings: `namesrv.properties` (with the embedded
//! controller's keys) and `mqcontroller`'s properties, and the controller group's keys both
//! share.

use super::{ConfigError, Properties};

/// Name server settings and the `.properties` keys they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesrvSettings {
    /// `listenPort`: where clients and brokers connect (9876).
    pub listen_port: u16,
    /// `scanNotActiveBrokerInterval`: ms between expiry scans (5000), and between the
    /// embedded controller's scans for dead masters.
    pub scan_interval_ms: u64,
    /// `enableControllerInNamesrv`: serve a controller on the same port (false).
    pub enable_controller: bool,
    /// `enableElectUncleanMaster`: the controller may elect outside the SyncStateSet (false).
    pub elect_unclean: bool,
    /// The embedded controller's group, if it has peers.
    pub group: Option<ControllerGroupSettings>,
    /// `kvConfigPath`: the KV config file (`$HOME/namesrv/kvConfig.json`).
    pub kv_config_path: std::path::PathBuf,
}

/// A controller's group: `controllerDLegerGroup`, `controllerDLegerPeers`
/// (`n0-host:port;n1-host:port;…`, where each controller serves brokers and its peers) and
/// `controllerDLegerSelfId` (`n0`). Absent, or one peer: the controller is alone (and keeps
/// its state in memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerGroupSettings {
    /// `controllerDLegerGroup`.
    pub group: String,
    /// `controllerDLegerPeers`.
    pub peers: String,
    /// `controllerDLegerSelfId`.
    pub self_id: String,
    /// `controllerStorePath`: the directory holding this member's Raft log
    /// (`$HOME/KeelController`).
    pub store_path: std::path::PathBuf,
    /// `controllerSnapshotEntries` (Keel's key): entries applied between two compactions of
    /// the Raft log into a snapshot of the table (10000).
    pub snapshot_entries: u64,
}

/// The group keys every controller understands.
const GROUP_KEYS: [&str; 5] = [
    "controllerDLegerGroup",
    "controllerDLegerPeers",
    "controllerDLegerSelfId",
    "controllerStorePath",
    "controllerSnapshotEntries",
];

impl ControllerGroupSettings {
    fn from_properties(props: &Properties) -> Result<Option<Self>, ConfigError> {
        let Some(peers) = props.get::<String>("controllerDLegerPeers")? else { return Ok(None) };
        let settings = Self {
            group: props.get("controllerDLegerGroup")?.unwrap_or_else(|| "group1".to_owned()),
            self_id: props.get("controllerDLegerSelfId")?.unwrap_or_else(|| "n0".to_owned()),
            peers,
            store_path: props.get("controllerStorePath")?.unwrap_or_else(|| {
                let home = std::env::var_os("HOME").map_or_else(|| ".".into(), std::path::PathBuf::from);
                home.join("KeelController")
            }),
            snapshot_entries: props.get("controllerSnapshotEntries")?.unwrap_or(10_000),
        };
        let parsed = settings
            .peers(0)
            .map_err(|why| ConfigError::BadValue { key: "controllerDLegerPeers".into(), value: why })?;
        Ok((parsed.members.len() > 1).then_some(settings))
    }

    /// The group as the core takes it, with the election spread seeded by `seed`.
    pub fn peers(&self, seed: u64) -> Result<keel_core::controller::ControllerPeers, String> {
        keel_core::controller::ControllerPeers::parse(&self.group, &self.peers, &self.self_id, seed)
    }

    /// This controller's own address among the peers.
    #[must_use]
    pub fn self_addr(&self) -> Option<std::net::SocketAddr> {
        self.peers(0).ok().and_then(|p| p.me().map(|me| me.addr))
    }

    fn to_properties(&self) -> String {
        format!(
            "controllerDLegerGroup={}\ncontrollerDLegerPeers={}\ncontrollerDLegerSelfId={}\ncontrollerStorePath={}\ncontrollerSnapshotEntries={}\n",
            self.group,
            self.peers,
            self.self_id,
            self.store_path.display(),
            self.snapshot_entries
        )
    }
}

impl NamesrvSettings {
    /// Keys the name server understands.
    pub const KEYS: &'static [&'static str] = &[
        "listenPort",
        "scanNotActiveBrokerInterval",
        "enableControllerInNamesrv",
        "enableElectUncleanMaster",
        "kvConfigPath",
        GROUP_KEYS[0],
        GROUP_KEYS[1],
        GROUP_KEYS[2],
        GROUP_KEYS[3],
        GROUP_KEYS[4],
    ];

    /// Settings from properties (defaults for what is absent); unknown keys are warned about.
    pub fn from_properties(props: &Properties) -> Result<Self, ConfigError> {
        let _ = props.unknown_keys(Self::KEYS);
        Ok(Self {
            listen_port: props.get("listenPort")?.unwrap_or(9876),
            scan_interval_ms: props.get("scanNotActiveBrokerInterval")?.unwrap_or(5000),
            enable_controller: props.get("enableControllerInNamesrv")?.unwrap_or(false),
            elect_unclean: props.get("enableElectUncleanMaster")?.unwrap_or(false),
            group: ControllerGroupSettings::from_properties(props)?,
            kv_config_path: props.get("kvConfigPath")?.unwrap_or_else(|| {
                let home = std::env::var_os("HOME").map_or_else(|| ".".into(), std::path::PathBuf::from);
                home.join("namesrv").join("kvConfig.json")
            }),
        })
    }

    /// The embedded controller's settings, when it is enabled.
    #[must_use]
    pub fn controller(&self) -> Option<keel_core::controller::ControllerConfig> {
        let embedded = ControllerSettings {
            listen_port: self.listen_port,
            scan_interval_ms: self.scan_interval_ms,
            elect_unclean: self.elect_unclean,
            group: self.group.clone(),
        };
        self.enable_controller.then(|| embedded.controller())
    }

    /// The effective configuration as properties text (what `-p` prints).
    #[must_use]
    pub fn to_properties(&self) -> String {
        let group = self.group.as_ref().map(ControllerGroupSettings::to_properties).unwrap_or_default();
        format!(
            "listenPort={}\nscanNotActiveBrokerInterval={}\nenableControllerInNamesrv={}\nenableElectUncleanMaster={}\nkvConfigPath={}\n{group}",
            self.listen_port,
            self.scan_interval_ms,
            self.enable_controller,
            self.elect_unclean,
            self.kv_config_path.display()
        )
    }
}

/// Standalone controller settings (`mqcontroller -c controller.properties`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerSettings {
    /// `listenPort`: where brokers and tools connect (this controller's port among its
    /// peers, else 9878).
    pub listen_port: u16,
    /// `scanNotActiveBrokerInterval`: ms between scans for dead masters (5000).
    pub scan_interval_ms: u64,
    /// `enableElectUncleanMaster`: elect outside the SyncStateSet when nobody in it
    /// qualifies (false).
    pub elect_unclean: bool,
    /// The group, if this controller has peers.
    pub group: Option<ControllerGroupSettings>,
}

impl ControllerSettings {
    /// Keys the controller understands.
    pub const KEYS: &'static [&'static str] = &[
        "listenPort",
        "scanNotActiveBrokerInterval",
        "enableElectUncleanMaster",
        GROUP_KEYS[0],
        GROUP_KEYS[1],
        GROUP_KEYS[2],
        GROUP_KEYS[3],
        GROUP_KEYS[4],
    ];

    /// Settings from properties (defaults for what is absent); unknown keys are warned about.
    pub fn from_properties(props: &Properties) -> Result<Self, ConfigError> {
        let _ = props.unknown_keys(Self::KEYS);
        let group = ControllerGroupSettings::from_properties(props)?;
        let own_port = group.as_ref().and_then(ControllerGroupSettings::self_addr).map(|a| a.port());
        Ok(Self {
            listen_port: props.get("listenPort")?.or(own_port).unwrap_or(9878),
            scan_interval_ms: props.get("scanNotActiveBrokerInterval")?.unwrap_or(5000),
            elect_unclean: props.get("enableElectUncleanMaster")?.unwrap_or(false),
            group,
        })
    }

    /// The machine's settings.
    #[must_use]
    pub fn controller(&self) -> keel_core::controller::ControllerConfig {
        keel_core::controller::ControllerConfig {
            elect_unclean: self.elect_unclean,
            scan_interval_ms: self.scan_interval_ms,
            snapshot_entries: self.group.as_ref().map_or(10_000, |group| group.snapshot_entries),
            ..keel_core::controller::ControllerConfig::default()
        }
    }

    /// The effective configuration as properties text (what `-p` prints).
    #[must_use]
    pub fn to_properties(&self) -> String {
        let group = self.group.as_ref().map(ControllerGroupSettings::to_properties).unwrap_or_default();
        format!(
            "listenPort={}\nscanNotActiveBrokerInterval={}\nenableElectUncleanMaster={}\n{group}",
            self.listen_port, self.scan_interval_ms, self.elect_unclean
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_java_properties_and_names_unknown_keys() {
        let props = Properties::parse(
            "# comment\nlistenPort = 19876\nlistenPrt=1\nscanNotActiveBrokerInterval: 2000\nkvConfigPath=/var/kv.json\n",
        )
        .unwrap();
        let settings = NamesrvSettings::from_properties(&props).unwrap();
        let expected = NamesrvSettings {
            listen_port: 19876,
            scan_interval_ms: 2000,
            enable_controller: false,
            elect_unclean: false,
            group: None,
            kv_config_path: "/var/kv.json".into(),
        };
        assert_eq!(settings, expected);
        assert_eq!(settings.controller(), None, "no controller unless enableControllerInNamesrv");
        assert_eq!(props.unknown_keys(NamesrvSettings::KEYS), vec!["listenPrt".to_owned()]);
        let bad = Properties::parse("listenPort=abc\n").unwrap();
        assert!(matches!(NamesrvSettings::from_properties(&bad), Err(ConfigError::BadValue { .. })));
        assert_eq!(
            Properties::parse(&settings.to_properties()).unwrap(),
            Properties::parse(
                "listenPort=19876\nscanNotActiveBrokerInterval=2000\nenableControllerInNamesrv=false\nenableElectUncleanMaster=false\nkvConfigPath=/var/kv.json"
            )
            .unwrap()
        );
        let embedded =
            Properties::parse("enableControllerInNamesrv=true\nenableElectUncleanMaster=true\n").unwrap();
        let controller = NamesrvSettings::from_properties(&embedded).unwrap().controller().unwrap();
        assert!(controller.elect_unclean);
    }

    #[test]
    fn a_controller_group_is_read_from_rocketmq_keys_and_bad_peers_are_refused() {
        let text = "controllerDLegerGroup=g\ncontrollerDLegerPeers=n0-127.0.0.1:9877;n1-127.0.0.1:9878;n2-127.0.0.1:9879\n\
                    controllerDLegerSelfId=n1\ncontrollerStorePath=/var/keel/controller\ncontrollerSnapshotEntries=500\n";
        let settings = ControllerSettings::from_properties(&Properties::parse(text).unwrap()).unwrap();
        assert_eq!(settings.listen_port, 9878, "a member listens on its own peer port");
        let peers = settings.group.as_ref().unwrap().peers(7).unwrap();
        assert_eq!((peers.group.as_str(), peers.self_id, peers.members.len()), ("g", 2, 3));
        assert_eq!(settings.group.as_ref().unwrap().store_path, std::path::Path::new("/var/keel/controller"));
        assert_eq!(settings.controller().snapshot_entries, 500);
        assert_eq!(
            Properties::parse(&settings.to_properties()).unwrap(),
            Properties::parse(&format!(
                "listenPort=9878\nscanNotActiveBrokerInterval=5000\nenableElectUncleanMaster=false\n{text}"
            ))
            .unwrap()
        );
        // One peer is a controller alone (RocketMQ's standalone example).
        let alone = ControllerSettings::from_properties(
            &Properties::parse("controllerDLegerPeers=n0-127.0.0.1:9878\ncontrollerDLegerSelfId=n0\n")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(alone.group, None);
        for bad in [
            "controllerDLegerPeers=n0-127.0.0.1:9877;n1-nowhere\ncontrollerDLegerSelfId=n0\n",
            "controllerDLegerPeers=n0-127.0.0.1:9877;n1-127.0.0.1:9878\ncontrollerDLegerSelfId=n5\n",
            "controllerDLegerPeers=x-127.0.0.1:9877;n1-127.0.0.1:9878\n",
        ] {
            let error = ControllerSettings::from_properties(&Properties::parse(bad).unwrap()).unwrap_err();
            assert!(
                matches!(error, ConfigError::BadValue { ref key, .. } if key == "controllerDLegerPeers"),
                "{bad}"
            );
        }
    }
}
