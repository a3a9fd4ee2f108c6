package dev.strom.compat;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;

/**
 * Scenario 5: the transactional producer.
 *
 * --mode visibility: committed, aborted, committed, then an open transaction
 *   on a 2-partition topic; what read_committed and read_uncommitted
 *   consumers see, and their end offsets (the LSO), before and after the open
 *   one commits.
 * --mode rpw: read-process-write: a read_committed group consumer reads 30
 *   input records, a transactional producer writes one output each and
 *   commits the consumer's offsets in the transaction (sendOffsetsToTransaction);
 *   then 10 more are processed in a transaction that aborts (group offsets
 *   must not move, outputs must stay invisible), rewound to the committed
 *   offsets and processed again in one that commits.
 * --mode fencing: producer 1 opens a transaction; producer 2 with the same
 *   transactional.id initializes (fencing 1 and aborting its transaction); 1's
 *   next send and commit fail; 2 commits.
 *
 * Args: --bootstrap --topic --mode [--group]
 */
public final class Transactions {
    public static void main(String[] argv) {
        Util.main(argv, Transactions::run);
    }

    static String bootstrap;

    static Map<String, Object> run(Util.Args args) throws Exception {
        bootstrap = args.get("bootstrap");
        String topic = args.get("topic");
        return switch (args.get("mode")) {
            case "visibility" -> visibility(topic);
            case "rpw" -> readProcessWrite(topic, args.get("group"));
            case "fencing" -> fencing(topic);
            default -> throw new IllegalArgumentException("unknown --mode " + args.get("mode"));
        };
    }

    static void createTopics(int partitions, String... topics) throws Exception {
        try (Admin admin = Admin.create(Util.admin(bootstrap))) {
            List<NewTopic> list = new ArrayList<>();
            for (String t : topics) list.add(new NewTopic(t, partitions, (short) 1));
            admin.createTopics(list).all().get();
        }
    }

    static KafkaProducer<String, String> txProducer(String txnId, String clientId) {
        Properties p = Util.with(Util.producer(bootstrap, clientId),
                ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId,
                ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 60000);
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<String, String> reader(String isolation) {
        return new KafkaConsumer<>(Util.with(Util.consumer(bootstrap, "strom-java-txn-reader-" + isolation),
                ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation));
    }

    /** Reads every partition of ``topic`` from the beginning until the
     *  consumer's position reaches its end offset (the LSO under
     *  read_committed) on all of them; returns the values in offset order per partition. */
    static Map<String, Object> readAll(String isolation, String topic, int partitions) throws Exception {
        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < partitions; p++) tps.add(new TopicPartition(topic, p));
        List<Object> values = new ArrayList<>();
        Map<Integer, Long> end = new TreeMap<>(), positions = new TreeMap<>();
        try (KafkaConsumer<String, String> c = reader(isolation)) {
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = c.endOffsets(tps);
            long deadline = Util.deadline(Util.WAIT_MS);
            while (true) {
                boolean done = true;
                for (TopicPartition tp : tps) done &= c.position(tp) >= ends.get(tp);
                if (done) break;
                if (Util.deadlinePassed(deadline)) {
                    throw new IllegalStateException(isolation + " consumer did not reach " + ends + " within "
                            + Util.WAIT_MS + " ms");
                }
                for (ConsumerRecord<String, String> r : c.poll(Util.ms(200))) {
                    values.add(List.of(r.partition(), r.offset(), r.value()));
                }
            }
            ends.forEach((tp, o) -> end.put(tp.partition(), o));
            for (TopicPartition tp : tps) positions.put(tp.partition(), c.position(tp));
        }
        return Json.obj("values", values, "end_offsets", end, "positions", positions);
    }

    static void sendAll(KafkaProducer<String, String> p, String topic, int partitions, String prefix, int n)
            throws Exception {
        List<java.util.concurrent.Future<?>> fs = new ArrayList<>();
        for (int i = 0; i < n; i++) fs.add(p.send(new ProducerRecord<>(topic, i % partitions, "k", prefix + "-" + i)));
        for (var f : fs) f.get();
    }

    static Map<String, Object> visibility(String topic) throws Exception {
        createTopics(2, topic);
        Map<String, Object> out = new TreeMap<>();
        try (KafkaProducer<String, String> p = txProducer("txn-vis-" + topic, "strom-java-txn")) {
            p.initTransactions();
            p.beginTransaction();
            sendAll(p, topic, 2, "c1", 10);
            p.commitTransaction();
            p.beginTransaction();
            sendAll(p, topic, 2, "a", 10);
            p.abortTransaction();
            p.beginTransaction();
            sendAll(p, topic, 2, "c2", 10);
            p.commitTransaction();
            p.beginTransaction();
            sendAll(p, topic, 2, "open", 6);
            out.put("open_committed", readAll("read_committed", topic, 2));
            out.put("open_uncommitted", readAll("read_uncommitted", topic, 2));
            p.commitTransaction();
        }
        out.put("final_committed", readAll("read_committed", topic, 2));
        out.put("final_uncommitted", readAll("read_uncommitted", topic, 2));
        return out;
    }

    static Map<String, Object> readProcessWrite(String topic, String group) throws Exception {
        String in = topic + "-in", outTopic = topic + "-out";
        createTopics(2, in, outTopic);
        try (KafkaProducer<String, String> plain = new KafkaProducer<>(Util.producer(bootstrap, "strom-java-input"))) {
            sendAll(plain, in, 2, "in", 30);
        }
        Map<String, Object> out = new TreeMap<>();
        Properties cp = Util.with(Util.consumer(bootstrap, "strom-java-rpw"),
                ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic",
                ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed",
                ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 10000,
                ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 500);
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp);
             KafkaProducer<String, String> p = txProducer("txn-rpw-" + topic, "strom-java-rpw-producer");
             Admin admin = Admin.create(Util.admin(bootstrap))) {
            p.initTransactions();
            c.subscribe(List.of(in));
            int processed = 0, transactions = 0;
            long deadline = Util.deadline(Util.WAIT_MS);
            while (processed < 30) {
                if (Util.deadlinePassed(deadline)) throw new IllegalStateException("processed only " + processed + " of 30");
                var batch = c.poll(Util.ms(200));
                if (batch.isEmpty()) continue;
                p.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                for (ConsumerRecord<String, String> r : batch) {
                    p.send(new ProducerRecord<>(outTopic, r.partition(), r.key(), "out-" + r.value()));
                    offsets.put(new TopicPartition(in, r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    processed++;
                }
                p.sendOffsetsToTransaction(offsets, c.groupMetadata());
                p.commitTransaction();
                transactions++;
            }
            out.put("transactions", transactions);
            out.put("committed_after_30", groupOffsets(admin, group));

            try (KafkaProducer<String, String> plain = new KafkaProducer<>(Util.producer(bootstrap, "strom-java-input"))) {
                sendAll(plain, in, 2, "more", 10);
            }
            // 10 more, processed in a transaction that aborts.
            List<ConsumerRecord<String, String>> got = new ArrayList<>();
            deadline = Util.deadline(Util.WAIT_MS);
            while (got.size() < 10) {
                if (Util.deadlinePassed(deadline)) throw new IllegalStateException("read only " + got.size() + " of 10");
                c.poll(Util.ms(200)).forEach(got::add);
            }
            p.beginTransaction();
            Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
            for (ConsumerRecord<String, String> r : got) {
                p.send(new ProducerRecord<>(outTopic, r.partition(), r.key(), "out-" + r.value() + "#aborted"));
                offsets.put(new TopicPartition(in, r.partition()), new OffsetAndMetadata(r.offset() + 1));
            }
            p.sendOffsetsToTransaction(offsets, c.groupMetadata());
            p.flush();   // the aborted outputs reach the log (abortTransaction drops unsent ones)
            p.abortTransaction();
            out.put("committed_after_abort", groupOffsets(admin, group));

            // Rewind to the committed offsets, as an application does after an abort.
            var committed = c.committed(c.assignment());
            committed.forEach((tp, om) -> c.seek(tp, om == null ? 0 : om.offset()));
            got.clear();
            deadline = Util.deadline(Util.WAIT_MS);
            while (got.size() < 10) {
                if (Util.deadlinePassed(deadline)) throw new IllegalStateException("re-read only " + got.size() + " of 10");
                c.poll(Util.ms(200)).forEach(got::add);
            }
            out.put("reread", got.stream().map(ConsumerRecord::value).sorted().toList());
            p.beginTransaction();
            offsets.clear();
            for (ConsumerRecord<String, String> r : got) {
                p.send(new ProducerRecord<>(outTopic, r.partition(), r.key(), "out-" + r.value()));
                offsets.put(new TopicPartition(in, r.partition()), new OffsetAndMetadata(r.offset() + 1));
            }
            p.sendOffsetsToTransaction(offsets, c.groupMetadata());
            p.commitTransaction();
            out.put("committed_final", groupOffsets(admin, group));
        }
        out.put("output_committed", readAll("read_committed", outTopic, 2));
        out.put("output_uncommitted_count",
                ((List<?>) readAll("read_uncommitted", outTopic, 2).get("values")).size());
        return out;
    }

    static Map<Integer, Long> groupOffsets(Admin admin, String group) throws Exception {
        Map<Integer, Long> out = new TreeMap<>();
        admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get()
                .forEach((tp, om) -> out.put(tp.partition(), om == null ? null : om.offset()));
        return out;
    }

    /** Producer 1 opens a transaction and writes a record; producer 2 with the
     *  same transactional.id initializes (bumping the epoch, aborting 1's
     *  transaction). Then 1 either commits at once (EndTxn with the old epoch)
     *  or first sends again (Produce with the old epoch), then commits. */
    static Map<String, Object> fencing(String topic) throws Exception {
        createTopics(1, topic);
        Map<String, Object> out = new TreeMap<>();
        for (String variant : List.of("commit", "send")) {
            String txnId = "txn-fence-" + variant + "-" + topic;
            Map<String, Object> v = new TreeMap<>();
            KafkaProducer<String, String> first = txProducer(txnId, "strom-java-first-" + variant);
            try {
                first.initTransactions();
                first.beginTransaction();
                first.send(new ProducerRecord<>(topic, 0, "k", variant + "-first-a")).get();
                try (KafkaProducer<String, String> second = txProducer(txnId, "strom-java-second-" + variant)) {
                    second.initTransactions();   // fences the first, aborting its transaction
                    if (variant.equals("send")) {
                        try {
                            first.send(new ProducerRecord<>(topic, 0, "k", variant + "-first-b")).get();
                            v.put("send", "ok");
                        } catch (Exception e) {
                            v.put("send", Util.describe(e));
                        }
                    }
                    try {
                        first.commitTransaction();
                        v.put("commit", "ok");
                    } catch (Exception e) {
                        v.put("commit", Util.describe(e));
                    }
                    try {
                        first.beginTransaction();
                        v.put("begin_again", "ok");
                    } catch (Exception e) {
                        v.put("begin_again", Util.describe(e));
                    }
                    second.beginTransaction();
                    second.send(new ProducerRecord<>(topic, 0, "k", variant + "-second-a")).get();
                    second.commitTransaction();
                }
            } finally {
                first.close(Util.ms(5000));
            }
            out.put(variant, v);
        }
        out.put("committed", readAll("read_committed", topic, 1));
        out.put("uncommitted", readAll("read_uncommitted", topic, 1));
        return out;
    }
}
