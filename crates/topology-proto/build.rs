// Compiles our protos with protox (pure Rust): no protoc needed to build.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["proto/topology.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto/topology.proto");
    Ok(())
}
