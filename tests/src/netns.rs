//! A private network for a cluster's nodes, so that a test can cut and
//! heal the links between them: each node runs in its own network
//! namespace with one address on a bridge (in a namespace of its own, so
//! the host's firewall never sees the traffic), and the test process
//! reaches every node over one more port of that bridge.
//!
//! A cut is silent, as a real partition is: each side's neighbour entry
//! for the other is pointed at a hardware address nobody has, so packets
//! between the two are sent and lost while the processes see nothing
//! (no reset, no error: connections stall until their own timeouts).
//! Traffic between a node and the test process is never cut.
//!
//! Namespaces need root and iproute2; [`Net::create`] answers `None`
//! where they are missing. Names carry the test process's id, so what a
//! killed test left behind is removed by the next one.

use std::net::Ipv4Addr;
use std::process::Command;

use std::sync::atomic::{AtomicU32, Ordering};

/// A hardware address that no interface has (locally administered).
const NOWHERE: &str = "02:00:00:5e:00:01";

pub struct Net {
    prefix: String,
    /// The first three octets of the /24 the nodes are on.
    subnet: [u8; 3],
    nodes: usize,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_output(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the namespaces of test processes that are gone (their root
/// ends of the veth pairs go with them).
fn remove_stale() {
    for line in ip_output(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("strom-") else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !alive(p)) {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Net {
    /// A network for `nodes` nodes, or `None` (with the reason printed)
    /// where network namespaces cannot be made.
    pub fn create(nodes: usize) -> Option<Net> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("strom-{pid}-{n}");
        // A /24 that no interface of the host is on.
        let used = ip_output(&["-o", "-4", "addr", "show"]);
        let subnet = (0..64u32)
            .map(|i| {
                let k = pid.wrapping_mul(31).wrapping_add(n * 64 + i);
                [10, 100 + (k / 256 % 150) as u8, (k % 256) as u8]
            })
            .find(|s| !used.contains(&format!(" {}.{}.{}.", s[0], s[1], s[2])))?;
        let net = Net {
            prefix,
            subnet,
            nodes,
        };
        match net.build() {
            Ok(()) => Some(net),
            Err(e) => {
                println!("no network namespaces here ({e}): links cannot be cut");
                None
            }
        }
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// The namespace node `id` (1-based) runs in.
    pub fn namespace(&self, id: i32) -> String {
        format!("{}-{id}", self.prefix)
    }

    /// Node `id`'s address.
    pub fn addr(&self, id: i32) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, id as u8)
    }

    /// The test process's own name for its port on the bridge (at most 15
    /// characters, the kernel's limit).
    fn host_link(&self) -> String {
        let n = self.prefix.rsplit('-').next().unwrap_or("0");
        format!("sr{}x{n}", std::process::id() % 10_000_000)
    }

    fn build(&self) -> Result<(), String> {
        let hub = self.hub();
        ip(&["netns", "add", &hub])?;
        let in_hub = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &hub, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        in_hub(&["link", "add", "br0", "type", "bridge"])?;
        in_hub(&["link", "set", "br0", "up"])?;
        let host = self.host_link();
        let [a, b, c] = self.subnet;
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "h0", "netns", &hub,
        ])?;
        in_hub(&["link", "set", "h0", "master", "br0", "up"])?;
        ip(&["addr", "add", &format!("{a}.{b}.{c}.254/24"), "dev", &host])?;
        ip(&["link", "set", &host, "up"])?;
        for id in 1..=self.nodes as i32 {
            let ns = self.namespace(id);
            let port = format!("h{id}");
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &hub,
            ])?;
            in_hub(&["link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", self.addr(id)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// Cuts the link between nodes `a` and `b`, both ways.
    pub fn cut(&self, a: i32, b: i32) {
        for (from, to) in [(a, b), (b, a)] {
            let to = self.addr(to).to_string();
            ip(&[
                "-n",
                &self.namespace(from),
                "neigh",
                "replace",
                &to,
                "lladdr",
                NOWHERE,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])
            .unwrap();
        }
    }

    /// Restores the link between nodes `a` and `b`.
    pub fn heal(&self, a: i32, b: i32) {
        for (from, to) in [(a, b), (b, a)] {
            let to = self.addr(to).to_string();
            // The entry goes; the next packet asks for the real address.
            let _ = ip(&[
                "-n",
                &self.namespace(from),
                "neigh",
                "del",
                &to,
                "dev",
                "eth0",
            ]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for id in 1..=self.nodes as i32 {
            let _ = ip(&["netns", "del", &self.namespace(id)]);
        }
        let _ = ip(&["netns", "del", &self.hub()]);
    }
}
