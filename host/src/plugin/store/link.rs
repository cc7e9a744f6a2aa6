//! The `store` interface as host functions: each call checks the call's
//! access, charges fuel by operation and bytes (from the logical result,
//! so the charge is the same on every replica whatever the view's layout),
//! then answers from the instance's [`StoreView`](super::StoreView).

use wasmtime::component::Linker;
use wasmtime::{StoreContextMut, Trap};

use super::view::Access;
use crate::limits::{
    STORE_CALL_WRITE_BYTES_MAX, STORE_FUEL_PER_BYTE, STORE_FUEL_PER_CALL, STORE_FUEL_PER_ENTRY,
    STORE_KEY_BYTES_MAX, STORE_VALUE_BYTES_MAX,
};
use crate::plugin::code::InstanceState;

mod wit {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "state-machine-with-store",
    });
}

use wit::clusterhost::fsm::store::{KeyValue, ScanPage, StoreError as WitStoreError};

/// The interface's name as plugins import it.
pub const STORE_INTERFACE: &str = "clusterhost:fsm/store@0.2.0";

/// The context every store function is called with.
type Caller<'a> = StoreContextMut<'a, InstanceState>;

/// Define the store's functions in `linker`.
pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(STORE_INTERFACE)?;
    instance.func_wrap("get", get)?;
    instance.func_wrap("put", put)?;
    instance.func_wrap("delete", delete)?;
    instance.func_wrap("scan", scan)?;
    instance.func_wrap("count", count)?;
    Ok(())
}

fn get(mut store: Caller<'_>, (key,): (Vec<u8>,)) -> wasmtime::Result<(Option<Vec<u8>>,)> {
    let value = fatal(readable(&mut store)?.get(&key));
    let bytes = key.len() + value.as_ref().map_or(0, Vec::len);
    charge(&mut store, 1, bytes)?;
    Ok((value,))
}

fn put(
    mut store: Caller<'_>,
    (key, value): (Vec<u8>, Vec<u8>),
) -> wasmtime::Result<(Result<(), WitStoreError>,)> {
    writable(&mut store, "put")?;
    charge(&mut store, 1, key.len() + value.len())?;
    if key.len() > STORE_KEY_BYTES_MAX {
        return Ok((Err(WitStoreError::KeyTooLarge),));
    }
    if value.len() > STORE_VALUE_BYTES_MAX {
        return Ok((Err(WitStoreError::ValueTooLarge),));
    }
    within_write_budget(&mut store, key.len() + value.len())?;
    fatal(store.data_mut().store.write(&key, Some(&value)));
    Ok((Ok(()),))
}

fn delete(mut store: Caller<'_>, (key,): (Vec<u8>,)) -> wasmtime::Result<(bool,)> {
    writable(&mut store, "delete")?;
    charge(&mut store, 1, key.len())?;
    within_write_budget(&mut store, key.len())?;
    let existed = fatal(store.data_mut().store.write(&key, None));
    Ok((existed,))
}

fn scan(
    mut store: Caller<'_>,
    (start, end, limit): (Vec<u8>, Option<Vec<u8>>, u32),
) -> wasmtime::Result<(ScanPage,)> {
    let page = fatal(readable(&mut store)?.scan(&start, end.as_deref(), limit));
    // Charged by what the page holds, so every replica pays the same.
    let bytes: usize = page
        .entries
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum::<usize>()
        + start.len()
        + page.next.as_ref().map_or(0, Vec::len);
    charge(&mut store, 1 + page.entries.len() as u64, bytes)?;
    let entries = page
        .entries
        .into_iter()
        .map(|(key, value)| KeyValue { key, value })
        .collect();
    Ok((ScanPage {
        entries,
        next: page.next,
    },))
}

fn count(mut store: Caller<'_>, (): ()) -> wasmtime::Result<(u64,)> {
    let count = readable(&mut store)?.count();
    charge(&mut store, 1, 0)?;
    Ok((count,))
}

/// The state file failed under a plugin call. Not a result of the entry
/// (another replica's disk is fine), so it must not become a trap, which
/// would be replicated: the worker stops, and with it the node; a restart
/// resumes from the last checkpoint or rebuilds the store from the snapshot
/// and the log.
fn fatal<T>(result: Result<T, super::StoreError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("the plugin store failed: {error}"),
    }
}

/// The view, if the call may read it.
fn readable<'a>(store: &'a mut Caller<'_>) -> wasmtime::Result<&'a super::StoreView> {
    let view = &store.data().store;
    if view.access == Access::Closed {
        return Err(wasmtime::Error::msg(
            "the store is not available here (only in apply and query)",
        ));
    }
    Ok(view)
}

/// Trap unless the call may write.
fn writable(store: &mut Caller<'_>, operation: &str) -> wasmtime::Result<()> {
    match store.data().store.access {
        Access::ReadWrite => Ok(()),
        Access::ReadOnly => Err(wasmtime::Error::msg(format!(
            "store {operation} from query: the store is read-only outside apply"
        ))),
        Access::Closed => Err(wasmtime::Error::msg(
            "the store is not available here (only in apply and query)",
        )),
    }
}

/// Trap if writing `bytes` more would take the call past
/// [`STORE_CALL_WRITE_BYTES_MAX`]: an entry's writes are held in host memory
/// until they are committed, outside the plugin's memory cap. The sum
/// depends only on what the call wrote, so every replica traps alike, and
/// the trap drops the entry's writes.
fn within_write_budget(store: &mut Caller<'_>, bytes: usize) -> wasmtime::Result<()> {
    let written = store.data().store.pending_write_bytes();
    if written.saturating_add(bytes) > STORE_CALL_WRITE_BYTES_MAX {
        return Err(wasmtime::Error::msg(format!(
            "one call may write at most {STORE_CALL_WRITE_BYTES_MAX} bytes to the store"
        )));
    }
    Ok(())
}

/// Burn the fuel a store call costs; out of fuel is the same trap as in wasm.
fn charge(store: &mut Caller<'_>, entries: u64, bytes: usize) -> wasmtime::Result<()> {
    let cost = STORE_FUEL_PER_CALL
        .saturating_add(
            entries
                .saturating_sub(1)
                .saturating_mul(STORE_FUEL_PER_ENTRY),
        )
        .saturating_add((bytes as u64).saturating_mul(STORE_FUEL_PER_BYTE));
    let left = store.get_fuel()?;
    if left < cost {
        store.set_fuel(0)?;
        return Err(Trap::OutOfFuel.into());
    }
    store.set_fuel(left - cost)?;
    Ok(())
}
