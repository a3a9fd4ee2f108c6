package dev.strom.compat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.Stores;

/**
 * Kafka Streams' word count with {@code processing.guarantee=exactly_once_v2}:
 * lines from {@code --input} are split into words, re-keyed by word (through a
 * repartition topic), counted in a state store (an in-memory store, so every
 * start restores it from its changelog topic), and each new count goes to
 * {@code --output}. The record cache is off, so every word read gives one
 * output record, and a word's counts on the output run 1, 2, 3, ... exactly
 * when each line was processed exactly once.
 *
 * Runs the application until a read_committed consumer of {@code --output}
 * has seen {@code --expect} records in all, then closes it cleanly. With
 * {@code --halt-after N} it instead stops the JVM abruptly (no close, no
 * commit) once N output records are visible: what a crash does to an
 * application in the middle of its work.
 */
public final class WordCount {
    public static void main(String[] argv) {
        Util.main(argv, WordCount::run);
    }

    static Map<String, Object> run(Util.Args args) throws Exception {
        String bootstrap = args.get("bootstrap");
        String input = args.get("input");
        String output = args.get("output");
        int expect = args.getInt("expect", -1);
        int haltAfter = args.getInt("halt-after", -1);

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, args.get("app-id"));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.STATE_DIR_CONFIG, args.get("state-dir"));
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .flatMapValues(line -> Arrays.asList(line.toLowerCase(Locale.ROOT).split("\\W+")))
                .filter((key, word) -> !word.isEmpty())
                .groupBy((key, word) -> word, Grouped.with(Serdes.String(), Serdes.String()))
                .count(Materialized.<String, Long>as(Stores.inMemoryKeyValueStore("word-counts"))
                        .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()))
                .toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));

        AtomicReference<Throwable> failed = new AtomicReference<>();
        KafkaStreams streams = new KafkaStreams(builder.build(), p);
        streams.setUncaughtExceptionHandler(e -> {
            failed.compareAndSet(null, e);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
                    .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        long started = System.nanoTime();
        streams.start();

        Properties c = Util.consumer(bootstrap, "strom-java-wordcount-reader");
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class.getName());
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.remove(ConsumerConfig.GROUP_ID_CONFIG);
        int seen = 0;
        long deadline = System.currentTimeMillis() + 80_000;
        try (KafkaConsumer<String, Long> reader = new KafkaConsumer<>(c)) {
            List<TopicPartition> parts = new ArrayList<>();
            reader.partitionsFor(output).forEach(pi -> parts.add(new TopicPartition(output, pi.partition())));
            reader.assign(parts);
            reader.seekToBeginning(parts);
            int target = haltAfter >= 0 ? haltAfter : expect;
            while (seen < target) {
                if (failed.get() != null) throw new RuntimeException("the application failed", failed.get());
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("saw " + seen + " of " + target + " output records; application "
                            + streams.state());
                }
                for (ConsumerRecord<String, Long> r : reader.poll(Duration.ofMillis(200))) seen++;
            }
        }
        Map<String, Object> result = Json.obj("seen", seen,
                "seconds", Math.round((System.nanoTime() - started) / 1e7) / 100.0);
        if (haltAfter >= 0) {
            System.out.println(Json.write(result));
            System.out.flush();
            Runtime.getRuntime().halt(0);
        }
        streams.close(Duration.ofSeconds(30));
        result.put("state", streams.state().toString());
        return result;
    }
}
