"""geofed benchmarks: `make bench` runs every `bench_*.py` (or `python -m benchmarks NAME ...`)."""
