//! End-to-end scenarios of a node bounding what one peer can make it hold:
//! an oversized plugin upload is refused and changes nothing, and uploads
//! beyond the concurrent limit are refused at once while writes go on
//! (also with twenty full-size 64 MiB uploads at once).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clusterhost::limits::{DEPLOY_UPLOADS_MAX, PLUGIN_BYTES_MAX, PLUGIN_UPLOAD_CHUNK_BYTES};
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

/// Bytes of each upload of the flood: as large as a plugin may be.
const FLOOD_UPLOAD_BYTES: usize = 64 * 1024 * 1024;
const _: () = assert!(FLOOD_UPLOAD_BYTES <= PLUGIN_BYTES_MAX);
const _: () = assert!(FLOOD_UPLOAD_BYTES.is_multiple_of(PLUGIN_UPLOAD_CHUNK_BYTES));
/// Uploads of the flood, opened at once.
const FLOOD_UPLOADS: usize = 20;
const _: () = assert!(FLOOD_UPLOADS > DEPLOY_UPLOADS_MAX);
/// Writes that must succeed while the admitted uploads are held, nearly
/// whole, in the node's memory.
const FLOOD_WRITES_MIN: usize = 5;
/// Longest the whole flood may take: every upload answered, the writes made.
const FLOOD_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_64_mib_uploads_are_refused_past_the_limit_while_writes_continue() {
    // Goal: of 20 uploads of 64 MiB each opened at once, all but
    // DEPLOY_UPLOADS_MAX are refused with `resource exhausted`; the
    // admitted ones send all but their last chunk and are held there while
    // a writer's writes keep succeeding; released, they complete (zeros are
    // no plugin: `invalid argument`); every write succeeds throughout, the
    // plugin is unchanged, and the upload slots are free again.
    let cluster = TestCluster::start_bootstrap(&kv_plugin()).await;
    let mut client = raw_client(&cluster).await;
    let before = log_and_plugin(&mut client).await;
    let writer = Writer::start(cluster.client(0).await);
    let started = Instant::now();

    let (gate, gate_closed) = tokio::sync::watch::channel(false);
    let at_gate = Arc::new(AtomicUsize::new(0));
    let uploads: Vec<Upload> = (0..FLOOD_UPLOADS)
        .map(|_| {
            let upload = gated_upload(gate_closed.clone(), at_gate.clone());
            let mut uploader = client.clone();
            tokio::spawn(async move { uploader.deploy_plugin(upload).await })
        })
        .collect();
    let held = hold_the_flood(uploads, &at_gate, &writer).await;
    gate.send_replace(true);
    for upload in held {
        let outcome = tokio::time::timeout(FLOOD_TIMEOUT, upload).await;
        let status = outcome
            .expect("an admitted upload did not finish")
            .expect("upload task")
            .expect_err("zeros were deployed");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    let (written, slowest) = writer.finish().await;
    eprintln!(
        "{FLOOD_UPLOADS} uploads of {FLOOD_UPLOAD_BYTES} bytes answered in {:.1?}; {written} writes meanwhile, the slowest {slowest:?}",
        started.elapsed()
    );
    let after = log_and_plugin(&mut client).await;
    assert_eq!(
        (&after.1, after.2),
        (&before.1, before.2),
        "the plugin changed"
    );
    assert!(
        after.0 >= before.0 + written as u64,
        "writes missing from the log"
    );
    assert_slots_freed(&client).await;
}

/// Wait until the uploads past the limit are answered, the admitted ones are
/// held at their last chunk, and writes went on meanwhile; check that the
/// answered ones were refused. Returns the held uploads.
async fn hold_the_flood(
    uploads: Vec<Upload>,
    at_gate: &AtomicUsize,
    writer: &Writer,
) -> Vec<Upload> {
    let refused_count = FLOOD_UPLOADS - DEPLOY_UPLOADS_MAX;
    tokio::time::timeout(FLOOD_TIMEOUT, async {
        wait_for("the uploads past the limit to be answered and the others to hold", FLOOD_TIMEOUT, || {
            let answered = uploads.iter().filter(|upload| upload.is_finished()).count();
            let held = at_gate.load(Ordering::Relaxed);
            async move { (answered >= refused_count && held >= DEPLOY_UPLOADS_MAX).then_some(()) }
        })
        .await;
        let written = writer.written();
        wait_for("writes while the uploads are held", FLOOD_TIMEOUT, || {
            let now = writer.written();
            async move { (now >= written + FLOOD_WRITES_MIN).then_some(()) }
        })
        .await;
    })
    .await
    .expect("the flood took too long");
    let (answered, held): (Vec<_>, Vec<_>) =
        uploads.into_iter().partition(|upload| upload.is_finished());
    assert_eq!(held.len(), DEPLOY_UPLOADS_MAX, "uploads admitted");
    for upload in answered {
        let status = upload
            .await
            .expect("upload task")
            .expect_err("an upload past the limit was accepted");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    }
    held
}

/// A 64 MiB upload of zeros that sends all but its last chunk, counts
/// itself in `at_gate`, and sends the last once `gate` opens.
fn gated_upload(
    mut gate: tokio::sync::watch::Receiver<bool>,
    at_gate: Arc<AtomicUsize>,
) -> impl futures::Stream<Item = PluginChunk> + Send + 'static {
    let chunks = FLOOD_UPLOAD_BYTES / PLUGIN_UPLOAD_CHUNK_BYTES;
    // Made as the stream is read, so twenty uploads do not hold 1.25 GiB
    // in the test.
    let zeros = || PluginChunk {
        data: vec![0; PLUGIN_UPLOAD_CHUNK_BYTES],
    };
    let last = async move {
        at_gate.fetch_add(1, Ordering::Relaxed);
        // A dropped sender also opens it: the test is over.
        let _ = gate.wait_for(|open| *open).await;
        zeros()
    };
    futures::stream::iter((1..chunks).map(move |_| zeros())).chain(futures::stream::once(last))
}

/// One client writing through node 0 until finished, every write checked.
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Result<Duration, String>>,
}

impl Writer {
    fn start(mut client: clusterhost_client::Client) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicUsize::new(0));
        let (stopped, count) = (stop.clone(), written.clone());
        let task = tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            while !stopped.load(Ordering::Relaxed) {
                let sequence = count.load(Ordering::Relaxed);
                let sent = Instant::now();
                let put = kv::put(&format!("flood/{sequence:06}"), "v");
                let response = client
                    .apply(put)
                    .await
                    .map_err(|error| format!("write {sequence}: {error}"))?;
                if !matches!(
                    response.result,
                    Some(clusterhost_client::proto::apply_response::Result::Ok(_))
                ) {
                    return Err(format!("write {sequence} not accepted: {response:?}"));
                }
                slowest = slowest.max(sent.elapsed());
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok(slowest)
        });
        Self {
            stop,
            written,
            task,
        }
    }

    /// Writes acknowledged so far.
    fn written(&self) -> usize {
        self.written.load(Ordering::Relaxed)
    }

    /// Stop; the writes made and the slowest one's latency; panics if any
    /// write failed.
    async fn finish(self) -> (usize, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let slowest = self.task.await.expect("writer task");
        let slowest =
            slowest.unwrap_or_else(|error| panic!("a write failed during the flood: {error}"));
        (self.written.load(Ordering::Relaxed), slowest)
    }
}
