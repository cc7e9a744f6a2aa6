//! A real browser for tests of the status page: headless Chromium (Debian's
//! `chromium`), installed with apt-get the first time it is missing, like
//! any other test dependency.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where Debian's package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Longest an install of the package may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

/// Longest one headless run may take (page load, its scripts, the dump).
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// Virtual time the page's scripts get before the DOM is dumped, in ms:
/// enough for the page to fetch its JSON and render.
const SCRIPT_BUDGET_MS: u32 = 5_000;

/// The browser, installed first if missing. Panics with what to do when it
/// cannot be installed.
pub async fn chromium() -> PathBuf {
    let path = PathBuf::from(CHROMIUM);
    if path.exists() {
        return path;
    }
    eprintln!("{CHROMIUM} is missing: installing Debian's chromium (apt-get install -y chromium)");
    let install = async {
        let update = tokio::process::Command::new("apt-get")
            .args(["update", "-q"])
            .status()
            .await;
        eprintln!("apt-get update: {update:?}");
        tokio::process::Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .await
    };
    let status = tokio::time::timeout(INSTALL_TIMEOUT, install).await;
    match status {
        Ok(Ok(status)) if status.success() && path.exists() => path,
        other => panic!(
            "cannot install chromium ({other:?}); install it yourself: apt-get install -y chromium"
        ),
    }
}

/// Flags for a headless run that reaches nothing but the page it loads.
fn headless_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .iter()
    .map(|flag| flag.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// Run the browser on `url` with `extra` flags; its stdout.
async fn run(url: &str, extra: &[String]) -> String {
    let browser = chromium().await;
    let profile = tempfile::tempdir().expect("a browser profile dir");
    let mut command = tokio::process::Command::new(browser);
    command
        .args(headless_args(profile.path()))
        .args(extra)
        .arg(url)
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("chromium did not finish on {url} within {RUN_TIMEOUT:?}"))
        .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium failed on {url}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The DOM of `url` after its scripts ran.
pub async fn dump_dom(url: &str) -> String {
    run(
        url,
        &[
            format!("--virtual-time-budget={SCRIPT_BUDGET_MS}"),
            "--dump-dom".to_string(),
        ],
    )
    .await
}

/// A 1280×900 screenshot of `url`, after its scripts ran, into `path`.
pub async fn screenshot(url: &str, path: &Path) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create the screenshot's directory");
    }
    run(
        url,
        &[
            format!("--virtual-time-budget={SCRIPT_BUDGET_MS}"),
            format!("--screenshot={}", path.display()),
            "--window-size=1280,900".to_string(),
        ],
    )
    .await;
    assert!(
        path.exists(),
        "chromium wrote no screenshot at {}",
        path.display()
    );
}
