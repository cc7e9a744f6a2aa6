//! A deploy entry that reaches the log unchecked (a node without the
//! API's check, an older leader) is refused when it applies, against the
//! replicated `plugin_signers`, the same on every replica.

use futures::stream;
use openraft::entry::RaftEntry as _;
use openraft::storage::RaftStateMachine as _;
use openraft::testing::log_id;

use super::StateMachineStore;
use super::batching_tests::{echo_marker, machine};
use crate::consensus::settings::{ClusterSettings, PROTOCOL_LEVEL_SUPPORTED, SettingsChange};
use crate::consensus::trusted_signers::{self, TrustedSigners};
use crate::consensus::types::{Entry, Request, TypeConfig};
use crate::plugin::PluginDigest;
use crate::security::signing;

/// Bytes that stand for a plugin: the signature check comes first.
const PLUGIN: &[u8] = b"\0asm\x0d\0\x01\0component";

/// A cluster started with one trusted key, its machine deployed, then an
/// unsigned deploy and one signed by another key; then the signers cleared.
fn log() -> Vec<Entry> {
    let (_, trusted) = signing::generate_key().expect("key");
    let (other, _) = signing::generate_key().expect("key");
    let settings = ClusterSettings {
        protocol_level: PROTOCOL_LEVEL_SUPPORTED,
        ..ClusterSettings::default()
    };
    let signers = TrustedSigners::parse(&trusted).expect("signers");
    let deploy = |plugin: Vec<u8>| Request::Deploy {
        time_ms: 1_000,
        plugin,
    };
    let requests = [
        Request::Settings(trusted_signers::initial_change(settings, signers)),
        deploy(echo_marker().to_vec()),
        deploy(PLUGIN.to_vec()),
        deploy(signing::sign(PLUGIN, &other).expect("sign")),
        Request::Settings(SettingsChange::Set {
            name: trusted_signers::SETTING_NAME.to_string(),
            value: String::new(),
        }),
    ];
    (1..)
        .zip(requests)
        .map(|(index, request)| Entry::new_normal(log_id::<TypeConfig>(1, 1, index), request))
        .collect()
}

/// A replica that applied `entries` in batches of `batch_len`.
async fn replica(entries: &[Entry], batch_len: usize) -> StateMachineStore {
    let (_directory, mut machine) = machine().await;
    for batch in entries.chunks(batch_len) {
        let items = batch.iter().cloned().map(|entry| Ok((entry, None)));
        machine.apply(stream::iter(items)).await.expect("apply");
    }
    machine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_deploy_entries_are_refused_alike_on_every_replica() {
    // Goal: both refused deploys are recorded as failures with the reason,
    // the running machine stays, the signers change at their entry, and
    // replicas batching differently end with the same applied digest.
    let entries = log();
    let one_by_one = replica(&entries, 1).await;
    let all_at_once = replica(&entries, entries.len()).await;
    let marker = PluginDigest::of(&echo_marker()).to_hex();
    for machine in [&one_by_one, &all_at_once] {
        let records = &machine.host.history.records;
        let failures: Vec<_> = records.iter().map(|r| r.failure.as_deref()).collect();
        assert_eq!(failures.len(), 3, "{records:?}");
        assert_eq!(failures[0], None, "the machine's own marker deploys");
        let unsigned = failures[1].expect("the unsigned deploy fails");
        assert!(unsigned.starts_with("deploy refused: the plugin is not signed"));
        let foreign = failures[2].expect("the foreign key's deploy fails");
        assert!(
            foreign.contains("which is not a listed signer"),
            "{foreign}"
        );
        assert_eq!(machine.host.history.cluster_version, 1);
        let running = machine.status.borrow().plugin_digest.clone();
        assert_eq!(running.as_deref(), Some(marker.as_str()));
        assert!(machine.host.signers.is_empty(), "cleared at the last entry");
    }
    assert_eq!(one_by_one.host.digest, all_at_once.host.digest);
    assert_eq!(one_by_one.host.digest.index, entries.len() as u64);
}
