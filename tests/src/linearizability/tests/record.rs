//! Goal: calls speak the kv plugin's wire format, histories survive a
//! file, and the recorder keeps what happened to each operation.

use std::time::Instant;

use serde_json::json;

use super::*;

#[test]
fn calls_use_the_kv_wire_format() {
    // Goal: requests are the kv plugin's JSON and its answers parse back.
    let request = |call: &Call| String::from_utf8(call.request()).expect("utf-8");
    assert_eq!(
        request(&put("k", "v")),
        r#"{"put":{"key":"k","value":"v"}}"#
    );
    assert_eq!(request(&delete("k")), r#"{"delete":{"key":"k"}}"#);
    assert_eq!(
        request(&cas("k", None, "v")),
        r#"{"cas":{"expected":null,"key":"k","value":"v"}}"#
    );
    assert_eq!(request(&get("k")), r#"{"get":{"key":"k"}}"#);
    assert!(get("k").is_query() && !put("k", "v").is_query());
    assert_eq!(
        put("k", "v").parse_response(&json!({"prev": "u"})),
        Some(previous(Some("u")))
    );
    assert_eq!(
        cas("k", None, "v").parse_response(&json!({"ok": false, "current": null})),
        Some(swapped(false, None))
    );
    assert_eq!(
        get("k").parse_response(&json!({"value": "v"})),
        Some(read(Some("v")))
    );
    assert_eq!(get("k").parse_response(&json!({"prev": "v"})), None);
    assert_eq!(delete("k").parse_response(&json!({"prev": 3})), None);
}

#[test]
fn histories_round_trip_through_json_lines() {
    // Goal: a history written to a file reads back unchanged.
    let history = vec![
        ok(1, (0, 10), cas("k", None, "v"), swapped(true, Some("v"))),
        failed(2, (5, 6), delete("k")),
        unknown(3, 7, put("k", "w")),
    ];
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("history.jsonl");
    write_history(&path, &history).expect("write history");
    assert_eq!(read_history(&path).expect("read history"), history);
}

#[test]
fn recorder_keeps_outcomes_and_abandoned_calls_are_unknown() {
    // Goal: a recorded history has each outcome given, and an invocation
    // dropped unfinished becomes unknown.
    let recorder = Recorder::new(Instant::now());
    recorder.invoke(1, put("k", "a")).ok(previous(None));
    recorder.invoke(1, put("k", "b")).failed();
    drop(recorder.invoke(2, put("k", "c")));
    recorder.invoke(1, get("k")).ok(read(Some("a")));
    let history = recorder.history();
    let outcomes: Vec<&Outcome> = history.iter().map(|op| &op.outcome).collect();
    assert_eq!(
        outcomes,
        [
            &Outcome::Ok(previous(None)),
            &Outcome::Failed,
            &Outcome::Unknown,
            &Outcome::Ok(read(Some("a")))
        ]
    );
    assert!(
        history
            .windows(2)
            .all(|pair| pair[0].invoked_ns <= pair[1].invoked_ns)
    );
    assert_linearizable(&history);
}
