//! The `clusterhost` binary: parse flags, run the command, map errors to
//! `Error: …` on stderr and a documented exit code.

use clusterhost::cli::{ExitCode, commands};

fn main() -> std::process::ExitCode {
    // `run --config FILE`: the file's keys become flags first.
    let args = match clusterhost::cli::config_file::expand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("Error: {message}");
            return std::process::ExitCode::from(ExitCode::Usage as u8);
        }
    };
    let cli = clusterhost::cli::config_file::parse(args);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start the async runtime: {error}");
            return std::process::ExitCode::from(ExitCode::Failure as u8);
        }
    };
    match runtime.block_on(commands::execute(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {}", error.message);
            std::process::ExitCode::from(error.code as u8)
        }
    }
}
