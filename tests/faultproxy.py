"""A TCP proxy on a loopback port that can lose a server's reply: what a dropped
connection or a timeout looks like to a client whose command the server did run."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

from tests.servers import free_port


@dataclass
class FaultProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream`. After `lose_next_reply()`, the
    next reply the server sends is read and thrown away, and that client connection is
    closed: the command ran, but the client never hears so."""

    upstream: int
    port: int = field(default_factory=free_port)
    lost: int = 0  # replies thrown away so far
    _armed: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._spawn(self._accept)

    def lose_next_reply(self) -> None:
        self._armed.set()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            self._spawn(self._pump, client, server, False)
            self._spawn(self._pump, server, client, True)

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        source.settimeout(0.2)
        try:
            while not self._stop.is_set():
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                if replies and self._armed.is_set():
                    self._armed.clear()
                    self.lost += 1
                    break  # the reply is dropped, and the client's connection with it
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()
