"""A consumer-group member in its own process, so a test can SIGSTOP it.

Usage: python group_member.py BOOTSTRAP GROUP TOPIC SESSION_TIMEOUT_MS
Prints "assigned <n>" whenever its assignment changes; polls until killed.
"""

import sys

import confluent_kafka


def main() -> None:
    bootstrap, group, topic, session = sys.argv[1:5]
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "session.timeout.ms": int(session),
        "heartbeat.interval.ms": 500,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([topic])
    last = None
    while True:
        consumer.poll(0.1)
        n = len(consumer.assignment())
        if n != last:
            print(f"assigned {n}", flush=True)
            last = n


if __name__ == "__main__":
    main()
