//! TLS beside plaintext on the one gRPC port of a running `keel --enable-proxy`: a
//! configured certificate (`tlsCertPath`, `tlsKeyPath`), the self-signed one made when none
//! is (`tlsTestModeEnable`, the default), plaintext only when that is off, and a certificate
//! that cannot be read named at start. Clients are tonic's, over rustls trusting exactly the
//! certificate expected. Real processes and real TLS: normal builds only.
#![cfg(not(madsim))]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use keel_core::grpc::proto::{self, Code};
use keel_runtime_tokio::grpc::service::messaging_service_client::MessagingServiceClient;
use support::{scratch_dir, ServerProcess};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tonic::transport::{Channel, Endpoint, Uri};

/// A QueryRoute of a topic no one has, over `channel`: the endpoint answers TOPIC_NOT_FOUND
/// in its Status, so the call went through.
async fn answers(channel: Channel) -> bool {
    let mut client = MessagingServiceClient::new(channel);
    let mut request = tonic::Request::new(proto::QueryRouteRequest {
        topic: Some(proto::Resource { resource_namespace: String::new(), name: "NoSuchTopic".into() }),
        endpoints: None,
    });
    request.metadata_mut().insert("x-mq-client-id", "tls-test@1".parse().unwrap());
    match client.query_route(request).await {
        Ok(reply) => reply.into_inner().status.unwrap().code == Code::TopicNotFound as i32,
        Err(_) => false,
    }
}

/// A plaintext channel to `addr`.
async fn plaintext(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

/// A TLS channel to `addr` trusting only the certificate in `pem`, for `name`; `None` if
/// the handshake fails.
async fn tls(addr: SocketAddr, pem: &Path, name: &str) -> Option<Channel> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let connect = tower::service_fn(move |_: Uri| {
        let (connector, name) = (connector.clone(), name.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let stream = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    // The URI only names the connection; the connector decides where it goes.
    Endpoint::from_static("http://keel.invalid").connect_with_connector(connect).await.ok()
}

fn start(dir: &Path, conf: &str) -> (ServerProcess, SocketAddr) {
    let path = dir.join("broker.conf");
    std::fs::write(&path, format!("enableProxy=true\ngrpcServerPort=0\n{conf}")).unwrap();
    let keel = ServerProcess::keel(env!("CARGO_BIN_EXE_keel"), &dir.join("data"), Some(&path));
    let grpc = keel.addr_in_boot_line(2);
    (keel, SocketAddr::from(([127, 0, 0, 1], grpc.port())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_certificate_serves_tls_and_plaintext_on_one_port() {
    let dir = scratch_dir("grpc-tls-files");
    let made = rcgen::generate_simple_self_signed(vec!["keel.example".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    let (_keel, grpc) =
        start(&dir, &format!("tlsCertPath={}\ntlsKeyPath={}\n", cert.display(), key.display()));
    let channel =
        tls(grpc, &cert, "keel.example").await.expect("a TLS handshake with the configured certificate");
    assert!(answers(channel).await, "a gRPC call over TLS");
    assert!(answers(plaintext(grpc).await).await, "plaintext on the same port");
    // Another certificate is not trusted: the handshake checks the one configured.
    let other = rcgen::generate_simple_self_signed(vec!["keel.example".to_owned()]).unwrap();
    let other_pem = dir.join("other.pem");
    std::fs::write(&other_pem, other.cert.pem()).unwrap();
    match tls(grpc, &other_pem, "keel.example").await {
        None => {}
        Some(channel) => {
            assert!(!answers(channel).await, "a client trusting another certificate got through")
        }
    }
    assert!(answers(plaintext(grpc).await).await, "a failed handshake harms no other client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_certificate_a_self_signed_one_is_made_unless_test_mode_is_off() {
    let dir = scratch_dir("grpc-tls-self-signed");
    let (keel, grpc) = start(&dir, "");
    let pem = dir.join("data").join(keel_runtime_tokio::grpc::tls::SELF_SIGNED_PEM);
    let channel =
        tls(grpc, &pem, "localhost").await.expect("TLS with the self-signed certificate written out");
    assert!(answers(channel).await);
    let channel = tls(grpc, &pem, "127.0.0.1").await.expect("it names 127.0.0.1 too");
    assert!(answers(channel).await);
    assert!(answers(plaintext(grpc).await).await);
    drop(keel);

    let dir = scratch_dir("grpc-tls-off");
    let (_keel, grpc) = start(&dir, "tlsTestModeEnable=false\n");
    assert!(!dir.join("data").join(keel_runtime_tokio::grpc::tls::SELF_SIGNED_PEM).exists());
    match tls(grpc, &pem, "localhost").await {
        None => {}
        Some(channel) => assert!(!answers(channel).await, "TLS served with test mode off"),
    }
    assert!(answers(plaintext(grpc).await).await, "plaintext still served");
}

/// Start `keel` with `conf` as its broker.conf, expecting it to refuse: its stderr.
fn refused_start(dir: &Path, conf: &str) -> String {
    let path = dir.join("broker.conf");
    std::fs::write(&path, format!("enableProxy=true\ngrpcServerPort=0\n{conf}")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["--data-dir", dir.join("data").to_str().unwrap(), "--namesrv-port", "0", "--broker-port", "0"])
        .args(["-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn a_certificate_that_cannot_be_read_is_named_at_start() {
    let dir = scratch_dir("grpc-tls-missing");
    let missing = dir.join("no-such-cert.pem");
    let stderr = refused_start(
        &dir,
        &format!("tlsCertPath={}\ntlsKeyPath={}\n", missing.display(), missing.display()),
    );
    assert!(stderr.contains("tlsCertPath") && stderr.contains("no-such-cert.pem"), "{stderr}");
    let stderr = refused_start(&dir, "tlsKeyPath=/tmp/key.pem\n");
    assert!(stderr.contains("tlsCertPath"), "a key without its certificate: {stderr}");
}
