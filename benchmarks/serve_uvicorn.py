"""`python -m benchmarks.serve_uvicorn ARGS`: the `uvicorn` command, with TCP_NODELAY intact.

uvicorn 0.54 (and earlier) creates the shared listening socket of `--workers N` with
`proto` 0. Accepted connections inherit it, and asyncio enables TCP_NODELAY only on
sockets whose `proto` is IPPROTO_TCP, so with more than one worker every keep-alive
request after the first waits ~40 ms for the client's delayed ACK
(https://github.com/Kludex/uvicorn/issues/3149). On this benchmark that floor hides
everything the session layer does, so the benchmark's uvicorn servers run through this
wrapper, which only relabels that socket. Everything else is uvicorn's own CLI,
supervisor and workers.
"""

from __future__ import annotations

import socket
import sys

from uvicorn.config import Config
from uvicorn.main import main

_bind_socket = Config.bind_socket


def _bind_tcp_socket(self: Config) -> socket.socket:
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
        # Same descriptor (bound, inheritable), now known to Python as TCP.
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    return sock


if __name__ == "__main__":
    Config.bind_socket = _bind_tcp_socket  # type: ignore[method-assign]
    sys.exit(main())
