//! Compiles the provider API with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/v1alpha1.proto");
    println!("cargo:rerun-if-changed=proto/csi.proto");
    let fds = protox::compile(["v1alpha1.proto", "csi.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // These carry service-account tokens, secret parameters and secret file
        // contents; a derived Debug would print them. lib.rs gives redacted ones.
        .skip_debug([
            ".v1alpha1.MountRequest",
            ".v1alpha1.MountResponse",
            ".v1alpha1.File",
            ".csi.v1.NodePublishVolumeRequest",
        ])
        .compile_fds(fds)?;
    Ok(())
}
