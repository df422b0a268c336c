"""bootstorm as a user installs it: a prebuilt wheel, no compiler, run from outside the source tree.

Builds the sdist and the manylinux wheel once per session with wheels/build.sh, then:
  - installs the wheel into a fresh venv with `pip install --no-index --find-links WHEELHOUSE`
    (runtime dependencies downloaded as wheels beforehand), with CC/CXX=/bin/false and a PATH
    holding no compiler;
  - runs `bootstorm serve` from that venv on 127.0.0.1 and fetches a random file with
    `bootstorm get` and with curl, byte-exact;
  - proves the installed package, not the source tree, is what runs;
  - builds the sdist from source in another fresh venv (Cython only at build time).

In CI (env CI set) nothing here is skipped: a missing tool fails the test instead.
Only 127.0.0.1 is contacted, besides pip talking to the package index.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "wheels" / "build.sh"
DIST = ROOT / "wheels" / "dist"
PYTAG = f"cp{sys.version_info.major}{sys.version_info.minor}"

pytestmark = pytest.mark.timeout(900)


def need(ok: bool, why: str) -> None:
    """Skip where a tool is missing on a developer's machine; fail in CI."""
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"required for the wheel test: {why}")
        pytest.skip(why)


def run(cmd, *, env=None, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, timeout=timeout,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


def clean_env(**extra) -> dict[str, str]:
    """The environment of a user's shell: nothing pointing into the source tree."""
    keep = ("PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
    env = {k: v for k, v in os.environ.items()
           if k in keep or not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV", "CONDA"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def built() -> tuple[Path, Path]:
    """(wheel, sdist) from wheels/build.sh, run once per session."""
    need(shutil.which("gcc") is not None or shutil.which("cc") is not None,
         "a C compiler to build the wheel")
    env = clean_env(PYTHON=sys.executable)
    env.pop("BOOTSTORM_LIMITED_API", None)
    proc = run(["bash", BUILD], env=env, cwd=ROOT, timeout=600)
    wheels = sorted(DIST.glob(f"bootstorm-*-{PYTAG}-{PYTAG}-*manylinux*.whl"))
    sdists = sorted(DIST.glob("bootstorm-*.tar.gz"))
    assert len(wheels) == 1, (wheels, proc.stdout[-2000:])
    assert len(sdists) == 1, sdists
    return wheels[0], sdists[0]


def make_venv(path: Path) -> Path:
    run([sys.executable, "-m", "venv", path], env=clean_env())
    return path / "bin" / "python"


@pytest.fixture(scope="session")
def no_compiler_path(tmp_path_factory) -> str:
    """A PATH directory with only the tools a user's host has: no gcc, cc, c++, ld."""
    bindir = tmp_path_factory.mktemp("userbin")
    for tool in ("curl", "sh", "bash", "env", "uname", "ls", "cat"):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    for compiler in ("gcc", "cc", "c++", "g++", "clang", "ld", "x86_64-linux-gnu-gcc"):
        assert shutil.which(compiler, path=str(bindir)) is None
    return str(bindir)


@pytest.fixture(scope="session")
def user_venv(built, tmp_path_factory, no_compiler_path) -> Path:
    """A fresh venv with bootstorm installed from the wheel, offline, with no compiler."""
    wheel, _ = built
    base = tmp_path_factory.mktemp("user")
    wheelhouse = base / "wheelhouse"
    wheelhouse.mkdir()
    py = make_venv(base / "venv")
    # The runtime dependencies, as binary wheels for this interpreter, from the index.
    run([py, "-m", "pip", "download", "--only-binary", ":all:", "--dest", wheelhouse, wheel],
        env=clean_env(), cwd=base, timeout=300)
    if not (wheelhouse / wheel.name).exists():
        shutil.copy2(wheel, wheelhouse)
    assert not list(wheelhouse.glob("*.tar.gz")), "the wheelhouse must hold wheels only"
    # PIP_CONFIG_FILE=/dev/null: no pip.conf may add find-links or indexes behind our back
    env = clean_env(PATH=no_compiler_path, CC="/bin/false", CXX="/bin/false",
                    LDSHARED="/bin/false", PIP_CONFIG_FILE=os.devnull)
    run([py, "-m", "pip", "install", "--no-index", "--only-binary", ":all:",
         "--find-links", wheelhouse, "bootstorm"], env=env, cwd=base, timeout=300)
    return base / "venv"


def test_wheel_tag_and_metadata(built):
    wheel, _ = built
    # the platform part may carry an alias before the PEP 600 tag: manylinux2014_x86_64.manylinux_2_17_x86_64
    assert re.search(rf"-{PYTAG}-{PYTAG}-(manylinux\w+\.)?manylinux_2_\d+_(x86_64|aarch64)\.whl$",
                     wheel.name), wheel.name
    # the glibc symbols allow manylinux_2_17 (docs/wheels.md): nothing newer slipped in
    assert "manylinux_2_17_" in wheel.name, wheel.name
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
    assert any(re.match(r"bootstorm/_native/tftp\.cpython-.*\.so$", n) for n in names), names
    requires = meta.get_all("Requires-Dist") or []
    # Cython is a build dependency, and a test one (the hot-path annotation test), never a
    # runtime requirement
    assert not [r for r in requires if r.lower().startswith("cython") and "extra ==" not in r], requires
    assert any(r.startswith("uvloop") for r in requires), requires
    assert any(r.startswith("msgspec") for r in requires), requires


def test_installed_package_is_the_wheel_not_the_source_tree(user_venv, tmp_path):
    py = user_venv / "bin" / "python"
    out = run([py, "-c", "import bootstorm, bootstorm._native.tftp as t; "
                         "print(bootstorm.__file__); print(t.__file__)"],
              env=clean_env(), cwd=tmp_path).stdout.split()
    venv = str(user_venv.resolve())
    for path in out:
        resolved = str(Path(path).resolve())
        assert resolved.startswith(venv + os.sep), (path, venv)
        assert not resolved.startswith(str(ROOT / "src")), path
    assert out[1].endswith(".so")
    # no compiled-in path points back at a source checkout either: the .so was built elsewhere
    # and its module imports nothing from src/
    out = run([py, "-c", "import sys, bootstorm.cli, bootstorm.tftp; "
                         "print([m.__file__ for m in sys.modules.values() "
                         "if getattr(m, '__file__', None) and 'bootstorm' in m.__name__])"],
              env=clean_env(), cwd=tmp_path).stdout
    assert str(ROOT / "src") not in out, out


def test_serve_and_fetch_with_bootstorm_get_and_curl(user_venv, tmp_path, no_compiler_path):
    need(shutil.which("curl", path=no_compiler_path) is not None, "curl")
    root = tmp_path / "tftproot"
    root.mkdir()
    payload = os.urandom(1_500_007)  # not a multiple of any block size
    (root / "boot.img").write_bytes(payload)
    work = tmp_path / "client"
    work.mkdir()
    env = clean_env(PATH=no_compiler_path, CC="/bin/false", CXX="/bin/false")
    srv = subprocess.Popen(
        [str(user_venv / "bin" / "bootstorm"), "serve", "--tftp-root", str(root),
         "--listen", "127.0.0.1", "--tftp-port", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env=env, cwd=work)
    banner = []
    try:
        port = None
        for line in srv.stderr:
            banner.append(line)
            m = re.search(r"TFTP listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        assert port, "".join(banner)
        # the run-time probes of kernel features are reported at start
        assert re.search(r"UDP GSO (on|off)", banner[-1]) and "openat2" in banner[-1], banner

        got = work / "via-bootstorm-get.img"
        run([user_venv / "bin" / "bootstorm", "get", f"127.0.0.1:{port}", "boot.img",
             "-o", got], env=env, cwd=work, timeout=120)
        assert hashlib.sha256(got.read_bytes()).digest() == hashlib.sha256(payload).digest()

        got = work / "via-curl.img"
        run([Path(no_compiler_path) / "curl", "-s", "-o", got,
             f"tftp://127.0.0.1:{port}/boot.img"], env=env, cwd=work, timeout=120)
        assert got.read_bytes() == payload
    finally:
        srv.terminate()
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()
        srv.stderr.close()
    assert srv.returncode in (0, -15), (srv.returncode, "".join(banner))


def test_sdist_builds_from_source_with_cython_at_build_time_only(built, tmp_path):
    _, sdist = built
    py = make_venv(tmp_path / "venv")
    # A user's source install: build isolation fetches Cython (pinned like every build here).
    env = clean_env(PIP_CONSTRAINT=str(ROOT / "wheels" / "constraints.txt"))
    run([py, "-m", "pip", "install", "--no-binary", "bootstorm", sdist],
        env=env, cwd=tmp_path, timeout=600)
    out = run([py, "-c", "import importlib.util, bootstorm._native.tftp as t; "
                         "print(t.__file__); print(importlib.util.find_spec('Cython')); "
                         "print(t.parse_request(b'\\x00\\x01a.bin\\x00octet\\x00blksize\\x001468\\x00'))"],
              env=clean_env(), cwd=tmp_path).stdout.splitlines()
    assert out[0].startswith(str((tmp_path / "venv").resolve())) or out[0].startswith(str(tmp_path / "venv")), out
    assert out[1] == "None", "Cython must not be installed into the user's environment"
    assert out[2] == "(1, 'a.bin', 'octet', {'blksize': '1468'})", out
    requires = run([py, "-m", "pip", "show", "bootstorm"], env=clean_env(), cwd=tmp_path).stdout
    assert "cython" not in requires.lower(), requires
