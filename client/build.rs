//! Compiles the public gRPC API with a vendored protoc, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing reads the
    // environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("clusterhost_descriptor.bin"))
        .compile_protos(&["proto/clusterhost.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/clusterhost.proto");
    Ok(())
}
