//! The controller as a real process, standalone (`mqcontroller`) and embedded in
//! `mqnamesrv` (`enableControllerInNamesrv=true`): a broker takes an id, registers, is
//! elected its set's first master, and a tool reads the set's sync state.
//! Normal builds only (real processes and sockets).
#![cfg(not(madsim))]

mod support;

use keel_core::protocol::body::BrokerReplicasInfo;
use keel_core::protocol::headers::{
    ApplyBrokerIdRequestHeader, CommandHeader, ElectMasterRequestHeader, GetNextBrokerIdHeader,
    MasterInfoHeader, RegisterBrokerToControllerRequestHeader,
};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode};
use support::{scratch_dir, Client, ServerProcess};

fn request(code: RequestCode, opaque: i32, header: &impl CommandHeader) -> RemotingCommand {
    RemotingCommand::request(code, opaque, header.to_ext_fields())
}

/// A broker of `broker-a` joins and is elected; the sync state shows it.
fn a_broker_joins_and_is_elected(client: &mut Client) {
    let ask = GetNextBrokerIdHeader {
        cluster_name: "c".into(),
        broker_name: "broker-a".into(),
        next_broker_id: None,
    };
    let next = client.call(&request(RequestCode::CONTROLLER_GET_NEXT_BROKER_ID, 1, &ask));
    assert_eq!(GetNextBrokerIdHeader::decode(&next.ext_fields).unwrap().next_broker_id, Some(1));
    let apply = ApplyBrokerIdRequestHeader {
        cluster_name: "c".into(),
        broker_name: "broker-a".into(),
        applied_broker_id: 1,
        register_check_code: "127.0.0.1:10911;1".into(),
    };
    let applied = client.call(&request(RequestCode::CONTROLLER_APPLY_BROKER_ID, 2, &apply));
    assert_eq!(applied.response_code(), ResponseCode::SUCCESS, "{:?}", applied.remark);
    let register = RegisterBrokerToControllerRequestHeader {
        cluster_name: "c".into(),
        broker_name: "broker-a".into(),
        broker_id: 1,
        broker_address: "127.0.0.1:10911".into(),
        ha_address: Some("127.0.0.1:10912".into()),
    };
    let registered = client.call(&request(RequestCode::CONTROLLER_REGISTER_BROKER, 3, &register));
    assert_eq!(registered.response_code(), ResponseCode::SUCCESS, "{:?}", registered.remark);
    let elect = ElectMasterRequestHeader {
        cluster_name: "c".into(),
        broker_name: "broker-a".into(),
        broker_id: Some(1),
        designate_elect: Some(false),
    };
    let elected = client.call(&request(RequestCode::CONTROLLER_ELECT_MASTER, 4, &elect));
    assert_eq!(elected.response_code(), ResponseCode::SUCCESS, "{:?}", elected.remark);
    let master = MasterInfoHeader::decode(&elected.ext_fields).unwrap();
    assert_eq!((master.master_broker_id, master.master_epoch), (Some(1), Some(1)));
    assert_eq!(master.master_address.as_deref(), Some("127.0.0.1:10911"));
    let names = json::to_vec(&vec!["broker-a"], KeyStyle::Fastjson).unwrap();
    let state = client.call(
        &RemotingCommand::request(RequestCode::CONTROLLER_GET_SYNC_STATE_DATA, 5, Default::default())
            .with_body(names),
    );
    let info: BrokerReplicasInfo = json::from_slice(&state.body).unwrap();
    let set = &info.replicas_info_table["broker-a"];
    assert_eq!((set.master_broker_id, set.master_epoch, set.sync_state_set_epoch), (Some(1), 1, 1));
    assert_eq!(set.in_sync_replicas.len(), 1);
    assert!(set.in_sync_replicas[0].alive, "registered moments ago");
}

#[test]
fn mqcontroller_serves_ids_registration_elections_and_sync_state() {
    let file = scratch_dir("mqcontroller").join("controller.properties");
    std::fs::write(&file, "listenPort=0\n").unwrap();
    let mut server =
        ServerProcess::start(env!("CARGO_BIN_EXE_mqcontroller"), &["-c", file.to_str().unwrap()]);
    assert!(server.boot_line.contains("Controller boot success"), "{}", server.boot_line);
    let mut client = Client::connect(server.addr_in_boot_line(0));
    a_broker_joins_and_is_elected(&mut client);
    let (clean, stderr) = server.terminate();
    assert!(clean, "mqcontroller did not exit cleanly: {stderr}");
}

#[test]
fn mqnamesrv_serves_the_controller_with_enable_controller_in_namesrv() {
    let file = scratch_dir("namesrv-controller").join("namesrv.properties");
    std::fs::write(&file, "listenPort=0\nenableControllerInNamesrv=true\n").unwrap();
    let mut server = ServerProcess::start(env!("CARGO_BIN_EXE_mqnamesrv"), &["-c", file.to_str().unwrap()]);
    let mut client = Client::connect(server.addr_in_boot_line(0));
    a_broker_joins_and_is_elected(&mut client);
    let (clean, stderr) = server.terminate();
    assert!(clean, "mqnamesrv did not exit cleanly: {stderr}");
}
