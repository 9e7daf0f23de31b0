"""A minimal gRPC server-streaming reader on plain asyncio (no grpcio), for benchmarks.

Many subscribers on two shared cores: grpc.aio costs the *client* side well over 100 us of
CPU per received message (a completion-queue thread hop and several awaits per message),
which then competes with the server being measured. This reader speaks just enough HTTP/2
for one unary-request, server-streaming call per connection: the preface and settings, one
HEADERS + DATA request, then frames parsed in ``data_received`` (DATA reassembled into gRPC
messages, SETTINGS and PING acknowledged, flow-control windows replenished); response
headers and trailers are not decoded (HPACK is never needed to read them: no dynamic table
is used on the request side, and their content is ignored, apart from END_STREAM).

Each received message is handed, still serialized, to ``on_message(data, now_ns)``.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, PADDED = 0x1, 0x1, 0x8
STREAM_ID = 1
WINDOW = 1 << 30  # stream and connection receive windows


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (len(payload).to_bytes(3, "big") + bytes((kind, flags))
            + stream.to_bytes(4, "big") + payload)


def _hpack_string(value: bytes) -> bytes:
    if len(value) >= 127:
        raise ValueError("header value too long for this encoder")
    return bytes((len(value),)) + value


def request_headers(authority: str, path: str) -> bytes:
    """HPACK for a gRPC call with static-table names only (no dynamic table, no Huffman)."""
    return b"".join((
        b"\x83",  # :method POST
        b"\x86",  # :scheme http
        b"\x04" + _hpack_string(path.encode()),  # :path, literal without indexing
        b"\x01" + _hpack_string(authority.encode()),  # :authority
        b"\x0f\x10" + _hpack_string(b"application/grpc"),  # content-type (index 31)
        b"\x00" + _hpack_string(b"te") + _hpack_string(b"trailers"),
    ))


class StreamProtocol(asyncio.Protocol):
    """One connection, one server-streaming call."""

    def __init__(self, authority: str, path: str, request: bytes,
                 on_message: Callable[[bytes, int], None]) -> None:
        self._authority = authority
        self._path = path
        self._request = request
        self._on_message = on_message
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._msg = bytearray()  # gRPC message bytes not yet complete
        self._unacked = 0  # bytes received since the last WINDOW_UPDATE
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.messages = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a TCP connection
        self._transport = transport
        settings = struct.pack(">HIHIHI", 0x2, 0, 0x4, WINDOW, 0x3, 100)
        message = b"\x00" + len(self._request).to_bytes(4, "big") + self._request
        transport.write(b"".join((
            PREFACE,
            _frame(SETTINGS, 0, 0, settings),
            _frame(WINDOW_UPDATE, 0, 0, (WINDOW - 65535).to_bytes(4, "big")),
            _frame(HEADERS, 0x4, STREAM_ID, request_headers(self._authority, self._path)),
            _frame(DATA, END_STREAM, STREAM_ID, message),
        )))

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        transport = self._transport
        assert transport is not None  # data comes after connection_made
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        while end - pos >= 9:
            length = int.from_bytes(buf[pos:pos + 3], "big")
            if end - pos < 9 + length:
                break
            kind = buf[pos + 3]
            flags = buf[pos + 4]
            start = pos + 9
            pos = start + length
            if kind == DATA:
                payload = buf[start:pos]
                if flags & PADDED:
                    payload = payload[1:len(payload) - payload[0]]
                self._data(payload, now)
                self._unacked += length
            elif kind == HEADERS:
                if flags & END_STREAM:
                    self._finish("trailers")
            elif kind == SETTINGS:
                if not flags & ACK:
                    transport.write(_frame(SETTINGS, ACK, 0))
            elif kind == PING:
                if not flags & ACK:
                    transport.write(_frame(PING, ACK, 0, bytes(buf[start:pos])))
            elif kind in (RST_STREAM, GOAWAY):
                self._finish("reset" if kind == RST_STREAM else "goaway")
        del buf[:pos]
        if self._unacked > WINDOW // 2:
            increment = self._unacked.to_bytes(4, "big")
            self._unacked = 0
            transport.write(_frame(WINDOW_UPDATE, 0, 0, increment)
                            + _frame(WINDOW_UPDATE, 0, STREAM_ID, increment))

    def _data(self, payload, now: int) -> None:
        msg = self._msg
        if not msg and len(payload) >= 5:
            # The common case: whole messages in one frame, no copy into the buffer.
            view = memoryview(payload)
            pos, end = 0, len(payload)
            while end - pos >= 5:
                size = int.from_bytes(view[pos + 1:pos + 5], "big")
                if end - pos < 5 + size:
                    break
                self.messages += 1
                self._on_message(bytes(view[pos + 5:pos + 5 + size]), now)
                pos += 5 + size
            if pos == end:
                return
            msg += view[pos:]
            return
        msg += payload
        while len(msg) >= 5:
            size = int.from_bytes(msg[1:5], "big")
            if len(msg) < 5 + size:
                return
            self.messages += 1
            self._on_message(bytes(msg[5:5 + size]), now)
            del msg[:5 + size]

    def _finish(self, why: str) -> None:
        if not self.done.done():
            self.done.set_result(why)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish("closed")

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def open_stream(host: str, port: int, path: str, request: bytes,
                      on_message: Callable[[bytes, int], None]) -> StreamProtocol:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: StreamProtocol(f"{host}:{port}", path, request, on_message), host, port)
    return protocol
