//! Goal: pin kv's whole wire format byte for byte — every response, error
//! string and snapshot for a script that touches every command, query and
//! restore path — so refactorings cannot change what clients and the host see.

use clusterhost_sdk::testing::Harness;
use kv::Kv;

#[test]
fn wire_format_is_unchanged() {
    Harness::<Kv>::new().assert_transcript(include_str!("kv.transcript"));
}
