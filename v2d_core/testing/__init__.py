"""Offline helpers shared by the tests, the demo and the benchmarks: generated videos and a local server."""
