"""An exactly-once read-process-write loop in its own process, so a test can
kill it (or the broker under it) with SIGKILL.

Usage: python txn_processor.py BOOTSTRAP GROUP INPUT OUTPUT TRANSACTIONAL_ID SESSION_TIMEOUT_MS [BATCH_DELAY_S]

A confluent-kafka consumer in group GROUP (subscribed to INPUT,
read_committed, no auto-commit) and a transactional producer. Every batch
becomes one transaction: each input record's value is written to OUTPUT as
b"out-" + value (same partition), the batch's next offsets are added with
send_offsets_to_transaction, and the transaction is committed.

On any error the open transaction is aborted (best effort) and both clients
are thrown away and rebuilt: the new producer's init_transactions fences the
old one and aborts whatever it left open, and the new consumer resumes from
the group's committed offsets. That is the standard recovery, and it is what
makes the output exactly-once if the broker keeps its promises.

Prints one line per event (for the test log); runs until killed, or
exits with STUCK_EXIT when no transaction has been committed and no client
rebuilt for STUCK_AFTER_S seconds: librdkafka 2.16 can block inside
send_offsets_to_transaction past its own timeout when the group
coordinator it cached was a broker that dropped out of metadata (fenced
while down) and was decommissioned (librdkafka issues #5511 and #5456);
Apache Kafka leaves fenced brokers out of metadata as Strom does, so a
cluster's broker kill can trigger it. A supervisor (the test) starts a new
instance, whose init_transactions fences this one's transaction.
Debugging: TXN_PROCESSOR_DEBUG=eos,protocol turns on librdkafka debug logs
for both clients; SIGUSR1 dumps the Python stack (where a call is stuck).
"""

import faulthandler
import os
import signal
import sys
import threading
import time

import confluent_kafka
from confluent_kafka import KafkaException, TopicPartition


STUCK_AFTER_S = 45.0  # longer than every call's own timeout (30 s)
STUCK_EXIT = 75

_progress = [time.monotonic()]


def log(line: str) -> None:
    print(f"{time.monotonic():.3f} {line}", flush=True)


def watchdog() -> None:
    while True:
        time.sleep(1)
        idle = time.monotonic() - _progress[0]
        if idle > STUCK_AFTER_S:
            log(f"stuck: no progress for {idle:.0f}s; the Python stack:")
            faulthandler.dump_traceback(all_threads=True)
            sys.stdout.flush()
            os._exit(STUCK_EXIT)


# librdkafka 2.16 starts a KIP-1102 re-bootstrap when every broker is down
# (as during a single-broker kill -9) and decommissions the brokers it had
# learned from metadata. A group coordinator cached on a decommissioned broker
# then makes send_offsets_to_transaction() hang past its own timeout, with the
# broker handle spinning in "Handle is terminating in state TRY_CONNECT"
# (librdkafka issue #5511). Not re-bootstrapping sidesteps that client bug.
NO_REBOOTSTRAP = {"metadata.recovery.strategy": "none"}


def build(bootstrap: str, group: str, topic: str, txn_id: str, session_ms: int):
    debug = {"debug": os.environ["TXN_PROCESSOR_DEBUG"]} if os.environ.get("TXN_PROCESSOR_DEBUG") else {}
    consumer = confluent_kafka.Consumer({
        **debug,
        **NO_REBOOTSTRAP,
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_ms,
        "heartbeat.interval.ms": max(100, session_ms // 6),
    })
    consumer.subscribe([topic])
    producer = confluent_kafka.Producer({
        **debug,
        **NO_REBOOTSTRAP,
        "bootstrap.servers": bootstrap,
        "transactional.id": txn_id,
        "transaction.timeout.ms": 10000,
        "linger.ms": 5,
    })
    producer.init_transactions(30)
    return consumer, producer


def process(consumer, producer, output: str, delay: float) -> None:
    while True:
        msgs = consumer.consume(num_messages=10, timeout=0.5)
        batch = []
        for m in msgs:
            err = m.error()
            if err is None:
                batch.append(m)
            elif err.fatal():
                raise KafkaException(err)
            else:
                log(f"consumer error {err}")
        if not batch:
            continue
        producer.begin_transaction()
        next_offsets: dict[int, int] = {}
        for m in batch:
            producer.produce(output, key=m.key(), value=b"out-" + m.value(), partition=m.partition())
            next_offsets[m.partition()] = m.offset() + 1
        if delay:
            time.sleep(delay)  # widen the window in which a kill lands inside a transaction
        offsets = [TopicPartition(batch[0].topic(), p, o) for p, o in sorted(next_offsets.items())]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        _progress[0] = time.monotonic()
        log("committed " + " ".join(f"{tp.partition}:{tp.offset}" for tp in offsets))


def main() -> None:
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints where it is stuck
    bootstrap, group, input_topic, output_topic, txn_id, session = sys.argv[1:7]
    delay = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
    threading.Thread(target=watchdog, daemon=True).start()
    while True:
        consumer = producer = None
        try:
            consumer, producer = build(bootstrap, group, input_topic, txn_id, int(session))
            _progress[0] = time.monotonic()
            log("started")
            process(consumer, producer, output_topic, delay)
        except KafkaException as exc:
            log(f"restarting after {exc!r}")
            if producer is not None:
                try:
                    producer.abort_transaction(5)
                except KafkaException:
                    pass
        finally:
            if consumer is not None:
                consumer.close()
            del producer
        time.sleep(0.2)


if __name__ == "__main__":
    main()
