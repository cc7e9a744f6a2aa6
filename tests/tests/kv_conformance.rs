//! Goal: the kv plugin in Python (`kv_py.wasm`) and in JavaScript
//! (`kv_js.wasm`) are the Rust kv (`kv.wasm`) to the byte. The same steps run
//! through the three components in-process, and every answer must be
//! identical — the error messages of refused commands included (serde_json's,
//! positions and all) — and so must the snapshots, each restored into the
//! others. The steps: `tests/check/kv.commands` and
//! `tests/check/kv-malformed.commands`, the byte-level cases a line cannot
//! hold, and seeded mutations of every line (bytes dropped, doubled, swapped
//! or replaced), which reach corners no list would.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use clusterhost::limits::PluginLimits;
use clusterhost::plugin::check::script::{self, Step};
use clusterhost::plugin::instance::PluginInstance;
use clusterhost::plugin::{EntryPosition, PluginCode, PluginEngine};

/// The command files every kv build must answer alike, in order.
const COMMAND_FILES: [&str; 2] = ["kv.commands", "kv-malformed.commands"];
/// Mutated copies made of each line.
const MUTATIONS_PER_LINE: usize = 12;
/// Seed of the mutations: fixed, so a failure reproduces.
const MUTATION_SEED: u64 = 0x6b76_636f_6e66_6f72;
/// Fewest accepted and fewest refused steps for a meaningful comparison.
const STEPS_OF_EACH_KIND_MIN: usize = 50;
/// Mismatches listed in a failure message (the first ones, in order).
const MISMATCHES_SHOWN: usize = 20;
/// Bytes the mutations insert: JSON's punctuation, escapes, digits and
/// bytes that break UTF-8.
const INTERESTING_BYTES: &[u8] = b"{}[]:,\"\\ \n\t0-1e.+ux\x00\x7f\x80\xc3\xe2\xff";

/// What a plugin's `plugin_version` query answers: the one answer that
/// differs by design.
const VERSIONS: [&str; 3] = ["\"kv/1\"", "\"kv-py/1\"", "\"kv-js/1\""];

/// One kv build, running.
struct Kv {
    name: &'static str,
    instance: PluginInstance,
}

/// An answer, as comparable text: `ok <bytes>` or `err <message>`.
fn answer(result: Result<Result<Vec<u8>, String>, clusterhost::plugin::Fault>) -> String {
    match result {
        Ok(Ok(bytes)) => format!("ok {}", String::from_utf8_lossy(&bytes)),
        Ok(Err(message)) => format!("err {message}"),
        Err(fault) => format!("fault {fault}"),
    }
}

fn position(index: u64) -> EntryPosition {
    EntryPosition {
        index,
        term: 1,
        time_ms: 1_700_000_000_000 + index,
    }
}

fn root() -> &'static Path {
    clusterhost_tests::paths::workspace_root()
}

/// The three builds, compiled once for every test (a Python or JavaScript
/// component takes seconds to compile).
fn codes() -> &'static [(&'static str, PluginCode)] {
    static CODES: OnceLock<Vec<(&'static str, PluginCode)>> = OnceLock::new();
    CODES.get_or_init(|| {
        let engine = PluginEngine::new(None).expect("engine");
        [
            ("rust", "kv.wasm"),
            ("python", "kv_py.wasm"),
            ("javascript", "kv_js.wasm"),
        ]
        .into_iter()
        .map(|(name, file)| {
            let path: PathBuf = clusterhost_tests::paths::plugin(file);
            let bytes = std::fs::read(&path).unwrap_or_else(|error| {
                panic!("{}: {error}; run `cargo xtask plugins`", path.display())
            });
            (name, engine.load(Arc::from(bytes)).expect("loads"))
        })
        .collect()
    })
}

/// The three builds, each a fresh instance.
fn all_kv() -> Vec<Kv> {
    codes()
        .iter()
        .map(|(name, code)| Kv {
            name,
            instance: PluginInstance::new(code, PluginLimits::default()).expect("instance"),
        })
        .collect()
}

/// Every step: the command files, the byte-level cases, and mutations.
fn steps() -> Vec<Step> {
    let mut steps = Vec::new();
    for file in COMMAND_FILES {
        let path = root().join("tests/check").join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        steps.extend(script::parse(&text).expect("a valid command file"));
    }
    steps.extend(byte_cases());
    let mut random = MUTATION_SEED;
    let lines = steps.clone();
    for step in &lines {
        for _ in 0..MUTATIONS_PER_LINE {
            steps.push(mutate(step, &mut random));
        }
    }
    steps
}

/// Cases a line of a command file cannot hold.
fn byte_cases() -> Vec<Step> {
    let commands: [&[u8]; 12] = [
        b"{\"put\":{\"key\":\"\xff\",\"value\":\"1\"}}",
        b"{\"put\":{\"key\":\"ok\xc3\",\"value\":\"1\"}}",
        b"{\"put\":{\"key\":\"\\n\xe2\x82\",\"value\":\"1\"}}",
        b"{\"put\":{\"key\":\"\xed\xa0\x80\",\"value\":\"1\"}}",
        b"{\"put\":{\"key\":\"\xf4\x90\x80\x80\",\"value\":\"1\"}}",
        b"{\"put\":\"\xc0\xaf\"}",
        b"\xef\xbb\xbf{\"put\":{\"key\":\"bom\",\"value\":\"1\"}}",
        b"{\"put\":{\"key\":\"\xef\xbb\xbfbom\",\"value\":\"\xef\xbb\xbf\"}}",
        b"{\"cas\":{\"key\":\"\xef\xbb\xbfbom\",\"value\":\"\xef\xbb\xbf\\n\"}}",
        b"{\n  \"put\": {\n    \"key\": \"a\",\n    \"value\": 1\n  }\n}",
        b"{\n\"put\":{\"key\":\"a\",\n\"value\":\"1\",\n\"extra\"\n:1}}",
        b"{\"put\":{\"key\":\"a\",\"value\":\"1\"}}\n\n x",
    ];
    let mut steps: Vec<Step> = commands.iter().map(|c| Step::Apply(c.to_vec())).collect();
    steps.push(Step::Query(b"{\"get\":{\"key\":\"\x80\"}}".to_vec()));
    steps.push(Step::Query(
        b"{\"get\":{\"key\":\"\xef\xbb\xbfbom\"}}".to_vec(),
    ));
    steps.push(Step::Query(
        b"{\"scan\":{\"prefix\":\"\n\"\n,\"limit\":\n-5}}".to_vec(),
    ));
    steps
}

/// xorshift64: small, seeded, the same on every machine.
fn next(random: &mut u64) -> u64 {
    *random ^= *random << 13;
    *random ^= *random >> 7;
    *random ^= *random << 17;
    *random
}

/// `step` with one random edit: a byte dropped, doubled or replaced, two
/// swapped, or the tail cut.
fn mutate(step: &Step, random: &mut u64) -> Step {
    let (mut bytes, is_query) = match step {
        Step::Apply(bytes) => (bytes.clone(), false),
        Step::Query(bytes) => (bytes.clone(), true),
    };
    if !bytes.is_empty() {
        let at = (next(random) % bytes.len() as u64) as usize;
        let other = (next(random) % bytes.len() as u64) as usize;
        let byte = INTERESTING_BYTES[(next(random) % INTERESTING_BYTES.len() as u64) as usize];
        match next(random) % 5 {
            0 => drop(bytes.remove(at)),
            1 => bytes.insert(at, bytes[at]),
            2 => bytes[at] = byte,
            3 => bytes.swap(at, other),
            _ => bytes.truncate(at),
        }
    }
    if is_query {
        Step::Query(bytes)
    } else {
        Step::Apply(bytes)
    }
}

/// One step through every build: their answers, the Rust kv's first.
fn run(all: &mut [Kv], step: &Step, index: u64) -> Vec<String> {
    all.iter_mut()
        .map(|kv| match step {
            Step::Apply(command) => answer(kv.instance.apply(position(index), command)),
            Step::Query(request) => answer(kv.instance.query(position(index), request)),
        })
        .collect()
}

/// The answers with each build's own `plugin_version` as the Rust kv's.
fn normalized(answers: Vec<String>) -> Vec<String> {
    answers
        .into_iter()
        .map(|answer| {
            let version = VERSIONS.iter().find(|v| answer == format!("ok {v}"));
            match version {
                Some(_) => format!("ok {}", VERSIONS[0]),
                None => answer,
            }
        })
        .collect()
}

fn describe(step: &Step) -> String {
    match step {
        Step::Apply(bytes) => format!("apply {:?}", String::from_utf8_lossy(bytes)),
        Step::Query(bytes) => format!("query {:?}", String::from_utf8_lossy(bytes)),
    }
}

fn mismatch(names: &[&str], answers: &[String], what: &str) -> Option<String> {
    if answers.iter().all(|answer| *answer == answers[0]) {
        return None;
    }
    let lines: Vec<String> = names
        .iter()
        .zip(answers)
        .map(|(name, answer)| format!("    {name:>10}: {answer}"))
        .collect();
    Some(format!("{what}\n{}", lines.join("\n")))
}

#[test]
fn python_and_javascript_answer_every_command_as_the_rust_kv() {
    let mut all = all_kv();
    let names: Vec<&str> = all.iter().map(|kv| kv.name).collect();
    let steps = steps();
    let mut mismatches = Vec::new();
    let mut refused = 0;
    for (number, step) in steps.iter().enumerate() {
        let answers = normalized(run(&mut all, step, number as u64 + 1));
        refused += usize::from(answers[0].starts_with("err"));
        let what = format!("step {}: {}", number + 1, describe(step));
        mismatches.extend(mismatch(&names, &answers, &what));
    }
    let snapshots: Vec<String> = all
        .iter_mut()
        .map(|kv| {
            answer(
                kv.instance
                    .snapshot(position(steps.len() as u64 + 1))
                    .map(Ok),
            )
        })
        .collect();
    mismatches.extend(mismatch(&names, &snapshots, "snapshot after every step"));
    assert!(
        mismatches.is_empty(),
        "{} of {} steps differ; the first:\n{}",
        mismatches.len(),
        steps.len(),
        mismatches[..mismatches.len().min(MISMATCHES_SHOWN)].join("\n")
    );
    // Enough of both kinds that the comparison means something.
    assert!(refused >= STEPS_OF_EACH_KIND_MIN, "only {refused} refused");
    let accepted = steps.len() - refused;
    assert!(
        accepted >= STEPS_OF_EACH_KIND_MIN,
        "only {accepted} accepted"
    );
    every_snapshot_restores_everywhere(&snapshots[0]);
}

/// Each build takes over the state the steps left (the hot-swap path).
fn every_snapshot_restores_everywhere(snapshot: &str) {
    let bytes = snapshot.strip_prefix("ok ").expect("a snapshot").as_bytes();
    let mut fresh = all_kv();
    for kv in &mut fresh {
        let restored = kv.instance.restore(position(1), bytes);
        assert_eq!(
            answer(restored.map(|r| r.map(|()| Vec::new()))),
            "ok ",
            "{}",
            kv.name
        );
        let again = answer(kv.instance.snapshot(position(2)).map(Ok));
        assert_eq!(
            again, snapshot,
            "{} restores and snapshots the same bytes",
            kv.name
        );
    }
}

/// Snapshots to restore: kv's own, and every way one can be foreign or
/// broken. Each build must take or refuse each alike, with the same words.
const SNAPSHOTS: &[&[u8]] = &[
    br#"{"version":1,"entries":[["a","1"],["b","2"]]}"#,
    br#"{"entries":[["a","1"]],"version":1,"other":{"x":[1,2.5e3,-0,"\ud800",true,null]}}"#,
    br#" {"version":1,"entries":[]} "#,
    br#"{"version":1,"entries":[["a","1"]]} x"#,
    br#"{"version":2,"entries":[["a","1",3]]}"#,
    br#"{"version":0,"entries":[]}"#,
    br#"{"version":-1}"#,
    br#"{"version":4294967296}"#,
    br#"{"version":1.0}"#,
    br#"{"version":"1"}"#,
    br#"{"version":1}"#,
    br#"{"version":1,"version":1,"entries":[]}"#,
    br#"{"version":1,"entries":[["b","1"],["a","2"]]}"#,
    br#"{"version":1,"entries":[["a","1"],["a","2"]]}"#,
    b"{\"version\":1,\"entries\":[[\"\xc3\xa9\",\"1\"],[\"\\u00e9\\u0301\",\"2\"],[\"\\u00ad\",\"3\"]]}",
    br#"{"version":1,"entries":[["a"]]}"#,
    br#"{"version":1,"entries":[["a","1","2"]]}"#,
    br#"{"version":1,"entries":[["a",1]]}"#,
    br#"{"version":1,"entries":{"a":"1"}}"#,
    br#"{"version":1,"entries":[["a","1"],]}"#,
    br#"{"x":[1,2,],"version":1}"#,
    br#"{"x":{"a" 1},"version":1}"#,
    br#"{"x":01,"version":1}"#,
    b"{\"x\":\"\xff\",\"version\":1,\"entries\":[]}",
    b"{\"x\":\"\x01\",\"version\":1}",
    b"",
    b"{",
    b"[1]",
    b"null",
];

#[test]
fn python_and_javascript_restore_and_refuse_snapshots_as_the_rust_kv() {
    let mut mismatches = Vec::new();
    for snapshot in SNAPSHOTS {
        let mut all = all_kv();
        let names: Vec<&str> = all.iter().map(|kv| kv.name).collect();
        let answers: Vec<String> = all
            .iter_mut()
            .map(|kv| {
                let restored = kv.instance.restore(position(1), snapshot);
                let after = answer(kv.instance.snapshot(position(1)).map(Ok));
                format!(
                    "{} / {after}",
                    answer(restored.map(|r| r.map(|()| Vec::new())))
                )
            })
            .collect();
        let what = format!("restore {:?}", String::from_utf8_lossy(snapshot));
        mismatches.extend(mismatch(&names, &answers, &what));
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The code points above U+007F that Rust's `{:?}` escapes, as the
/// `first-last` hex ranges the Python and JavaScript kv carry.
fn rust_escaped_ranges() -> String {
    let escaped = |c: char| format!("{:?}", format!("a{c}")) != format!("\"a{c}\"");
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for c in (0x80..=0x10_ffff)
        .filter_map(char::from_u32)
        .filter(|&c| escaped(c))
    {
        let code = u32::from(c);
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 == code => *last = code,
            _ => ranges.push((code, code)),
        }
    }
    let text: Vec<String> = ranges
        .iter()
        .map(|&(first, last)| match first == last {
            true => format!("{first:x}"),
            false => format!("{first:x}-{last:x}"),
        })
        .collect();
    text.join(",")
}

/// The `ESCAPED = "…"` line of a plugin source file.
fn carried_ranges(file: &str) -> String {
    let text = std::fs::read_to_string(root().join(file)).expect("plugin source");
    let line = text
        .lines()
        .find(|line| line.contains("ESCAPED = \""))
        .unwrap_or_else(|| panic!("{file} has no ESCAPED line"));
    let start = line.find('"').expect("a string") + 1;
    let end = line.rfind('"').expect("a string");
    line[start..end].to_string()
}

#[test]
fn the_escape_table_is_rusts() {
    // Whether a character is escaped must not depend on where it stands:
    // the table has one entry per code point.
    let first = |c: char| format!("{:?}", c.to_string()) != format!("\"{c}\"");
    let later = |c: char| format!("{:?}", format!("a{c}")) != format!("\"a{c}\"");
    let differ = (0x80..=0x10_ffff)
        .filter_map(char::from_u32)
        .find(|&c| first(c) != later(c));
    assert_eq!(differ, None, "escaping depends on the position");
    let rust = rust_escaped_ranges();
    for file in [
        "plugins/kv-py/rust_format.py",
        "plugins/kv-js/rust_format.js",
    ] {
        assert!(
            carried_ranges(file) == rust,
            "{file}: regenerate ESCAPED:\n{rust}"
        );
    }
}
