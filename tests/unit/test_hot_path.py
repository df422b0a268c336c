"""The per-packet path touches no Python object: Cython's annotation of every hot
function shows no line that calls into the Python C API (the `cython -a` view, white)."""
import ast
import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "src" / "bootstorm" / "_native"
# everything run per DATA/ACK packet or per retransmission
HOT = ("wheel_insert", "wheel_remove", "send_oack", "send_window", "file_unchanged", "on_ack",
       "on_timeout", "send_error_to", "handle_datagram", "clock", "load16", "store16",
       "peer_hash", "peer_find", "peer_insert", "peer_remove", "block_len", "drain_shared", "flush_batch", "read_errors",
       "send_one", "source_of", "poll_round", "spin", "clock_us")


def project_directives() -> dict:
    """The compiler directives of setup.py, the one place they are set."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "directives":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py defines no `directives`")


def annotated_lines(tmp_path: Path):
    for name in ("tftp.pyx", "tftp.pxd", "consts.pxi"):
        shutil.copy(NATIVE / name, tmp_path / name)
    args = [sys.executable, "-m", "cython", "-a", "-I", str(ROOT / "ext")]
    for key, value in project_directives().items():
        args += ["-X", f"{key}={value}"]
    subprocess.run(args + ["tftp.pyx", "-o", "tftp.c"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=240)
    page = (tmp_path / "tftp.html").read_text()
    for m in re.finditer(r'<pre class="cython line score-(\d+)"[^>]*>(.*?)</pre>', page, re.S):
        yield int(m.group(1)), html.unescape(re.sub("<[^>]+>", "", m.group(2))).strip()


def test_hot_functions_create_no_python_objects(tmp_path):
    current, seen, offending = None, set(), []
    for score, text in annotated_lines(tmp_path):
        head = re.search(r"cdef (?:inline )?[\w ]+?\*?(\w+)\((?:self|const|char|uint|Xfer)", text)
        if head:
            current = head.group(1)
        elif re.match(r"\+?\d+:\s*(def |cdef class |cpdef |@)", text):
            current = None
        if current in HOT:
            seen.add(current)
            if score:
                offending.append(f"{current}: score {score}: {text[:120]}")
    assert seen == set(HOT), f"hot functions not found in the annotation: {set(HOT) - seen}"
    assert offending == []


def test_directives_include_language_level_3():
    assert project_directives()["language_level"] == 3
