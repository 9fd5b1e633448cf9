"""Benchmarks: each prints ratios against a peer measured in the same script. Not tests."""
