"""Hand-rolled Kafka wire protocol pieces, encoded with ``struct``.

Used by the broker fixture's readiness probe, by the malformed-input tests and
by tests that need to look at exactly what the broker stores or advertises
(ApiVersions ranges, record-batch compression attributes), without going
through a client library that would hide it.

Only the handful of messages those tests need are implemented:

* ApiVersions v0..v4 requests and responses (v0, v1-v2, v3+ flexible)
* Fetch v4 request/response (non-flexible, topic names) and the
  RecordBatch v2 header, to read a partition's batches as stored.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

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
                     max_bytes: int = 64 * 1024 * 1024) -> bytes:
    body = (
        int32(-1)            # replica_id
        + int32(100)         # max_wait_ms
        + int32(0)           # min_bytes
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
