//! Compiles every contract under `proto/` with protox (no protoc anywhere), generates the
//! messages and gRPC stubs with tonic-prost-build, writes the descriptor set for reflection, and
//! generates the delivery-class impls from the `(wharf.options.v1.event)` options.
//!
//! A contract that breaks an event rule fails the build here, with a message naming the
//! message and the rule.

use std::path::PathBuf;

fn main() {
    if let Err(err) = run() {
        // Cargo prints a failed build script's stderr; keep the message on one readable line.
        eprintln!("error: wharf contracts: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto").canonicalize()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    println!("cargo:rerun-if-changed={}", proto_root.display());
    let contracts = wharf_codegen::Contracts::compile(&proto_root)?;
    for file in &contracts.proto_files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    std::fs::write(
        out_dir.join("wharf_descriptor.bin"),
        &contracts.descriptor_set,
    )?;
    std::fs::write(
        out_dir.join("wharf_events.rs"),
        wharf_codegen::render::events(&contracts.events),
    )?;
    std::fs::write(
        out_dir.join("wharf_service_limits.rs"),
        wharf_codegen::render::service_limits(&contracts.services),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .include_file("wharf_contracts.rs")
        .emit_rerun_if_changed(false)
        .compile_fds(contracts.file_descriptor_set)?;
    Ok(())
}
