"""Benchmarks: each prints ratios against the plain alternative measured in the same run."""
