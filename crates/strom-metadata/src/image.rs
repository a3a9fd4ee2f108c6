use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::OrdMap;
use uuid::Uuid;

use crate::record::{ConfigResource, MetadataRecord};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerImage {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub incarnation_id: Option<Uuid>,
    /// The offset of the registration: heartbeats must name it.
    pub epoch: i64,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
}

impl BrokerImage {
    /// Unfenced and not shutting down: may lead and take new replicas.
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

/// `leader` of a partition that has none.
pub const NO_LEADER: i32 = -1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionImage {
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// [`NO_LEADER`] while no in-sync replica can lead.
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// A reassignment's replicas still to catch up, and those it drops
    /// once it completes (both empty when none runs).
    pub adding_replicas: Vec<i32>,
    pub removing_replicas: Vec<i32>,
}

impl PartitionImage {
    /// Whether a reassignment of the partition is under way.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The record that sets this partition of `topic_id` as it is.
    pub fn to_record(&self, topic_id: Uuid) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id,
            partition: self.partition,
            replicas: self.replicas.clone(),
            isr: self.isr.clone(),
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            partition_epoch: Some(self.partition_epoch),
            adding_replicas: self.adding_replicas.clone(),
            removing_replicas: self.removing_replicas.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub id: Uuid,
    pub name: String,
    pub partitions: BTreeMap<i32, PartitionImage>,
    /// Per-topic overrides only; defaults come from the broker config.
    pub configs: BTreeMap<String, String>,
}

impl TopicImage {
    pub fn is_internal(&self) -> bool {
        self.name.starts_with("__")
    }
}

/// What changed about one topic between two images.
#[derive(Debug, Clone, Copy)]
pub enum TopicChange<'a> {
    Added(&'a Arc<TopicImage>),
    Changed {
        old: &'a Arc<TopicImage>,
        new: &'a Arc<TopicImage>,
    },
    Removed(&'a Arc<TopicImage>),
}

/// The state of cluster metadata after the records up to `offset`.
///
/// Its maps are persistent (`imbl`): cloning an image is cheap, an image
/// made from another by a few records shares everything else with it, and
/// the topics that differ between two such images are found without
/// visiting the rest ([`MetadataImage::topic_changes`]), as Kafka's images
/// do. So the cost of a metadata change follows what changed, not what
/// exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    /// Offset of the last record applied; -1 for the empty image.
    pub offset: i64,
    topics: OrdMap<Uuid, Arc<TopicImage>>,
    names: OrdMap<String, Uuid>,
    /// Topic names by their form with '.' as '_': names that differ only
    /// there collide (in metric names), so a lookup must be cheap.
    folded: OrdMap<String, String>,
    brokers: BTreeMap<i32, BrokerImage>,
    broker_configs: BTreeMap<Option<i32>, BTreeMap<String, String>>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
    /// Recorded once, by the first registration.
    pub cluster_id: Option<String>,
}

impl MetadataImage {
    pub fn empty() -> Self {
        MetadataImage {
            offset: -1,
            ..Default::default()
        }
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.names.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicImage>> {
        self.topics.get(id)
    }

    /// An existing topic whose name differs from `name` only by '.' and
    /// '_' (Kafka refuses to create such a pair).
    pub fn colliding_topic(&self, name: &str) -> Option<&str> {
        self.folded
            .get(&fold(name))
            .map(String::as_str)
            .filter(|other| *other != name)
    }

    /// How many partitions have `node` among their replicas.
    pub fn partitions_on(&self, node: i32) -> usize {
        self.topics
            .values()
            .map(|t| {
                t.partitions
                    .values()
                    .filter(|p| p.replicas.contains(&node))
                    .count()
            })
            .sum()
    }

    /// Topics in no particular order (cheaper than [`MetadataImage::topics`]).
    pub fn topics_unordered(&self) -> impl Iterator<Item = &Arc<TopicImage>> {
        self.topics.values()
    }

    /// Topics sorted by name.
    pub fn topics(&self) -> Vec<&Arc<TopicImage>> {
        self.names
            .values()
            .filter_map(|id| self.topics.get(id))
            .collect()
    }

    /// The topics that differ between `older` and this image; visits only
    /// what the two do not share.
    pub fn topic_changes<'a>(
        &'a self,
        older: &'a MetadataImage,
    ) -> impl Iterator<Item = TopicChange<'a>> + 'a {
        older.topics.diff(&self.topics).map(|d| match d {
            imbl::ordmap::DiffItem::Add(_, t) => TopicChange::Added(t),
            imbl::ordmap::DiffItem::Update { old, new } => TopicChange::Changed {
                old: old.1,
                new: new.1,
            },
            imbl::ordmap::DiffItem::Remove(_, t) => TopicChange::Removed(t),
        })
    }

    pub fn brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values()
    }

    pub fn broker(&self, id: i32) -> Option<&BrokerImage> {
        self.brokers.get(&id)
    }

    /// Registered and unfenced: what clients are offered.
    pub fn unfenced_brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// The leader of partition `partition` of `topic` ([`NO_LEADER`] when
    /// it has none or is not known).
    pub fn leader(&self, topic: &str, partition: i32) -> i32 {
        self.topic(topic)
            .and_then(|t| t.partitions.get(&partition))
            .map_or(NO_LEADER, |p| p.leader)
    }

    /// Whether `id` is registered, unfenced and not shutting down.
    pub fn is_active(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(BrokerImage::is_active)
    }

    /// Dynamic broker config overrides for `node` (`None`: cluster default).
    pub fn broker_configs(&self, node: Option<i32>) -> Option<&BTreeMap<String, String>> {
        self.broker_configs.get(&node)
    }

    /// Records that rebuild this image from the empty one (what a snapshot
    /// of the metadata log holds): brokers, cluster and broker configs,
    /// the producer-id high mark, then each topic with its configs and
    /// partitions.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let cluster_id = self.cluster_id.iter().map(|c| MetadataRecord::ClusterId {
            cluster_id: c.clone(),
        });
        let mut out: Vec<MetadataRecord> = cluster_id
            .chain(self.brokers.values().flat_map(|b| {
                let registration = MetadataRecord::RegisterBroker {
                    node_id: b.node_id,
                    host: b.host.clone(),
                    port: b.port,
                    rack: b.rack.clone(),
                    incarnation_id: b.incarnation_id,
                    epoch: Some(b.epoch),
                    fenced: b.fenced,
                };
                let shutting_down =
                    b.in_controlled_shutdown
                        .then_some(MetadataRecord::BrokerShuttingDown {
                            node_id: b.node_id,
                            epoch: b.epoch,
                        });
                std::iter::once(registration).chain(shutting_down)
            }))
            .collect();
        for (node, configs) in &self.broker_configs {
            out.extend(configs.iter().map(|(k, v)| MetadataRecord::Config {
                resource: ConfigResource::Broker(*node),
                name: k.clone(),
                value: Some(v.clone()),
            }));
        }
        if self.next_producer_id > 0 {
            out.push(MetadataRecord::ProducerIds {
                node_id: -1,
                next_producer_id: self.next_producer_id,
            });
        }
        for t in self.topics.values() {
            out.push(MetadataRecord::Topic {
                name: t.name.clone(),
                topic_id: t.id,
            });
            out.extend(t.configs.iter().map(|(k, v)| MetadataRecord::Config {
                resource: ConfigResource::Topic(t.name.clone()),
                name: k.clone(),
                value: Some(v.clone()),
            }));
            out.extend(t.partitions.values().map(|p| p.to_record(t.id)));
        }
        out
    }

    /// Applies `records`, the last of which is at `offset`, giving a new
    /// image. Records about unknown topics are ignored: the controller never
    /// writes them, and replay must not fail on a record it cannot use.
    pub fn apply(&self, offset: i64, records: &[MetadataRecord]) -> MetadataImage {
        let mut next = self.clone();
        next.apply_mut(offset, records);
        next
    }

    /// Applies `records` to this image in place (as [`MetadataImage::apply`]
    /// does to a copy): how a log is replayed without a copy per entry.
    pub fn apply_mut(&mut self, offset: i64, records: &[MetadataRecord]) {
        for r in records {
            self.apply_one(offset, r);
        }
        self.offset = offset;
    }

    /// Applies `record`, held by the entry at `offset`.
    fn apply_one(&mut self, offset: i64, record: &MetadataRecord) {
        match record {
            MetadataRecord::ClusterId { cluster_id } => {
                self.cluster_id = Some(cluster_id.clone());
            }
            MetadataRecord::RegisterBroker {
                node_id,
                host,
                port,
                rack,
                incarnation_id,
                epoch,
                fenced,
            } => {
                self.brokers.insert(
                    *node_id,
                    BrokerImage {
                        node_id: *node_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        incarnation_id: *incarnation_id,
                        epoch: epoch.unwrap_or(offset),
                        fenced: *fenced,
                        in_controlled_shutdown: false,
                    },
                );
            }
            // A change for an older registration of the broker is stale.
            MetadataRecord::FenceBroker { node_id, epoch } => {
                if let Some(b) = self.brokers.get_mut(node_id).filter(|b| b.epoch == *epoch) {
                    b.fenced = true;
                }
            }
            MetadataRecord::UnfenceBroker { node_id, epoch } => {
                if let Some(b) = self.brokers.get_mut(node_id).filter(|b| b.epoch == *epoch) {
                    b.fenced = false;
                    b.in_controlled_shutdown = false;
                }
            }
            MetadataRecord::BrokerShuttingDown { node_id, epoch } => {
                if let Some(b) = self.brokers.get_mut(node_id).filter(|b| b.epoch == *epoch) {
                    b.in_controlled_shutdown = true;
                }
            }
            MetadataRecord::Topic { name, topic_id } => {
                self.names.insert(name.clone(), *topic_id);
                self.folded.insert(fold(name), name.clone());
                self.topics.insert(
                    *topic_id,
                    Arc::new(TopicImage {
                        id: *topic_id,
                        name: name.clone(),
                        partitions: BTreeMap::new(),
                        configs: BTreeMap::new(),
                    }),
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
                adding_replicas,
                removing_replicas,
            } => {
                if let Some(t) = self.topics.get_mut(topic_id) {
                    let isr = match partition_epoch {
                        None if isr.contains(leader) => vec![*leader],
                        _ => isr.clone(),
                    };
                    Arc::make_mut(t).partitions.insert(
                        *partition,
                        PartitionImage {
                            partition: *partition,
                            replicas: replicas.clone(),
                            isr,
                            leader: *leader,
                            leader_epoch: *leader_epoch,
                            partition_epoch: partition_epoch.unwrap_or(0),
                            adding_replicas: adding_replicas.clone(),
                            removing_replicas: removing_replicas.clone(),
                        },
                    );
                }
            }
            MetadataRecord::Config {
                resource,
                name,
                value,
            } => {
                let map = match resource {
                    ConfigResource::Topic(topic) => {
                        let Some(t) = self.names.get(topic).and_then(|id| self.topics.get_mut(id))
                        else {
                            return;
                        };
                        &mut Arc::make_mut(t).configs
                    }
                    ConfigResource::Broker(node) => self.broker_configs.entry(*node).or_default(),
                };
                match value {
                    Some(v) => map.insert(name.clone(), v.clone()),
                    None => map.remove(name),
                };
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(t) = self.topics.remove(topic_id) {
                    self.names.remove(&t.name);
                    self.folded.remove(&fold(&t.name));
                }
            }
            MetadataRecord::ProducerIds {
                next_producer_id, ..
            } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
        }
    }
}

/// A topic name with '.' as '_'.
fn fold(name: &str) -> String {
    name.replace('.', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, id: u128, partitions: i32) -> Vec<MetadataRecord> {
        let topic_id = Uuid::from_u128(id);
        let mut v = vec![MetadataRecord::Topic {
            name: name.into(),
            topic_id,
        }];
        v.extend((0..partitions).map(|p| MetadataRecord::Partition {
            topic_id,
            partition: p,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: Some(0),
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }));
        v
    }

    #[test]
    fn create_configure_delete_recreate() {
        let img = MetadataImage::empty().apply(0, &topic("a", 1, 2));
        let img = img.apply(
            1,
            &[MetadataRecord::Config {
                resource: ConfigResource::Topic("a".into()),
                name: "retention.ms".into(),
                value: Some("10".into()),
            }],
        );
        let a = img.topic("a").unwrap();
        assert_eq!(a.partitions.len(), 2);
        assert_eq!(a.configs["retention.ms"], "10");
        let img2 = img.apply(2, &[MetadataRecord::RemoveTopic { topic_id: a.id }]);
        assert!(img2.topic("a").is_none());
        assert!(img.topic("a").is_some(), "the old image is untouched");
        let img3 = img2.apply(3, &topic("a", 2, 1));
        assert_eq!(img3.topic("a").unwrap().id, Uuid::from_u128(2));
        assert!(img3.topic("a").unwrap().configs.is_empty());
        assert_eq!(img3.offset, 3);
    }

    #[test]
    fn colliding_names_are_found() {
        let img = MetadataImage::empty().apply(0, &topic("a.b", 1, 1));
        assert_eq!(img.colliding_topic("a_b"), Some("a.b"));
        assert_eq!(
            img.colliding_topic("a.b"),
            None,
            "the same name is no collision"
        );
        let id = img.topic("a.b").unwrap().id;
        let img = img.apply(1, &[MetadataRecord::RemoveTopic { topic_id: id }]);
        assert_eq!(img.colliding_topic("a_b"), None);
    }

    #[test]
    fn changes_between_images() {
        let a = MetadataImage::empty().apply(0, &topic("a", 1, 1));
        let b = a.apply(1, &topic("b", 2, 1));
        let id_a = a.topic("a").unwrap().id;
        let c = b.apply(
            2,
            &[
                MetadataRecord::Config {
                    resource: ConfigResource::Topic("b".into()),
                    name: "retention.ms".into(),
                    value: Some("1".into()),
                },
                MetadataRecord::RemoveTopic { topic_id: id_a },
            ],
        );
        let names = |from: &MetadataImage, to: &MetadataImage| -> Vec<String> {
            to.topic_changes(from)
                .map(|c| match c {
                    TopicChange::Added(t) => format!("+{}", t.name),
                    TopicChange::Changed { new, .. } => format!("~{}", new.name),
                    TopicChange::Removed(t) => format!("-{}", t.name),
                })
                .collect()
        };
        assert_eq!(names(&a, &b), ["+b"]);
        assert_eq!(names(&b, &c).len(), 2);
        assert!(names(&b, &c).contains(&"~b".to_string()));
        assert!(names(&b, &c).contains(&"-a".to_string()));
        assert!(names(&c, &c).is_empty());
    }

    #[test]
    fn unchanged_topics_are_shared() {
        let img = MetadataImage::empty().apply(0, &topic("a", 1, 1));
        let img2 = img.apply(1, &topic("b", 2, 1));
        assert!(Arc::ptr_eq(
            img.topic("a").unwrap(),
            img2.topic("a").unwrap()
        ));
    }

    #[test]
    fn an_image_is_rebuilt_from_its_records() {
        let mut img = MetadataImage::empty().apply(0, &topic("a", 1, 2));
        img.apply_mut(
            1,
            &[
                MetadataRecord::ClusterId {
                    cluster_id: "c".into(),
                },
                MetadataRecord::RegisterBroker {
                    node_id: 2,
                    host: "h".into(),
                    port: 1,
                    rack: Some("r".into()),
                    incarnation_id: Some(Uuid::from_u128(9)),
                    epoch: None,
                    fenced: true,
                },
                MetadataRecord::RegisterBroker {
                    node_id: 3,
                    host: "h".into(),
                    port: 2,
                    rack: None,
                    incarnation_id: None,
                    epoch: None,
                    fenced: true,
                },
                MetadataRecord::UnfenceBroker {
                    node_id: 2,
                    epoch: 1,
                },
                MetadataRecord::BrokerShuttingDown {
                    node_id: 3,
                    epoch: 1,
                },
                MetadataRecord::Config {
                    resource: ConfigResource::Topic("a".into()),
                    name: "retention.ms".into(),
                    value: Some("5".into()),
                },
                MetadataRecord::Config {
                    resource: ConfigResource::Broker(None),
                    name: "min.insync.replicas".into(),
                    value: Some("1".into()),
                },
                MetadataRecord::ProducerIds {
                    node_id: 2,
                    next_producer_id: 3000,
                },
            ],
        );
        img.apply_mut(2, &topic("b.c", 2, 1));
        assert!(img.is_active(2), "unfenced");
        assert!(!img.is_active(3), "shutting down");
        assert!(img.broker(3).unwrap().in_controlled_shutdown);
        let mut rebuilt = MetadataImage::empty();
        rebuilt.apply_mut(img.offset, &img.to_records());
        assert_eq!(rebuilt, img);
    }

    #[test]
    fn broker_changes_of_an_older_registration_are_ignored() {
        let register = |incarnation: u128| MetadataRecord::RegisterBroker {
            node_id: 1,
            host: "h".into(),
            port: 1,
            rack: None,
            incarnation_id: Some(Uuid::from_u128(incarnation)),
            epoch: None,
            fenced: true,
        };
        let mut img = MetadataImage::empty();
        img.apply_mut(4, &[register(1)]);
        img.apply_mut(
            5,
            &[MetadataRecord::UnfenceBroker {
                node_id: 1,
                epoch: 4,
            }],
        );
        assert!(img.is_active(1));
        img.apply_mut(9, &[register(2)]);
        assert_eq!(img.broker(1).unwrap().epoch, 9);
        assert!(
            img.broker(1).unwrap().fenced,
            "a new registration starts fenced"
        );
        img.apply_mut(
            10,
            &[MetadataRecord::UnfenceBroker {
                node_id: 1,
                epoch: 4,
            }],
        );
        assert!(img.broker(1).unwrap().fenced, "stale epoch");
        assert_eq!(img.unfenced_brokers().count(), 0);
    }

    #[test]
    fn a_registration_written_before_fencing_replays_fenced() {
        let old = br#"{"type":"register_broker","node_id":1,"host":"h","port":9092,"rack":null}"#;
        let r = MetadataRecord::from_json(old).unwrap();
        let img = MetadataImage::empty().apply(3, &[r]);
        let b = img.broker(1).unwrap();
        assert!(b.fenced && b.epoch == 3 && b.incarnation_id.is_none());
        // Before followers replicate, an old record's ISR of every replica
        // is the leader alone: only it holds the records.
        let topic = MetadataRecord::Topic {
            name: "t".into(),
            topic_id: Uuid::from_u128(1),
        };
        let old = br#"{"type":"partition","topic_id":"00000000-0000-0000-0000-000000000001","partition":0,"replicas":[1,2,3],"isr":[1,2,3],"leader":2,"leader_epoch":0}"#;
        let old = MetadataRecord::from_json(old).unwrap();
        assert!(matches!(
            old,
            MetadataRecord::Partition {
                partition_epoch: None,
                ..
            }
        ));
        let img = MetadataImage::empty().apply(4, &[topic, old]);
        let p = &img.topic("t").unwrap().partitions[&0];
        assert_eq!(
            (p.isr.as_slice(), p.leader, p.partition_epoch),
            (&[2][..], 2, 0)
        );
    }

    #[test]
    fn records_round_trip_as_json() {
        for r in topic("t", 7, 1) {
            assert_eq!(MetadataRecord::from_json(&r.to_json()).unwrap(), r);
        }
        assert!(MetadataRecord::from_json(b"{\"type\":\"nope\"}").is_err());
    }
}
