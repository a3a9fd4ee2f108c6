//! A cluster of real `strom` processes on free loopback ports, each a
//! combined broker and controller voter with its own temporary directory,
//! that a test can kill (-9), pause (SIGSTOP), resume and restart node by
//! node; or each in a network namespace of its own ([`crate::netns`]),
//! where the test can also cut and heal the links between them.
//!
//! Fault tests draw their choices from [`Cluster::rng`], seeded from
//! `STROM_TEST_SEED` (else the clock); the seed is printed when the cluster
//! starts, so a failing test's output names it.

use std::time::{Duration, Instant};

use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

use crate::netns::Net;
use crate::{free_port, Broker, Client};

/// Faster than the defaults, so that tests wait less for elections.
const TEST_TIMINGS: &[(&str, &str)] = &[
    ("controller.quorum.election.timeout.ms", "500"),
    ("controller.quorum.heartbeat.interval.ms", "100"),
];

/// `process.roles` of a node that is both broker and controller.
pub const COMBINED: &str = "broker,controller";

pub struct Cluster {
    /// Node `k` (its `node.id`) is `nodes[k - 1]`.
    pub nodes: Vec<Broker>,
    pub seed: u64,
    rng: u64,
    /// The nodes' private network, if they run in one ([`Cluster::start_in_network`]);
    /// declared after `nodes`, so the processes are gone before it is.
    net: Option<Net>,
}

impl Cluster {
    /// Starts `n` nodes with `config` added to each one's settings, and
    /// waits until every one serves.
    pub fn start(n: usize, config: &[(&str, &str)]) -> Cluster {
        Cluster::start_with(n, config, |_| Vec::new())
    }

    /// As [`Cluster::start`], with `per_node(node_id)` added to that node's
    /// settings last (e.g. its `broker.rack`).
    pub fn start_with(
        n: usize,
        config: &[(&str, &str)],
        per_node: impl Fn(i32) -> Vec<(String, String)>,
    ) -> Cluster {
        Cluster::start_roles(&vec![COMBINED; n], config, per_node)
    }

    /// As [`Cluster::start`], each node in a network namespace of its own,
    /// so that [`Cluster::cut`] can cut links between them; `None` where
    /// namespaces cannot be made (not root, no iproute2).
    pub fn start_in_network(n: usize, config: &[(&str, &str)]) -> Option<Cluster> {
        let net = Net::create(n)?;
        Some(Cluster::launch(
            &vec![COMBINED; n],
            config,
            |_| Vec::new(),
            Some(net),
        ))
    }

    /// Node `k` has `process.roles` `roles[k - 1]` (`"broker"`,
    /// `"controller"` or [`COMBINED`]); the voters are the nodes with the
    /// controller role. A broker-only node has no controller listener, a
    /// controller-only node no client listener.
    pub fn start_roles(
        roles: &[&str],
        config: &[(&str, &str)],
        per_node: impl Fn(i32) -> Vec<(String, String)>,
    ) -> Cluster {
        Cluster::launch(roles, config, per_node, None)
    }

    fn launch(
        roles: &[&str],
        config: &[(&str, &str)],
        per_node: impl Fn(i32) -> Vec<(String, String)>,
        net: Option<Net>,
    ) -> Cluster {
        let n = roles.len();
        let host = |i: usize| match &net {
            Some(net) => net.addr(i as i32 + 1).to_string(),
            None => "127.0.0.1".to_owned(),
        };
        let seed = std::env::var("STROM_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("cluster of {n}: seed {seed} (STROM_TEST_SEED={seed} repeats it)");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let voters = ports
            .iter()
            .enumerate()
            .filter(|(i, _)| roles[*i].contains("controller"))
            .map(|(i, (_, c))| format!("{}@{}:{c}", i + 1, host(i)))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, (client, controller))| {
                let role = roles[i];
                let mut listeners = Vec::new();
                if role.contains("broker") {
                    listeners.push(format!("PLAINTEXT://{}:{client}", host(i)));
                }
                if role.contains("controller") {
                    listeners.push(format!("CONTROLLER://{}:{controller}", host(i)));
                }
                let mut settings: Vec<(String, String)> = vec![
                    ("node.id".into(), (i + 1).to_string()),
                    ("process.roles".into(), role.into()),
                    ("listeners".into(), listeners.join(",")),
                    ("controller.listener.names".into(), "CONTROLLER".into()),
                    ("controller.quorum.voters".into(), voters.clone()),
                ];
                let own = per_node(i as i32 + 1);
                let own = own.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                for (k, v) in TEST_TIMINGS
                    .iter()
                    .copied()
                    .chain(config.iter().copied())
                    .chain(own)
                {
                    settings.retain(|(name, _)| name != k);
                    settings.push((k.to_string(), v.to_string()));
                }
                let mut node = Broker::stopped(*client, settings);
                node.controller_only = !role.contains("broker");
                if let Some(net) = &net {
                    node.addr = (net.addr(i as i32 + 1), *client).into();
                    node.namespace = Some(net.namespace(i as i32 + 1));
                }
                node
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            seed,
            rng: seed | 1,
            net,
        };
        for node in &mut cluster.nodes {
            node.launch();
        }
        for node in &cluster.nodes {
            node.wait_ready();
        }
        cluster
    }

    pub fn node(&self, id: i32) -> &Broker {
        &self.nodes[id as usize - 1]
    }

    pub fn node_mut(&mut self, id: i32) -> &mut Broker {
        &mut self.nodes[id as usize - 1]
    }

    /// The node ids whose processes run.
    pub fn running(&self) -> Vec<i32> {
        (1..=self.nodes.len() as i32)
            .filter(|id| self.node(*id).is_running())
            .collect()
    }

    pub fn kill9(&mut self, id: i32) {
        self.node_mut(id).kill9();
    }

    pub fn pause(&self, id: i32) {
        self.node(id).pause();
    }

    pub fn resume(&self, id: i32) {
        self.node(id).resume();
    }

    /// Starts node `id` again on its port and directory and waits until it
    /// serves (which needs a majority of voters up).
    pub fn restart(&mut self, id: i32) {
        self.node_mut(id).restart();
    }

    /// Cuts the link between nodes `a` and `b` (silently: their packets to
    /// each other are lost); needs [`Cluster::start_in_network`].
    pub fn cut(&self, a: i32, b: i32) {
        self.net.as_ref().expect("a cluster in a network").cut(a, b);
    }

    /// Restores the link between nodes `a` and `b`.
    pub fn heal(&self, a: i32, b: i32) {
        self.net
            .as_ref()
            .expect("a cluster in a network")
            .heal(a, b);
    }

    /// A number from the seeded sequence (xorshift).
    pub fn rng(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Metadata (all topics) as node `id` answers it.
    pub fn metadata(&self, id: i32) -> std::io::Result<MetadataResponse> {
        let mut c = Client::connect(self.node(id).addr)?;
        c.request(12, &MetadataRequest::default().with_topics(None))
    }

    /// Waits until node `id` reports an active controller other than the
    /// ones in `not`, and returns it.
    pub fn wait_for_controller(&self, id: i32, not: &[i32], within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(m) = self.metadata(id) {
                let c = m.controller_id.0;
                if c > 0 && !not.contains(&c) {
                    return c;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {id} reports no active controller (other than {not:?}) after {within:?}; seed {}; its log:\n{}",
                self.seed,
                self.node(id).log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Creates `topic` through node `via`; the topic's error code.
    pub fn create_topic(
        &self,
        via: i32,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
    ) -> i16 {
        use kafka_protocol::messages::create_topics_request::CreatableTopic;
        let request = kafka_protocol::messages::CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(crate::name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)]);
        let r = Client::connect(self.node(via).addr)
            .and_then(|mut c| c.request(7, &request))
            .unwrap();
        r.topics[0].error_code
    }

    /// The coordinator of `key` (`key_type` 0: a group, 1: a
    /// transactional id) as node `via` answers FindCoordinator, once it
    /// names a node other than those in `not`.
    pub fn wait_for_coordinator(&self, via: i32, key: &str, key_type: i8, not: &[i32]) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let request = kafka_protocol::messages::FindCoordinatorRequest::default()
                .with_key(kafka_protocol::protocol::StrBytes::from_string(
                    key.to_owned(),
                ))
                .with_key_type(key_type);
            if let Ok(r) =
                Client::connect(self.node(via).addr).and_then(|mut c| c.request(3, &request))
            {
                if r.error_code == 0 && r.node_id.0 > 0 && !not.contains(&r.node_id.0) {
                    return r.node_id.0;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no coordinator for {key} but {not:?}; seed {}",
                self.seed
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `check` holds for node `id`'s metadata.
    pub fn wait_for_metadata(
        &self,
        id: i32,
        what: &str,
        within: Duration,
        check: impl Fn(&MetadataResponse) -> bool,
    ) -> MetadataResponse {
        let deadline = Instant::now() + within;
        let mut last;
        loop {
            match self.metadata(id) {
                Ok(m) if check(&m) => return m,
                Ok(m) => last = Some(format!("{m:?}")),
                Err(e) => last = Some(e.to_string()),
            }
            assert!(
                Instant::now() < deadline,
                "node {id}: {what} not seen after {within:?}; seed {}; last answer: {}",
                self.seed,
                last.unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
