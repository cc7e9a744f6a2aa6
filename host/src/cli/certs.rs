//! `clusterhost certs init|node|client`: write a CA and the certificates
//! it signs into a directory.

use super::security_args::CertsCommand;
use super::{CliError, ExitCode};
use crate::security::Role;
use crate::security::certs::{self, CertError};

/// Run one `certs` subcommand, printing the files written.
pub fn certs(command: CertsCommand) -> Result<(), CliError> {
    let (dir, name) = match command {
        CertsCommand::Init { dir } => {
            certs::init_dir(&dir).map_err(failed)?;
            (dir, "ca".to_string())
        }
        CertsCommand::Node { dir, name, ip, dns } => {
            let ca = certs::read_ca(&dir).map_err(failed)?;
            let pem = certs::node_cert(&ca, &name, &ip, &dns).map_err(failed)?;
            certs::write_pair(&dir, &name, &pem).map_err(failed)?;
            (dir, name)
        }
        CertsCommand::Client { dir, name, role } => {
            let ca = certs::read_ca(&dir).map_err(failed)?;
            let pem = certs::client_cert(&ca, &name, Role::from(role)).map_err(failed)?;
            certs::write_pair(&dir, &name, &pem).map_err(failed)?;
            (dir, name)
        }
    };
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    println!("{}", cert.display());
    println!("{}", key.display());
    Ok(())
}

fn failed(error: CertError) -> CliError {
    let code = match error {
        CertError::BadName(_) | CertError::NoAddress => ExitCode::InvalidInput,
        CertError::Generate(_) | CertError::File { .. } => ExitCode::Failure,
    };
    CliError::new(code, error.to_string())
}
