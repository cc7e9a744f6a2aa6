//! Talking to the example key-value plugin (`kv.wasm`) through the gRPC
//! client: command and query encodings, and reads of whole key ranges.

use std::collections::BTreeMap;

use clusterhost_client::Client;
use clusterhost_client::proto::{Consistency, apply_response, query_response};
use serde_json::{Value, json};

/// Most items one kv `scan` returns (the plugin's `SCAN_LIMIT_MAX`).
pub const SCAN_LIMIT_MAX: usize = 1_000;

/// Characters [`scan_all`] extends a prefix with when a page is full: keys
/// written by tests are printable ASCII.
const KEY_ALPHABET: std::ops::RangeInclusive<u8> = b' '..=b'~';

/// `{"put":{"key":K,"value":V}}`.
pub fn put(key: &str, value: &str) -> Vec<u8> {
    json!({"put": {"key": key, "value": value}})
        .to_string()
        .into_bytes()
}

/// `{"get":{"key":K}}`.
pub fn get(key: &str) -> Vec<u8> {
    json!({"get": {"key": key}}).to_string().into_bytes()
}

/// `{"scan":{"prefix":P,"limit":N}}`.
pub fn scan(prefix: &str, limit: usize) -> Vec<u8> {
    json!({"scan": {"prefix": prefix, "limit": limit}})
        .to_string()
        .into_bytes()
}

/// Apply `command`; panics unless the plugin accepted it. Returns the log
/// index and the plugin's JSON response.
pub async fn apply_ok(client: &mut Client, command: Vec<u8>) -> (u64, Value) {
    let shown = String::from_utf8_lossy(&command).into_owned();
    let response = client
        .apply(command)
        .await
        .unwrap_or_else(|error| panic!("apply {shown}: {error}"));
    match response.result {
        Some(apply_response::Result::Ok(bytes)) => (
            response.index,
            serde_json::from_slice(&bytes).expect("kv responds with JSON"),
        ),
        other => panic!("apply {shown}: expected ok, got {other:?}"),
    }
}

/// Put every pair, split over `clients` writing at once; panics unless
/// each write is acknowledged.
pub async fn put_concurrently(clients: Vec<Client>, pairs: &[(String, String)]) {
    let share = pairs.len().div_ceil(clients.len().max(1)).max(1);
    let mut writers = Vec::new();
    for (mut client, chunk) in clients.into_iter().zip(pairs.chunks(share)) {
        let chunk = chunk.to_vec();
        writers.push(tokio::spawn(async move {
            for (key, value) in chunk {
                apply_ok(&mut client, put(&key, &value)).await;
            }
        }));
    }
    for writer in writers {
        writer.await.expect("a writer task");
    }
}

/// Run `request`; panics unless the plugin answered.
pub async fn query_ok(client: &mut Client, request: Vec<u8>, consistency: Consistency) -> Value {
    let shown = String::from_utf8_lossy(&request).into_owned();
    let response = client
        .query(request, consistency)
        .await
        .unwrap_or_else(|error| panic!("query {shown}: {error}"));
    match response.result {
        Some(query_response::Result::Ok(bytes)) => {
            serde_json::from_slice(&bytes).expect("kv answers with JSON")
        }
        other => panic!("query {shown}: expected ok, got {other:?}"),
    }
}

/// The value of `key`, if any.
pub async fn get_value(client: &mut Client, key: &str, consistency: Consistency) -> Option<String> {
    let answer = query_ok(client, get(key), consistency).await;
    match &answer["value"] {
        Value::Null => None,
        Value::String(value) => Some(value.clone()),
        other => panic!("get {key}: unexpected value {other}"),
    }
}

/// Every key starting with `prefix`, with its value. A full page is split by
/// the next character (printable ASCII), since `scan` has no cursor.
pub async fn scan_all(
    client: &mut Client,
    prefix: &str,
    consistency: Consistency,
) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut pending = vec![prefix.to_string()];
    while let Some(prefix) = pending.pop() {
        let answer = query_ok(client, scan(&prefix, SCAN_LIMIT_MAX), consistency).await;
        let items = answer["items"]
            .as_array()
            .unwrap_or_else(|| panic!("scan {prefix:?}: no items in {answer}"));
        if items.len() < SCAN_LIMIT_MAX {
            for item in items {
                let (Some(key), Some(value)) = (item[0].as_str(), item[1].as_str()) else {
                    panic!("scan {prefix:?}: malformed item {item}");
                };
                found.insert(key.to_string(), value.to_string());
            }
            continue;
        }
        // The key equal to the prefix itself is not under any extension.
        if let Some(value) = get_value(client, &prefix, consistency).await {
            found.insert(prefix.clone(), value);
        }
        pending.extend(KEY_ALPHABET.map(|byte| format!("{prefix}{}", byte as char)));
    }
    found
}
