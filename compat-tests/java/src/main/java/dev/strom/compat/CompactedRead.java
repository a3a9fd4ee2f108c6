package dev.strom.compat;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;

/**
 * A change-data-capture reader of a compacted topic: it reads partition 0
 * from the beginning to its end offset (offsets have gaps where the cleaner
 * removed records) and builds the table the changelog describes, as a Kafka
 * Streams restore or a CDC sink does: a tombstone (null value) deletes its key.
 *
 * Args: --bootstrap --topic
 * Prints: the beginning and end offsets, every record read [offset, key,
 * value], the position reached, and the table (key -> value).
 */
public final class CompactedRead {
    public static void main(String[] argv) {
        Util.main(argv, CompactedRead::run);
    }

    static Map<String, Object> run(Util.Args args) throws Exception {
        String bootstrap = args.get("bootstrap");
        TopicPartition tp = new TopicPartition(args.get("topic"), 0);
        Map<String, Object> out = new TreeMap<>();
        try (KafkaConsumer<String, String> c =
                     new KafkaConsumer<>(Util.consumer(bootstrap, "strom-java-compacted-read"))) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long begin = c.beginningOffsets(List.of(tp)).get(tp);
            long end = c.endOffsets(List.of(tp)).get(tp);
            List<Object> records = new ArrayList<>();
            Map<String, String> table = new TreeMap<>();
            long deadline = Util.deadline(Util.WAIT_MS);
            while (c.position(tp) < end) {
                if (Util.deadlinePassed(deadline)) {
                    throw new IllegalStateException("position " + c.position(tp) + " did not reach " + end);
                }
                for (ConsumerRecord<String, String> r : c.poll(Util.ms(200))) {
                    records.add(Json.list(r.offset(), r.key(), r.value()));
                    if (r.value() == null) table.remove(r.key());
                    else table.put(r.key(), r.value());
                }
            }
            out.put("beginning", begin);
            out.put("end", end);
            out.put("position", c.position(tp));
            out.put("records", records);
            out.put("table", new TreeMap<String, Object>(table));
        }
        return out;
    }
}
