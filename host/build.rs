//! Compiles the internal Raft service with a vendored protoc, so no system
//! protoc is needed (the public API is compiled by `clusterhost-client`),
//! and the part of etcd's client API the benchmark drives etcd with.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing reads the
    // environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure().compile_protos(&["proto/raft.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/raft.proto");
    // The subset of etcd's client API `clusterhost bench --system etcd` uses.
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/etcd_kv.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/etcd_kv.proto");
    Ok(())
}
