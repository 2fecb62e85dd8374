//! The six points of a container's life at which hooks run.
//!
//! Each kind differs in where it runs (the runtime's namespaces or the
//! container's) and in whether a failure aborts the operation, so the caller
//! picks the kind and this crate applies the matching rules.

use std::fmt;

use oci_spec::runtime::{Hook, Hooks};

/// One list of hooks from the `hooks` section of a bundle's `config.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookKind {
    /// Deprecated predecessor of the three `create*` kinds. Runs in the
    /// runtime's namespaces during `create`, right before `createRuntime`.
    Prestart,
    /// Runs in the runtime's namespaces during `create`, after the container's
    /// namespaces exist but before `pivot_root`.
    CreateRuntime,
    /// Runs in the container's mount namespace during `create`, before
    /// `pivot_root`; started by the container's init process.
    CreateContainer,
    /// Runs inside the container during `start`, right before the user's
    /// program is executed; started by the container's init process.
    StartContainer,
    /// Runs in the runtime's namespaces after the user's program has started.
    Poststart,
    /// Runs in the runtime's namespaces after the container has been deleted.
    Poststop,
}

impl HookKind {
    /// Every kind, in the order in which they come up in a container's life.
    pub const ALL: [HookKind; 6] = [
        HookKind::Prestart,
        HookKind::CreateRuntime,
        HookKind::CreateContainer,
        HookKind::StartContainer,
        HookKind::Poststart,
        HookKind::Poststop,
    ];

    /// The name the runtime spec (and `config.json`) uses for this kind.
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        }
    }

    /// Whether a failing hook of this kind fails the operation it belongs to.
    ///
    /// When it does, the caller must also stop the container. Failures of
    /// `poststart` and `poststop` hooks are only logged: the container is
    /// already running, or already gone.
    pub fn fails_operation(self) -> bool {
        !matches!(self, HookKind::Poststart | HookKind::Poststop)
    }

    /// The hooks of this kind in `hooks`, in the order they must run.
    pub fn hooks(self, hooks: &Hooks) -> &[Hook] {
        let list = match self {
            #[allow(deprecated)] // Still honoured: bundles in the wild use it.
            HookKind::Prestart => hooks.prestart(),
            HookKind::CreateRuntime => hooks.create_runtime(),
            HookKind::CreateContainer => hooks.create_container(),
            HookKind::StartContainer => hooks.start_container(),
            HookKind::Poststart => hooks.poststart(),
            HookKind::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or(&[])
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{HookBuilder, HooksBuilder};

    fn hook(path: &str) -> Hook {
        HookBuilder::default().path(path).build().unwrap()
    }

    #[test]
    #[allow(deprecated)]
    fn each_kind_reads_its_own_list() {
        let hooks = HooksBuilder::default()
            .prestart(vec![hook("/p")])
            .create_runtime(vec![hook("/cr")])
            .create_container(vec![hook("/cc")])
            .start_container(vec![hook("/sc")])
            .poststart(vec![hook("/ps")])
            .poststop(vec![hook("/pst")])
            .build()
            .unwrap();
        let paths: Vec<String> = HookKind::ALL
            .iter()
            .map(|kind| {
                let list = kind.hooks(&hooks);
                assert_eq!(list.len(), 1, "{kind}");
                list[0].path().display().to_string()
            })
            .collect();
        assert_eq!(paths, ["/p", "/cr", "/cc", "/sc", "/ps", "/pst"]);
    }

    #[test]
    fn absent_lists_are_empty() {
        let hooks = Hooks::default();
        for kind in HookKind::ALL {
            assert!(kind.hooks(&hooks).is_empty(), "{kind}");
        }
    }

    #[test]
    fn only_post_hooks_are_tolerated() {
        let failing: Vec<&str> = HookKind::ALL
            .iter()
            .filter(|k| k.fails_operation())
            .map(|k| k.name())
            .collect();
        assert_eq!(
            failing,
            [
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer"
            ]
        );
        assert_eq!(HookKind::Poststop.to_string(), "poststop");
    }
}
