//! End-to-end scenarios of a node bounding what one peer can make it hold:
//! an oversized plugin upload is refused and changes nothing, and uploads
//! beyond the concurrent limit are refused at once while writes go on.

use std::time::Duration;

use clusterhost::limits::{DEPLOY_UPLOADS_MAX, PLUGIN_BYTES_MAX};
use clusterhost_client::proto::cluster_client::ClusterClient;
use clusterhost_client::proto::{DeployResponse, PluginChunk, StatusRequest};
use clusterhost_client::{connect_channel_with, upload_chunks};
use clusterhost_tests::kv::{self, apply_ok};
use clusterhost_tests::paths::kv_plugin;
use clusterhost_tests::{TestCluster, wait_for};
use futures::StreamExt as _;
use tonic::Code;
use tonic::transport::Channel;

/// How long freed upload slots may take to be seen free.
const SLOT_FREED_TIMEOUT: Duration = Duration::from_secs(20);

/// A raw gRPC client of node 0, so the test controls the upload stream.
async fn raw_client(cluster: &TestCluster) -> ClusterClient<Channel> {
    let channel = connect_channel_with(&cluster.node(0).endpoint(), cluster.client_tls())
        .await
        .expect("connect to node 0");
    ClusterClient::new(channel).max_encoding_message_size(usize::MAX)
}

/// `(last_log_index, plugin_digest, cluster_version)` of node 0.
async fn log_and_plugin(client: &mut ClusterClient<Channel>) -> (u64, String, u64) {
    let status = client
        .status(StatusRequest::default())
        .await
        .expect("status")
        .into_inner();
    (
        status.last_log_index,
        status.plugin_digest,
        status.cluster_version,
    )
}

/// Upload `plugin` in the usual chunks and return the refusal.
async fn refused_upload(client: &mut ClusterClient<Channel>, plugin: &[u8]) -> tonic::Status {
    let chunks = futures::stream::iter(upload_chunks(plugin));
    client
        .deploy_plugin(chunks)
        .await
        .expect_err("the upload was accepted")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_plugin_upload_is_refused_and_changes_nothing() {
    // Goal: a plugin one byte over the limit is refused with `resource
    // exhausted` naming the limit; the log and the running plugin stay as
    // they were, and the node keeps serving writes.
    let cluster = TestCluster::start_bootstrap(&kv_plugin()).await;
    let mut client = raw_client(&cluster).await;
    let before = log_and_plugin(&mut client).await;

    let oversized = vec![0u8; PLUGIN_BYTES_MAX + 1];
    let status = refused_upload(&mut client, &oversized).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("larger than the {PLUGIN_BYTES_MAX} byte limit")),
        "{status:?}"
    );
    assert_eq!(
        log_and_plugin(&mut client).await,
        before,
        "the refusal changed state"
    );
    apply_ok(&mut cluster.client(0).await, kv::put("after", "oversized")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_beyond_the_limit_are_refused_while_writes_continue() {
    // Goal: of DEPLOY_UPLOADS_MAX + EXTRA uploads opened at once, each
    // sending a chunk and then falling silent, exactly EXTRA are refused at
    // once with `resource exhausted` while the others stay open; nothing
    // enters the log but a write made meanwhile; once the open uploads are
    // abandoned their slots are free again.
    const EXTRA: usize = 3;
    let cluster = TestCluster::start_bootstrap(&kv_plugin()).await;
    let mut client = raw_client(&cluster).await;
    let before = log_and_plugin(&mut client).await;

    let uploads = stalled_uploads(&client, DEPLOY_UPLOADS_MAX + EXTRA);
    wait_for(
        &format!("{EXTRA} uploads to be answered"),
        SLOT_FREED_TIMEOUT,
        || {
            let answered = uploads.iter().filter(|upload| upload.is_finished()).count();
            async move { (answered >= EXTRA).then_some(()) }
        },
    )
    .await;
    let mut writer = cluster.client(0).await;
    apply_ok(&mut writer, kv::put("during", "held uploads")).await;
    let (answered, open): (Vec<_>, Vec<_>) =
        uploads.into_iter().partition(|upload| upload.is_finished());
    assert_eq!(open.len(), DEPLOY_UPLOADS_MAX, "uploads held open");
    for upload in answered {
        let status = upload
            .await
            .expect("upload task")
            .expect_err("a stalled upload was accepted");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().contains("already being received"),
            "{status:?}"
        );
    }
    let after = log_and_plugin(&mut client).await;
    assert_eq!(
        (&after.1, after.2),
        (&before.1, before.2),
        "the plugin changed"
    );
    assert!(after.0 > before.0, "the write did not enter the log");

    for upload in &open {
        upload.abort();
    }
    assert_slots_freed(&client).await;
}

/// An upload task's outcome.
type Upload = tokio::task::JoinHandle<Result<tonic::Response<DeployResponse>, tonic::Status>>;

/// `count` uploads that each send one chunk and then fall silent.
fn stalled_uploads(client: &ClusterClient<Channel>, count: usize) -> Vec<Upload> {
    (0..count)
        .map(|_| {
            let first = PluginChunk {
                data: vec![0; 1024],
            };
            let stalled = futures::stream::iter([first]).chain(futures::stream::pending());
            let mut uploader = client.clone();
            tokio::spawn(async move { uploader.deploy_plugin(stalled).await })
        })
        .collect()
}

/// Wait until an upload is no longer refused for want of a slot.
async fn assert_slots_freed(client: &ClusterClient<Channel>) {
    let freed = wait_for(
        "the abandoned uploads' slots to be freed",
        SLOT_FREED_TIMEOUT,
        || {
            let mut client = client.clone();
            async move {
                let status = refused_upload(&mut client, b"not a plugin").await;
                (status.code() != Code::ResourceExhausted).then_some(status)
            }
        },
    )
    .await;
    assert_eq!(freed.code(), Code::InvalidArgument, "{freed:?}");
}
