use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

use super::*;

struct Stores;

impl StoreBuilder<Types, LogStore, Machine, tempfile::TempDir> for Stores {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, Machine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(dir.path()).expect("log store");
        let machine = Machine::open(dir.path()).expect("state machine");
        Ok((dir, log, machine))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(Stores).unwrap();
}

fn producer_ids(n: i64) -> Vec<MetadataRecord> {
    vec![MetadataRecord::ProducerIds {
        node_id: 1,
        next_producer_id: n,
    }]
}

fn config(node: i32, voters: &[i32], dir: &std::path::Path) -> QuorumConfig {
    QuorumConfig {
        node_id: node,
        voters: voters.iter().map(|v| (*v, format!("node-{v}"))).collect(),
        dir: dir.to_path_buf(),
        election_timeout_ms: 300,
        heartbeat_interval_ms: 50,
        snapshot_entries: 4,
        write_timeout: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_voter_commits_and_recovers_through_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let q = Quorum::open(config(1, &[1], dir.path()), Arc::new(NoTransport))
        .await
        .unwrap();
    assert_eq!(q.wait_for_leader(Duration::from_secs(10)).await.unwrap(), 1);
    for n in 1..=10 {
        q.ensure_current().await.unwrap();
        q.propose(producer_ids(n * 1000)).await.unwrap();
        assert_eq!(q.image().next_producer_id, n * 1000);
    }
    let before = q.image();
    q.shutdown().await;
    drop(q);
    assert!(
        dir.path().join("snapshot.json").exists(),
        "snapshots were taken"
    );
    let q = Quorum::open(config(1, &[1], dir.path()), Arc::new(NoTransport))
        .await
        .unwrap();
    q.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    q.ensure_current().await.unwrap();
    assert_eq!(q.image().next_producer_id, before.next_producer_id);
    assert_eq!(q.image().offset, before.offset);
    q.propose(producer_ids(11_000)).await.unwrap();
    assert_eq!(q.image().next_producer_id, 11_000);
    q.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_voter_set_cannot_change() {
    let dir = tempfile::tempdir().unwrap();
    let q = Quorum::open(config(1, &[1], dir.path()), Arc::new(NoTransport))
        .await
        .unwrap();
    q.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    q.shutdown().await;
    drop(q);
    let e = Quorum::open(config(1, &[1, 2, 3], dir.path()), Arc::new(NoTransport))
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("controller.quorum.voters"), "{e}");
}

/// An in-process network: each node reaches the others' `handle_peer`,
/// except the nodes cut off.
#[derive(Default)]
struct Mesh {
    nodes: Mutex<HashMap<String, Arc<Quorum>>>,
    cut: Mutex<HashSet<String>>,
}

struct MeshTransport {
    mesh: Arc<Mesh>,
    from: String,
}

impl Transport for MeshTransport {
    fn call(
        &self,
        address: &str,
        message: Vec<u8>,
    ) -> BoxFuture<'static, std::io::Result<Vec<u8>>> {
        let cut = self.mesh.cut.lock().unwrap();
        let target = if cut.contains(address) || cut.contains(&self.from) {
            None
        } else {
            self.mesh.nodes.lock().unwrap().get(address).cloned()
        };
        Box::pin(async move {
            match target {
                Some(q) => Ok(q.handle_peer(&message).await),
                None => Err(std::io::Error::other("unreachable")),
            }
        })
    }
}

async fn start(mesh: &Arc<Mesh>, node: i32, dir: &std::path::Path) -> Arc<Quorum> {
    let name = format!("node-{node}");
    let transport = Arc::new(MeshTransport {
        mesh: mesh.clone(),
        from: name.clone(),
    });
    let q = Arc::new(
        Quorum::open(config(node, &[1, 2, 3], dir), transport)
            .await
            .unwrap(),
    );
    mesh.nodes.lock().unwrap().insert(name, q.clone());
    q
}

async fn wait_for<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A leader that holds its leadership: one that some node names and that
/// can confirm it with a quorum (an election may still be settling when a
/// node first names one).
async fn settled_leader(nodes: &[Arc<Quorum>]) -> i32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let leader = nodes[0].wait_for_leader(left).await.unwrap();
        if let Some(lead) = nodes.iter().find(|q| q.node_id() == leader) {
            if lead.ensure_current().await.is_ok() {
                return leader;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader settled in 20s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_replicate_elect_and_refuse_a_minority() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mesh = Arc::new(Mesh::default());
    let mut nodes = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        nodes.push(start(&mesh, i as i32 + 1, d.path()).await);
    }
    let leader = settled_leader(&nodes).await;
    let lead = &nodes[leader as usize - 1];
    // Enough entries for snapshots and purges on every node.
    for n in 1..=6 {
        lead.propose(producer_ids(n * 1000)).await.unwrap();
    }
    wait_for("every node to apply", || {
        nodes.iter().all(|q| q.image().next_producer_id == 6000)
    })
    .await;
    let status = lead.status();
    assert!(status.is_leader);
    assert!(
        status.voters.iter().all(|v| v.log_end_offset > 0),
        "{status:?}"
    );

    // A follower asked to propose names the leader.
    let follower = nodes.iter().find(|q| q.node_id() != leader).unwrap();
    assert_eq!(
        follower.propose(producer_ids(1)).await,
        Err(QuorumError::NotLeader {
            leader: Some(leader)
        })
    );

    // The leader is cut off: it cannot commit, the others elect a new one.
    mesh.cut.lock().unwrap().insert(format!("node-{leader}"));
    let old = lead.clone();
    let minority = tokio::spawn(async move { old.propose(producer_ids(99_000)).await });
    let rest: Vec<_> = nodes
        .iter()
        .filter(|q| q.node_id() != leader)
        .cloned()
        .collect();
    wait_for("a new leader", || {
        rest[0].leader().is_some_and(|l| l != leader)
    })
    .await;
    let new_leader = settled_leader(&rest).await;
    let new_lead = &nodes[new_leader as usize - 1];
    new_lead.propose(producer_ids(7000)).await.unwrap();
    let outcome = minority.await.unwrap();
    assert!(outcome.is_err(), "a minority committed: {outcome:?}");

    // Healed, the old leader follows and converges.
    mesh.cut.lock().unwrap().clear();
    wait_for("the old leader to converge", || {
        nodes.iter().all(|q| q.image().next_producer_id == 7000)
    })
    .await;
    for q in &nodes {
        q.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_long_catches_up_from_a_snapshot() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mesh = Arc::new(Mesh::default());
    let mut nodes = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        nodes.push(start(&mesh, i as i32 + 1, d.path()).await);
    }
    let leader = settled_leader(&nodes).await;
    let down = if leader == 3 { 2 } else { 3 };
    let gone = nodes[down as usize - 1].clone();
    gone.shutdown().await;
    mesh.nodes.lock().unwrap().remove(&format!("node-{down}"));
    drop(gone);
    nodes.remove(down as usize - 1);
    let lead = nodes.iter().find(|q| q.node_id() == leader).unwrap();
    lead.ensure_current().await.unwrap();
    for n in 1..=20 {
        lead.propose(producer_ids(n * 1000)).await.unwrap();
    }
    wait_for("the leader to purge its log", || {
        lead.raft()
            .metrics()
            .borrow()
            .purged
            .is_some_and(|p| p.index > 5)
    })
    .await;
    let back = start(&mesh, down, dirs[down as usize - 1].path()).await;
    wait_for("the returning node to catch up", || {
        back.image().next_producer_id == 20_000
    })
    .await;
    assert!(
        back.raft().metrics().borrow().snapshot.is_some(),
        "it caught up from a snapshot"
    );
    back.shutdown().await;
    for q in &nodes {
        q.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_follows_the_voters_through_whole_images_and_proposals() {
    let mesh = Arc::new(Mesh::default());
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        nodes.push(start(&mesh, i as i32 + 1, d.path()).await);
    }
    let leader = settled_leader(&nodes).await;
    let lead = nodes
        .iter()
        .find(|q| q.node_id() == leader)
        .unwrap()
        .clone();
    lead.ensure_current().await.unwrap();
    // More proposals than the voters keep for observers: a new observer is
    // sent the whole image.
    for n in 1..=20 {
        lead.propose(producer_ids(n * 1000)).await.unwrap();
    }
    let observer_dir = tempfile::tempdir().unwrap();
    let transport = Arc::new(MeshTransport {
        mesh: mesh.clone(),
        from: "node-4".into(),
    });
    let observer = Quorum::open(config(4, &[1, 2, 3], observer_dir.path()), transport)
        .await
        .unwrap();
    assert!(!observer.is_voter());
    assert_eq!(
        observer
            .wait_for_leader(Duration::from_secs(10))
            .await
            .unwrap(),
        leader
    );
    wait_for("the observer to hold the whole image", || {
        observer.image().next_producer_id == 20_000
    })
    .await;
    assert_eq!(observer.image().offset, lead.image().offset);
    // Then each new proposal, in order, from the long poll.
    let mut images = observer.subscribe();
    for n in 21..=25 {
        lead.propose(producer_ids(n * 1000)).await.unwrap();
    }
    let seen = images
        .wait_for(|i| i.next_producer_id == 25_000)
        .await
        .unwrap()
        .offset;
    assert_eq!(seen, lead.image().offset);
    // It decides nothing, and says who does.
    assert_eq!(
        observer.propose(producer_ids(1)).await,
        Err(QuorumError::NotLeader {
            leader: Some(leader)
        })
    );
    // The leader lists it among the observers, at its log end.
    wait_for("the leader to list the observer", || {
        lead.status()
            .observers
            .iter()
            .any(|o| o.node_id == 4 && o.log_end_offset == lead.image().offset + 1)
    })
    .await;
    // The leader goes: the observer follows the next one.
    lead.shutdown().await;
    mesh.nodes.lock().unwrap().remove(&format!("node-{leader}"));
    let rest: Vec<_> = nodes
        .iter()
        .filter(|q| q.node_id() != leader)
        .cloned()
        .collect();
    let next = settled_leader(&rest).await;
    wait_for("the observer to follow the new leader", || {
        observer.leader() == Some(next)
    })
    .await;
    let new_lead = rest.iter().find(|q| q.node_id() == next).unwrap();
    new_lead.ensure_current().await.unwrap();
    new_lead.propose(producer_ids(30_000)).await.unwrap();
    wait_for("the observer to see the new leader's proposal", || {
        observer.image().next_producer_id == 30_000
    })
    .await;
    observer.shutdown().await;
    for q in &rest {
        q.shutdown().await;
    }
}
