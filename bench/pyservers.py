"""Launchers for the pure-Python TFTP servers the benchmark compares (tftpy, py3tftp, fbtftp).

Run with the bench venv's interpreter (bench/build/pyenv, made by ``python -m bench --setup``):

    bench/build/pyenv/bin/python bench/pyservers.py {tftpy,py3tftp,fbtftp} --root DIR --port P

Each serves DIR read-only on 127.0.0.1:P with the library's defaults, logging at WARNING
(their per-transfer INFO lines would only add cost), and prints
``listening on 127.0.0.1:P`` on stderr once its socket is bound.  It exits on SIGTERM or
after --max-seconds.  None of these libraries is ever imported by bootstorm itself.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

ADDR = "127.0.0.1"


def ready(port: int) -> None:
    print(f"listening on {ADDR}:{port}", file=sys.stderr, flush=True)


def run_tftpy(root: str, port: int) -> None:
    import tftpy

    srv = tftpy.TftpServer(root)
    # tftpy prints "listening" only through its logger; the socket is bound inside listen()
    import threading

    def announce():
        srv.is_running.wait(30)
        ready(port)

    threading.Thread(target=announce, daemon=True).start()
    srv.listen(ADDR, port)


def run_py3tftp(root: str, port: int) -> None:
    import asyncio

    from py3tftp.protocols import TFTPServerProtocol

    os.chdir(root)  # py3tftp serves paths relative to its working directory
    # the defaults of its command line: ack timeout 0.5 s, connection timeout 3 s
    timeouts = {b"timeout": 0.5, b"conn_timeout": 3.0}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    transport, _ = loop.run_until_complete(loop.create_datagram_endpoint(
        lambda: TFTPServerProtocol(ADDR, loop, timeouts), local_addr=(ADDR, port)))
    ready(port)
    try:
        loop.run_forever()
    finally:
        transport.close()


def run_fbtftp(root: str, port: int) -> None:
    from fbtftp.base_handler import BaseHandler, ResponseData
    from fbtftp.base_server import BaseServer

    class FileData(ResponseData):
        def __init__(self, path):
            self._f = open(path, "rb")
            self._size = os.fstat(self._f.fileno()).st_size

        def read(self, n):
            return self._f.read(n)

        def size(self):
            return self._size

        def close(self):
            self._f.close()

    class Handler(BaseHandler):
        def __init__(self, server_addr, peer, path, options, root):
            self._root = root
            super().__init__(server_addr, peer, path, options, lambda stats: None)

        def get_response_data(self):
            p = os.path.normpath(os.path.join(self._root, self._path.lstrip("/")))
            if not p.startswith(self._root + os.sep):
                raise FileNotFoundError(self._path)
            return FileData(p)

    class Server(BaseServer):
        def get_handler(self, server_addr, peer, path, options):
            return Handler(server_addr, peer, path, options, root)

    # fbtftp's example server uses retries 5, timeout 5
    srv = Server(ADDR, port, 5, 5)
    ready(port)
    srv.run()


RUNNERS = {"tftpy": run_tftpy, "py3tftp": run_py3tftp, "fbtftp": run_fbtftp}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("server", choices=sorted(RUNNERS))
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-seconds", type=int, default=900)
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    signal.signal(signal.SIGALRM, lambda *_: os._exit(0))
    signal.alarm(a.max_seconds)  # bounded even if nobody stops us
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    RUNNERS[a.server](os.path.abspath(a.root), a.port)


if __name__ == "__main__":
    main()
