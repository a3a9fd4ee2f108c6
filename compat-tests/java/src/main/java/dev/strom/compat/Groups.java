package dev.strom.compat;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;

/**
 * Scenarios 2 and 3: two members of one group over a 4-partition topic.
 *
 * --mode split-restart: members A and B split the partitions (2 + 2); 200
 * records are read once between them, committed (commitSync after each
 * poll); B closes (leaves), A takes all four and reads 100 more; a new member
 * B2 joins, the split comes back, 100 more are read. B2 must start at the
 * committed offsets (it sees none of the first 300 records).
 *
 * --mode static (classic only): A and B have group.instance.id; B closes
 * (a static member stays in the group) and B2 rejoins with B's instance id
 * within the session timeout: it must get B's partitions back at the same
 * generation, with no rebalance callback on A; 100 more records are read.
 *
 * Args: --bootstrap --topic --group --protocol classic|consumer
 *       [--assignor range|cooperative-sticky] [--mode split-restart|static]
 * Prints: members' records and rebalance events, phases, group descriptions,
 * committed and end offsets.
 */
public final class Groups {
    static final int PARTITIONS = 4;

    public static void main(String[] argv) {
        Util.main(argv, Groups::run);
    }

    private static String bootstrap, topic, group, protocol, assignor;
    private static final Map<String, Object> out = new TreeMap<>();
    private static final List<Object> phases = new ArrayList<>();

    static Properties memberProps(String clientId, String instanceId) {
        Properties p = Util.with(Util.consumer(bootstrap, clientId),
                ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        if (protocol.equals("classic")) {
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
            p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
                    assignor.equals("range") ? RangeAssignor.class.getName()
                            : CooperativeStickyAssignor.class.getName());
        }
        if (instanceId != null) p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instanceId);
        return p;
    }

    static void produce(String phase, int count) throws Exception {
        try (KafkaProducer<String, String> producer =
                     new KafkaProducer<>(Util.producer(bootstrap, "strom-java-groups-producer"))) {
            for (int i = 0; i < count; i++) {
                producer.send(new ProducerRecord<>(topic, i % PARTITIONS, "k" + i, phase + "-" + i));
            }
            producer.flush();
        }
    }

    static void waitSplit(String what, Member a, Member b) throws InterruptedException {
        Util.waitFor(what, () -> {
            a.checkAlive();
            b.checkAlive();
            Set<Integer> pa = a.assignment(), pb = b.assignment();
            Set<Integer> both = new HashSet<>(pa);
            both.retainAll(pb);
            return pa.size() == 2 && pb.size() == 2 && both.isEmpty();
        });
    }

    static void waitRecords(String what, int total, Member... members) throws InterruptedException {
        Util.waitFor(what, () -> {
            int n = 0;
            for (Member m : members) {
                m.checkAlive();
                n += m.recordCount();
            }
            return n >= total;
        });
    }

    static Map<Integer, Long> committed(Admin admin) throws Exception {
        Map<Integer, Long> out = new TreeMap<>();
        Map<TopicPartition, OffsetAndMetadata> offsets =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        offsets.forEach((tp, om) -> out.put(tp.partition(), om == null ? null : om.offset()));
        return out;
    }

    static Map<Integer, Long> endOffsets(Admin admin) throws Exception {
        Map<TopicPartition, org.apache.kafka.clients.admin.OffsetSpec> req = new TreeMap<>(
                (x, y) -> Integer.compare(x.partition(), y.partition()));
        for (int p = 0; p < PARTITIONS; p++) {
            req.put(new TopicPartition(topic, p), org.apache.kafka.clients.admin.OffsetSpec.latest());
        }
        Map<Integer, Long> out = new TreeMap<>();
        admin.listOffsets(req).all().get().forEach((tp, info) -> out.put(tp.partition(), info.offset()));
        return out;
    }

    /** Until every partition's committed offset is its end offset. */
    static void waitCommitted(String what, Admin admin) throws Exception {
        Map<Integer, Long> end = endOffsets(admin);
        Util.waitFor(what, () -> {
            try {
                return committed(admin).equals(end);
            } catch (Exception e) {
                return false;
            }
        });
    }

    static Map<String, Object> describe(Admin admin) throws Exception {
        ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
        List<Object> members = new ArrayList<>();
        for (MemberDescription m : d.members()) {
            List<Integer> parts = new ArrayList<>();
            m.assignment().topicPartitions().forEach(tp -> parts.add(tp.partition()));
            parts.sort(null);
            members.add(Json.obj("client_id", m.clientId(), "group_instance_id", m.groupInstanceId().orElse(null),
                    "assignment", parts));
        }
        members.sort((x, y) -> String.valueOf(((Map<?, ?>) x).get("client_id"))
                .compareTo(String.valueOf(((Map<?, ?>) y).get("client_id"))));
        return Json.obj("state", d.groupState().toString(), "type", d.type().toString(),
                "assignor", d.partitionAssignor(), "members", members,
                "group_epoch", d.groupEpoch().orElse(null), "target_assignment_epoch",
                d.targetAssignmentEpoch().orElse(null));
    }

    static void phase(String name, Member... members) {
        Map<String, Object> p = Json.obj("phase", name);
        for (Member m : members) {
            p.put(m.name, Json.obj("assignment", new ArrayList<>(m.assignment()), "generation", m.generation(),
                    "events", m.eventCount(), "records", m.recordCount()));
        }
        phases.add(p);
    }

    static Map<String, Object> run(Util.Args args) throws Exception {
        bootstrap = args.get("bootstrap");
        topic = args.get("topic");
        group = args.get("group");
        protocol = args.get("protocol");
        assignor = args.get("assignor", "range");
        String mode = args.get("mode", "split-restart");
        out.put("protocol", protocol);
        out.put("assignor", protocol.equals("classic") ? assignor : null);
        out.put("mode", mode);
        try (Admin admin = Admin.create(Util.admin(bootstrap))) {
            admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get();
            if (mode.equals("static")) {
                runStatic(admin);
            } else {
                runSplitRestart(admin);
            }
            out.put("committed", committed(admin));
            out.put("end_offsets", endOffsets(admin));
        }
        out.put("phases", phases);
        return out;
    }

    static void runSplitRestart(Admin admin) throws Exception {
        Member a = new Member("a", memberProps("member-a", null), topic);
        Member b = new Member("b", memberProps("member-b", null), topic);
        waitSplit("A and B to own two partitions each", a, b);
        phase("split", a, b);
        produce("p1", 200);
        waitRecords("the first 200 records", 200, a, b);
        waitCommitted("the first 200 records' offsets to be committed", admin);
        phase("p1-read", a, b);
        out.put("describe_stable", describe(admin));

        b.close();
        Util.waitFor("A to own all four partitions once B left", () -> {
            a.checkAlive();
            return a.assignment().size() == PARTITIONS;
        });
        phase("b-left", a);
        produce("p2", 100);
        waitRecords("the next 100 records, by A alone", 300, a, b);
        waitCommitted("A's commits of the next 100", admin);
        phase("p2-read", a);

        Member b2 = new Member("b2", memberProps("member-b2", null), topic);
        waitSplit("A and the restarted B2 to own two partitions each", a, b2);
        phase("split-again", a, b2);
        produce("p3", 100);
        waitRecords("the last 100 records", 400, a, b, b2);
        waitCommitted("the last 100 records' offsets to be committed", admin);
        phase("p3-read", a, b2);
        b2.close();
        a.close();
        out.put("members", List.of(a.report(), b.report(), b2.report()));
    }

    static void runStatic(Admin admin) throws Exception {
        Member a = new Member("a", memberProps("member-a", "instance-a"), topic);
        Member b = new Member("b", memberProps("member-b", "instance-b"), topic);
        waitSplit("static A and B to own two partitions each", a, b);
        produce("p1", 100);
        waitRecords("the first 100 records", 100, a, b);
        waitCommitted("the first 100 records' offsets to be committed", admin);
        phase("p1-read", a, b);
        out.put("describe_stable", describe(admin));
        int aEvents = a.eventCount();
        int generation = a.generation();

        b.close();   // a static member does not leave: no LeaveGroup
        out.put("describe_after_b_closed", describe(admin));
        Member b2 = new Member("b2", memberProps("member-b2", "instance-b"), topic);
        Util.waitFor("B2 (instance-b again) to get partitions", () -> {
            b2.checkAlive();
            return !b2.assignment().isEmpty();
        });
        phase("b2-rejoined", a, b2);
        produce("p2", 100);
        waitRecords("the next 100 records", 200, a, b, b2);
        waitCommitted("the next 100 records' offsets to be committed", admin);
        phase("p2-read", a, b2);
        out.put("describe_after_rejoin", describe(admin));
        out.put("a_events_before_rejoin", aEvents);
        out.put("generation_before_rejoin", generation);
        b2.close();
        a.close();
        out.put("members", List.of(a.report(), b.report(), b2.report()));
    }
}
