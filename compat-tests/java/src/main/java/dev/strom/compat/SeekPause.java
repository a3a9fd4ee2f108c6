package dev.strom.compat;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;

/**
 * Scenario 4: seek, offsetsForTimes, pause/resume on a consumer without a
 * group. Partition 0 gets 100 records stamped base + i s, partition 1 gets 50.
 *
 * Args: --bootstrap --topic
 * Prints: beginning/end offsets, offsetsForTimes answers, positions and first
 * records after each kind of seek, and what arrived while partition 0 was paused.
 */
public final class SeekPause {
    public static void main(String[] argv) {
        Util.main(argv, SeekPause::run);
    }

    static final int P0 = 100, P1 = 50;

    static ConsumerRecord<String, String> first(KafkaConsumer<String, String> c, TopicPartition tp)
            throws InterruptedException {
        long deadline = Util.deadline(Util.WAIT_MS);
        while (!Util.deadlinePassed(deadline)) {
            for (ConsumerRecord<String, String> r : c.poll(Util.ms(200))) {
                if (r.partition() == tp.partition()) return r;
            }
        }
        throw new IllegalStateException("no record from " + tp + " within " + Util.WAIT_MS + " ms");
    }

    static Object oat(OffsetAndTimestamp o) {
        return o == null ? null : Json.obj("offset", o.offset(), "timestamp", o.timestamp());
    }

    static Map<String, Object> run(Util.Args args) throws Exception {
        String bootstrap = args.get("bootstrap");
        String topic = args.get("topic");
        TopicPartition tp0 = new TopicPartition(topic, 0), tp1 = new TopicPartition(topic, 1);
        try (Admin admin = Admin.create(Util.admin(bootstrap))) {
            admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get();
        }
        long base = System.currentTimeMillis() - 600_000L;
        try (KafkaProducer<String, String> producer =
                     new KafkaProducer<>(Util.producer(bootstrap, "strom-java-seek-producer"))) {
            for (int i = 0; i < P0; i++) producer.send(new ProducerRecord<>(topic, 0, base + i * 1000L, "k", "p0-" + i));
            for (int i = 0; i < P1; i++) producer.send(new ProducerRecord<>(topic, 1, base + i * 1000L, "k", "p1-" + i));
            producer.flush();
        }

        Map<String, Object> out = new TreeMap<>();
        out.put("base", base);
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(Util.consumer(bootstrap, "strom-java-seek"))) {
            List<TopicPartition> both = List.of(tp0, tp1);
            out.put("beginning", Json.list(c.beginningOffsets(both).get(tp0), c.beginningOffsets(both).get(tp1)));
            out.put("end", Json.list(c.endOffsets(both).get(tp0), c.endOffsets(both).get(tp1)));

            Map<String, Object> times = new TreeMap<>();
            times.put("p0_exact_37", oat(c.offsetsForTimes(Map.of(tp0, base + 37_000L)).get(tp0)));
            times.put("p0_between_36_37", oat(c.offsetsForTimes(Map.of(tp0, base + 36_500L)).get(tp0)));
            times.put("p0_before_all", oat(c.offsetsForTimes(Map.of(tp0, base - 1L)).get(tp0)));
            times.put("p0_after_all", oat(c.offsetsForTimes(Map.of(tp0, base + 1_000_000L)).get(tp0)));
            Map<TopicPartition, Long> two = new HashMap<>();
            two.put(tp0, base + 99_000L);
            two.put(tp1, base + 49_000L);
            var twoAnswer = c.offsetsForTimes(two);
            times.put("both_last", Json.list(oat(twoAnswer.get(tp0)), oat(twoAnswer.get(tp1))));
            out.put("offsets_for_times", times);

            // Seeks on partition 0 alone.
            c.assign(List.of(tp0));
            Map<String, Object> seeks = new TreeMap<>();
            c.seek(tp0, 50);
            seeks.put("seek_50_position", c.position(tp0));
            var r = first(c, tp0);
            seeks.put("seek_50_first", Json.list(r.offset(), r.value()));
            c.seekToEnd(List.of(tp0));
            seeks.put("seek_to_end_position", c.position(tp0));
            c.seekToBeginning(List.of(tp0));
            seeks.put("seek_to_beginning_position", c.position(tp0));
            r = first(c, tp0);
            seeks.put("seek_to_beginning_first", Json.list(r.offset(), r.value()));
            OffsetAndTimestamp byTime = c.offsetsForTimes(Map.of(tp0, base + 72_000L)).get(tp0);
            c.seek(tp0, byTime.offset());
            r = first(c, tp0);
            seeks.put("seek_by_time_72_first", Json.list(r.offset(), r.value(), r.timestamp() - base));
            c.seek(tp0, 97);
            List<Object> tail = new ArrayList<>();
            long deadline = Util.deadline(Util.WAIT_MS);
            while (tail.size() < 3 && !Util.deadlinePassed(deadline)) {
                for (var rec : c.poll(Util.ms(200))) tail.add(rec.offset());
            }
            seeks.put("seek_97_then", tail);
            seeks.put("position_at_end", c.position(tp0));
            out.put("seeks", seeks);

            // Pause partition 0, read partition 1 to its end, then resume.
            c.assign(both);
            c.seekToBeginning(both);
            c.pause(List.of(tp0));
            Set<TopicPartition> paused = c.paused();
            out.put("paused", paused.stream().map(TopicPartition::partition).sorted().toList());
            int[] whilePaused = new int[2];
            deadline = Util.deadline(Util.WAIT_MS);
            while (whilePaused[1] < P1 && !Util.deadlinePassed(deadline)) {
                for (var rec : c.poll(Util.ms(200))) whilePaused[rec.partition()]++;
            }
            out.put("while_paused", Json.list(whilePaused[0], whilePaused[1]));
            out.put("position_p0_while_paused", c.position(tp0));
            c.resume(List.of(tp0));
            out.put("paused_after_resume", c.paused().size());
            int[] afterResume = new int[2];
            List<Long> p0Offsets = new ArrayList<>();
            deadline = Util.deadline(Util.WAIT_MS);
            while (afterResume[0] < P0 && !Util.deadlinePassed(deadline)) {
                for (var rec : c.poll(Util.ms(200))) {
                    afterResume[rec.partition()]++;
                    if (rec.partition() == 0) p0Offsets.add(rec.offset());
                }
            }
            out.put("after_resume", Json.list(afterResume[0], afterResume[1]));
            boolean dense = true;
            for (int i = 0; i < p0Offsets.size(); i++) dense &= p0Offsets.get(i) == i;
            out.put("after_resume_p0_dense", dense);
        }
        return out;
    }
}
