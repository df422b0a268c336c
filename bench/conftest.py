"""pytest-benchmark settings for the micro benchmarks: `python -m pytest bench/ --benchmark-disable-gc`.
Never part of the test suite (testpaths is tests/): speed is reported, not asserted."""
