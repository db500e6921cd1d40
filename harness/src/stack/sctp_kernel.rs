//! `sctp+wg-kernel`: the Linux kernel's SCTP over kernel WireGuard, in the design (issue M)
//! and not built yet. It stays in the registry so that `check`, `list` and every run that
//! names it say so, instead of the name being unknown or another SCTP standing in for it.

use super::{
    Availability, HostCaps, NodeContext, NodeEndpoint, PreparedUnderlay, Protocol, Stack,
    StackContext, StackError, StackId, UnderlayKind,
};

/// Why the stack cannot run anywhere yet.
pub const NOT_BUILT: &str =
    "kernel SCTP (the sctp module's sockets) is not built into stackbench yet; \
usrsctp carries sctp, sctp+wg-inproc, sctp+wg-boringtun and sctp+wg-go";

/// The placeholder for kernel SCTP over kernel WireGuard.
pub struct KernelSctpOverWgKernel;

impl Stack for KernelSctpOverWgKernel {
    fn id(&self) -> StackId {
        StackId {
            protocol: Protocol::Sctp,
            underlay: UnderlayKind::WgKernel,
        }
    }

    fn availability(&self, _host: &HostCaps) -> Availability {
        Availability::Unavailable(NOT_BUILT.to_owned())
    }

    fn prepare(
        &self,
        _topology: &crate::topology::Topology,
        _opts: &StackContext<'_>,
    ) -> Result<Box<dyn PreparedUnderlay>, StackError> {
        Err(self.unavailable())
    }

    fn endpoint(&self, _ctx: &NodeContext<'_>) -> Result<NodeEndpoint, StackError> {
        Err(self.unavailable())
    }
}

impl KernelSctpOverWgKernel {
    fn unavailable(&self) -> StackError {
        StackError::Unavailable(self.id().name(), NOT_BUILT.to_owned())
    }
}
