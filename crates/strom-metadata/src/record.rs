use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a config record applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name")]
pub enum ConfigResource {
    Topic(String),
    /// A broker by node id; `None` is the cluster-wide default.
    Broker(Option<i32>),
}

/// One change to cluster metadata. Records are the unit of the metadata
/// log; their serialised form (JSON, one record per entry) is what the log
/// stores, so variants and fields may be added but not renamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// The cluster's id, recorded once by the first quorum (or carried
    /// from a single node's `meta.properties`).
    ClusterId {
        cluster_id: String,
    },
    /// A broker's registration: a new one (a new incarnation, a new
    /// address) replaces the old. A broker registers fenced and is
    /// unfenced once it has caught up with the metadata log.
    RegisterBroker {
        node_id: i32,
        host: String,
        port: i32,
        rack: Option<String>,
        /// Random per broker process start.
        #[serde(default)]
        incarnation_id: Option<Uuid>,
        /// The broker epoch; `None` (as the controller writes it): the
        /// offset of the entry that holds this record.
        #[serde(default)]
        epoch: Option<i64>,
        #[serde(default = "registered_fenced")]
        fenced: bool,
    },
    /// The broker's session ended (heartbeats stopped, or it shut down):
    /// it is offered to no client and leads nothing.
    FenceBroker {
        node_id: i32,
        epoch: i64,
    },
    /// The broker caught up with the metadata log and serves.
    UnfenceBroker {
        node_id: i32,
        epoch: i64,
    },
    /// The broker asked to shut down: its leaderships move away, and it is
    /// chosen for no new ones.
    BrokerShuttingDown {
        node_id: i32,
        epoch: i64,
    },
    Topic {
        name: String,
        topic_id: Uuid,
    },
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        leader: i32,
        leader_epoch: i32,
        /// Bumped by every change to the partition's replicas, ISR or
        /// leader (what AlterPartition requests are checked against).
        /// Absent from records written before it existed, whose ISR named
        /// every replica though only the leader held the records: those
        /// replay with the leader alone in the ISR.
        #[serde(default)]
        partition_epoch: Option<i32>,
        /// While a reassignment runs: the replicas it adds (in `replicas`
        /// already, catching up) and those it will drop once every
        /// target replica is in sync.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        adding_replicas: Vec<i32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removing_replicas: Vec<i32>,
    },
    /// Sets (`Some`) or removes (`None`) a config override.
    Config {
        resource: ConfigResource,
        name: String,
        value: Option<String>,
    },
    RemoveTopic {
        topic_id: Uuid,
    },
    /// A block of producer ids handed to `node_id`: every id below
    /// `next_producer_id` has been given out.
    ProducerIds {
        node_id: i32,
        next_producer_id: i64,
    },
}

fn registered_fenced() -> bool {
    true
}

impl MetadataRecord {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records always serialise")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
