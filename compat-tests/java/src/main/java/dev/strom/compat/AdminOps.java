package dev.strom.compat;

import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import java.util.regex.Pattern;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.clients.admin.FeatureMetadata;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.ListTransactionsOptions;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.quota.ClientQuotaFilter;

/**
 * Scenario 6: the AdminClient, one operation after another on one topic, one
 * group and one transactional id; each operation's outcome is recorded as
 * {"ok": what it returned} or {"error": the exception}, so that nothing stops
 * the run and every outcome can be compared with the reference Kafka's.
 * Broker-specific values (ids, ports) are reduced to their shape.
 *
 * Args: --bootstrap --topic --group
 */
public final class AdminOps {
    public static void main(String[] argv) {
        Util.main(argv, AdminOps::run);
    }

    static final Map<String, Object> ops = new TreeMap<>();
    static final List<String> order = new ArrayList<>();
    static final Pattern UUID_BASE64 = Pattern.compile("[A-Za-z0-9_-]{22}");

    static final DescribeConfigsOptions DOCS =
            new DescribeConfigsOptions().includeSynonyms(true).includeDocumentation(true);

    static Object op(String name, Callable<Object> body) {
        order.add(name);
        try {
            Object result = body.call();
            ops.put(name, Json.obj("ok", result));
            return result;
        } catch (Throwable t) {
            ops.put(name, Json.obj("error", Util.describe(t)));
            return null;
        }
    }

    static Map<String, Object> entry(ConfigEntry e) {
        List<Object> synonyms = new ArrayList<>();
        for (var s : e.synonyms()) synonyms.add(Json.list(s.name(), s.value(), s.source().name()));
        return Json.obj("value", e.value(), "source", e.source().name(), "read_only", e.isReadOnly(),
                "sensitive", e.isSensitive(), "type", e.type() == null ? null : e.type().name(), "synonyms", synonyms,
                "has_doc", e.documentation() != null && !e.documentation().isEmpty());
    }

    static Map<String, Object> configs(Config config, List<String> keys) {
        Map<String, Object> out = new TreeMap<>();
        for (String k : keys) {
            ConfigEntry e = config.get(k);
            out.put(k, e == null ? null : entry(e));
        }
        List<String> names = new ArrayList<>();
        for (ConfigEntry e : config.entries()) names.add(e.name());
        names.sort(null);
        return Json.obj("entries", out, "names", names);
    }

    static Object node(Node n, int port) {
        return n == null ? null : Json.obj("id", n.id(), "host", n.host(), "port_is_bootstrap", n.port() == port,
                "rack", n.rack());
    }

    static List<Integer> ids(List<Node> nodes) {
        List<Integer> out = new ArrayList<>();
        for (Node n : nodes) out.add(n.id());
        return out;
    }

    static Object describeTopic(Admin admin, String topic, int port) throws Exception {
        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
        List<Object> parts = new ArrayList<>();
        for (TopicPartitionInfo p : d.partitions()) {
            parts.add(Json.obj("partition", p.partition(), "leader", node(p.leader(), port),
                    "replicas", ids(p.replicas()), "isr", ids(p.isr())));
        }
        return Json.obj("name", d.name(), "internal", d.isInternal(),
                "topic_id_set", d.topicId() != null && !d.topicId().toString().equals("AAAAAAAAAAAAAAAAAAAAAA"),
                "partitions", parts);
    }

    static Map<String, Object> groupDescription(ConsumerGroupDescription d) {
        List<Object> members = new ArrayList<>();
        for (MemberDescription m : d.members()) {
            List<Object> parts = new ArrayList<>();
            m.assignment().topicPartitions().stream().sorted((x, y) -> Integer.compare(x.partition(), y.partition()))
                    .forEach(tp -> parts.add(List.of(tp.topic(), tp.partition())));
            members.add(Json.obj("client_id", m.clientId(), "host_set", m.host() != null && !m.host().isEmpty(),
                    "member_id_set", !m.consumerId().isEmpty(),
                    "group_instance_id", m.groupInstanceId().orElse(null), "assignment", parts));
        }
        return Json.obj("group_id", d.groupId(), "state", d.groupState().toString(), "type", d.type().toString(),
                "simple", d.isSimpleConsumerGroup(), "assignor", d.partitionAssignor(),
                "coordinator_id", d.coordinator() == null ? null : d.coordinator().id(), "members", members);
    }

    static Map<Object, Object> offsetsMap(Map<TopicPartition, OffsetAndMetadata> m) {
        Map<Object, Object> out = new TreeMap<>();
        m.forEach((tp, om) -> out.put(tp.topic() + "-" + tp.partition(),
                om == null ? null : Json.obj("offset", om.offset(), "metadata", om.metadata(),
                        "leader_epoch", om.leaderEpoch().orElse(null))));
        return out;
    }

    static Map<String, Object> run(Util.Args args) throws Exception {
        String bootstrap = args.get("bootstrap");
        int port = Integer.parseInt(bootstrap.substring(bootstrap.lastIndexOf(':') + 1));
        String topic = args.get("topic");
        String group = args.get("group");
        String txnId = "txn-admin-" + topic;
        String validateOnly = topic + "-validate-only";
        TopicPartition tp0 = new TopicPartition(topic, 0), tp1 = new TopicPartition(topic, 1);
        long base = System.currentTimeMillis() - 600_000L;

        try (Admin admin = Admin.create(Util.admin(bootstrap))) {
            op("createTopics", () -> {
                NewTopic nt = new NewTopic(topic, 3, (short) 1).configs(Map.of(
                        "retention.ms", "3600000", "max.message.bytes", "200000", "cleanup.policy", "delete"));
                CreateTopicsResult r = admin.createTopics(List.of(nt));
                r.all().get();
                return Json.obj("partitions", r.numPartitions(topic).get(),
                        "replication_factor", r.replicationFactor(topic).get(),
                        "topic_id_set", r.topicId(topic).get() != null,
                        "configs", configs(r.config(topic).get(),
                                List.of("retention.ms", "max.message.bytes", "cleanup.policy", "segment.bytes")));
            });
            op("createTopics_existing", () -> {
                admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
                return "created";
            });
            op("createTopics_validate_only", () -> {
                admin.createTopics(List.of(new NewTopic(validateOnly, 2, (short) 1)),
                        new CreateTopicsOptions().validateOnly(true)).all().get();
                return "validated";
            });
            op("createTopics_bad_config", () -> {
                admin.createTopics(List.of(new NewTopic(topic + "-bad", 1, (short) 1)
                        .configs(Map.of("retention.ms", "not-a-number")))).all().get();
                return "created";
            });
            op("createTopics_replication_factor_3", () -> {
                admin.createTopics(List.of(new NewTopic(topic + "-rf3", 1, (short) 3))).all().get();
                return "created";
            });
            op("listTopics", () -> {
                Set<String> names = admin.listTopics(new ListTopicsOptions().listInternal(false)).names().get();
                return Json.obj("has_topic", names.contains(topic), "has_validate_only", names.contains(validateOnly),
                        "has_internal", names.stream().anyMatch(n -> n.startsWith("__")));
            });
            op("describeTopics", () -> describeTopic(admin, topic, port));
            op("describeTopics_unknown", () -> describeTopic(admin, topic + "-missing", port));
            op("describeCluster", () -> {
                DescribeClusterResult r = admin.describeCluster();
                String id = r.clusterId().get();
                List<Object> nodes = new ArrayList<>();
                for (Node n : r.nodes().get()) nodes.add(node(n, port));
                return Json.obj("cluster_id_is_uuid", id != null && UUID_BASE64.matcher(id).matches(),
                        "controller", node(r.controller().get(), port), "nodes", nodes);
            });
            op("describeConfigs_topic", () -> {
                ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
                Config c = admin.describeConfigs(List.of(res), DOCS).all().get().get(res);
                return configs(c, List.of("retention.ms", "max.message.bytes", "cleanup.policy", "segment.bytes",
                        "min.insync.replicas", "compression.type", "message.timestamp.type", "retention.bytes",
                        "segment.ms", "unclean.leader.election.enable"));
            });
            op("describeConfigs_broker", () -> {
                ConfigResource res = new ConfigResource(ConfigResource.Type.BROKER, "1");
                Config c = admin.describeConfigs(List.of(res), DOCS).all().get().get(res);
                return configs(c, List.of("num.partitions", "default.replication.factor", "auto.create.topics.enable",
                        "message.max.bytes", "log.segment.bytes", "log.retention.ms", "log.retention.hours",
                        "offsets.topic.num.partitions", "node.id",
                        "log.dirs", "min.insync.replicas", "transaction.max.timeout.ms"));
            });
            op("describeConfigs_unknown_topic", () -> {
                ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic + "-missing");
                admin.describeConfigs(List.of(res)).all().get();
                return "described";
            });
            op("createPartitions", () -> {
                admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all().get();
                Util.waitFor("describeTopics to show 5 partitions", () -> {
                    try {
                        return admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic)
                                .partitions().size() == 5;
                    } catch (Exception e) {
                        return false;
                    }
                });
                return admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size();
            });
            op("createPartitions_decrease", () -> {
                admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(2))).all().get();
                return "changed";
            });

            // Records: 10 idempotent ones on partition 0 (record 4 has the
            // largest timestamp), and an open transaction on partition 1.
            try (KafkaProducer<String, String> p = new KafkaProducer<>(Util.producer(bootstrap, "strom-java-admin-producer"))) {
                for (int i = 0; i < 10; i++) {
                    long ts = i == 4 ? base + 100_000L : base + i * 1000L;
                    p.send(new ProducerRecord<>(topic, 0, ts, "k" + i, "v" + i));
                }
                p.flush();
            }
            KafkaProducer<String, String> txn = new KafkaProducer<>(Util.with(
                    Util.producer(bootstrap, "strom-java-admin-txn"),
                    ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId, ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 60000));
            try {
                txn.initTransactions();
                txn.beginTransaction();
                for (int i = 0; i < 3; i++) txn.send(new ProducerRecord<>(topic, 1, base + i, "t" + i, "t" + i)).get();

                op("listOffsets", () -> {
                    Map<String, OffsetSpec> specs = new java.util.LinkedHashMap<>();
                    specs.put("earliest", OffsetSpec.earliest());
                    specs.put("latest", OffsetSpec.latest());
                    specs.put("max_timestamp", OffsetSpec.maxTimestamp());
                    specs.put("for_timestamp_base_plus_5s", OffsetSpec.forTimestamp(base + 5000L));
                    specs.put("for_timestamp_after_all", OffsetSpec.forTimestamp(base + 1_000_000L));
                    specs.put("earliest_local", OffsetSpec.earliestLocal());
                    specs.put("latest_tiered", OffsetSpec.latestTiered());
                    Map<String, Object> out = new TreeMap<>();
                    for (var e : specs.entrySet()) {
                        try {
                            var info = admin.listOffsets(Map.of(tp0, e.getValue())).partitionResult(tp0).get();
                            out.put(e.getKey(), Json.obj("offset", info.offset(),
                                    "timestamp_from_base", info.timestamp() < 0 ? info.timestamp() : info.timestamp() - base,
                                    "leader_epoch", info.leaderEpoch().orElse(null)));
                        } catch (Exception ex) {
                            out.put(e.getKey(), Json.obj("error", Util.describe(ex)));
                        }
                    }
                    for (IsolationLevel iso : IsolationLevel.values()) {
                        var info = admin.listOffsets(Map.of(tp1, OffsetSpec.latest()), new ListOffsetsOptions(iso))
                                .partitionResult(tp1).get();
                        out.put("p1_latest_" + iso.toString().toLowerCase(), info.offset());
                    }
                    return out;
                });
                op("describeProducers", () -> {
                    Map<String, Object> out = new TreeMap<>();
                    admin.describeProducers(List.of(tp0, tp1)).all().get().forEach((tp, d) -> {
                        List<Object> list = new ArrayList<>();
                        for (ProducerState s : d.activeProducers()) {
                            list.add(Json.obj("epoch", s.producerEpoch(), "last_sequence", s.lastSequence(),
                                    "last_timestamp_set", s.lastTimestamp() > 0,
                                    "coordinator_epoch", s.coordinatorEpoch().isPresent() ? s.coordinatorEpoch().getAsInt() : null,
                                    "txn_start_offset", s.currentTransactionStartOffset().isPresent()
                                            ? s.currentTransactionStartOffset().getAsLong() : null));
                        }
                        out.put(String.valueOf(tp.partition()), list);
                    });
                    return out;
                });
                op("listTransactions", () -> listTransactions(admin, txnId, null));
                op("listTransactions_ongoing", () -> listTransactions(admin, txnId,
                        Set.of(org.apache.kafka.clients.admin.TransactionState.ONGOING)));
                op("describeTransactions", () -> describeTransaction(admin, txnId));
                txn.commitTransaction();
                op("describeTransactions_after_commit", () -> {
                    Util.waitFor("the transaction to be CompleteCommit", () -> {
                        try {
                            return admin.describeTransactions(List.of(txnId)).all().get().get(txnId).state()
                                    == org.apache.kafka.clients.admin.TransactionState.COMPLETE_COMMIT;
                        } catch (Exception e) {
                            return false;
                        }
                    });
                    return describeTransaction(admin, txnId);
                });
                op("listTransactions_ongoing_after_commit", () -> listTransactions(admin, txnId,
                        Set.of(org.apache.kafka.clients.admin.TransactionState.ONGOING)));
                op("describeTransactions_unknown", () -> describeTransaction(admin, txnId + "-missing"));
            } finally {
                txn.close(Util.ms(5000));
            }

            // A group with one member, then none.
            var cprops = Util.with(Util.consumer(bootstrap, "strom-java-admin-member"),
                    ConsumerConfig.GROUP_ID_CONFIG, group, ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cprops)) {
                c.subscribe(List.of(topic));
                int[] n = {0};
                Util.waitFor("the member to read partition 0's 10 records and partition 1's 3", () -> {
                    c.poll(Util.ms(100)).forEach(r -> n[0]++);
                    return n[0] >= 13;
                });
                c.commitSync();
                op("listConsumerGroups_active", () -> listConsumerGroups(admin, group));
                op("listGroups_active", () -> listGroups(admin, group));
                op("describeConsumerGroups_active", () ->
                        groupDescription(admin.describeConsumerGroups(List.of(group)).all().get().get(group)));
                op("deleteConsumerGroups_active", () -> {
                    admin.deleteConsumerGroups(List.of(group)).all().get();
                    return "deleted";
                });
                op("listConsumerGroupOffsets", () ->
                        offsetsMap(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get()));
            }
            op("describeConsumerGroups_empty", () -> {
                Util.waitFor("the group to be Empty", () -> {
                    try {
                        return admin.describeConsumerGroups(List.of(group)).all().get().get(group).members().isEmpty();
                    } catch (Exception e) {
                        return false;
                    }
                });
                return groupDescription(admin.describeConsumerGroups(List.of(group)).all().get().get(group));
            });
            op("alterConsumerGroupOffsets", () -> {
                admin.alterConsumerGroupOffsets(group, Map.of(tp0, new OffsetAndMetadata(3, "by-admin"))).all().get();
                return offsetsMap(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get());
            });
            op("deleteConsumerGroupOffsets", () -> {
                admin.deleteConsumerGroupOffsets(group, Set.of(tp0)).all().get();
                return offsetsMap(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get());
            });
            op("deleteConsumerGroups", () -> {
                admin.deleteConsumerGroups(List.of(group)).all().get();
                return "deleted";
            });
            op("listConsumerGroups_after_delete", () -> listConsumerGroups(admin, group));
            op("describeConsumerGroups_unknown", () ->
                    groupDescription(admin.describeConsumerGroups(List.of(group + "-missing")).all().get()
                            .get(group + "-missing")));
            op("deleteConsumerGroups_unknown", () -> {
                admin.deleteConsumerGroups(List.of(group + "-missing")).all().get();
                return "deleted";
            });

            // Configs, records, log dirs, ACLs and elections; after them, what
            // Strom does not serve yet (docs/compatibility.md, "ApiVersions ranges").
            ConfigResource topicRes = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            op("incrementalAlterConfigs", () -> {
                admin.incrementalAlterConfigs(Map.of(topicRes, List.of(new AlterConfigOp(
                        new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET)))).all().get();
                return admin.describeConfigs(List.of(topicRes)).all().get().get(topicRes).get("retention.ms").value();
            });
            op("deleteRecords", () -> {
                var r = admin.deleteRecords(Map.of(tp0, RecordsToDelete.beforeOffset(2))).lowWatermarks().get(tp0).get();
                return Json.obj("low_watermark", r.lowWatermark());
            });
            op("describeLogDirs", () -> {
                var all = admin.describeLogDirs(List.of(1)).allDescriptions().get();
                return Json.obj("brokers", all.keySet(), "dirs", all.get(1) == null ? null : all.get(1).size());
            });
            op("describeAcls", () -> admin.describeAcls(AclBindingFilter.ANY).values().get().size());
            op("electLeaders", () -> {
                Map<String, Object> out = new TreeMap<>();
                admin.electLeaders(ElectionType.PREFERRED, Set.of(tp0)).partitions().get().forEach((tp, err) ->
                        out.put(tp.toString(), err.isPresent() ? Util.describe(err.get()) : "elected"));
                return out;
            });
            op("describeFeatures", () -> {
                FeatureMetadata f = admin.describeFeatures().featureMetadata().get();
                Map<String, Object> fin = new TreeMap<>(), sup = new TreeMap<>();
                f.finalizedFeatures().forEach((k, v) -> fin.put(k, List.of(v.minVersionLevel(), v.maxVersionLevel())));
                f.supportedFeatures().forEach((k, v) -> sup.put(k, List.of(v.minVersion(), v.maxVersion())));
                return Json.obj("finalized", fin, "supported", sup,
                        "epoch", f.finalizedFeaturesEpoch().isPresent() ? f.finalizedFeaturesEpoch().get() : null);
            });
            op("listPartitionReassignments", () -> admin.listPartitionReassignments().reassignments().get().size());
            op("describeMetadataQuorum", () -> admin.describeMetadataQuorum().quorumInfo().get().leaderId());
            op("describeClientQuotas", () -> admin.describeClientQuotas(ClientQuotaFilter.all()).entities().get().size());
            op("describeUserScramCredentials", () -> admin.describeUserScramCredentials().all().get().size());

            op("deleteTopics", () -> {
                admin.deleteTopics(List.of(topic)).all().get();
                Util.waitFor("listTopics to drop the topic", () -> {
                    try {
                        return !admin.listTopics().names().get().contains(topic);
                    } catch (Exception e) {
                        return false;
                    }
                });
                return "deleted";
            });
            op("deleteTopics_unknown", () -> {
                admin.deleteTopics(List.of(topic + "-missing")).all().get();
                return "deleted";
            });
        }
        return Json.obj("order", order, "ops", ops);
    }

    static Object listTransactions(Admin admin, String txnId,
                                   Set<org.apache.kafka.clients.admin.TransactionState> states) throws Exception {
        ListTransactionsOptions o = new ListTransactionsOptions();
        if (states != null) o.filterStates(states);
        List<Object> out = new ArrayList<>();
        for (TransactionListing l : admin.listTransactions(o).all().get()) {
            if (l.transactionalId().equals(txnId)) out.add(Json.obj("id", l.transactionalId(), "state", l.state().toString()));
        }
        return out;
    }

    static Object describeTransaction(Admin admin, String txnId) throws Exception {
        TransactionDescription d = admin.describeTransactions(List.of(txnId)).all().get().get(txnId);
        List<Object> parts = new ArrayList<>();
        d.topicPartitions().stream().sorted((x, y) -> Integer.compare(x.partition(), y.partition()))
                .forEach(tp -> parts.add(tp.partition()));
        return Json.obj("state", d.state().toString(), "coordinator_id", d.coordinatorId(),
                "producer_epoch", d.producerEpoch(), "timeout_ms", d.transactionTimeoutMs(),
                "start_time_set", d.transactionStartTimeMs().isPresent(), "partitions", parts);
    }

    @SuppressWarnings("deprecation")
    static Object listConsumerGroups(Admin admin, String group) throws Exception {
        List<Object> out = new ArrayList<>();
        Collection<ConsumerGroupListing> all = admin.listConsumerGroups().all().get();
        for (ConsumerGroupListing l : all) {
            if (l.groupId().equals(group)) {
                out.add(Json.obj("id", l.groupId(), "state", l.groupState().map(Object::toString).orElse(null),
                        "type", l.type().map(Object::toString).orElse(null), "simple", l.isSimpleConsumerGroup()));
            }
        }
        return out;
    }

    static Object listGroups(Admin admin, String group) throws Exception {
        List<Object> out = new ArrayList<>();
        for (GroupListing l : admin.listGroups().all().get()) {
            if (l.groupId().equals(group)) {
                out.add(Json.obj("id", l.groupId(), "state", l.groupState().map(Object::toString).orElse(null),
                        "type", l.type().map(Object::toString).orElse(null),
                        "protocol", l.protocol()));
            }
        }
        return out;
    }
}
