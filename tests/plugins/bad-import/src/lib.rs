//! TEST-ONLY component that exports clusterhost's state-machine world but also
//! imports `test:missing/api`, which the host does not provide: loading (or
//! linking) it must fail with an error naming the import, not trap later.
//!
//! `apply` calls `ping`, so the import is really used and stays in the binary.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({
    // The repository's contract first, then the package that includes it.
    path: ["../../../wit", "wit"],
    world: "test:missing/bad-import",
    // Also generate the included clusterhost:fsm types (the `entry` record).
    generate_all,
});

struct BadImport;

impl Guest for BadImport {
    fn apply(_entry: Entry, _command: Vec<u8>) -> Result<Vec<u8>, String> {
        let pong = test::missing::api::ping();
        Ok(pong.to_string().into_bytes())
    }

    fn query(_request: Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(Vec::new())
    }

    fn snapshot() -> Vec<u8> {
        Vec::new()
    }

    fn restore(_snapshot: Vec<u8>) -> Result<(), String> {
        Ok(())
    }
}

export!(BadImport);
