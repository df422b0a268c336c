"""The benchmark's load generator is itself checked: bench/selftest_loadgen.py runs it against
a deliberately lossy in-process server (gaps, duplicates, rollover, a stray TID) and exits 1
when any transfer arrives short or wrong."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_loadgen_selftest():
    p = subprocess.run([sys.executable, "-m", "bench.selftest_loadgen"], cwd=ROOT,
                       capture_output=True, text=True, timeout=240)
    lines = p.stdout.splitlines()
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(lines) == 7 and all(line.startswith("ok ") for line in lines), p.stdout
