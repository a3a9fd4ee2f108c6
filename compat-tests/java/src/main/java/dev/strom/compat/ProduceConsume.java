package dev.strom.compat;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.internals.RecordHeaders;

/**
 * Scenario 1: the producer at its defaults (idempotent, acks=all) with one
 * compression codec sends records with keys (some null), values (some null or
 * empty), headers (none, one, repeated keys, empty and null values) and
 * explicit CreateTime timestamps to explicit partitions; a consumer (assign +
 * seekToBeginning) reads them back.
 *
 * Args: --bootstrap --topic --codec none|gzip|snappy|lz4|zstd [--per-partition 40] [--partitions 2]
 * Prints: sent (with the offsets the producer was given), received, end_offsets, producers
 * (DescribeProducers per partition), the producer's idempotence and acks settings.
 */
public final class ProduceConsume {
    public static void main(String[] argv) {
        Util.main(argv, ProduceConsume::run);
    }

    static String text(int i) {
        StringBuilder sb = new StringBuilder("value-" + i + ":");
        for (int j = 0; j <= i % 5; j++) sb.append(" the quick brown fox jumps over the lazy dog ").append(j);
        return sb.toString();
    }

    static Map<String, Object> run(Util.Args args) throws Exception {
        String bootstrap = args.get("bootstrap");
        String topic = args.get("topic");
        String codec = args.get("codec");
        int partitions = args.getInt("partitions", 2);
        int perPartition = args.getInt("per-partition", 40);
        int total = partitions * perPartition;

        try (Admin admin = Admin.create(Util.admin(bootstrap))) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
        }

        long base = System.currentTimeMillis() - 3_600_000L;
        List<Map<String, Object>> sent = new ArrayList<>();
        List<Future<RecordMetadata>> futures = new ArrayList<>();
        var props = Util.with(Util.producer(bootstrap, "strom-java-producer"),
                ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        // The configuration the producer runs with: its defaults, resolved.
        ProducerConfig resolved = new ProducerConfig(props);
        Map<String, Object> producerConfig = Json.obj(
                "enable.idempotence", resolved.getBoolean(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG),
                "acks", resolved.getString(ProducerConfig.ACKS_CONFIG),
                "linger.ms", resolved.getLong(ProducerConfig.LINGER_MS_CONFIG));
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < total; i++) {
                int p = i % partitions;
                String key = i % 7 == 3 ? null : "key-" + i;
                String value = i % 11 == 5 ? null : i % 13 == 6 ? "" : text(i);
                RecordHeaders headers = new RecordHeaders();
                if (i % 3 == 1) {
                    headers.add("h1", ("a" + i).getBytes(StandardCharsets.UTF_8));
                } else if (i % 3 == 2) {
                    headers.add("h1", "x".getBytes(StandardCharsets.UTF_8));
                    headers.add("h1", "y".getBytes(StandardCharsets.UTF_8));
                    headers.add("empty", new byte[0]);
                    headers.add("nullv", null);
                }
                long ts = base + i * 1000L;
                futures.add(producer.send(new ProducerRecord<>(topic, p, ts, key, value, headers)));
                sent.add(Json.obj("p", p, "k", key, "v", value, "ts", ts, "h", Util.headers(headers)));
            }
            producer.flush();
            for (int i = 0; i < total; i++) {
                RecordMetadata md = futures.get(i).get();
                sent.get(i).put("o", md.offset());
                sent.get(i).put("md_p", md.partition());
                sent.get(i).put("md_ts", md.timestamp());
            }
        }

        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < partitions; p++) tps.add(new TopicPartition(topic, p));
        List<Map<String, Object>> received = new ArrayList<>();
        Map<Integer, Long> endOffsets = new TreeMap<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(Util.consumer(bootstrap, "strom-java-consumer"))) {
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            long deadline = Util.deadline(Util.WAIT_MS);
            while (received.size() < total && !Util.deadlinePassed(deadline)) {
                for (ConsumerRecord<String, String> r : consumer.poll(Util.ms(200))) received.add(Util.record(r));
            }
            consumer.endOffsets(tps).forEach((tp, off) -> endOffsets.put(tp.partition(), off));
        }

        Map<Integer, Object> producers = new TreeMap<>();
        try (Admin admin = Admin.create(Util.admin(bootstrap))) {
            var states = admin.describeProducers(tps).all().get();
            states.forEach((tp, desc) -> {
                List<Object> list = new ArrayList<>();
                for (ProducerState s : desc.activeProducers()) {
                    list.add(Json.obj("producer_id", s.producerId(), "epoch", s.producerEpoch(),
                            "last_sequence", s.lastSequence(), "last_timestamp", s.lastTimestamp(),
                            "txn_start_offset", s.currentTransactionStartOffset().isPresent()
                                    ? s.currentTransactionStartOffset().getAsLong() : null));
                }
                producers.put(tp.partition(), list);
            });
        }
        return Json.obj("codec", codec, "producer_config", producerConfig, "sent", sent, "received", received,
                "end_offsets", endOffsets, "producers", producers);
    }
}
