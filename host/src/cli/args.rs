//! Flags and subcommands, as clap parses them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::loadgen::{
    BENCH_CLIENTS_DEFAULT, BENCH_CLIENTS_MAX, BENCH_DURATION_DEFAULT, BENCH_KEYS_DEFAULT,
    BENCH_VALUE_BYTES_DEFAULT, BENCH_WARMUP_DEFAULT,
};

use super::security_args::{CertsCommand, ClientTlsArgs, GossipCommand, NodeTlsArgs};
use crate::consensus::settings::{PROTOCOL_LEVEL_SUPPORTED, Setting};
use crate::limits::{
    DEAD_GRACE_DEFAULT, LOG_ENTRIES_KEPT_BEHIND_SNAPSHOT, PLUGIN_FUEL_PER_BULK_CALL,
    PLUGIN_FUEL_PER_CALL, PLUGIN_MEMORY_BYTES_MAX, PLUGIN_MEMORY_MIB_FLAG_MAX,
    SNAPSHOT_EVERY_ENTRIES_DEFAULT, STABILIZATION_DEFAULT, VOTER_CAP_DEFAULT, VOTERS_MAX,
};

/// Bytes in a MiB, for `--plugin-memory-mib`.
pub const MIB: u64 = 1024 * 1024;

impl RunArgs {
    /// The plugin bounds these flags ask for (defaults where not given).
    pub fn plugin_limits(&self) -> crate::limits::PluginLimits {
        crate::limits::PluginLimits {
            fuel_per_call: self.plugin_fuel.unwrap_or(PLUGIN_FUEL_PER_CALL),
            fuel_per_bulk_call: self.plugin_bulk_fuel.unwrap_or(PLUGIN_FUEL_PER_BULK_CALL),
            memory_bytes_max: self
                .plugin_memory_mib
                .map_or(PLUGIN_MEMORY_BYTES_MAX, |mib| (mib * MIB) as usize),
            ..crate::limits::PluginLimits::default()
        }
    }

    /// The cluster settings these flags name explicitly: (flag, setting,
    /// value). A node uses the cluster's values and warns about these when
    /// they differ.
    pub fn flagged_settings(&self) -> Vec<(&'static str, Setting, u64)> {
        [
            ("--plugin-fuel", Setting::FuelPerCall, self.plugin_fuel),
            (
                "--plugin-bulk-fuel",
                Setting::FuelPerBulkCall,
                self.plugin_bulk_fuel,
            ),
            (
                "--plugin-memory-mib",
                Setting::MemoryBytesMax,
                self.plugin_memory_mib.map(|mib| mib * MIB),
            ),
        ]
        .into_iter()
        .filter_map(|(flag, setting, value)| value.map(|value| (flag, setting, value)))
        .collect()
    }
}

/// Default gRPC address a node listens on, and the CLI talks to.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:7400";

/// Default UDP address a node gossips on.
pub const DEFAULT_GOSSIP: &str = "127.0.0.1:7401";

/// clusterhost: make any WebAssembly state machine a fault-tolerant cluster.
#[derive(Debug, Parser)]
#[command(name = "clusterhost", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node (until SIGINT or SIGTERM).
    Run(Box<RunArgs>),
    /// Propose a command to the cluster and print the plugin's response.
    Apply(ApplyArgs),
    /// Run a read-only query and print the plugin's response.
    Query(QueryArgs),
    /// Show a node's view of itself and the cluster.
    Status(StatusArgs),
    /// Take a snapshot now and purge the log behind it.
    Snapshot(EndpointArgs),
    /// List cluster members, or remove one.
    Members(MembersArgs),
    /// Leadership operations.
    #[command(subcommand)]
    Leader(LeaderCommand),
    /// Remove the node at --endpoint from the cluster, then stop it.
    Leave(EndpointArgs),
    /// Work with plugin files.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Cluster settings: what every replica applies with.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Drive a cluster running the kv plugin with concurrent clients and report
    /// throughput and latency.
    Bench(BenchArgs),
    /// Backups: save one from a running cluster, inspect or restore a file.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Make a CA and node and client certificates for mutual TLS.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Gossip encryption keys.
    #[command(subcommand)]
    Gossip(GossipCommand),
}

/// `clusterhost backup ...`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Save a consistent backup (state, plugin, version history, settings)
    /// from the cluster's leader, while writes go on.
    Save {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The file to write (replaced only once the whole backup arrived
        /// and verified).
        file: PathBuf,
    },
    /// Verify a backup file and show what it holds.
    Inspect {
        /// The backup file.
        file: PathBuf,
    },
    /// Seed a new single-node cluster from a backup: a new data dir whose
    /// node leads with the backup's state once started with `clusterhost run
    /// --data-dir DIR` (other nodes then join it). A corrupted file is
    /// refused and nothing is written.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The new node's data dir (must not exist or be empty).
        #[arg(long, short = 'd')]
        data_dir: PathBuf,
        /// The new node's Raft id [default: generated].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        node_id: Option<u64>,
        /// The gRPC address the new node will serve on (its `run --listen`
        /// or `--advertise`).
        #[arg(long, default_value = DEFAULT_ENDPOINT)]
        advertise: String,
    },
}

/// `--endpoint`, shared by every client command.
#[derive(Debug, Args)]
pub struct EndpointArgs {
    /// gRPC address of any node (host:port).
    #[arg(long, short = 'e', env = "CLUSTERHOST_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `clusterhost run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A TOML file with any of these flags as keys (`data_dir = "d1"`; see
    /// `clusterhost config example`); flags given here override its keys.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Directory for this node's log, snapshots and identity. Created if missing;
    /// an existing one is resumed.
    #[arg(long, short = 'd', default_value = "./data")]
    pub data_dir: PathBuf,
    /// Plugin (a wasm32-wasip2 component) that defines a new cluster. Only with
    /// --bootstrap; a restarted node remembers its plugin.
    #[arg(long, short = 'p')]
    pub plugin: Option<PathBuf>,
    /// Initialize a new cluster with this node as its first member (first start only).
    #[arg(long)]
    pub bootstrap: bool,
    /// Form a new cluster once this many nodes started with the same flag see each
    /// other (as Consul does); exactly one of them initializes it. Needs --plugin.
    #[arg(long, default_value_t = 0)]
    pub bootstrap_expect: usize,
    /// Gossip address (host:port) of any node of the cluster to join; repeat or
    /// separate with commas for several.
    #[arg(long, short = 'j', value_delimiter = ',')]
    pub join: Vec<String>,
    /// UDP address other nodes should gossip to, when it differs from --gossip.
    #[arg(long)]
    pub gossip_advertise: Option<SocketAddr>,
    /// Nodes only gossip with nodes of the same cluster name.
    #[arg(long, default_value = "clusterhost")]
    pub cluster_name: String,
    /// Most voters; further nodes stay learners (read replicas).
    #[arg(long, default_value_t = VOTER_CAP_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=VOTERS_MAX))]
    pub voter_cap: u64,
    /// How long a new node must stay healthy and caught up before it becomes a voter
    /// (e.g. 500ms, 5s, 2m).
    #[arg(long, default_value = STABILIZATION_DEFAULT, value_parser = parse_duration)]
    pub stabilization: Duration,
    /// How long a member must be unreachable before the leader removes it (when the
    /// remaining voters still form a quorum).
    #[arg(long, default_value = DEAD_GRACE_DEFAULT, value_parser = parse_duration)]
    pub dead_grace: Duration,
    /// Never remove dead voters below this many.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=VOTERS_MAX))]
    pub min_voters: u64,
    /// gRPC address to listen on, for clients and other nodes.
    #[arg(long, default_value = DEFAULT_ENDPOINT)]
    pub listen: SocketAddr,
    /// gRPC address other nodes and clients should use, when it differs from --listen.
    #[arg(long)]
    pub advertise: Option<String>,
    /// UDP address for gossip with other nodes.
    #[arg(long, default_value = DEFAULT_GOSSIP)]
    pub gossip: SocketAddr,
    /// Raft node id (a positive number). Generated once and remembered when omitted.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub node_id: Option<u64>,
    /// Log entries between automatic snapshots.
    #[arg(long, default_value_t = SNAPSHOT_EVERY_ENTRIES_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot (so lagging followers catch up from the log).
    #[arg(long, default_value_t = LOG_ENTRIES_KEPT_BEHIND_SNAPSHOT)]
    pub log_keep: u64,
    /// Fuel (wasm instructions, roughly) one apply or query may use [default:
    /// 1000000000]. A cluster setting: only seeds a new cluster (see
    /// `clusterhost config`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub plugin_fuel: Option<u64>,
    /// Fuel one snapshot or restore may use [default: 50000000000]. A cluster
    /// setting, like --plugin-fuel.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub plugin_bulk_fuel: Option<u64>,
    /// Memory a plugin instance may use, all its linear memories together,
    /// in MiB [default: 512]. A cluster setting, like --plugin-fuel.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=PLUGIN_MEMORY_MIB_FLAG_MAX))]
    pub plugin_memory_mib: Option<u64>,
    /// The protocol level a new cluster starts at [default: the highest
    /// this binary supports]. A lower one lets nodes whose binary supports
    /// only that level join (and a rollback to such binaries); raise it
    /// later with `clusterhost config set protocol_level`. Only seeds a new
    /// cluster, like --plugin-fuel.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(PROTOCOL_LEVEL_SUPPORTED)))]
    pub protocol_level: Option<u32>,
    /// Serve Prometheus metrics (`/metrics`), health checks (`/healthz`,
    /// `/readyz`) and a status page (`/`) over HTTP on this address
    /// (e.g. 127.0.0.1:7402). Off when omitted. With --tls-* it serves
    /// HTTPS only (loopback too), and a client must present a certificate
    /// from the cluster's CA (any role); without TLS it serves plain HTTP,
    /// only on loopback unless --insecure.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Log format on stderr (level via RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub tls: NodeTlsArgs,
    /// Only deploy plugins signed (`clusterhost plugin sign`) by one of the
    /// ed25519 public keys in this file, one per line; applies to --plugin
    /// and to deploys this node accepts as leader.
    #[arg(long)]
    pub plugin_signers: Option<PathBuf>,
    /// Seal every gossip datagram (ChaCha20-Poly1305) with the keys in this
    /// file, one per line (`clusterhost gossip keygen`): the first seals,
    /// all open, so keys rotate without downtime. Read again on SIGHUP.
    #[arg(long)]
    pub gossip_key_file: Option<PathBuf>,
    /// Serve gRPC, gossip or --metrics-listen on a non-loopback address
    /// without TLS (or, for gossip, a gossip key): anyone who reaches the
    /// gRPC or gossip port controls the cluster, and anyone who reaches the
    /// ops port reads its state.
    #[arg(long)]
    pub insecure: bool,
    /// Serve gRPC server reflection (for grpcurl and the like).
    #[arg(long)]
    pub reflection: bool,
}

/// `clusterhost apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// The command: text as given, `-` to read stdin, or `@FILE` to read a file.
    pub command: String,
}

/// Read consistency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Confirmed with a quorum; sees every acknowledged write.
    Linearizable,
    /// This node's state as it is; may lag.
    Stale,
}

/// `clusterhost query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Read consistency.
    #[arg(long, value_enum, default_value_t = Consistency::Linearizable)]
    pub consistency: Consistency,
    /// The query: text as given, `-` to read stdin, or `@FILE` to read a file.
    pub request: String,
}

/// `clusterhost status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Print stable, machine-readable JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What `clusterhost bench` clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchWorkload {
    /// kv puts.
    Write,
    /// Linearizable kv gets.
    ReadLinearizable,
    /// Stale kv gets.
    ReadStale,
}

/// What `clusterhost bench` loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchSystem {
    /// A clusterhost cluster running the kv plugin.
    Clusterhost,
    /// An etcd cluster (v3 API; endpoints are its client addresses), for comparison.
    Etcd,
}

/// `clusterhost bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What the endpoints run.
    #[arg(long, value_enum, default_value_t = BenchSystem::Clusterhost)]
    pub system: BenchSystem,
    /// Instead of a load run: write to the first endpoint until a write is
    /// acknowledged (a new attempt every 20 ms, for at most --duration) and
    /// report how long it took, e.g. right after killing the leader.
    #[arg(long)]
    pub first_write: bool,
    /// Endpoints to spread clients over (comma-separated); default: the local node.
    #[arg(long, short = 'e', value_delimiter = ',', default_value = DEFAULT_ENDPOINT)]
    pub endpoints: Vec<String>,
    /// Concurrent clients, one connection each.
    #[arg(long, default_value_t = BENCH_CLIENTS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=BENCH_CLIENTS_MAX))]
    pub clients: u64,
    /// What the clients do.
    #[arg(long, value_enum, default_value_t = BenchWorkload::Write)]
    pub workload: BenchWorkload,
    /// Measured time (e.g. 10s).
    #[arg(long, default_value = BENCH_DURATION_DEFAULT, value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before measuring (not counted).
    #[arg(long, default_value = BENCH_WARMUP_DEFAULT, value_parser = parse_duration)]
    pub warmup: Duration,
    /// Value size in bytes.
    #[arg(long, default_value_t = BENCH_VALUE_BYTES_DEFAULT)]
    pub value_bytes: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = BENCH_KEYS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Write within client sessions (exactly once; needs protocol level 2).
    #[arg(long)]
    pub sessions: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

/// `clusterhost members`.
#[derive(Debug, Args)]
pub struct MembersArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// `remove ID`: remove a node from the membership.
    #[command(subcommand)]
    pub action: Option<MembersAction>,
}

/// `clusterhost members remove`.
#[derive(Debug, Subcommand)]
pub enum MembersAction {
    /// Remove a node (voter or learner) from the cluster.
    Remove {
        /// The node's id (see `clusterhost members`).
        node_id: u64,
    },
}

/// `clusterhost leader ...`.
#[derive(Debug, Subcommand)]
pub enum LeaderCommand {
    /// Move leadership to another voter.
    Transfer {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The voter that should lead.
        #[arg(long)]
        to: u64,
    },
}

/// Parse `500ms`, `5s`, `2m`, `1h` (or plain seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 5s, 2m or 1h"))?;
    let millis = match unit {
        "ms" => value,
        "" | "s" => value.saturating_mul(1_000),
        "m" => value.saturating_mul(60_000),
        "h" => value.saturating_mul(3_600_000),
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use ms, s, m or h)"
            ));
        }
    };
    Ok(Duration::from_millis(millis))
}

/// `clusterhost config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a commented node configuration file (for `run --config`) with
    /// every key and its default.
    Example,
    /// Show the cluster settings.
    Get {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Change one cluster setting, through the log: every replica switches
    /// at the same index. Refused (changing nothing) when out of range.
    Set {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The setting (see `config get`).
        name: String,
        /// Its new value; for `plugin_signers`, a file of ed25519 public
        /// keys, one per line (`none`: any plugin may be deployed).
        value: String,
    },
}

/// `clusterhost plugin ...`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Upload a plugin and switch the whole cluster to it at one log index,
    /// carrying the state over (the new plugin's `restore` gets the old one's
    /// `snapshot`). A failed switch changes nothing anywhere.
    Deploy {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// The .wasm component.
        file: PathBuf,
    },
    /// The deploy history: version, digest, size, switch index, time, outcome.
    List {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Deploy the previous plugin version again, the same way.
    Rollback {
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Make an ed25519 key for signing plugins: writes the private key to
    /// --out (0600) and prints the public key (a line for --plugin-signers).
    Keygen {
        /// File for the private key (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a plugin with a key from `plugin keygen`, writing the signed
    /// component to --out.
    Sign {
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
        /// Where the signed component goes.
        #[arg(long)]
        out: PathBuf,
        /// The .wasm component.
        file: PathBuf,
    },
    /// Describe a plugin file: digest, size, world, imports; or why it is not a plugin.
    Inspect {
        /// The .wasm file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a plugin through a command file with no cluster and check replay
    /// determinism, snapshot round trips, query purity and (with --against)
    /// upgrading from an older plugin; exits 8 if any check fails.
    Check {
        /// The .wasm file.
        file: PathBuf,
        /// The command file: one command a line, `?` before a query, `#`
        /// before a comment.
        #[arg(long)]
        commands: PathBuf,
        /// An older plugin whose snapshot this one must restore and answer
        /// the same queries from.
        #[arg(long)]
        against: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn duration_defaults_parse() {
        for text in [
            STABILIZATION_DEFAULT,
            DEAD_GRACE_DEFAULT,
            BENCH_DURATION_DEFAULT,
            BENCH_WARMUP_DEFAULT,
        ] {
            assert!(parse_duration(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
