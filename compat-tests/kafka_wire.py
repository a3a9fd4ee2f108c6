"""Hand-rolled Kafka wire protocol pieces, encoded with ``struct``.

Used by the broker fixture's readiness probe, by the malformed-input tests and
by tests that need to look at exactly what the broker stores or advertises
(ApiVersions ranges, record-batch compression attributes), without going
through a client library that would hide it.

Only the handful of messages those tests need are implemented:

* ApiVersions v0..v4 requests and responses (v0, v1-v2, v3+ flexible)
* Fetch v12 and v13 (flexible; topic names, then ids) with the fetch
  session fields (KIP-227), for the fetch-session differential.
* Fetch v4 request/response (non-flexible, topic names) and the
  RecordBatch v2 header, to read a partition's batches as stored; a
  streaming reader of Fetch v4 answers that keeps only batch headers.
* For the hostile-input and produce-differential tests: Produce v3..v12,
  ListOffsets v1, CreateTopics v4, CreatePartitions v1, DeleteTopics v3,
  Metadata v4; record batches and records built field by field (any header
  value, CRC32C recomputed or not, the four codecs as Kafka clients frame
  them, zstd and gzip bombs); and the catalogue of hostile produced batches,
  ``produce_cases()``.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Callable

API_KEY_FETCH = 1
API_KEY_API_VERSIONS = 18

ERROR_NONE = 0
ERROR_UNSUPPORTED_VERSION = 35

CLIENT_ID = "strom-compat"

# RecordBatch attributes, bits 0-2.
CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


class ProtocolError(Exception):
    """The peer sent something that does not parse as the expected response."""


# --------------------------------------------------------------------------
# primitive encoders


def int16(v: int) -> bytes:
    return struct.pack(">h", v)


def int32(v: int) -> bytes:
    return struct.pack(">i", v)


def int64(v: int) -> bytes:
    return struct.pack(">q", v)


def nullable_string(s: str | None) -> bytes:
    if s is None:
        return int16(-1)
    raw = s.encode()
    return int16(len(raw)) + raw


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def compact_string(s: str) -> bytes:
    raw = s.encode()
    return uvarint(len(raw) + 1) + raw


EMPTY_TAGGED_FIELDS = uvarint(0)


def request_header_v1(api_key: int, api_version: int, correlation_id: int,
                      client_id: str | None = CLIENT_ID) -> bytes:
    """RequestHeader v1: api_key, api_version, correlation_id, client_id."""
    return int16(api_key) + int16(api_version) + int32(correlation_id) + nullable_string(client_id)


def request_header_v2(api_key: int, api_version: int, correlation_id: int,
                      client_id: str | None = CLIENT_ID) -> bytes:
    """RequestHeader v2 (flexible requests): v1 plus an empty tagged-field section."""
    return request_header_v1(api_key, api_version, correlation_id, client_id) + EMPTY_TAGGED_FIELDS


def frame(payload: bytes) -> bytes:
    """Prefix a request with its int32 size."""
    return int32(len(payload)) + payload


# --------------------------------------------------------------------------
# primitive decoder


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolError(f"truncated: wanted {n} bytes at {self.pos}, have {len(self.data) - self.pos}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int8(self) -> int:
        return struct.unpack(">b", self._take(1))[0]

    def int16(self) -> int:
        return struct.unpack(">h", self._take(2))[0]

    def int32(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def int64(self) -> int:
        return struct.unpack(">q", self._take(8))[0]

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            b = self._take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 35:
                raise ProtocolError("uvarint too long")

    def nullable_string(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self._take(n).decode()

    def nullable_bytes(self) -> bytes | None:
        n = self.int32()
        return None if n < 0 else self._take(n)

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._take(self.uvarint())

    def remaining(self) -> int:
        return len(self.data) - self.pos


# --------------------------------------------------------------------------
# socket helpers


def connect(host: str, port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> bytes:
    """Read one size-prefixed response; raises ConnectionError if the peer closes."""
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    if size < 0 or size > 256 * 1024 * 1024:
        raise ProtocolError(f"implausible response size {size}")
    return recv_exact(sock, size)


def wait_for_close(sock: socket.socket, timeout: float) -> bool:
    """True if the peer closes (FIN or RST) within ``timeout`` seconds.

    Any bytes the peer sends before closing are read and discarded; a peer
    that keeps the connection open past the deadline yields False.
    """
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            return True
        if not chunk:
            return True


# --------------------------------------------------------------------------
# ApiVersions


@dataclass
class ApiVersionsResponse:
    correlation_id: int
    error_code: int
    api_keys: dict[int, tuple[int, int]]  # api_key -> (min_version, max_version)
    throttle_time_ms: int | None = None


def api_versions_request(correlation_id: int, version: int = 0,
                         client_id: str | None = CLIENT_ID) -> bytes:
    """A framed ApiVersions request of the given version.

    v0-v2 have an empty body and header v1; v3+ are flexible: header v2 and a
    body carrying the client software name/version (KIP-511).
    """
    if version < 3:
        return frame(request_header_v1(API_KEY_API_VERSIONS, version, correlation_id, client_id))
    body = compact_string("strom-compat-tests") + compact_string("1.0") + EMPTY_TAGGED_FIELDS
    return frame(request_header_v2(API_KEY_API_VERSIONS, version, correlation_id, client_id) + body)


def parse_api_versions_v0(payload: bytes) -> ApiVersionsResponse:
    """Strictly parse a v0 ApiVersions response (header v0 + v0 body, nothing after)."""
    return _parse_api_versions_classic(payload, with_throttle=False)


def parse_api_versions_v1(payload: bytes) -> ApiVersionsResponse:
    """Strictly parse a v1/v2 ApiVersions response (v0 plus throttle_time_ms)."""
    return _parse_api_versions_classic(payload, with_throttle=True)


def _parse_api_versions_classic(payload: bytes, with_throttle: bool) -> ApiVersionsResponse:
    r = Reader(payload)
    correlation_id = r.int32()
    error_code = r.int16()
    count = r.int32()
    if count < 0:
        raise ProtocolError(f"negative api_keys array length {count}")
    keys: dict[int, tuple[int, int]] = {}
    for _ in range(count):
        key, lo, hi = r.int16(), r.int16(), r.int16()
        if key in keys:
            raise ProtocolError(f"api key {key} listed twice")
        keys[key] = (lo, hi)
    throttle = r.int32() if with_throttle else None
    if r.remaining():
        raise ProtocolError(f"{r.remaining()} trailing bytes after an ApiVersions response")
    return ApiVersionsResponse(correlation_id, error_code, keys, throttle)


def parse_api_versions_flexible(payload: bytes) -> ApiVersionsResponse:
    """Parse a v3/v4 ApiVersions response.

    The response header stays v0 (no tagged fields) even though the body is
    flexible: ApiVersions is the one API where clients must be able to read
    the response before they know what the broker supports.
    """
    r = Reader(payload)
    correlation_id = r.int32()
    error_code = r.int16()
    count = r.uvarint() - 1
    if count < 0:
        raise ProtocolError("null api_keys array")
    keys: dict[int, tuple[int, int]] = {}
    for _ in range(count):
        key, lo, hi = r.int16(), r.int16(), r.int16()
        r.skip_tagged_fields()
        if key in keys:
            raise ProtocolError(f"api key {key} listed twice")
        keys[key] = (lo, hi)
    throttle = r.int32()
    r.skip_tagged_fields()
    if r.remaining():
        raise ProtocolError(f"{r.remaining()} trailing bytes after a flexible ApiVersions response")
    return ApiVersionsResponse(correlation_id, error_code, keys, throttle)


def api_versions(host: str, port: int, version: int = 0, timeout: float = 5.0,
                 correlation_id: int = 1) -> ApiVersionsResponse:
    """Open a connection, send one ApiVersions request, parse the answer."""
    with connect(host, port, timeout) as sock:
        return api_versions_on(sock, version, correlation_id)


def api_versions_on(sock: socket.socket, version: int = 0, correlation_id: int = 1) -> ApiVersionsResponse:
    sock.sendall(api_versions_request(correlation_id, version))
    payload = recv_frame(sock)
    if version == 0:
        resp = parse_api_versions_v0(payload)
    elif version < 3:
        resp = parse_api_versions_v1(payload)
    else:
        resp = parse_api_versions_flexible(payload)
    if resp.correlation_id != correlation_id:
        raise ProtocolError(f"correlation id {resp.correlation_id} != {correlation_id}")
    return resp


# --------------------------------------------------------------------------
# Fetch v4 and RecordBatch headers


@dataclass
class BatchHeader:
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def codec(self) -> str:
        return CODEC_NAMES.get(self.attributes & 0x07, f"unknown({self.attributes & 0x07})")

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta


BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")  # 61 bytes
assert BATCH_HEADER.size == 61


@dataclass
class FetchPartition:
    error_code: int
    high_watermark: int
    records: bytes


def fetch_v4_request(correlation_id: int, topic: str, partition: int, offset: int,
                     max_bytes: int = 64 * 1024 * 1024, max_wait_ms: int = 100,
                     min_bytes: int = 0) -> bytes:
    body = (
        int32(-1)            # replica_id
        + int32(max_wait_ms)
        + int32(min_bytes)
        + int32(max_bytes)   # max_bytes (v3+)
        + struct.pack(">b", 0)  # isolation_level (v4+): read_uncommitted
        + int32(1) + nullable_string(topic)
        + int32(1) + int32(partition) + int64(offset) + int32(max_bytes)
    )
    return frame(request_header_v1(API_KEY_FETCH, 4, correlation_id) + body)


def parse_fetch_v4_response(payload: bytes, correlation_id: int) -> FetchPartition:
    r = Reader(payload)
    if r.int32() != correlation_id:
        raise ProtocolError("correlation id mismatch in Fetch response")
    r.int32()  # throttle_time_ms
    topics = r.int32()
    if topics != 1:
        raise ProtocolError(f"expected 1 topic in Fetch response, got {topics}")
    r.nullable_string()
    partitions = r.int32()
    if partitions != 1:
        raise ProtocolError(f"expected 1 partition in Fetch response, got {partitions}")
    r.int32()  # partition index
    error_code = r.int16()
    high_watermark = r.int64()
    r.int64()  # last_stable_offset
    aborted = r.int32()
    for _ in range(max(aborted, 0)):
        r.int64()
        r.int64()
    records = r.nullable_bytes() or b""
    return FetchPartition(error_code, high_watermark, records)


def parse_batch_headers(records: bytes) -> list[BatchHeader]:
    """Headers of the complete v2 record batches in a Fetch ``records`` blob."""
    out = []
    pos = 0
    while pos + BATCH_HEADER.size <= len(records):
        header = BatchHeader(*BATCH_HEADER.unpack_from(records, pos))
        end = pos + 12 + header.batch_length
        if end > len(records):
            break  # a partial trailing batch is allowed by the protocol
        if header.magic != 2:
            raise ProtocolError(f"batch at offset {header.base_offset} has magic {header.magic}, expected 2")
        out.append(header)
        pos = end
    return out


def stored_batches(host: str, port: int, topic: str, partition: int = 0,
                   timeout: float = 30.0) -> list[BatchHeader]:
    """Every record batch of a partition, as the broker serves it to Fetch v4."""
    batches: list[BatchHeader] = []
    offset = 0
    correlation_id = 100
    deadline = time.monotonic() + timeout
    with connect(host, port) as sock:
        while time.monotonic() < deadline:
            correlation_id += 1
            sock.sendall(fetch_v4_request(correlation_id, topic, partition, offset))
            resp = parse_fetch_v4_response(recv_frame(sock), correlation_id)
            if resp.error_code != ERROR_NONE:
                raise ProtocolError(f"Fetch of {topic}-{partition}@{offset} failed with error {resp.error_code}")
            new = [b for b in parse_batch_headers(resp.records) if b.last_offset >= offset]
            batches.extend(new)
            if new:
                offset = new[-1].last_offset + 1
            if offset >= resp.high_watermark:
                return batches
            if not new:
                raise ProtocolError(f"Fetch at {offset} returned no complete batch below high watermark "
                                    f"{resp.high_watermark}")
    raise TimeoutError(f"could not read {topic}-{partition} within {timeout}s")


# ==========================================================================
# Below: record batches built by hand (any header field, any records bytes,
# a CRC recomputed or not) and the requests that send them or look at what
# was stored, for the hostile-input and produce-differential tests. Each
# request encoder returns a framed request; each parser takes the payload of
# recv_frame and checks the correlation id.

API_KEY_PRODUCE = 0
API_KEY_LIST_OFFSETS = 2
API_KEY_METADATA = 3
API_KEY_CREATE_TOPICS = 19
API_KEY_DELETE_TOPICS = 20
API_KEY_CREATE_PARTITIONS = 37

# Kafka's error codes (org.apache.kafka.common.protocol.Errors) that these
# tests meet, by code.
ERROR_NAMES = {
    -1: "UNKNOWN_SERVER_ERROR", 0: "NONE", 1: "OFFSET_OUT_OF_RANGE", 2: "CORRUPT_MESSAGE",
    3: "UNKNOWN_TOPIC_OR_PARTITION", 4: "INVALID_FETCH_SIZE", 5: "LEADER_NOT_AVAILABLE",
    6: "NOT_LEADER_OR_FOLLOWER", 7: "REQUEST_TIMED_OUT", 10: "MESSAGE_TOO_LARGE",
    17: "INVALID_TOPIC_EXCEPTION", 18: "RECORD_LIST_TOO_LARGE", 19: "NOT_ENOUGH_REPLICAS",
    21: "INVALID_REQUIRED_ACKS", 32: "INVALID_TIMESTAMP", 35: "UNSUPPORTED_VERSION",
    36: "TOPIC_ALREADY_EXISTS", 37: "INVALID_PARTITIONS", 38: "INVALID_REPLICATION_FACTOR",
    39: "INVALID_REPLICA_ASSIGNMENT", 40: "INVALID_CONFIG", 41: "NOT_CONTROLLER",
    42: "INVALID_REQUEST", 44: "POLICY_VIOLATION", 45: "OUT_OF_ORDER_SEQUENCE_NUMBER",
    46: "DUPLICATE_SEQUENCE_NUMBER", 47: "INVALID_PRODUCER_EPOCH", 48: "INVALID_TXN_STATE",
    14: "COORDINATOR_LOAD_IN_PROGRESS", 15: "COORDINATOR_NOT_AVAILABLE", 16: "NOT_COORDINATOR",
    22: "ILLEGAL_GENERATION", 23: "INCONSISTENT_GROUP_PROTOCOL", 25: "UNKNOWN_MEMBER_ID",
    27: "REBALANCE_IN_PROGRESS", 49: "INVALID_PRODUCER_ID_MAPPING", 51: "CONCURRENT_TRANSACTIONS",
    53: "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", 59: "UNKNOWN_PRODUCER_ID", 79: "MEMBER_ID_REQUIRED",
    90: "PRODUCER_FENCED",
    70: "FETCH_SESSION_ID_NOT_FOUND", 71: "INVALID_FETCH_SESSION_EPOCH",
    76: "UNSUPPORTED_COMPRESSION_TYPE", 87: "INVALID_RECORD", 100: "UNKNOWN_TOPIC_ID",
    106: "FETCH_SESSION_TOPIC_ID_ERROR",
    69: "GROUP_ID_NOT_FOUND", 82: "FENCED_INSTANCE_ID", 110: "FENCED_MEMBER_EPOCH",
    111: "UNRELEASED_INSTANCE_ID", 112: "UNSUPPORTED_ASSIGNOR",
}
ERROR_UNKNOWN_SERVER_ERROR = -1
ERROR_CORRUPT_MESSAGE = 2
ERROR_UNKNOWN_TOPIC_OR_PARTITION = 3
ERROR_MESSAGE_TOO_LARGE = 10
ERROR_INVALID_TIMESTAMP = 32
ERROR_INVALID_REQUEST = 42
ERROR_POLICY_VIOLATION = 44
ERROR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
ERROR_UNSUPPORTED_COMPRESSION_TYPE = 76
ERROR_INVALID_RECORD = 87


def error_name(code: int) -> str:
    return ERROR_NAMES.get(code, f"error {code}")


# RecordBatch attribute bits besides the codec.
ATTR_LOG_APPEND_TIME = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20
CODEC_IDS = {name: cid for cid, name in CODEC_NAMES.items()}


def int8(v: int) -> bytes:
    return struct.pack(">b", v)


def boolean(v: bool) -> bytes:
    return b"\x01" if v else b"\x00"


def string(s: str) -> bytes:
    raw = s.encode()
    return int16(len(raw)) + raw


def array(items: list[bytes]) -> bytes:
    """A classic (non-flexible) array: int32 count, then the items."""
    return int32(len(items)) + b"".join(items)


def compact_array(items: list[bytes]) -> bytes:
    return uvarint(len(items) + 1) + b"".join(items)


def compact_nullable_string(s: str | None) -> bytes:
    return uvarint(0) if s is None else compact_string(s)


def compact_nullable_bytes(b: bytes | None) -> bytes:
    return uvarint(0) if b is None else uvarint(len(b) + 1) + b


def varint(v: int) -> bytes:
    """A zigzag varint (varlong too), as records encode their fields."""
    return uvarint((v << 1) ^ (v >> 63))


def encode_record(offset_delta: int, value: bytes | None, key: bytes | None = None,
                  timestamp_delta: int = 0, headers: tuple[tuple[bytes, bytes | None], ...] = ()) -> bytes:
    """One magic-2 record, its length prefix included."""
    body = bytearray(int8(0))  # attributes (unused)
    body += varint(timestamp_delta) + varint(offset_delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(-1) if value is None else varint(len(value)) + value
    body += varint(len(headers))
    for hkey, hvalue in headers:
        body += varint(len(hkey)) + hkey
        body += varint(-1) if hvalue is None else varint(len(hvalue)) + hvalue
    return varint(len(body)) + bytes(body)


def compress(codec: str, data: bytes) -> bytes:
    """The records section compressed as Kafka clients do: gzip, snappy in
    xerial framing, lz4 frames, zstd frames."""
    if codec == "none":
        return data
    if codec == "gzip":
        import gzip
        return gzip.compress(data)
    import kafka.codec  # kafka-python's own encoders, with Kafka's framings
    if codec == "snappy":
        return kafka.codec.snappy_encode(data, xerial_compatible=True)
    if codec == "lz4":
        return kafka.codec.lz4_encode(data)
    if codec == "zstd":
        import zstandard
        return zstandard.ZstdCompressor().compress(data)
    raise ValueError(codec)


def record_batch(records: bytes, count: int, *, last_offset_delta: int | None = None,
                 base_offset: int = 0, attributes: int = 0, base_timestamp: int | None = None,
                 max_timestamp: int | None = None, producer_id: int = -1, producer_epoch: int = -1,
                 base_sequence: int = -1, partition_leader_epoch: int = -1, magic: int = 2,
                 crc: int | None = None) -> bytes:
    """A RecordBatch v2 around ``records`` (the bytes after the header, as
    they are: already compressed if ``attributes`` names a codec), with
    every header field settable. The CRC32C is computed over attributes..end
    unless ``crc`` is given."""
    import crc32c
    now = int(time.time() * 1000)
    base_timestamp = now if base_timestamp is None else base_timestamp
    max_timestamp = base_timestamp if max_timestamp is None else max_timestamp
    last_offset_delta = count - 1 if last_offset_delta is None else last_offset_delta
    after_crc = (struct.pack(">hiqqqhii", attributes, last_offset_delta, base_timestamp, max_timestamp,
                             producer_id, producer_epoch, base_sequence, count) + records)
    crc = crc32c.crc32c(after_crc) if crc is None else crc
    after_length = struct.pack(">ibI", partition_leader_epoch, magic, crc) + after_crc
    return struct.pack(">qi", base_offset, len(after_length)) + after_length


def simple_batch(values: list[bytes | None], *, keys: list[bytes | None] | None = None,
                 codec: str = "none", timestamp: int | None = None, **header) -> bytes:
    """A well-formed batch of one record per value (offset deltas 0, 1, ...,
    all stamped ``timestamp``, now by default), compressed with ``codec``."""
    keys = keys or [None] * len(values)
    raw = b"".join(encode_record(i, v, k) for i, (k, v) in enumerate(zip(keys, values)))
    attributes = header.pop("attributes", 0) | CODEC_IDS[codec]
    return record_batch(compress(codec, raw), len(values), attributes=attributes,
                        base_timestamp=timestamp, **header)


def exchange(host: str, port: int, request: bytes, timeout: float = 30.0) -> bytes:
    """Send one framed request on a new connection and return the response payload."""
    with connect(host, port, timeout) as sock:
        sock.sendall(request)
        return recv_frame(sock)


# --------------------------------------------------------------------------
# Produce v3..v12 (flexible from v9)


@dataclass
class ProducePartitionResponse:
    index: int
    error_code: int
    base_offset: int
    log_append_time_ms: int
    log_start_offset: int | None
    record_errors: list[tuple[int, str | None]]  # (batch_index, message), v8+
    error_message: str | None                    # v8+


def produce_request(correlation_id: int, topic: str, partition: int, records: bytes | None,
                    version: int = 9, acks: int = 1, timeout_ms: int = 30000,
                    transactional_id: str | None = None) -> bytes:
    """A Produce request carrying ``records`` (one partition's bytes, as they
    are) for one topic-partition."""
    if not 3 <= version <= 12:
        raise ValueError(f"Produce v{version} is not encoded here")
    if version >= 9:
        part = int32(partition) + compact_nullable_bytes(records) + EMPTY_TAGGED_FIELDS
        body = (compact_nullable_string(transactional_id) + int16(acks) + int32(timeout_ms)
                + compact_array([compact_string(topic) + compact_array([part]) + EMPTY_TAGGED_FIELDS])
                + EMPTY_TAGGED_FIELDS)
        return frame(request_header_v2(API_KEY_PRODUCE, version, correlation_id) + body)
    raw = int32(-1) if records is None else int32(len(records)) + records
    body = (nullable_string(transactional_id) + int16(acks) + int32(timeout_ms)
            + array([string(topic) + array([int32(partition) + raw])]))
    return frame(request_header_v1(API_KEY_PRODUCE, version, correlation_id) + body)


def parse_produce_response(payload: bytes, correlation_id: int, version: int = 9
                           ) -> dict[tuple[str, int], ProducePartitionResponse]:
    """(topic, partition) -> its answer."""
    flexible = version >= 9
    r = Reader(payload)
    if r.int32() != correlation_id:
        raise ProtocolError("correlation id mismatch in Produce response")
    if flexible:
        r.skip_tagged_fields()
    count = lambda: r.uvarint() - 1 if flexible else r.int32()  # noqa: E731
    name = lambda: r._take(r.uvarint() - 1).decode() if flexible else r.nullable_string()  # noqa: E731

    def nullable_str():
        if not flexible:
            return r.nullable_string()
        n = r.uvarint()
        return None if n == 0 else r._take(n - 1).decode()

    out: dict[tuple[str, int], ProducePartitionResponse] = {}
    for _ in range(count()):
        topic = name()
        for _ in range(count()):
            index, error_code, base_offset, append_time = r.int32(), r.int16(), r.int64(), r.int64()
            log_start = r.int64() if version >= 5 else None
            record_errors: list[tuple[int, str | None]] = []
            message = None
            if version >= 8:
                for _ in range(count()):
                    batch_index = r.int32()
                    record_errors.append((batch_index, nullable_str()))
                    if flexible:
                        r.skip_tagged_fields()
                message = nullable_str()
            if flexible:
                r.skip_tagged_fields()
            out[(topic, index)] = ProducePartitionResponse(index, error_code, base_offset, append_time,
                                                           log_start, record_errors, message)
        if flexible:
            r.skip_tagged_fields()
    r.int32()  # throttle_time_ms
    if flexible:
        r.skip_tagged_fields()
    if r.remaining():
        raise ProtocolError(f"{r.remaining()} trailing bytes after a Produce v{version} response")
    return out


def produce(host: str, port: int, topic: str, records: bytes | None, partition: int = 0,
            version: int = 9, acks: int = 1, timeout: float = 60.0,
            correlation_id: int = 31, transactional_id: str | None = None) -> ProducePartitionResponse:
    """Produce ``records`` on a new connection and return the partition's answer."""
    request = produce_request(correlation_id, topic, partition, records, version, acks,
                              transactional_id=transactional_id)
    payload = exchange(host, port, request, timeout)
    return parse_produce_response(payload, correlation_id, version)[(topic, partition)]


# --------------------------------------------------------------------------
# ListOffsets v1


LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2


def list_offsets_v1_request(correlation_id: int, topic: str, partition: int, timestamp: int) -> bytes:
    body = int32(-1) + array([string(topic) + array([int32(partition) + int64(timestamp)])])
    return frame(request_header_v1(API_KEY_LIST_OFFSETS, 1, correlation_id) + body)


def parse_list_offsets_v1_response(payload: bytes, correlation_id: int) -> tuple[int, int, int]:
    """(error_code, timestamp, offset) of the one partition asked for."""
    r = Reader(payload)
    if r.int32() != correlation_id:
        raise ProtocolError("correlation id mismatch in ListOffsets response")
    if r.int32() != 1:
        raise ProtocolError("expected one topic in a ListOffsets response")
    r.nullable_string()
    if r.int32() != 1:
        raise ProtocolError("expected one partition in a ListOffsets response")
    r.int32()
    result = (r.int16(), r.int64(), r.int64())
    if r.remaining():
        raise ProtocolError(f"{r.remaining()} trailing bytes after a ListOffsets v1 response")
    return result


def list_offsets(host: str, port: int, topic: str, partition: int = 0,
                 timestamp: int = LATEST_TIMESTAMP, timeout: float = 30.0) -> tuple[int, int, int]:
    """(error_code, timestamp, offset): latest (-1), earliest (-2) or the
    first offset whose timestamp is at least ``timestamp``."""
    return parse_list_offsets_v1_response(
        exchange(host, port, list_offsets_v1_request(41, topic, partition, timestamp), timeout), 41)


def latest_offset(host: str, port: int, topic: str, partition: int = 0) -> int:
    error_code, _, offset = list_offsets(host, port, topic, partition)
    if error_code != ERROR_NONE:
        raise ProtocolError(f"ListOffsets latest of {topic}-{partition}: {error_name(error_code)}")
    return offset


# --------------------------------------------------------------------------
# Admin: CreateTopics v4, CreatePartitions v1, DeleteTopics v3, Metadata v4


def create_topics_v4_request(correlation_id: int, topics: list[tuple[str, int, dict[str, str]]],
                             validate_only: bool = False, timeout_ms: int = 30000) -> bytes:
    """``topics``: (name, num_partitions, configs), replication factor 1."""
    entries = [string(name) + int32(partitions) + int16(1) + array([])
               + array([string(k) + nullable_string(v) for k, v in configs.items()])
               for name, partitions, configs in topics]
    body = array(entries) + int32(timeout_ms) + boolean(validate_only)
    return frame(request_header_v1(API_KEY_CREATE_TOPICS, 4, correlation_id) + body)


def _parse_name_error_message(payload: bytes, correlation_id: int, what: str
                              ) -> dict[str, tuple[int, str | None]]:
    r = Reader(payload)
    if r.int32() != correlation_id:
        raise ProtocolError(f"correlation id mismatch in {what} response")
    r.int32()  # throttle_time_ms
    out = {}
    for _ in range(r.int32()):
        name = r.nullable_string()
        out[name] = (r.int16(), r.nullable_string())
    if r.remaining():
        raise ProtocolError(f"{r.remaining()} trailing bytes after a {what} response")
    return out


def create_topics(host: str, port: int, topics: list[tuple[str, int, dict[str, str]]],
                  validate_only: bool = False, timeout: float = 60.0) -> dict[str, tuple[int, str | None]]:
    """CreateTopics v4: name -> (error_code, error_message)."""
    payload = exchange(host, port, create_topics_v4_request(51, topics, validate_only), timeout)
    return _parse_name_error_message(payload, 51, "CreateTopics")


def create_partitions(host: str, port: int, topic: str, count: int, validate_only: bool = False,
                      timeout: float = 60.0) -> tuple[int, str | None]:
    """CreatePartitions v1 to ``count`` partitions: (error_code, error_message)."""
    body = (array([string(topic) + int32(count) + int32(-1)])  # assignments: null
            + int32(30000) + boolean(validate_only))
    payload = exchange(host, port, frame(request_header_v1(API_KEY_CREATE_PARTITIONS, 1, 52) + body), timeout)
    return _parse_name_error_message(payload, 52, "CreatePartitions")[topic]


def delete_topics(host: str, port: int, names: list[str], timeout: float = 60.0) -> dict[str, int]:
    """DeleteTopics v3: name -> error_code."""
    body = array([string(n) for n in names]) + int32(30000)
    payload = exchange(host, port, frame(request_header_v1(API_KEY_DELETE_TOPICS, 3, 53) + body), timeout)
    r = Reader(payload)
    if r.int32() != 53:
        raise ProtocolError("correlation id mismatch in DeleteTopics response")
    r.int32()
    out = {}
    for _ in range(r.int32()):
        name = r.nullable_string()
        out[name] = r.int16()
    if r.remaining():
        raise ProtocolError(f"{r.remaining()} trailing bytes after a DeleteTopics response")
    return out


@dataclass
class MetadataTopic:
    error_code: int
    name: str
    is_internal: bool
    partitions: dict[int, tuple[int, int]]  # index -> (error_code, leader_id)


def metadata(host: str, port: int, topics: list[str] | None, allow_auto_topic_creation: bool = True,
             timeout: float = 30.0) -> dict[str, MetadataTopic]:
    """Metadata v4 for ``topics`` (None: every topic): name -> topic."""
    body = (int32(-1) if topics is None else array([string(t) for t in topics])) + boolean(allow_auto_topic_creation)
    payload = exchange(host, port, frame(request_header_v1(API_KEY_METADATA, 4, 54) + body), timeout)
    r = Reader(payload)
    if r.int32() != 54:
        raise ProtocolError("correlation id mismatch in Metadata response")
    r.int32()  # throttle
    for _ in range(r.int32()):  # brokers
        r.int32(), r.nullable_string(), r.int32(), r.nullable_string()
    r.nullable_string()  # cluster id
    r.int32()  # controller id
    out = {}
    for _ in range(r.int32()):
        error_code, name, internal = r.int16(), r.nullable_string(), bool(r.int8())
        partitions = {}
        for _ in range(r.int32()):
            p_error, index, leader = r.int16(), r.int32(), r.int32()
            for _ in range(2):  # replicas, isr
                for _ in range(r.int32()):
                    r.int32()
            partitions[index] = (p_error, leader)
        out[name] = MetadataTopic(error_code, name, internal, partitions)
    if r.remaining():
        raise ProtocolError(f"{r.remaining()} trailing bytes after a Metadata v4 response")
    return out


# --------------------------------------------------------------------------
# Fetch v4 read as a stream: for answers too large to hold


@dataclass
class FetchSummary:
    frame_size: int
    error_code: int
    high_watermark: int
    records_size: int
    batches: int                       # complete batches in the records
    first: BatchHeader | None          # the first batch's header
    last_offset: int | None            # the last offset of the last complete batch


def _discard(sock: socket.socket, n: int, buf: bytearray) -> None:
    view = memoryview(buf)
    while n:
        got = sock.recv_into(view[:min(n, len(buf))])
        if not got:
            raise ConnectionError(f"connection closed with {n} bytes still to read")
        n -= got


def read_fetch_v4_summary(sock: socket.socket, correlation_id: int) -> FetchSummary:
    """Read one Fetch v4 response (one topic, one partition) of any size,
    keeping only batch headers: memory stays small however much comes."""
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    if size < 0:
        raise ProtocolError(f"negative response size {size}")
    used = 0

    def take(n: int) -> bytes:
        nonlocal used
        used += n
        if used > size:
            raise ProtocolError("Fetch response shorter than its fields")
        return recv_exact(sock, n)

    def i16() -> int:
        return struct.unpack(">h", take(2))[0]

    def i32() -> int:
        return struct.unpack(">i", take(4))[0]

    def i64() -> int:
        return struct.unpack(">q", take(8))[0]

    if i32() != correlation_id:
        raise ProtocolError("correlation id mismatch in Fetch response")
    i32()  # throttle
    if i32() != 1:
        raise ProtocolError("expected 1 topic in Fetch response")
    take(i16())
    if i32() != 1:
        raise ProtocolError("expected 1 partition in Fetch response")
    i32()
    error_code, high_watermark = i16(), i64()
    i64()  # last stable offset
    for _ in range(max(i32(), 0)):
        i64(), i64()
    records_size = max(i32(), 0)
    remaining = records_size
    batches, first, last_offset = 0, None, None
    scratch = bytearray(1 << 20)
    while remaining >= BATCH_HEADER.size:
        header = BatchHeader(*BATCH_HEADER.unpack(take(BATCH_HEADER.size)))
        remaining -= BATCH_HEADER.size
        rest = header.batch_length + 12 - BATCH_HEADER.size
        if rest > remaining or rest < 0:
            break  # a partial trailing batch
        used += rest
        _discard(sock, rest, scratch)
        remaining -= rest
        batches += 1
        first = first or header
        last_offset = header.last_offset
    used += remaining
    _discard(sock, remaining, scratch)
    if used != size:
        raise ProtocolError(f"Fetch response of {size} bytes has {size - used} bytes after its records")
    return FetchSummary(size, error_code, high_watermark, records_size, batches, first, last_offset)


# --------------------------------------------------------------------------
# The hostile produced batches of issue 8 (and a few well-formed controls),
# shared by test_hostile.py (Strom alone, against docs/architecture.md's
# rules) and test_differential_produce.py (Strom against Kafka).

MIB = 1 << 20


def zstd_bomb(records: int, value_size: int = MIB) -> bytes:
    """A zstd records section of ``records`` well-formed records, each with a
    value of ``value_size`` zero bytes: a few KB per 200 MiB inflated.
    Compressed as a stream, one record at a time, never held inflated."""
    import zstandard
    zeros = b"\x00" * value_size
    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    out = []
    for i in range(records):
        record = encode_record(i, zeros)
        out.append(compressor.compress(record))
    out.append(compressor.flush())
    return b"".join(out)


@dataclass(frozen=True)
class ProduceCase:
    id: str
    what: str
    build: Callable[[], bytes]            # the partition's records bytes
    version: int = 9                      # the Produce version that carries them
    topic_configs: tuple[tuple[str, str], ...] = ()

    @property
    def configs(self) -> dict[str, str]:
        return dict(self.topic_configs)


def _one_record(value: bytes = b"hostile") -> bytes:
    return encode_record(0, value)


def _hours(n: float) -> int:
    return int(n * 3600 * 1000)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _crc_flipped() -> bytes:
    batch = bytearray(simple_batch([b"crc flip"]))
    batch[17:21] = struct.pack(">I", struct.unpack(">I", bytes(batch[17:21]))[0] ^ 0x00000001)
    return bytes(batch)


def produce_cases() -> list[ProduceCase]:
    """Every case, in a stable order (ids are what docs/compatibility.md and
    the tests name them by)."""
    zstd, gzip, snappy = CODEC_IDS["zstd"], CODEC_IDS["gzip"], CODEC_IDS["snappy"]
    return [
        # well-formed controls
        ProduceCase("valid", "one well-formed uncompressed record (control)",
                    lambda: simple_batch([b"plain"])),
        *[ProduceCase(f"valid-{codec}", f"three well-formed records, {codec} (control)",
                      lambda codec=codec: simple_batch([b"a", b"b" * 300, None], codec=codec))
          for codec in ("gzip", "snappy", "lz4", "zstd")],
        # the batch as a whole
        ProduceCase("empty-records", "a zero-length records field (no batch at all)", lambda: b""),
        ProduceCase("two-batches", "two well-formed batches in one partition's records",
                    lambda: simple_batch([b"one"]) + simple_batch([b"two"])),
        ProduceCase("truncated-batch", "a batch whose length field claims 100 bytes more than follow",
                    _truncated),
        ProduceCase("batch-length-too-small", "a batch whose length field says 10",
                    lambda: _with_batch_length(simple_batch([b"short"]), 10)),
        ProduceCase("magic-1", "a v2 batch with its magic byte set to 1", _magic_1),
        ProduceCase("base-offset-5", "a well-formed batch whose baseOffset is 5",
                    lambda: simple_batch([b"five"], base_offset=5)),
        ProduceCase("over-max-message-bytes", "a 2 KB batch to a topic with max.message.bytes=1024",
                    lambda: simple_batch([b"m" * 2048]), topic_configs=(("max.message.bytes", "1024"),)),
        ProduceCase("crc-flip", "a well-formed batch with one CRC bit flipped", _crc_flipped),
        # the header
        ProduceCase("unknown-codec-7", "codec id 7 in the attributes, records uncompressed, CRC recomputed",
                    lambda: record_batch(_one_record(), 1, attributes=7)),
        ProduceCase("zstd-produce-v3", "a well-formed zstd batch in Produce v3 (zstd came with v7)",
                    lambda: simple_batch([b"zstd"], codec="zstd"), version=3),
        ProduceCase("control-flag", "a well-formed batch with the control flag",
                    lambda: simple_batch([b"control"], attributes=ATTR_CONTROL)),
        ProduceCase("count-zero", "records count 0, lastOffsetDelta -1, no records",
                    lambda: record_batch(b"", 0, last_offset_delta=-1)),
        ProduceCase("count-max-int32", "records count 2^31-1, lastOffsetDelta 2^31-2, one record",
                    lambda: record_batch(_one_record(), 2**31 - 1, last_offset_delta=2**31 - 2)),
        ProduceCase("count-2-one-record", "records count 2, lastOffsetDelta 1, one record",
                    lambda: record_batch(_one_record(), 2, last_offset_delta=1)),
        ProduceCase("last-offset-delta-mismatch", "one record, count 1, lastOffsetDelta 5",
                    lambda: record_batch(_one_record(), 1, last_offset_delta=5)),
        ProduceCase("idempotent-no-sequence", "producer id 1000, epoch 0, base sequence -1",
                    lambda: simple_batch([b"pid"], producer_id=1000, producer_epoch=0, base_sequence=-1)),
        ProduceCase("transactional-no-pid", "the transactional flag, no producer id, no transactional id",
                    lambda: simple_batch([b"txn"], attributes=ATTR_TRANSACTIONAL)),
        # the records, uncompressed
        ProduceCase("garbage-records", "97 random bytes as the records section of a 1-record batch, CRC valid",
                    lambda: record_batch(random_bytes(97, seed=8), 1)),
        ProduceCase("trailing-bytes", "one record, count 1, then 16 bytes more",
                    lambda: record_batch(_one_record() + b"\x00" * 8 + b"trailing", 1)),
        ProduceCase("record-length-short", "a record whose length varint says 3 bytes, fewer than it holds",
                    lambda: record_batch(varint(3) + _one_record()[1:], 1)),
        ProduceCase("negative-key-length", "a record whose key length is -5",
                    lambda: record_batch(_raw_record(varint(-5) + varint(1) + b"v" + varint(0)), 1)),
        ProduceCase("overlong-varint", "a records section of twelve 0xff bytes (a varint that never ends)",
                    lambda: record_batch(b"\xff" * 12, 1)),
        ProduceCase("offset-deltas-repeat", "two uncompressed records, both with offset delta 0",
                    lambda: record_batch(_one_record(b"a") + _one_record(b"b"), 2)),
        # compressed records
        ProduceCase("gzip-flag-uncompressed", "gzip flag on uncompressed records, CRC valid",
                    lambda: record_batch(_one_record(), 1, attributes=gzip)),
        *[ProduceCase(f"{codec}-garbage", f"{codec} flag on 32 bytes of garbage{after}",
                      lambda codec=codec, magic=magic: record_batch(magic + b"garbage!" * 4, 1,
                                                                    attributes=CODEC_IDS[codec]))
          for codec, magic, after in (("zstd", b"\x28\xb5\x2f\xfd", " after zstd's frame magic"),
                                      ("lz4", b"", ""), ("snappy", b"", ""))],
        ProduceCase("snappy-huge-block", "xerial snappy whose one block declares 2^32-1 inflated bytes",
                    lambda: record_batch(snappy_declaring(0xFFFFFFFF), 1, attributes=snappy)),
        ProduceCase("zstd-window-2gib", "a zstd frame declaring a 2 GiB window (windowLog 31) around one record",
                    lambda: record_batch(_zstd_frame_with_window_log(31, _one_record()), 1, attributes=zstd)),
        ProduceCase("offset-deltas-repeat-gzip", "two gzip records, both with offset delta 0",
                    lambda: record_batch(compress("gzip", _one_record(b"a") + _one_record(b"b")), 2,
                                         attributes=gzip)),
        ProduceCase("zstd-bomb-200mib", "zstd, ~11 KB inflating to 200 MiB (200 well-formed records of 1 MiB)",
                    lambda: record_batch(zstd_bomb(200), 200, attributes=zstd)),
        ProduceCase("gzip-bomb-200mib", "gzip, ~900 KB inflating to 200 MiB (200 well-formed records of 1 MiB)",
                    lambda: record_batch(gzip_bomb(200), 200, attributes=gzip)),
        # timestamps and keys
        ProduceCase("timestamp-future-2h", "one record stamped 2 hours ahead of now",
                    lambda: simple_batch([b"future"], timestamp=_now_ms() + _hours(2))),
        ProduceCase("timestamp-past-10y", "one record stamped 10 years ago",
                    lambda: simple_batch([b"past"], timestamp=_now_ms() - _hours(24 * 3652))),
        ProduceCase("no-timestamp", "one record stamped -1 (no timestamp) on a CreateTime topic",
                    lambda: simple_batch([b"no ts"], timestamp=-1)),
        ProduceCase("log-append-time-flag", "a client batch with the LogAppendTime flag, timestamp now, CreateTime topic",
                    lambda: simple_batch([b"lat"], attributes=ATTR_LOG_APPEND_TIME)),
        ProduceCase("log-append-time-flag-lat-topic",
                    "the same batch to a message.timestamp.type=LogAppendTime topic",
                    lambda: simple_batch([b"lat"], attributes=ATTR_LOG_APPEND_TIME),
                    topic_configs=(("message.timestamp.type", "LogAppendTime"),)),
        ProduceCase("compacted-keyless", "a record without a key to a cleanup.policy=compact topic",
                    lambda: simple_batch([b"no key"]), topic_configs=(("cleanup.policy", "compact"),)),
    ]


def _with_batch_length(batch: bytes, length: int) -> bytes:
    return batch[:8] + int32(length) + batch[12:]


def _raw_record(after_offset_delta: bytes) -> bytes:
    """A record with attributes 0, timestamp and offset deltas 0, then the
    given bytes (key length onwards) as they are."""
    body = int8(0) + varint(0) + varint(0) + after_offset_delta
    return varint(len(body)) + body


def _zstd_frame_with_window_log(window_log: int, data: bytes) -> bytes:
    """One zstd frame: no content size, the given window, ``data`` in a
    single raw (stored) block."""
    descriptor = (window_log - 10) << 3          # Window_Descriptor: exponent, mantissa 0
    block_header = (1 | (len(data) << 3)).to_bytes(3, "little")  # last block, raw
    return b"\x28\xb5\x2f\xfd" + bytes([0x00, descriptor]) + block_header + data


def snappy_declaring(inflated: int, *, framed: bool = True) -> bytes:
    """A snappy records section whose one block declares ``inflated`` bytes
    but holds only 10 zero bytes: xerial-framed (as Kafka clients write
    snappy) or a bare raw block."""
    block = uvarint(inflated) + b"\x00" * 10
    if not framed:
        return block
    return b"\x82SNAPPY\x00" + int32(1) + int32(1) + int32(len(block)) + block


def _truncated() -> bytes:
    batch = simple_batch([b"truncated"])
    return _with_batch_length(batch, len(batch) - 12 + 100)


def _magic_1() -> bytes:
    batch = bytearray(simple_batch([b"magic"]))
    batch[16] = 1
    return bytes(batch)


def gzip_bomb(records: int, value_size: int = MIB) -> bytes:
    """As zstd_bomb, gzip (level 1, streamed): ~1 KB per MiB inflated."""
    import zlib
    zeros = b"\x00" * value_size
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    out = [compressor.compress(encode_record(i, zeros)) for i in range(records)]
    out.append(compressor.flush())
    return b"".join(out)


def random_bytes(n: int, seed: int) -> bytes:
    import random
    return random.Random(seed).randbytes(n)


# --------------------------------------------------------------------------
# Fetch v12 (names) and v13 (topic ids), flexible, with fetch sessions


@dataclass(frozen=True)
class FetchTopicRequest:
    """A topic of a Fetch request: named (v12) or by id (v13), its
    partitions as (partition, fetch_offset)."""
    name: str
    topic_id: bytes  # 16 bytes; zero when unknown
    partitions: tuple[tuple[int, int], ...] = ()


@dataclass
class SessionFetchPartition:
    topic: str | bytes  # the name (v12) or the id (v13)
    partition: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    records: bytes


@dataclass
class SessionFetchResponse:
    error_code: int
    session_id: int
    partitions: list[SessionFetchPartition]


def fetch_session_request(correlation_id: int, version: int, session_id: int, epoch: int,
                          topics: list[FetchTopicRequest], forgotten: list[FetchTopicRequest] = (),
                          max_wait_ms: int = 0, min_bytes: int = 1,
                          max_bytes: int = 1 << 20) -> bytes:
    """Fetch v12 or v13: the topics to add or update, and those whose
    ``partitions`` (offsets ignored) the session should forget."""
    assert version in (12, 13)

    def topic_ref(t: FetchTopicRequest) -> bytes:
        return compact_string(t.name) if version < 13 else t.topic_id

    topic_items = [
        topic_ref(t) + compact_array([
            int32(p) + int32(-1) + int64(offset) + int32(-1) + int64(-1) + int32(max_bytes)
            + EMPTY_TAGGED_FIELDS
            for p, offset in t.partitions
        ]) + EMPTY_TAGGED_FIELDS
        for t in topics
    ]
    forgotten_items = [
        topic_ref(t) + compact_array([int32(p) for p, _ in t.partitions]) + EMPTY_TAGGED_FIELDS
        for t in forgotten
    ]
    body = (
        int32(-1) + int32(max_wait_ms) + int32(min_bytes) + int32(max_bytes) + int8(0)
        + int32(session_id) + int32(epoch)
        + compact_array(topic_items) + compact_array(forgotten_items)
        + compact_string("")  # rack_id
        + EMPTY_TAGGED_FIELDS
    )
    return frame(request_header_v2(API_KEY_FETCH, version, correlation_id) + body)


def parse_fetch_session_response(payload: bytes, correlation_id: int, version: int) -> SessionFetchResponse:
    r = Reader(payload)
    if r.int32() != correlation_id:
        raise ProtocolError("correlation id mismatch in Fetch response")
    r.skip_tagged_fields()  # response header v1
    r.int32()  # throttle_time_ms
    error_code = r.int16()
    session_id = r.int32()
    partitions = []
    for _ in range(r.uvarint() - 1):
        if version < 13:
            topic: str | bytes = r._take(r.uvarint() - 1).decode()
        else:
            topic = r._take(16)
        for _ in range(r.uvarint() - 1):
            index = r.int32()
            code = r.int16()
            hw, lso, log_start = r.int64(), r.int64(), r.int64()
            aborted = r.uvarint() - 1
            for _ in range(max(aborted, 0)):
                r.int64()
                r.int64()
                r.skip_tagged_fields()
            r.int32()  # preferred_read_replica
            n = r.uvarint() - 1
            records = b"" if n < 0 else r._take(n)
            r.skip_tagged_fields()
            partitions.append(SessionFetchPartition(topic, index, code, hw, lso, log_start, records))
        r.skip_tagged_fields()
    r.skip_tagged_fields()
    return SessionFetchResponse(error_code, session_id, partitions)


# --------------------------------------------------------------------------
# FindCoordinator v1


API_KEY_FIND_COORDINATOR = 10
COORDINATOR_GROUP = 0
COORDINATOR_TRANSACTION = 1


def find_coordinator(host: str, port: int, key: str, key_type: int = COORDINATOR_GROUP,
                     timeout: float = 5.0) -> tuple[int, int]:
    """(error code, node id) of the coordinator of ``key`` (a group id, or a
    transactional id with COORDINATOR_TRANSACTION), as the broker at
    host:port answers FindCoordinator v1."""
    request = frame(request_header_v1(API_KEY_FIND_COORDINATOR, 1, 1) + string(key) + int8(key_type))
    r = Reader(exchange(host, port, request, timeout))
    if r.int32() != 1:
        raise ProtocolError("correlation id mismatch in FindCoordinator response")
    r.int32()  # throttle_time_ms
    error_code = r.int16()
    r.nullable_string()  # error_message
    return error_code, r.int32()


# --------------------------------------------------------------------------
# ConsumerGroupHeartbeat v1 (KIP-848; flexible)


API_KEY_CONSUMER_GROUP_HEARTBEAT = 68


@dataclass
class ConsumerHeartbeat:
    error_code: int
    error_message: str | None
    member_id: str | None
    member_epoch: int
    heartbeat_interval_ms: int
    # None: no assignment in the answer; else {topic id (16 bytes): [partitions]}.
    assignment: dict[bytes, list[int]] | None


def consumer_group_heartbeat_request(correlation_id: int, group_id: str, member_id: str, member_epoch: int, *,
                                     instance_id: str | None = None, rack_id: str | None = None,
                                     rebalance_timeout_ms: int = -1, topics: list[str] | None = None,
                                     regex: str | None = None, assignor: str | None = None,
                                     owned: dict[bytes, list[int]] | None = None) -> bytes:
    """A framed ConsumerGroupHeartbeat v1; ``owned`` None sends a null
    TopicPartitions (what a join must not do), {} an empty one."""
    names = uvarint(0) if topics is None else compact_array([compact_string(t) for t in topics])
    if owned is None:
        partitions = uvarint(0)
    else:
        partitions = compact_array([tid + compact_array([int32(p) for p in ps]) + EMPTY_TAGGED_FIELDS
                                    for tid, ps in owned.items()])
    body = (compact_string(group_id) + compact_string(member_id) + int32(member_epoch)
            + compact_nullable_string(instance_id) + compact_nullable_string(rack_id)
            + int32(rebalance_timeout_ms) + names + compact_nullable_string(regex)
            + compact_nullable_string(assignor) + partitions + EMPTY_TAGGED_FIELDS)
    return frame(request_header_v2(API_KEY_CONSUMER_GROUP_HEARTBEAT, 1, correlation_id) + body)


def parse_consumer_group_heartbeat(payload: bytes, correlation_id: int) -> ConsumerHeartbeat:
    r = Reader(payload)
    if r.int32() != correlation_id:
        raise ProtocolError("correlation id mismatch in ConsumerGroupHeartbeat response")
    r.skip_tagged_fields()
    r.int32()  # throttle_time_ms

    def compact_nullable() -> str | None:
        n = r.uvarint()
        return None if n == 0 else r._take(n - 1).decode()

    error_code = r.int16()
    message = compact_nullable()
    member_id = compact_nullable()
    epoch, interval = r.int32(), r.int32()
    assignment = None
    if r.int8() >= 0:
        assignment = {}
        for _ in range(r.uvarint() - 1):
            tid = r._take(16)
            assignment[tid] = [r.int32() for _ in range(r.uvarint() - 1)]
            r.skip_tagged_fields()
        r.skip_tagged_fields()
    return ConsumerHeartbeat(error_code, message, member_id, epoch, interval, assignment)


def consumer_group_heartbeat(sock: socket.socket, correlation_id: int, group_id: str, member_id: str,
                             member_epoch: int, **fields) -> ConsumerHeartbeat:
    """One ConsumerGroupHeartbeat v1 on an open connection."""
    sock.sendall(consumer_group_heartbeat_request(correlation_id, group_id, member_id, member_epoch, **fields))
    return parse_consumer_group_heartbeat(recv_frame(sock), correlation_id)
