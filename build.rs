//! Compiles the gRPC protocols with a vendored protoc, so a fresh machine needs no system package.

use std::{env, error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_client(true)
        // `explain --json` prints the message as it is, field names as in the proto.
        .type_attribute(".llmscaler.v1", "#[derive(serde::Serialize)]")
        .file_descriptor_set_path(out_dir.join("scaler_descriptor.bin"))
        .compile_with_config(
            config,
            &[
                "proto/externalscaler.proto",
                "proto/llmscaler/v1/explain.proto",
            ],
            &["proto"],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
