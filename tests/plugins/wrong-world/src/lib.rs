//! TEST-ONLY component exporting `test:other/other` instead of
//! `clusterhost:fsm/state-machine`; the host must reject it at load time with
//! a clear error rather than trap later.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({ path: "wit", world: "other" });

struct Other;

impl Guest for Other {
    fn hello() -> String {
        "hello from the wrong world".to_string()
    }
}

export!(Other);
