//! `sctp+wg-kernel`: the Linux kernel's SCTP over kernel WireGuard, both in the kernel, as
//! a deployment with root would run them. The interfaces are those of `quic-*+wg-kernel`;
//! SCTP runs on the tunnel addresses in kernel sockets instead of usrsctp.

mod endpoint;
mod sys;

pub use endpoint::{KernelSctpConn, KernelSctpEndpoint, KernelSctpError};

use super::{
    wg_kernel::OverWgKernel, Availability, Endpoint, HostCaps, NodeContext, NodeEndpoint,
    PreparedUnderlay, Protocol, Stack, StackContext, StackError, StackId, UnderlayKind,
};

/// How the stack's transport is described in results.
pub const TRANSPORT: &str = "SCTP (the Linux kernel's, one-to-one sockets) on the tunnel \
addresses, one stream per priority, SCTP_SS_PRIO with I-DATA (net.sctp.intl_enable), RTO \
initial/min/max 500/200/10000 ms";

/// Kernel SCTP over kernel WireGuard.
pub struct KernelSctpOverWgKernel;

impl KernelSctpOverWgKernel {
    fn interfaces() -> OverWgKernel {
        OverWgKernel {
            protocol: Protocol::Sctp,
        }
    }
}

impl Stack for KernelSctpOverWgKernel {
    fn id(&self) -> StackId {
        StackId {
            protocol: Protocol::Sctp,
            underlay: UnderlayKind::WgKernel,
        }
    }

    fn availability(&self, host: &HostCaps) -> Availability {
        Self::interfaces()
            .availability(host)
            .requiring(&host.kernel_sctp)
    }

    fn prepare(
        &self,
        topology: &crate::topology::Topology,
        opts: &StackContext<'_>,
    ) -> Result<Box<dyn PreparedUnderlay>, StackError> {
        Self::interfaces().prepare(topology, opts)
    }

    fn lifecycle(
        &self,
        topology: &crate::topology::Topology,
        opts: &StackContext<'_>,
    ) -> Result<(String, Option<super::LifecycleTimes>), StackError> {
        Self::interfaces().lifecycle(topology, opts)
    }

    fn endpoint(&self, ctx: &NodeContext<'_>) -> Result<NodeEndpoint, StackError> {
        let ep = KernelSctpEndpoint::new(ctx.bind, crate::workload::HEADER_LEN)
            .map_err(|e| StackError::Setup(format!("node {}: {e}", ctx.index)))?;
        let (diagnose, control) = super::wg_kernel::diagnose_and_control(ctx.automation);
        Ok(NodeEndpoint {
            endpoint: Endpoint::KernelSctp(ep),
            dial: vec![],
            diagnose: Some(diagnose),
            control,
        })
    }
}
