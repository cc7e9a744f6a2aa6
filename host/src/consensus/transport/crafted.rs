//! Crafted snapshot transfers from a peer: every header, length and format a
//! peer can put on the wire is refused as an error (no panic, no allocation
//! sized by a claimed length), before the state machine sees anything.

use openraft::testing::log_id;
use tonic::Code;

use super::codec::{self, WIRE_FORMAT};
use super::service::append_chunk;
use crate::consensus::snapshot::{
    FORMAT_TAG, SNAPSHOT_FORMAT, SnapshotBody, decode_body, encode_body,
};
use crate::consensus::types::{SnapshotMeta, TypeConfig, Vote};
use crate::limits::RAFT_SNAPSHOT_BYTES_MAX;

/// A deterministic stream of bytes (xorshift), so failures reproduce.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn header() -> Vec<u8> {
    let meta = SnapshotMeta {
        last_log_id: Some(log_id::<TypeConfig>(2, 1, 40)),
        last_membership: Default::default(),
    };
    codec::encode(&(Vote::new(2, 1), meta)).expect("encode")
}

/// postcard's varint of `value`.
fn varint(mut value: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            bytes.push(low);
            return bytes;
        }
        bytes.push(low | 0x80);
    }
}

#[test]
fn crafted_headers_are_refused_without_panicking() {
    let valid = header();
    assert!(codec::decode::<(Vote, SnapshotMeta)>(&valid).is_ok());
    let mut crafted: Vec<Vec<u8>> = vec![Vec::new(), vec![0xff; 64], vec![0x80; 16]];
    // Every truncation of a valid header.
    crafted.extend((0..valid.len()).map(|len| valid[..len].to_vec()));
    // A length claiming 2^62 bytes (or elements) at every offset, so every
    // length field of the header is tried.
    for offset in 0..valid.len() {
        let mut bytes = valid[..offset].to_vec();
        bytes.extend(varint(1 << 62));
        bytes.extend(noise(offset as u64 + 1, 32));
        crafted.push(bytes);
    }
    // Noise of many lengths.
    crafted.extend((0..500).map(|seed| noise(seed, (seed as usize * 7) % 300)));
    for bytes in crafted {
        let decoded = codec::decode::<(Vote, SnapshotMeta)>(&bytes);
        if let Err(status) = decoded {
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        }
    }
}

#[test]
fn crafted_bodies_are_refused_without_panicking() {
    let valid = encode_body(&SnapshotBody::default()).expect("encode");
    assert!(decode_body(&valid).is_ok());
    let mut crafted: Vec<Vec<u8>> = vec![Vec::new(), vec![0; 3], vec![0xff; 1024]];
    crafted.extend((0..valid.len()).map(|len| valid[..len].to_vec()));
    // A known tag followed by a length claiming 2^62 bytes, at every format.
    for format in 0..=SNAPSHOT_FORMAT + 1 {
        let mut bytes = FORMAT_TAG.to_vec();
        bytes.extend(format.to_le_bytes());
        bytes.extend(varint(1 << 62));
        bytes.extend(noise(u64::from(format) + 7, 64));
        assert!(
            decode_body(&bytes).is_err(),
            "format {format}: a 2^62 length"
        );
    }
    // Valid tags of every format followed by noise.
    for seed in 0..300 {
        let format = (seed % u64::from(SNAPSHOT_FORMAT + 2)) as u16;
        let mut bytes = FORMAT_TAG.to_vec();
        bytes.extend(format.to_le_bytes());
        bytes.extend(noise(seed, (seed as usize * 13) % 400));
        crafted.push(bytes);
    }
    for bytes in crafted {
        // Any outcome but a panic: garbage is refused, and the rare noise
        // that happens to decode is an ordinary body, checked downstream.
        let _ = decode_body(&bytes);
    }
    assert!(decode_body(&[]).is_err());
    assert!(decode_body(FORMAT_TAG).is_err(), "a tag without a format");
    let mut newer = FORMAT_TAG.to_vec();
    newer.extend((SNAPSHOT_FORMAT + 1).to_le_bytes());
    let error = decode_body(&newer).expect_err("a newer format");
    assert!(
        error
            .to_string()
            .contains(&(SNAPSHOT_FORMAT + 1).to_string()),
        "{error}"
    );
}

#[test]
fn newer_wire_formats_and_other_addressees_are_refused() {
    assert!(codec::check_format(WIRE_FORMAT).is_ok());
    let newer = codec::check_format(WIRE_FORMAT + 1).expect_err("newer");
    assert_eq!(newer.code(), Code::FailedPrecondition);
    assert!(codec::check_format(u32::MAX).is_err());
    assert!(codec::check_addressee(3, 3).is_ok());
    assert_eq!(
        codec::check_addressee(4, 3)
            .expect_err("another node")
            .code(),
        Code::FailedPrecondition
    );
}

#[test]
fn a_snapshot_is_refused_once_its_chunks_pass_the_limit() {
    let mut body = Vec::new();
    append_chunk(&mut body, &[1; 1024]).expect("a small chunk");
    let oversized = vec![0; RAFT_SNAPSHOT_BYTES_MAX];
    let refused = append_chunk(&mut body, &oversized).expect_err("past the limit");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(body.len(), 1024, "a refused chunk was kept");
    let mut empty = Vec::new();
    assert!(
        append_chunk(&mut empty, &oversized).is_ok(),
        "exactly the limit"
    );
}

// Goal: entries from a leader that record a member whose address holds a
// NUL or another control character are refused whole; ordinary ones pass.
#[test]
fn members_with_control_characters_are_refused_on_arrival() {
    use std::collections::{BTreeMap, BTreeSet};

    use crate::consensus::types::{Entry, Member};

    let entry = |rpc_addr: &str| Entry {
        log_id: log_id::<TypeConfig>(2, 1, 7),
        payload: openraft::EntryPayload::Membership(
            openraft::Membership::new(
                vec![BTreeSet::from([1])],
                BTreeMap::from([(1, Member::at(rpc_addr))]),
            )
            .expect("valid membership"),
        ),
    };
    assert_eq!(
        super::service::unprintable_member(&[entry("10.0.0.1:7400")]),
        None
    );
    for smuggled in ["10.0.0.1:7400\u{0}n1\u{0}x", "10.0.0.1:7400\nforged"] {
        let refusal =
            super::service::unprintable_member(&[entry(smuggled)]).expect("a control character");
        assert!(refusal.contains("entry 7"), "{refusal}");
    }
}
