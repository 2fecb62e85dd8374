//! Generates the protobuf messages of the agent protocol from
//! `proto/agent.proto` (pure Rust: no `protoc` needed).

fn main() {
    println!("cargo:rerun-if-changed=proto/agent.proto");
    ttrpc_codegen::Codegen::new()
        .out_dir(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .include("proto")
        .input("proto/agent.proto")
        .rust_protobuf()
        .run()
        .expect("generating the agent protocol from proto/agent.proto");
}
