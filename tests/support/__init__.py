"""Test support code shared by tests and benchmarks (importable, no pytest needed)."""
