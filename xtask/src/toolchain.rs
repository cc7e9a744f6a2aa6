//! Finding a toolchain that can build `wasm32-wasip2` components.
//!
//! Preferred: rustup's prebuilt standard library for the target. Fallback for
//! machines where rustup cannot provide it (offline mirrors, distro-only
//! images): Debian's `rustc-web` toolchain, building `std` from source with
//! `-Zbuild-std` and linking with Debian's `wasm-ld-19` and `wasi-libc`.
//! DEVELOPERS.md documents both recipes.

use crate::command;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The plugin target.
pub const TARGET: &str = "wasm32-wasip2";
/// Longest `rustup target add` may take before we give up on rustup: it
/// downloads about 20 MB, so minutes mean a dead network, not a slow one.
const RUSTUP_ADD_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest `apt-get install` of the fallback toolchain may take.
const APT_INSTALL_TIMEOUT: Duration = Duration::from_secs(900);
/// Set to `rustup` or `debian` to skip detection (e.g. to test the fallback).
const FORCE_ENV: &str = "CLUSTERHOST_WASM_TOOLCHAIN";

/// Debian packages of the fallback: compiler, cargo, std sources, linker, libc.
const DEBIAN_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "lld-19",
    "wasi-libc",
];
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_WASM_LD: &str = "/usr/bin/wasm-ld-19";
const DEBIAN_WASI_LIBC: &str = "/usr/lib/wasm32-wasi";

/// How wasm32-wasip2 builds are run on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmToolchain {
    /// rustup's toolchain with the target's prebuilt std.
    Rustup,
    /// Debian's toolchain building std from source.
    Debian,
}

impl WasmToolchain {
    /// Find (installing if needed) a toolchain for [`TARGET`], saying which.
    pub fn ensure() -> Result<Self> {
        let toolchain = match std::env::var(FORCE_ENV).as_deref() {
            Ok("rustup") => ensure_rustup().map(|()| WasmToolchain::Rustup)?,
            Ok("debian") => ensure_debian().map(|()| WasmToolchain::Debian)?,
            Ok(other) => bail!("{FORCE_ENV}={other}: expected `rustup` or `debian`"),
            Err(_) => match ensure_rustup() {
                Ok(()) => WasmToolchain::Rustup,
                Err(error) => {
                    eprintln!(
                        "rustup cannot provide {TARGET} ({error:#}); trying Debian's toolchain"
                    );
                    ensure_debian().map(|()| WasmToolchain::Debian)?
                }
            },
        };
        eprintln!("{TARGET} toolchain: {}", toolchain.describe());
        Ok(toolchain)
    }

    /// One line for logs.
    pub fn describe(self) -> &'static str {
        match self {
            WasmToolchain::Rustup => "rustup (prebuilt std)",
            WasmToolchain::Debian => "Debian rustc-web (std built from source with -Zbuild-std)",
        }
    }

    /// `cargo build --release --target wasm32-wasip2`, ready for more args.
    pub fn cargo_build(self) -> Command {
        match self {
            WasmToolchain::Rustup => {
                let mut command = Command::new(cargo());
                command.args(["build", "--release", "--target", TARGET]);
                command
            }
            WasmToolchain::Debian => {
                let mut command = Command::new(DEBIAN_CARGO);
                command
                    // build-std is unstable; Debian's stable rustc allows it this way.
                    .env("RUSTC_BOOTSTRAP", "1")
                    .env("RUSTC", DEBIAN_RUSTC)
                    .env(
                        "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
                        format!(
                            "-Clink-arg=--wasm-ld-path={DEBIAN_WASM_LD} -Lnative={DEBIAN_WASI_LIBC}"
                        ),
                    )
                    // Keep rustup's proxies from choosing a toolchain.
                    .env_remove("RUSTUP_TOOLCHAIN")
                    .args(["build", "--release", "--target", TARGET])
                    .arg("-Zbuild-std=std,panic_abort")
                    // Debian's compiler is older than the manifests' rust-version.
                    .arg("--ignore-rust-version");
                command
            }
        }
    }
}

/// The cargo running this xtask (same toolchain), or `cargo` from PATH.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

fn ensure_rustup() -> Result<()> {
    let installed = command::output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("rustup is not usable")?;
    if installed.lines().any(|line| line.trim() == TARGET) {
        return Ok(());
    }
    command::run_with_timeout(
        Command::new("rustup").args(["target", "add", TARGET]),
        RUSTUP_ADD_TIMEOUT,
    )
}

fn ensure_debian() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|package| !debian_installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut install = Command::new("apt-get");
    install.args(["install", "-y"]).args(&missing);
    command::run_with_timeout(&mut install, APT_INSTALL_TIMEOUT)
        .context("cannot install Debian's wasm toolchain (needs root and apt sources)")?;
    let paths = [DEBIAN_CARGO, DEBIAN_RUSTC, DEBIAN_WASM_LD, DEBIAN_WASI_LIBC];
    if let Some(path) = paths.iter().find(|path| !Path::new(path).exists()) {
        bail!("Debian's wasm toolchain is installed but {path} is missing");
    }
    Ok(())
}

/// Whether dpkg reports `package` as installed (false if dpkg is absent).
fn debian_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["--show", "--showformat=${Status}", package])
        .output()
        .is_ok_and(|output| output.status.success() && output.stdout == b"install ok installed")
}
