//! Goal: the checker accepts every history a linearizable kv store can
//! produce (concurrency, failures, unknown outcomes) and rejects stale
//! reads, lost writes, reads going back in time and impossible swaps,
//! naming the operation at fault. This file has the builders of calls,
//! outputs and operations the tests share.

mod random_histories;
mod record;
mod report;
mod simulation;
mod verdicts;

use super::*;

fn put(key: &str, value: &str) -> Call {
    Call::Put {
        key: key.to_string(),
        value: value.to_string(),
    }
}

fn delete(key: &str) -> Call {
    Call::Delete {
        key: key.to_string(),
    }
}

fn cas(key: &str, expected: Option<&str>, value: &str) -> Call {
    Call::Cas {
        key: key.to_string(),
        expected: expected.map(str::to_string),
        value: value.to_string(),
    }
}

fn get(key: &str) -> Call {
    Call::Get {
        key: key.to_string(),
    }
}

fn previous(value: Option<&str>) -> Output {
    Output::Previous(value.map(str::to_string))
}

fn swapped(ok: bool, current: Option<&str>) -> Output {
    Output::Swapped {
        ok,
        current: current.map(str::to_string),
    }
}

fn read(value: Option<&str>) -> Output {
    Output::Value(value.map(str::to_string))
}

/// An operation by `client` over `[invoked_ns, completed_ns]` that
/// answered `output`.
fn ok(client: u64, span_ns: (u64, u64), call: Call, output: Output) -> Operation {
    Operation {
        client,
        invoked_ns: span_ns.0,
        completed_ns: Some(span_ns.1),
        call,
        outcome: Outcome::Ok(output),
    }
}

fn failed(client: u64, span_ns: (u64, u64), call: Call) -> Operation {
    Operation {
        client,
        invoked_ns: span_ns.0,
        completed_ns: Some(span_ns.1),
        call,
        outcome: Outcome::Failed,
    }
}

fn unknown(client: u64, invoked_ns: u64, call: Call) -> Operation {
    Operation {
        client,
        invoked_ns,
        completed_ns: None,
        call,
        outcome: Outcome::Unknown,
    }
}

fn verdict(history: &[Operation]) -> CheckResult {
    check(history).expect("a well-formed history").overall
}

/// The violation found in `history`, with the index of the operation
/// that could not be placed.
fn violation(history: &[Operation]) -> Violation {
    match verdict(history) {
        CheckResult::Violation(violation) => violation,
        other => panic!("expected a violation, got {other}"),
    }
}
