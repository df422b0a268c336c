"""Fixtures: the bootstorm server started as a user would, one per test or per module."""
from __future__ import annotations

import os

import pytest

from tftp_harness import (BIG_NAME, BIG_SIZE, ROLLOVER_NAME, ROLLOVER_SIZE, STANDARD_SIZES,
                          Server, make_file)



def _start(factory_list, root, *extra, **kw) -> Server:
    server = Server(root, *extra, **kw)
    factory_list.append(server)
    return server


def _stop_all(servers):
    failures = []
    for server in servers:
        rc = server.stop()
        if rc != 0:
            failures.append(f"server {server.args} exited {rc!r}; log tail:\n"
                            + "\n".join(server.snapshot()[-20:]))
    assert not failures, "\n".join(failures)


@pytest.fixture
def tftp_server():
    """Factory: tftp_server(root, '--lowercase', ...) -> a running Server. Every server
    is stopped with SIGTERM at the end of the test and must exit 0."""
    servers: list[Server] = []

    def start(root, *extra, **kw):
        return _start(servers, root, *extra, **kw)

    yield start
    _stop_all(servers)


@pytest.fixture(scope="module")
def std_root(tmp_path_factory):
    """A root with the standard files: returns (root, {name: content})."""
    root = tmp_path_factory.mktemp("std_root")
    files = {name: make_file(root, name, size) for name, size in STANDARD_SIZES.items()}
    return root, files


@pytest.fixture(scope="module")
def std_server(std_root):
    """One default server over std_root, shared by a module's tests."""
    servers: list[Server] = []
    server = _start(servers, std_root[0])
    yield server
    _stop_all(servers)


@pytest.fixture(scope="module")
def big_files(std_root):
    """The rollover (32 MiB + 100) and 20 MiB files in std_root: {name: sha256}."""
    import hashlib
    root, _ = std_root
    out = {}
    for name, size in ((ROLLOVER_NAME, ROLLOVER_SIZE), (BIG_NAME, BIG_SIZE)):
        data = make_file(root, name, size)
        out[name] = hashlib.sha256(data).hexdigest()
    return out


@pytest.fixture
def out_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


def pytest_collection_modifyitems(items):
    # a hint for readers of failures: these tests need only loopback
    for item in items:
        if os.path.dirname(str(item.fspath)).endswith("integration"):
            item.add_marker(pytest.mark.integration)


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: talks to a real bootstorm server on 127.0.0.1")
