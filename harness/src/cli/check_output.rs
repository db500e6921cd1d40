//! `stackbench check`: what this host can run, for people and as JSON.

use crate::{
    check::HostCaps,
    stack::{self, Availability},
};
use anyhow::Result;

pub(crate) fn print_check(host: &HostCaps, json: bool) -> Result<()> {
    let stacks: Vec<(String, Availability, String)> = stack::registry()
        .iter()
        .map(|s| (s.id().name(), s.availability(host), s.id().privileges()))
        .collect();
    if json {
        let v = serde_json::json!({ "host": host, "stacks": stacks.iter().map(|(n, a, needs)| serde_json::json!({"name": n, "availability": a, "needs": needs})).collect::<Vec<_>>() });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let show = |name: &str, c: &crate::check::Capability| match c {
        Ok(v) => println!("  {name:<18} yes  {v}"),
        Err(e) => println!("  {name:<18} no   {e}"),
    };
    println!("privileges: {}", host.privileges);
    println!("kernel:");
    show("user namespaces", &host.user_namespaces);
    show("network namespaces", &host.netns);
    show("tbf qdisc", &host.tbf);
    show("netem qdisc", &host.netem);
    show("TUN", &host.tun);
    show("kernel WireGuard", &host.kernel_wireguard);
    show("kernel SCTP", &host.kernel_sctp);
    println!("libraries:");
    show("usrsctp", &host.usrsctp);
    println!("tools:");
    for (name, c) in &host.tools {
        show(name, c);
    }
    println!("stacks (what each needs: as a normal user, `run` gets its network namespaces and TUN devices in a user namespace; kernel modules must be loaded already):");
    for (name, a, needs) in stacks {
        match a {
            Availability::Available => println!("  {name:<24} available      needs {needs}"),
            Availability::Unavailable(r) => {
                println!(
                    "  {name:<24} unavailable: {r}\n  {:<24}                needs {needs}",
                    ""
                )
            }
        }
    }
    Ok(())
}
