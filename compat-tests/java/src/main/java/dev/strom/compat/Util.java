package dev.strom.compat;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.function.BooleanSupplier;

import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/** What every program shares: arguments, the JSON line, waiting, client configs. */
public final class Util {
    private Util() {}

    /** How long any one wait for a condition may take. */
    public static final long WAIT_MS = 30_000;

    /** {@code --name value} pairs. */
    public static final class Args {
        private final Map<String, String> values = new HashMap<>();

        Args(String[] argv) {
            for (int i = 0; i < argv.length; i++) {
                if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                    throw new IllegalArgumentException("expected --name value pairs, got " + Arrays.toString(argv));
                }
                values.put(argv[i].substring(2), argv[++i]);
            }
        }

        public String get(String name) {
            String v = values.get(name);
            if (v == null) throw new IllegalArgumentException("missing --" + name);
            return v;
        }

        public String get(String name, String dflt) {
            return values.getOrDefault(name, dflt);
        }

        public int getInt(String name, int dflt) {
            String v = values.get(name);
            return v == null ? dflt : Integer.parseInt(v);
        }

        public boolean has(String name) {
            return values.containsKey(name);
        }
    }

    public interface Body {
        Map<String, Object> run(Args args) throws Exception;
    }

    /** Runs a program: prints its result as one JSON line and exits 0; on an
     *  exception the line is {"fatal": ...} (stack trace on stderr), exit 1.
     *  System.exit, so that no client thread keeps the JVM alive. */
    public static void main(String[] argv, Body body) {
        int code;
        try {
            Map<String, Object> result = body.run(new Args(argv));
            System.out.println(Json.write(result));
            code = 0;
        } catch (Throwable t) {
            t.printStackTrace();
            System.out.println(Json.write(Json.obj("fatal", describe(t))));
            code = 1;
        }
        System.out.flush();
        System.exit(code);
    }

    /** Polls {@code condition} every 20 ms until it holds or WAIT_MS pass. */
    public static void waitFor(String what, BooleanSupplier condition) throws InterruptedException {
        waitFor(what, WAIT_MS, condition);
    }

    public static void waitFor(String what, long timeoutMs, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + timeoutMs * 1_000_000;
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("timed out after " + timeoutMs + " ms waiting for " + what);
            }
            Thread.sleep(20);
        }
    }

    public static boolean deadlinePassed(long deadlineNanos) {
        return System.nanoTime() > deadlineNanos;
    }

    public static long deadline(long timeoutMs) {
        return System.nanoTime() + timeoutMs * 1_000_000;
    }

    /** The exception a caller meets: ExecutionException / CompletionException
     *  unwrapped; its class, message, and the chain of causes' classes. */
    public static Map<String, Object> describe(Throwable t) {
        Throwable e = t;
        while ((e instanceof ExecutionException || e instanceof CompletionException) && e.getCause() != null) {
            e = e.getCause();
        }
        List<String> chain = new ArrayList<>();
        for (Throwable c = e.getCause(); c != null && chain.size() < 8; c = c.getCause()) {
            chain.add(c.getClass().getName() + ": " + c.getMessage());
        }
        StringWriter trace = new StringWriter();
        if (!(e instanceof org.apache.kafka.common.errors.ApiException)) {
            e.printStackTrace(new PrintWriter(trace));
        }
        Map<String, Object> out = Json.obj("class", e.getClass().getSimpleName(), "message", e.getMessage(),
                "causes", chain);
        if (trace.getBuffer().length() > 0) out.put("trace", trace.toString().lines().limit(12).toList());
        return out;
    }

    // -- client configurations ------------------------------------------------

    public static Properties common(String bootstrap, String clientId) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, clientId);
        return p;
    }

    /** A producer at its defaults (idempotent, acks=all) apart from the serializers. */
    public static Properties producer(String bootstrap, String clientId) {
        Properties p = common(bootstrap, clientId);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        return p;
    }

    /** A consumer without a group (assign), reading from the beginning. */
    public static Properties consumer(String bootstrap, String clientId) {
        Properties p = common(bootstrap, clientId);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        return p;
    }

    public static Properties admin(String bootstrap) {
        Properties p = common(bootstrap, "strom-java-admin");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        return p;
    }

    public static Properties with(Properties base, Object... keyValues) {
        Properties p = new Properties();
        p.putAll(base);
        for (int i = 0; i < keyValues.length; i += 2) p.put(keyValues[i], String.valueOf(keyValues[i + 1]));
        return p;
    }

    // -- records --------------------------------------------------------------

    public static List<Object> headers(Iterable<Header> headers) {
        List<Object> out = new ArrayList<>();
        for (Header h : headers) {
            out.add(Json.list(h.key(), h.value() == null ? null : new String(h.value(), StandardCharsets.UTF_8)));
        }
        return out;
    }

    /** A consumed record as the tests compare it. */
    public static Map<String, Object> record(ConsumerRecord<String, String> r) {
        return Json.obj("p", r.partition(), "o", r.offset(), "k", r.key(), "v", r.value(),
                "ts", r.timestamp(), "tt", r.timestampType().name, "h", headers(r.headers()),
                "leader_epoch", r.leaderEpoch().orElse(null));
    }

    public static Duration ms(long ms) {
        return Duration.ofMillis(ms);
    }
}
