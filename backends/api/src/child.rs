//! Handing a descriptor to a child process at a fixed number, the way the
//! runtime passes channels and listeners to the helpers it starts.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `command`'s child find `fd` at descriptor `target`, open across
/// exec; the caller keeps `fd` alive until the child is spawned.
pub fn pass_fd(command: &mut Command, fd: &OwnedFd, target: RawFd) {
    let raw = fd.as_raw_fd();
    let hand_over = move || -> std::io::Result<()> {
        let rc = if raw == target {
            // SAFETY: clears close-on-exec on a descriptor this process owns.
            unsafe { libc::fcntl(raw, libc::F_SETFD, 0) }
        } else {
            // SAFETY: duplicates a descriptor this process owns onto `target`.
            unsafe { libc::dup2(raw, target) }
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the closure runs between fork and exec and calls only dup2 and
    // fcntl, which are async-signal-safe; it touches no locks or allocations.
    unsafe { command.pre_exec(hand_over) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_child_finds_the_descriptor_at_its_number() {
        for target in [5, 9] {
            let (mut reader, writer) = std::io::pipe().unwrap();
            let writer = OwnedFd::from(writer);
            let mut command = Command::new("/bin/sh");
            command.args(["-c", &format!("echo passed >&{target}")]);
            pass_fd(&mut command, &writer, target);
            let mut child = command.spawn().unwrap();
            drop(writer);
            let mut text = String::new();
            reader.read_to_string(&mut text).unwrap();
            assert_eq!(text, "passed\n");
            // The output proves the hand-over. The exit status may already
            // be gone: this binary's reaper test collects every child of
            // the process.
            let _ = child.wait();
        }
    }
}
