"""Benchmarks: `make bench` (never part of `make test`). Each module here with a
`run(results_dir: Path) -> dict` is one benchmark; its dict is saved as JSON."""
