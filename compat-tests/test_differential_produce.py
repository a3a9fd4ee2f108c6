"""Differential: hostile produced batches, Strom against the reference Kafka.

Each case of ``kafka_wire.produce_cases()`` (a well-formed batch, and the
batches of issue 8 whose header or records lie) goes on the raw wire, in
Produce v9 (v3 for zstd before v7), to a fresh one-partition topic on each
broker. What is compared: the partition's error code and, from v8, the
batch indexes of ``record_errors``. After a refusal the partition's latest
offset (ListOffsets) must not have moved on either broker (nothing of the
batch stored); after an acceptance it must have moved by the batch's count.

Where the two answer differently the case must be a row of
docs/compatibility.md, section "Produce validation", with both answers as
observed; a row whose case now answers the same fails too, so the table
stays the true list. A failure prints the row to add, change or remove.
"""

from __future__ import annotations

import time

import pytest

import kafka_wire as kw
import reference_kafka as rk
from helpers import unique_name

SECTION = "Produce validation"
CASES = kw.produce_cases()
CASE_IDS = [c.id for c in CASES]
READY_TIMEOUT = 30.0


def describe(version: int, resp: kw.ProducePartitionResponse) -> str:
    """An answer as the table's cells write it: ``NAME (code)``, then the
    record_errors batch indexes (v8+) if any."""
    text = f"{kw.error_name(resp.error_code)} ({resp.error_code})"
    if version >= 8 and resp.record_errors:
        text += ", record_errors " + str(sorted(i for i, _ in resp.record_errors)).replace(" ", "")
    return text


def wait_partition_ready(host: str, port: int, topic: str) -> int:
    """Wait until the partition's leader answers ListOffsets; its latest offset."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        try:
            code, _, offset = kw.list_offsets(host, port, topic)
            if code == kw.ERROR_NONE:
                return offset
            last = kw.error_name(code)
        except (OSError, kw.ProtocolError) as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise AssertionError(f"{topic} on {host}:{port} not ready within {READY_TIMEOUT}s (last: {last})")


def create(host: str, port: int, topic: str, configs: dict[str, str]) -> int:
    result = kw.create_topics(host, port, [(topic, 1, configs)])
    code, message = result[topic]
    assert code == kw.ERROR_NONE, f"CreateTopics {topic} {configs} on {host}:{port}: {kw.error_name(code)} {message}"
    return wait_partition_ready(host, port, topic)


def produce_case(host: str, port: int, case: kw.ProduceCase, records: bytes) -> tuple[str, str]:
    """Create the case's topic, send its batch, check what was stored; the
    answer as a table cell, and the broker's error message (for failures)."""
    topic = unique_name(f"diff-produce-{case.id}")
    before = create(host, port, topic, case.configs)
    resp = kw.produce(host, port, topic, records, version=case.version)
    after = kw.latest_offset(host, port, topic)
    if resp.error_code == kw.ERROR_NONE:
        count = kw.BatchHeader(*kw.BATCH_HEADER.unpack_from(records)).last_offset_delta + 1
        assert after == before + count, (
            f"{host}:{port} accepted {case.id} at offset {resp.base_offset}, but the latest offset went "
            f"{before} -> {after}, not by the batch's {count} records")
    else:
        assert after == before, (
            f"{host}:{port} refused {case.id} ({kw.error_name(resp.error_code)}) yet the latest offset "
            f"moved {before} -> {after}: something of the batch was stored")
    return describe(case.version, resp), f"{resp.error_message!r} {resp.record_errors!r}"


# ---------------------------------------------------------------------------


def test_table_header_and_ids(kafka_ref):
    rk.check_case_table(SECTION, kafka_ref.version, CASE_IDS, "kafka_wire.produce_cases()")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_produce_validation_differs_only_as_listed(broker, kafka_ref, case):
    records = case.build()
    kafka, kafka_detail = produce_case(kafka_ref.host, kafka_ref.port, case, records)
    strom, strom_detail = produce_case(broker.host, broker.port, case, records)
    assert broker.is_running(), "strom died"
    rk.check_case(SECTION, case.id, case.what, kafka, strom,
                  f"(Kafka said {kafka_detail}; Strom said {strom_detail})")
