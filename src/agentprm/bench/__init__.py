"""Benchmarks as plain functions that return dicts; the CLI prints them and writes summary.json."""
