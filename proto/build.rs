//! Compiles the .proto files with the pure-Rust `protox` (no system `protoc`)
//! and writes the encoded descriptor set that server reflection serves.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "trafego/cache/v1/cache.proto",
        "trafego/tracking/v1/tracking.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // One descriptor set per service, so each service's reflection lists only itself.
    for (proto, file) in protos
        .iter()
        .zip(["cache_descriptor.bin", "tracking_descriptor.bin"])
    {
        let fds = protox::compile([proto], ["."])?;
        std::fs::write(out.join(file), fds.encode_to_vec())?;
    }
    let fds = protox::compile(protos, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
