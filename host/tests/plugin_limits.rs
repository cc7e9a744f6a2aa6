//! The memory a plugin may take, counted over everything its component
//! creates: the total bytes of all its linear memories, the total elements of
//! all its tables, and how many instances, tables and memories it has.
//!
//! Rust plugins have one memory and tables of a size fixed at link time
//! (stable Rust has no way to emit `table.grow`; function pointers and trait
//! objects only add elements to that fixed table), so the shapes they cannot
//! reach are hand-written components: [`component`] fits the state-machine
//! world with whatever memories and tables a test asks for.

use std::path::PathBuf;
use std::sync::Arc;

use clusterhost::limits::{
    PLUGIN_INSTANCES_MAX, PLUGIN_MEMORIES_MAX, PLUGIN_TABLE_ELEMENTS_MAX, PLUGIN_TABLES_MAX,
    PluginLimits,
};
use clusterhost::plugin::{ApplyError, EntryPosition, Fault, FsmRuntime, PluginCode, PluginEngine};

const MIB: usize = 1024 * 1024;
/// Bytes in a wasm page.
const PAGE_BYTES: usize = 64 * 1024;

/// The cap every test here runs under.
fn limits() -> PluginLimits {
    PluginLimits {
        memory_bytes_max: 40 * MIB,
        ..PluginLimits::default()
    }
}

/// The shape of a hand-written component.
#[derive(Clone, Copy)]
struct Shape {
    /// Linear memories, the first the one the canonical ABI uses.
    memories: usize,
    /// Pages each memory starts with.
    pages_each: usize,
    /// Elements the one table starts with.
    table_elements: usize,
    /// Pages every memory grows by in each `apply`.
    apply_grows_pages: usize,
    /// Elements the table grows by in each `apply`.
    apply_grows_elements: usize,
    /// Tables beyond the one `apply` grows.
    extra_tables: usize,
    /// Core instances (of an empty module) beyond the one that runs.
    extra_instances: usize,
}

const SMALL: Shape = Shape {
    memories: 1,
    pages_each: 1,
    table_elements: 1,
    apply_grows_pages: 0,
    apply_grows_elements: 0,
    extra_tables: 0,
    extra_instances: 0,
};

/// A component of the state-machine world shaped as `shape`. `apply` grows
/// every memory and the table, then returns `ok` with an empty response (the
/// zeroed bytes at address 0); the other functions trap.
fn component(shape: Shape) -> PluginCode {
    let growth: String = (0..shape.memories)
        .map(|memory| {
            format!(
                "(drop (memory.grow {memory} (i32.const {})))",
                shape.apply_grows_pages
            )
        })
        .collect();
    let extra_memories = format!("(memory {})", shape.pages_each).repeat(shape.memories - 1);
    let extra_tables = "(table 0 funcref)".repeat(shape.extra_tables);
    let extra_instances = "(core instance (instantiate $empty))".repeat(shape.extra_instances);
    let lift = r#"(memory $core "memory") (realloc (func $core "cabi_realloc"))"#;
    let text = format!(
        r#"(component
  (core module $module
    (memory (export "memory") {pages})
    {extra_memories}
    (table {elements} funcref)
    {extra_tables}
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 1024)
    (func (export "apply") (param i64 i64 i64 i32 i32) (result i32)
      {growth}
      (drop (table.grow 0 (ref.null func) (i32.const {grow_elements})))
      i32.const 0)
    (func (export "query") (param i32 i32) (result i32) unreachable)
    (func (export "snapshot") (result i32) unreachable)
    (func (export "restore") (param i32 i32) (result i32) unreachable))
  (core module $empty)
  {extra_instances}
  (core instance $core (instantiate $module))
  (type $entry_type (record (field "index" u64) (field "term" u64) (field "time-ms" u64)))
  (export $entry "entry" (type $entry_type))
  (type $outcome (result (list u8) (error string)))
  (func (export "apply") (param "entry" $entry) (param "command" (list u8)) (result $outcome)
    (canon lift (core func $core "apply") {lift}))
  (func (export "query") (param "request" (list u8)) (result $outcome)
    (canon lift (core func $core "query") {lift}))
  (func (export "snapshot") (result (list u8))
    (canon lift (core func $core "snapshot") {lift}))
  (func (export "restore") (param "snapshot" (list u8)) (result (result (error string)))
    (canon lift (core func $core "restore") {lift})))"#,
        pages = shape.pages_each,
        elements = shape.table_elements,
        grow_elements = shape.apply_grows_elements,
    );
    let bytes = wat::parse_str(&text).expect("the test component is valid text");
    let engine = PluginEngine::new(None).expect("engine");
    engine
        .load(Arc::from(bytes))
        .expect("the test component fits the world")
}

fn position(index: u64) -> EntryPosition {
    EntryPosition {
        index,
        term: 1,
        time_ms: 1_700_000_000_000,
    }
}

fn apply(runtime: &mut FsmRuntime, index: u64) -> Result<Vec<u8>, ApplyError> {
    runtime
        .apply(position(index), b"grow".to_vec())
        .expect("no rebuild failure")
}

fn pages(bytes: usize) -> usize {
    bytes / PAGE_BYTES
}

// Goal: the hand-written component is a working plugin, so the refusals
// below are about its size and nothing else.
#[test]
fn a_small_hand_written_component_runs() {
    let mut runtime = FsmRuntime::new(component(SMALL), limits()).expect("instance");
    assert_eq!(apply(&mut runtime, 1), Ok(Vec::new()));
}

// Goal: the memory cap is the plugin's total, not a cap per memory: two
// memories of 24 MiB do not fit under 40 MiB.
#[test]
fn memories_that_together_exceed_the_cap_do_not_instantiate() {
    let one = Shape {
        pages_each: pages(24 * MIB),
        ..SMALL
    };
    assert!(FsmRuntime::new(component(one), limits()).is_ok());
    let two = Shape { memories: 2, ..one };
    match FsmRuntime::new(component(two), limits()) {
        Err(Fault::OutOfMemory { bytes_max }) => assert_eq!(bytes_max, 40 * MIB),
        Err(other) => panic!("wrong fault: {other}"),
        Ok(_) => panic!("48 MiB of memories instantiated under a 40 MiB cap"),
    }
}

// Goal: growing several memories counts against the one cap: two memories
// growing 8 MiB each per entry fit twice under 40 MiB, not a third time,
// and the entry that would pass the cap fails on its own.
#[test]
fn growth_across_memories_stops_at_the_total_cap() {
    let growing = Shape {
        memories: 2,
        apply_grows_pages: pages(8 * MIB),
        ..SMALL
    };
    let mut runtime = FsmRuntime::new(component(growing), limits()).expect("instance");
    assert_eq!(apply(&mut runtime, 1), Ok(Vec::new()));
    assert_eq!(apply(&mut runtime, 2), Ok(Vec::new()));
    assert!(
        matches!(
            apply(&mut runtime, 3),
            Err(ApplyError::Fault(Fault::OutOfMemory { .. }))
        ),
        "a third 16 MiB fits under 40 MiB only if memories are capped one by one"
    );
    // The instance was rebuilt from the two entries that fit; it still has
    // room for nothing more, identically.
    assert!(matches!(
        apply(&mut runtime, 4),
        Err(ApplyError::Fault(Fault::OutOfMemory { .. }))
    ));
}

// Goal: tables are bounded too, at instantiation and when they grow.
#[test]
fn tables_past_the_element_limit_are_refused() {
    let large = Shape {
        table_elements: PLUGIN_TABLE_ELEMENTS_MAX + 1,
        ..SMALL
    };
    match FsmRuntime::new(component(large), limits()) {
        Err(Fault::Trapped { message }) => assert!(message.contains("table"), "{message}"),
        Err(other) => panic!("wrong fault: {other}"),
        Ok(_) => panic!("a table past the element limit instantiated"),
    }
    let growing = Shape {
        apply_grows_elements: PLUGIN_TABLE_ELEMENTS_MAX / 2,
        ..SMALL
    };
    let mut runtime = FsmRuntime::new(component(growing), limits()).expect("instance");
    assert_eq!(apply(&mut runtime, 1), Ok(Vec::new()));
    match apply(&mut runtime, 2) {
        Err(ApplyError::Fault(Fault::Trapped { message })) => {
            assert!(message.contains("table"), "{message}")
        }
        other => panic!("the table grew past the element limit: {other:?}"),
    }
}

// Goal: the number of memories is bounded.
#[test]
fn more_memories_than_the_limit_do_not_instantiate() {
    let many = Shape {
        memories: PLUGIN_MEMORIES_MAX + 1,
        pages_each: 0,
        ..SMALL
    };
    match FsmRuntime::new(component(many), limits()) {
        Err(Fault::Trapped { message }) => assert!(message.contains("memor"), "{message}"),
        Err(other) => panic!("wrong fault: {other}"),
        Ok(_) => panic!("more memories than the limit instantiated"),
    }
}

fn misbehave() -> PluginCode {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/test/misbehave.wasm");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|error| panic!("{}: {error}; run `cargo xtask plugins`", path.display()));
    let engine = PluginEngine::new(None).expect("engine");
    engine.load(Arc::from(bytes)).expect("misbehave loads")
}

// Goal: the number of tables and of instances is bounded too, so a plugin
// cannot take host memory through many small ones.
#[test]
fn more_tables_or_instances_than_the_limits_do_not_instantiate() {
    let at_the_limits = Shape {
        extra_tables: PLUGIN_TABLES_MAX - 1,
        extra_instances: PLUGIN_INSTANCES_MAX - 1,
        ..SMALL
    };
    FsmRuntime::new(component(at_the_limits), limits()).expect("at the limits it instantiates");
    let cases = [
        (
            "table",
            Shape {
                extra_tables: PLUGIN_TABLES_MAX,
                ..SMALL
            },
        ),
        (
            "instance",
            Shape {
                extra_instances: PLUGIN_INSTANCES_MAX,
                ..SMALL
            },
        ),
    ];
    for (what, shape) in cases {
        match FsmRuntime::new(component(shape), limits()) {
            Err(Fault::Trapped { message }) => assert!(message.contains(what), "{message}"),
            Err(other) => panic!("wrong fault for too many {what}s: {other}"),
            Ok(_) => panic!("one {what} more than the limit instantiated"),
        }
    }
}

// Goal: a Rust plugin's heap stops at the cap with a memory fault, and what
// fits under the cap succeeds.
#[test]
fn a_rust_plugin_allocates_up_to_the_cap_and_no_further() {
    let mut runtime = FsmRuntime::new(misbehave(), limits()).expect("instance");
    let under = runtime
        .apply(position(1), br#"{"alloc_mib":24}"#.to_vec())
        .expect("no rebuild failure");
    assert_eq!(under, Ok(br#""ok""#.to_vec()));
    let over = runtime
        .apply(position(2), br#"{"alloc_mib":40}"#.to_vec())
        .expect("no rebuild failure");
    assert!(
        matches!(over, Err(ApplyError::Fault(Fault::OutOfMemory { .. }))),
        "{over:?}"
    );
}
