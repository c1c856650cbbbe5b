"""echo and discard on a stream connection (RFC 862, RFC 863).

echo returns exactly the bytes it read. It stops reading while more than
session.OUTPUT_LIMIT bytes wait to be written, so a client that sends without reading
only fills its own socket buffers.
"""

from __future__ import annotations

from pyxinetd.internal.session import StreamSession


class EchoSession(StreamSession):
    def received(self, data: bytes) -> None:
        self.send(data)


class DiscardSession(StreamSession):
    def received(self, data: bytes) -> None:
        pass
