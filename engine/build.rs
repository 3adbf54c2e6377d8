//! Compiles the gRPC contract in `proto/` with the pure-Rust `protox` (a fresh machine
//! needs no `protoc`) and generates the server and client code with `tonic-prost-build`.
//! The encoded descriptor set (with the `.proto` comments) is kept for server
//! reflection and for the contract's own tests.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let files = [
        "tidig/v1/caseworker.proto",
        "tidig/v1/oversight.proto",
        "tidig/v1/research.proto",
    ];
    // sqlx::migrate! embeds the migrations: a new file must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    for f in files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::Compiler::new([&root])?
        .include_source_info(true)
        .include_imports(true)
        .open_files(files)?
        .file_descriptor_set();
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("tidig_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
