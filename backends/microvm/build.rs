//! Generates the ttrpc client of the agent service from the agent crate's
//! `proto/agent.proto` (pure Rust: no `protoc` needed); its messages come
//! from `strata_agent::protocol::agent`.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=agent/proto/agent.proto");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // The generated file has inner attributes, so it is a module file of
    // its own, declared by this one.
    std::fs::write(out.join("stubs.rs"), "pub mod agent_ttrpc;\n")
        .expect("writing stubs.rs to OUT_DIR");
    ttrpc_codegen::Codegen::new()
        .out_dir(&out)
        .include("agent/proto")
        .input("agent/proto/agent.proto")
        .customize(ttrpc_codegen::Customize {
            async_client: true,
            ..Default::default()
        })
        .run()
        .expect("generating the agent client from agent/proto/agent.proto");
}
