//! Signed plugins for deploy-trust tests.

use crate::cli::{CLI_TIMEOUT, run_cli};
use crate::paths::{kv_plugin, plugin};

/// In `dir`: a signing key, a `signers` file listing it, and kv and kv_v2
/// signed with it (`kv.signed.wasm`, `kv_v2.signed.wasm`); the key's
/// public half, hex.
pub async fn sign_kv_plugins(dir: &std::path::Path) -> String {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let key = path("signer.key");
    let keygen = run_cli(["plugin", "keygen", "--out", &key], &[], CLI_TIMEOUT).await;
    let public = keygen.success().trim().to_string();
    std::fs::write(path("signers"), format!("{public}\n")).unwrap();
    let v2 = plugin("kv_v2.wasm");
    for (input, output) in [(kv_plugin(), "kv.signed.wasm"), (v2, "kv_v2.signed.wasm")] {
        let input = input.to_string_lossy().into_owned();
        let args = [
            "plugin",
            "sign",
            "--key",
            &key,
            "--out",
            &path(output),
            &input,
        ];
        run_cli(args, &[], CLI_TIMEOUT).await.success();
    }
    public
}
