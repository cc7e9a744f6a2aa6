//! What each subcommand does.

use std::io::Read;

use super::args::{
    ApplyArgs, BenchArgs, BenchSystem, BenchWorkload, Command, ConfigCommand, Consistency,
    EndpointArgs, LeaderCommand, LogFormat, MembersAction, MembersArgs, PluginCommand, QueryArgs,
    RunArgs, StatusArgs,
};
use super::output::{StatusJson, render_response, render_status};
use super::{CliError, ExitCode};
use clusterhost_client::proto;
use clusterhost_client::{Client, Cluster, cluster};

use crate::consensus::trusted_signers;
use crate::embed::{EmbedError, NodeBuilder};
use crate::limits::PROMOTION_LAG_ENTRIES_MAX;
use crate::membership::reconcile::Policy;
use crate::node::{self, NodeConfig, StartError};
use crate::plugin::PluginEngine;

/// Print a line on stdout. A reader that hung up early (`| head`) is not an
/// error: the rest of the output is dropped quietly.
macro_rules! say {
    ($($argument:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, $($argument)*);
    }};
}

/// Run `command`, printing its output.
pub async fn execute(command: Command) -> Result<(), CliError> {
    match command {
        Command::Run(args) => run(*args).await,
        Command::Apply(args) => apply(args).await,
        Command::Query(args) => query(args).await,
        Command::Status(args) => status(args).await,
        Command::Snapshot(args) => {
            let mut client = connect(&args).await?;
            let snapshot = client.snapshot().await?;
            say!(
                "snapshot at index {} ({} bytes)",
                snapshot.index,
                snapshot.size_bytes
            );
            Ok(())
        }
        Command::Plugin(command) => plugin(command).await,
        Command::Config(command) => config(command).await,
        Command::Members(args) => members(args).await,
        Command::Bench(args) => bench(args).await,
        Command::Backup(command) => {
            let report = super::backup::execute(command).await?;
            say!("{report}");
            Ok(())
        }
        Command::Certs(command) => super::certs::certs(command),
        Command::Gossip(command) => super::gossip::gossip(command),
        Command::Leader(LeaderCommand::Transfer { endpoint, to }) => {
            let mut client = connect(&endpoint).await?;
            let leader = client.transfer_leader(to).await?;
            say!("node {leader} is the leader");
            Ok(())
        }
        Command::Leave(args) => {
            let mut client = connect(&args).await?;
            client.leave().await?;
            say!("{} left the cluster and is stopping", args.endpoint);
            Ok(())
        }
    }
}

/// A client for `args`'s endpoint, over mutual TLS when its certificate
/// flags are given.
async fn connect(args: &EndpointArgs) -> Result<Client, CliError> {
    let tls = endpoint_tls(args)?;
    Ok(Client::connect_with(&args.endpoint, tls.as_ref()).await?)
}

/// The client certificate `args` names, if any.
fn endpoint_tls(args: &EndpointArgs) -> Result<Option<clusterhost_client::ClientTls>, CliError> {
    args.tls
        .load()
        .map_err(|error| CliError::new(ExitCode::InvalidInput, error.to_string()))
}

/// `clusterhost config ...`.
async fn config(command: ConfigCommand) -> Result<(), CliError> {
    let (response, json) = match command {
        ConfigCommand::Example => {
            say!("{}", super::config_file::example());
            return Ok(());
        }
        ConfigCommand::Get { endpoint, json } => {
            (connect(&endpoint).await?.settings().await?, json)
        }
        ConfigCommand::Set {
            endpoint,
            name,
            value,
        } => {
            let sent = super::signing::setting_value(&name, &value)?;
            let mut client = connect(&endpoint).await?;
            let response = client.set_setting(&name, &sent).await?;
            if name == trusted_signers::SETTING_NAME {
                let shown = super::signing::signers_text(&response.plugin_signers);
                say!(
                    "{name} = {shown} from index {} on every replica",
                    response.index
                );
            } else {
                say!(
                    "{name} = {value} from index {} on every replica",
                    response.index
                );
            }
            return Ok(());
        }
    };
    if json {
        let mut settings: serde_json::Map<String, serde_json::Value> = response
            .settings
            .iter()
            .map(|setting| (setting.name.clone(), setting.value.into()))
            .collect();
        let signers = response.plugin_signers.clone().into();
        settings.insert(trusted_signers::SETTING_NAME.to_string(), signers);
        let text = serde_json::to_string_pretty(&settings)
            .map_err(|error| CliError::new(ExitCode::Failure, error.to_string()))?;
        say!("{text}");
    } else {
        for setting in &response.settings {
            say!("{} = {}", setting.name, setting.value);
        }
        let signers = super::signing::signers_text(&response.plugin_signers);
        say!("{} = {signers}", trusted_signers::SETTING_NAME);
    }
    Ok(())
}

/// `clusterhost plugin ...`.
async fn plugin(command: PluginCommand) -> Result<(), CliError> {
    match command {
        PluginCommand::Inspect { file, json } => inspect(&file, json),
        PluginCommand::Check {
            file,
            commands,
            against,
            json,
        } => super::check::check(&file, &commands, against.as_deref(), json),
        PluginCommand::Keygen { out } => super::signing::keygen(&out),
        PluginCommand::Sign { key, out, file } => super::signing::sign(&key, &out, &file),
        PluginCommand::Deploy { endpoint, file } => {
            let plugin = std::fs::read(&file).map_err(|error| {
                CliError::new(
                    ExitCode::InvalidInput,
                    format!("cannot read {}: {error}", file.display()),
                )
            })?;
            let mut client = connect(&endpoint).await?;
            let receipt = client.deploy_plugin(plugin).await?;
            say!(
                "deployed: cluster version {}, digest {}, every replica switched at index {}",
                receipt.version,
                receipt.digest,
                receipt.index
            );
            Ok(())
        }
        PluginCommand::Rollback { endpoint } => {
            let mut client = connect(&endpoint).await?;
            let receipt = client.rollback_plugin().await?;
            say!(
                "rolled back: cluster version {}, digest {}, every replica switched at index {}",
                receipt.version,
                receipt.digest,
                receipt.index
            );
            Ok(())
        }
        PluginCommand::List { endpoint, json } => {
            let mut client = connect(&endpoint).await?;
            let history = client.plugin_history().await?;
            let history = super::output::HistoryJson::from(history);
            if json {
                let text = serde_json::to_string_pretty(&history)
                    .map_err(|error| CliError::new(ExitCode::Failure, error.to_string()))?;
                say!("{text}");
            } else {
                say!("{}", super::output::render_history(&history));
            }
            Ok(())
        }
    }
}

/// Set up logging for `run`.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,openraft=warn,h2=warn,tower=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(args: RunArgs) -> Result<(), CliError> {
    init_logging(args.log_format);
    let (plugin_limits, flagged_settings) = (args.plugin_limits(), args.flagged_settings());
    let tls = args
        .tls
        .load()
        .map_err(|error| CliError::new(ExitCode::InvalidInput, error.to_string()))?;
    let gossip_keyring = super::gossip::load_keyring(args.gossip_key_file.as_deref())?;
    #[cfg(unix)]
    super::gossip::reload_on_hangup(args.gossip_key_file.clone(), gossip_keyring.clone());
    let plugin_signers = super::signing::load_signers(args.plugin_signers.as_deref())?;
    let config = NodeConfig {
        data_dir: args.data_dir,
        plugin: args.plugin,
        bootstrap: args.bootstrap,
        advertise: args.advertise,
        node_id: args.node_id,
        bootstrap_expect: args.bootstrap_expect,
        join: args.join,
        gossip_listen: args.gossip,
        gossip_advertise: args.gossip_advertise,
        cluster_name: args.cluster_name,
        policy: Policy {
            voter_cap: args.voter_cap as usize,
            stabilization: args.stabilization,
            dead_grace: args.dead_grace,
            min_voters: args.min_voters as usize,
            caught_up_lag_entries: PROMOTION_LAG_ENTRIES_MAX,
        },
        snapshot_every_entries: args.snapshot_every,
        log_entries_kept: args.log_keep,
        plugin_limits,
        flagged_settings,
        metrics_listen: args.metrics_listen,
        tls,
        reflection: args.reflection,
        gossip_keyring,
        plugin_signers,
        protocol_level: args
            .protocol_level
            .unwrap_or(crate::consensus::settings::PROTOCOL_LEVEL_SUPPORTED),
    };
    let listener = node::bind(args.listen)
        .await
        .map_err(|error| CliError::new(ExitCode::Unavailable, error.to_string()))?;
    let mut builder = NodeBuilder::from_config(config, args.listen);
    if args.insecure {
        builder = builder.insecure();
    }
    let node = builder.start_on(listener).await.map_err(|error| {
        // Refusing an unprotected port is a refusal of the flags given.
        let code = match &error {
            EmbedError::Start(StartError::Exposure(_)) => ExitCode::InvalidInput,
            _ => ExitCode::Failure,
        };
        CliError::new(code, error.to_string())
    })?;
    tracing::info!(node_id = node.id(), "ready");
    node.serve_until(shutdown_signal())
        .await
        .map_err(|error| CliError::new(ExitCode::Failure, error.to_string()))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!("cannot listen for SIGTERM: {error}");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Read a command argument: text, `-` for stdin, `@FILE` for a file.
fn read_input(argument: &str) -> Result<Vec<u8>, CliError> {
    let invalid = |message: String| CliError::new(ExitCode::InvalidInput, message);
    if argument == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|error| invalid(format!("cannot read stdin: {error}")))?;
        return Ok(bytes);
    }
    if let Some(path) = argument.strip_prefix('@') {
        return std::fs::read(path)
            .map_err(|error| invalid(format!("cannot read {path}: {error}")));
    }
    Ok(argument.as_bytes().to_vec())
}

async fn apply(args: ApplyArgs) -> Result<(), CliError> {
    let command = read_input(&args.command)?;
    let mut cluster = one_shot(&args.endpoint).await?;
    let applied = cluster.apply(command).await.map_err(|error| {
        library_error(
            error,
            "the plugin rejected the command",
            "the command failed in the plugin and changed nothing",
        )
    })?;
    say!("{}", render_response(&applied.response));
    Ok(())
}

async fn query(args: QueryArgs) -> Result<(), CliError> {
    let request = read_input(&args.request)?;
    let consistency = match args.consistency {
        Consistency::Linearizable => proto::Consistency::Linearizable,
        Consistency::Stale => proto::Consistency::Stale,
    };
    let mut cluster = one_shot(&args.endpoint).await?;
    let answer = cluster.query(request, consistency).await.map_err(|error| {
        library_error(
            error,
            "the plugin rejected the query",
            "the query failed in the plugin",
        )
    })?;
    say!("{}", render_response(&answer));
    Ok(())
}

/// The client library as a one-shot command uses it: the one node named
/// (what it answers is what the user asked about), a single attempt (the
/// node itself waits for a leader), and no session
/// (a session is an entry in the log; a single command gains nothing from
/// one).
async fn one_shot(args: &EndpointArgs) -> Result<Cluster, CliError> {
    let tls = endpoint_tls(args)?;
    let options = cluster::Options {
        retry_budget: std::time::Duration::ZERO,
        sessions: false,
        follow_leader: false,
        tls,
        ..cluster::Options::default()
    };
    Cluster::connect_with([args.endpoint.as_str()], options)
        .await
        .map_err(|error| library_error(error, "", ""))
}

/// A library error as the CLI reports it, with its exit code.
fn library_error(error: cluster::Error, rejected: &str, fault: &str) -> CliError {
    use cluster::Error;
    match error {
        Error::Rejected(message) => {
            CliError::new(ExitCode::Rejected, format!("{rejected}: {message}"))
        }
        Error::Fault(message) => CliError::new(ExitCode::Rejected, format!("{fault}: {message}")),
        Error::Unavailable(message) => CliError::new(ExitCode::Unavailable, message),
        Error::Ambiguous(message) => CliError::new(ExitCode::OutcomeUnknown, message),
        Error::InvalidArgument(message) | Error::ResourceExhausted(message) => {
            CliError::new(ExitCode::InvalidInput, message)
        }
        Error::Refused(message) | Error::AnswerLost(message) => {
            CliError::new(ExitCode::Rejected, message)
        }
        Error::PermissionDenied(message) => CliError::new(ExitCode::PermissionDenied, message),
        Error::Json(message) => CliError::new(ExitCode::Failure, message),
    }
}

async fn status(args: StatusArgs) -> Result<(), CliError> {
    let mut client = connect(&args.endpoint).await?;
    let status = StatusJson::from(client.status().await?);
    if args.json {
        let text = serde_json::to_string_pretty(&status)
            .map_err(|error| CliError::new(ExitCode::Failure, error.to_string()))?;
        say!("{text}");
    } else {
        say!("{}", render_status(&status));
    }
    Ok(())
}

fn inspect(file: &std::path::Path, json: bool) -> Result<(), CliError> {
    let bytes = std::fs::read(file).map_err(|error| {
        CliError::new(
            ExitCode::InvalidInput,
            format!("cannot read {}: {error}", file.display()),
        )
    })?;
    let engine = PluginEngine::new(None)?;
    let report = engine.inspect(&bytes).map_err(|error| {
        CliError::new(
            ExitCode::InvalidInput,
            format!("{} is not a valid plugin: {error}", file.display()),
        )
    })?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|error| CliError::new(ExitCode::Failure, error.to_string()))?;
        say!("{text}");
    } else {
        say!("file     {}", file.display());
        say!("digest   sha256:{}", report.digest);
        say!("size     {} bytes", report.size_bytes);
        match (&report.world, &report.contract_error) {
            (Some(world), _) => say!("world    {world}"),
            (None, Some(error)) => say!("world    NOT a clusterhost plugin: {error}"),
            (None, None) => {}
        }
        say!("imports");
        for import in &report.imports {
            say!("  {import}");
        }
        say!("exports");
        for export in &report.exports {
            say!("  {export}");
        }
    }
    if let Some(error) = report.contract_error {
        return Err(CliError::new(
            ExitCode::InvalidInput,
            format!("{} is not a valid plugin: {error}", file.display()),
        ));
    }
    Ok(())
}

async fn members(args: MembersArgs) -> Result<(), CliError> {
    let mut client = connect(&args.endpoint).await?;
    if let Some(MembersAction::Remove { node_id }) = args.action {
        client.remove_member(node_id).await?;
        say!("node {node_id} removed");
        return Ok(());
    }
    let members = client.members().await?;
    if args.json {
        let json = super::output::MembersJson::from(members);
        let text = serde_json::to_string_pretty(&json)
            .map_err(|error| CliError::new(ExitCode::Failure, error.to_string()))?;
        say!("{text}");
    } else {
        say!("{}", super::output::render_members(&members));
    }
    Ok(())
}

async fn bench(args: BenchArgs) -> Result<(), CliError> {
    use crate::loadgen::{LoadConfig, System, Workload, run};
    let system = match args.system {
        BenchSystem::Clusterhost => System::Clusterhost,
        BenchSystem::Etcd => System::Etcd,
    };
    if args.first_write {
        return bench_first_write(system, &args).await;
    }
    let workload = match args.workload {
        BenchWorkload::Write => Workload::Write,
        BenchWorkload::ReadLinearizable => Workload::ReadLinearizable,
        BenchWorkload::ReadStale => Workload::ReadStale,
    };
    let tls = args
        .tls
        .load()
        .map_err(|error| CliError::new(ExitCode::InvalidInput, error.to_string()))?;
    if system == System::Etcd && (args.sessions || tls.is_some()) {
        return Err(CliError::new(
            ExitCode::InvalidInput,
            "--sessions and TLS apply to clusterhost only, not --system etcd".to_string(),
        ));
    }
    let report = run(LoadConfig {
        system,
        endpoints: args.endpoints,
        tls,
        clients: args.clients as usize,
        workload,
        duration: args.duration,
        warmup: args.warmup,
        value_bytes: args.value_bytes,
        keys: args.keys,
        sessions: args.sessions,
    })
    .await
    .map_err(bench_unavailable)?;
    if args.json {
        say_json(&report)?;
    } else {
        say!(
            "{:?} clients={} ops={} errors={} {:.0} ops/s  p50={}us p99={}us max={}us",
            report.workload,
            report.clients,
            report.ops,
            report.errors,
            report.ops_per_second,
            report.latency_us_p50,
            report.latency_us_p99,
            report.latency_us_max
        );
    }
    Ok(())
}

/// `bench --first-write`: how long the first write to a fresh cluster takes.
async fn bench_first_write(
    system: crate::loadgen::System,
    args: &BenchArgs,
) -> Result<(), CliError> {
    let Some(endpoint) = args.endpoints.first() else {
        return Err(CliError::new(
            ExitCode::InvalidInput,
            "no endpoint given".to_string(),
        ));
    };
    let report = crate::loadgen::first_write(system, endpoint, args.duration)
        .await
        .map_err(bench_unavailable)?;
    say_json(&report)
}

/// The load generator could not reach the cluster.
fn bench_unavailable(error: anyhow::Error) -> CliError {
    CliError::new(ExitCode::Unavailable, format!("{error:#}"))
}

/// Print `report` as one line of JSON.
fn say_json(report: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string(report)
        .map_err(|error| CliError::new(ExitCode::Failure, error.to_string()))?;
    say!("{text}");
    Ok(())
}
