package dev.strom.compat;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;

import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;

/**
 * A group member as an application runs one: its own thread polls (100 ms),
 * records what it got, and commits synchronously after every non-empty poll.
 * The rebalance callbacks are logged. Other threads read snapshots only (the
 * consumer itself is touched by the member's thread alone).
 */
final class Member {
    final String name;
    private final Properties props;
    private final String topic;
    private final Thread thread;
    private volatile boolean stopping;
    private volatile Throwable error;

    private final List<List<Object>> records = new ArrayList<>();   // [partition, offset, value]
    private final List<Map<String, Object>> events = new ArrayList<>();
    private Set<Integer> assignment = new TreeSet<>();
    private int generation = -1;
    private String memberId = "";
    private int commits;
    private final long started = System.nanoTime();

    Member(String name, Properties props, String topic) {
        this.name = name;
        this.props = props;
        this.topic = topic;
        this.thread = new Thread(this::run, "member-" + name);
        this.thread.setDaemon(true);
        this.thread.start();
    }

    private static List<Integer> partitions(Collection<TopicPartition> tps) {
        List<Integer> out = new ArrayList<>();
        for (TopicPartition tp : tps) out.add(tp.partition());
        out.sort(null);
        return out;
    }

    private synchronized void event(String kind, Collection<TopicPartition> tps) {
        events.add(Json.obj("event", kind, "partitions", partitions(tps),
                "at_ms", (System.nanoTime() - started) / 1_000_000));
    }

    private void run() {
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> tps) {
                    event("revoked", tps);
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> tps) {
                    event("assigned", tps);
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> tps) {
                    event("lost", tps);
                }
            });
            while (!stopping) {
                var batch = consumer.poll(Util.ms(100));
                synchronized (this) {
                    for (ConsumerRecord<String, String> r : batch) {
                        records.add(List.of(r.partition(), r.offset(), r.value()));
                    }
                }
                if (!batch.isEmpty()) {
                    consumer.commitSync();
                    synchronized (this) {
                        commits++;
                    }
                }
                Set<Integer> now = new TreeSet<>(partitions(consumer.assignment()));
                var md = consumer.groupMetadata();
                synchronized (this) {
                    assignment = now;
                    generation = md.generationId();
                    memberId = md.memberId();
                }
            }
        } catch (Throwable t) {
            error = t;
        }
    }

    synchronized Set<Integer> assignment() {
        return new TreeSet<>(assignment);
    }

    synchronized int recordCount() {
        return records.size();
    }

    synchronized int generation() {
        return generation;
    }

    synchronized int eventCount() {
        return events.size();
    }

    void checkAlive() {
        if (error != null) throw new IllegalStateException("member " + name + " failed", error);
        if (!thread.isAlive() && !stopping) throw new IllegalStateException("member " + name + " stopped");
    }

    /** Stops polling and closes the consumer (a dynamic member leaves the group;
     *  a static one stays in it, KIP-345). */
    void close() throws InterruptedException {
        stopping = true;
        thread.join(30_000);
        if (thread.isAlive()) throw new IllegalStateException("member " + name + " did not close within 30 s");
        if (error != null) throw new IllegalStateException("member " + name + " failed", error);
    }

    synchronized Map<String, Object> report() {
        return Json.obj("name", name, "records", new ArrayList<>(records), "events", new ArrayList<>(events),
                "assignment", new ArrayList<>(assignment), "generation", generation, "member_id", memberId,
                "commits", commits);
    }
}
