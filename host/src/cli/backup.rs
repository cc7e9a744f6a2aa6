//! `clusterhost backup save|inspect|restore`.

use std::io::Write;
use std::path::Path;

use clusterhost_client::{Client, ClientError};

use super::args::BackupCommand;
use super::{CliError, ExitCode};
use crate::consensus::backup::{self, BackupInfo};
use crate::limits::BACKUP_BYTES_MAX;
use crate::node::{random_node_id, restore};

/// Run a `backup` subcommand; what to print.
pub async fn execute(command: BackupCommand) -> Result<String, CliError> {
    match command {
        BackupCommand::Save { endpoint, file } => save(&endpoint.endpoint, &file).await,
        BackupCommand::Inspect { file } => {
            let bytes = read(&file)?;
            let stored = backup::decode(&bytes).map_err(|error| {
                CliError::new(
                    ExitCode::InvalidInput,
                    format!("{}: {error}", file.display()),
                )
            })?;
            Ok(describe(&backup::info(&stored), bytes.len()))
        }
        BackupCommand::Restore {
            file,
            data_dir,
            node_id,
            advertise,
        } => {
            let bytes = read(&file)?;
            let node_id = node_id.unwrap_or_else(random_node_id);
            let info = restore::restore(&file, &bytes, &data_dir, node_id, &advertise)
                .await
                .map_err(|error| CliError::new(ExitCode::InvalidInput, error.to_string()))?;
            Ok(format!(
                "{}\nrestored into {} as node {node_id} of a new cluster at {advertise}; start it with \
                 `clusterhost run --data-dir {} --listen {advertise}`",
                describe(&info, bytes.len()),
                data_dir.display(),
                data_dir.display()
            ))
        }
    }
}

/// Stream a backup from the leader (found through `endpoint`), verify it,
/// and only then put it at `file`.
async fn save(endpoint: &str, file: &Path) -> Result<String, CliError> {
    let mut client = Client::connect(endpoint).await?;
    let status = client.status().await?;
    if status.role != "leader" {
        if status.leader_addr.is_empty() {
            return Err(CliError::new(
                ExitCode::Unavailable,
                "the cluster has no leader to take a backup from",
            ));
        }
        client = Client::connect(&status.leader_addr).await?;
    }
    let mut chunks = client.backup().await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.message().await.map_err(ClientError::from)? {
        bytes.extend_from_slice(&chunk.data);
        if bytes.len() > BACKUP_BYTES_MAX {
            return Err(CliError::new(
                ExitCode::Failure,
                format!("the backup is larger than {BACKUP_BYTES_MAX} bytes; refused"),
            ));
        }
    }
    let stored = backup::decode(&bytes).map_err(|error| {
        CliError::new(
            ExitCode::Failure,
            format!("the backup arrived damaged: {error}"),
        )
    })?;
    write_atomically(file, &bytes).map_err(|error| {
        CliError::new(
            ExitCode::Failure,
            format!("cannot write {}: {error}", file.display()),
        )
    })?;
    Ok(format!(
        "saved {}\n{}",
        file.display(),
        describe(&backup::info(&stored), bytes.len())
    ))
}

fn read(file: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(file).map_err(|error| {
        CliError::new(
            ExitCode::InvalidInput,
            format!("cannot read {}: {error}", file.display()),
        )
    })
}

/// Write `bytes` beside `file`, fsync, and rename over it.
fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = file.with_extension("partial");
    let written = std::fs::File::create(&temporary).and_then(|mut out| {
        out.write_all(bytes)?;
        out.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&temporary, file));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    renamed
}

/// What `inspect` (and the others) print about a backup.
fn describe(info: &BackupInfo, size_bytes: usize) -> String {
    let members: Vec<String> = info
        .members
        .iter()
        .map(|(id, addr)| format!("{id}@{addr}"))
        .collect();
    format!(
        "index: {}\nterm: {}\nplugin digest: {}\ncluster version: {}\nstate: {} bytes\nsize: {size_bytes} bytes\nmembers: {}\nchecksum: OK",
        info.index,
        info.term,
        info.plugin_digest.as_deref().unwrap_or("none"),
        info.cluster_version,
        info.state_bytes,
        members.join(", ")
    )
}
