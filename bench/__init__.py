"""Benchmarks that run the real collectors against the lab on loopback."""
