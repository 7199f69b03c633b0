//! The blackhole fault: a swallowed connection takes writes without an
//! error and delivers nothing, even after the heal, until it is replaced;
//! and clusters whose connections it swallows recover after the heal.
#![cfg(madsim)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use oar::runtime::auth::{Authenticator, Insecure};
use oar_sim::blackhole::{BlackholeAuthenticator, Blackholes};
use oar_sim::fault_mix::{FaultKind, FaultWeights};
use oar_sim::options::SimOptions;
use oar_sim::run::{Verdict, run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER: &str = "10.0.0.1";
const CLIENT: &str = "10.0.0.2";

/// Reads whatever arrives within 500 ms.
async fn read_some(stream: &mut oar::runtime::auth::BoxedStream) -> Vec<u8> {
    let mut buf = vec![0u8; 64];
    match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
        Ok(Ok(n)) => buf[..n].to_vec(),
        _ => Vec::new(),
    }
}

#[test]
fn a_swallowed_connection_stays_dead_until_replaced() {
    let runtime = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
    runtime.block_on(async {
        let handle = madsim::runtime::Handle::current();
        let blackholes = Blackholes::default();
        let (server_ip, client_ip): (IpAddr, IpAddr) =
            (SERVER.parse().unwrap(), CLIENT.parse().unwrap());
        let wrap = |ip| BlackholeAuthenticator::new(Arc::new(Insecure), ip, blackholes.clone());
        let (server_auth, client_auth) = (wrap(server_ip), wrap(client_ip));
        let (tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
        let server = handle.create_node().ip(server_ip).build();
        server.spawn(async move {
            let listener = tokio::net::TcpListener::bind((server_ip, 7000))
                .await
                .unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                let (stream, _) = server_auth.accept(stream).await.unwrap();
                tx.send(stream).unwrap();
            }
        });
        let client = handle.create_node().ip(client_ip).build();
        let blackholes = blackholes.clone();
        client
            .spawn(async move {
                let addr = SocketAddr::new(server_ip, 7000);
                let connect = || async {
                    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                    client_auth.connect(tcp, addr).await.unwrap()
                };
                let mut old = connect().await;
                let mut old_far = accepted.recv().await.unwrap();
                old.write_all(b"one").await.unwrap();
                old.flush().await.unwrap();
                assert_eq!(read_some(&mut old_far).await, b"one");

                blackholes.cut(client_ip, server_ip);
                old.write_all(b"two")
                    .await
                    .expect("a blackhole raises no error");
                old.flush().await.unwrap();
                assert!(read_some(&mut old_far).await.is_empty(), "swallowed");
                // The other direction still flows: the cut is one way.
                old_far.write_all(b"back").await.unwrap();
                old_far.flush().await.unwrap();
                assert_eq!(read_some(&mut old).await, b"back");
                // A new connection's handshake hangs while the path is cut.
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let hung =
                    tokio::time::timeout(Duration::from_secs(1), client_auth.connect(tcp, addr));
                assert!(hung.await.is_err(), "a handshake into a blackhole hangs");

                blackholes.heal();
                old.write_all(b"three").await.unwrap();
                old.flush().await.unwrap();
                drop(old);
                assert!(
                    read_some(&mut old_far).await.is_empty(),
                    "still dead after the heal, and its close unheard"
                );
                let mut new = connect().await;
                let _hung_one = accepted.recv().await.unwrap();
                let mut new_far = accepted.recv().await.unwrap();
                new.write_all(b"four").await.unwrap();
                new.flush().await.unwrap();
                assert_eq!(read_some(&mut new_far).await, b"four");
            })
            .await
            .unwrap();
    });
}

#[test]
fn clusters_recover_from_blackholes() {
    let mut blackholes = 0;
    for seed in 0..6 {
        let options = SimOptions {
            fault_weights: FaultWeights::swarm(seed).with(FaultKind::Blackhole, 60),
            ..SimOptions::new(seed)
        };
        let report = run(&options).report;
        assert!(
            matches!(report.verdict, Verdict::Pass),
            "seed {seed} (mix {}): {:?}",
            report.mix,
            report.verdict
        );
        blackholes += report
            .faults_by_kind
            .get(&FaultKind::Blackhole)
            .copied()
            .unwrap_or(0);
    }
    assert!(blackholes >= 20, "{blackholes} blackholes");
}
