"""Malformed and hostile input on raw sockets.

Whatever one connection sends, the broker may close that connection but must
keep serving every other one, and must keep running.
"""

from __future__ import annotations

import random
import struct

import pytest

import kafka_wire as kw
from helpers import KAFKA_PYTHON, SOCKET_REQUEST_MAX_BYTES, Rec, consume, create_topic, produce

CLOSE_TIMEOUT = 10.0


def assert_healthy(broker) -> None:
    assert broker.is_running(), "strom died"
    resp = kw.api_versions(broker.host, broker.port, version=0)
    assert resp.error_code == kw.ERROR_NONE


def assert_closed_without_reply(broker, payload: bytes) -> None:
    with kw.connect(broker.host, broker.port) as sock:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while we were still writing: fine
        assert kw.wait_for_close(sock, CLOSE_TIMEOUT), "broker kept the connection open"
    assert_healthy(broker)


def test_frame_larger_than_socket_request_max_bytes(broker):
    header = kw.request_header_v1(kw.API_KEY_API_VERSIONS, 0, 1)
    # Announce 100 MiB + 1 and send only the start: the broker must refuse on
    # the size prefix alone, without waiting for (or buffering) the body.
    assert_closed_without_reply(broker, kw.int32(SOCKET_REQUEST_MAX_BYTES + 1) + header)


@pytest.mark.parametrize("size", [-1, -2147483648, 0])
def test_nonsensical_frame_size(broker, size):
    assert_closed_without_reply(broker, kw.int32(size) + b"\x00" * 8)


def test_garbage_frame_closes_only_that_connection(broker):
    rnd = random.Random(20240601)
    garbage = bytearray(rnd.randbytes(64))
    garbage[0:2] = struct.pack(">h", 0x7A5B)  # make sure the "api key" is not a real one
    with kw.connect(broker.host, broker.port) as bystander:
        assert kw.api_versions_on(bystander, correlation_id=1).error_code == 0
        assert_closed_without_reply(broker, kw.frame(bytes(garbage)))
        # A connection opened before the garbage arrived is unaffected.
        assert kw.api_versions_on(bystander, correlation_id=2).error_code == 0


@pytest.mark.parametrize("api_key", [9999, -1, 32767])
def test_unknown_api_key(broker, api_key):
    assert_closed_without_reply(broker, kw.frame(kw.request_header_v1(api_key, 0, 7) + b"\x00" * 16))


def test_unsupported_api_versions_version(broker):
    """KIP-511: an ApiVersions request the broker can't parse still gets a v0
    response carrying UNSUPPORTED_VERSION and the ApiVersions range, so the
    client can retry with a version the broker knows."""
    with kw.connect(broker.host, broker.port) as sock:
        sock.sendall(kw.api_versions_request(correlation_id=4242, version=99))
        resp = kw.parse_api_versions_v0(kw.recv_frame(sock))
        assert resp.correlation_id == 4242
        assert resp.error_code == kw.ERROR_UNSUPPORTED_VERSION
        assert resp.api_keys[kw.API_KEY_API_VERSIONS] == (0, 4)
        # The connection stays usable for a retry at a supported version.
        retry = kw.api_versions_on(sock, version=3, correlation_id=4243)
        assert retry.error_code == kw.ERROR_NONE
    assert_healthy(broker)


@pytest.mark.parametrize("api_key,version", [(0, 99), (3, 99), (1, 3)])
def test_unsupported_version_of_other_apis_closes(broker, api_key, version):
    """Outside ApiVersions, an unsupported version is a protocol error (Kafka
    closes the connection). Fetch v3 is below the advertised Fetch 4..17."""
    assert_closed_without_reply(broker, kw.frame(kw.request_header_v1(api_key, version, 9) + b"\x00" * 32))


@pytest.mark.parametrize("payload", [
    b"\x00",                                  # half an api key
    b"\x00\x12\x00",                          # api key, half a version
    b"\x00\x12\x00\x00\x00\x00",              # no complete correlation id
    b"\x00\x12\x00\x00\x00\x00\x00\x01\x00",  # client id length cut in half
    b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x64abc",  # client id claims 100 bytes, has 3
], ids=["1-byte", "3-byte", "6-byte", "9-byte", "short-client-id"])
def test_truncated_request_header(broker, payload):
    assert_closed_without_reply(broker, kw.frame(payload))


def test_truncated_body_of_known_request(broker):
    # Metadata v1 whose topics array claims 5 entries and then stops.
    payload = kw.request_header_v1(3, 1, 11) + kw.int32(5) + kw.nullable_string("only-one")
    assert_closed_without_reply(broker, kw.frame(payload))


def test_client_disconnects_mid_frame(broker):
    with kw.connect(broker.host, broker.port) as sock:
        sock.sendall(kw.int32(1000) + b"\x00\x12\x00\x00")  # promises 1000 bytes, sends 4, hangs up
    assert_healthy(broker)


def test_many_bad_connections_then_real_clients(broker):
    topic = create_topic(broker)
    rnd = random.Random(7)
    for i in range(50):
        blob = rnd.randbytes(rnd.randrange(1, 200))
        with kw.connect(broker.host, broker.port) as sock:
            try:
                sock.sendall(kw.frame(blob) if i % 2 else blob)
            except OSError:
                pass
    assert_healthy(broker)
    produce(KAFKA_PYTHON, broker, topic, [Rec(b"k", b"still works")])
    (got,) = consume(KAFKA_PYTHON, broker, topic, 1)
    assert got.value == b"still works"
