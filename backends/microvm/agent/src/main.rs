//! The guest agent binary: `/init` of the microVM's initramfs.

mod boot;
mod cgroup;
mod enter;
mod error;
mod output;
mod port;
mod rootfs;
mod server;
mod spawn;

fn main() {
    if std::env::args().nth(1).as_deref() == Some(enter::ENTER_ARG) {
        enter::main();
    }
    if std::process::id() != 1 {
        eprintln!("strata-agent: must run as PID 1 of a Strata microVM");
        std::process::exit(2);
    }
    let port = boot::mount_kernel_filesystems()
        .and_then(|()| boot::load_modules())
        .and_then(|()| boot::loopback_up())
        .and_then(|()| port::open());
    let port = match port {
        Ok(port) => port,
        Err(e) => {
            eprintln!("strata-agent: {e}");
            server::power_off();
        }
    };
    let writer = match port.try_clone() {
        Ok(writer) => writer,
        Err(e) => {
            eprintln!("strata-agent: duplicating the port: {e}");
            server::power_off();
        }
    };
    server::Agent::launch().serve(port, writer)
}
