"""The latency lab: topologies, the processes it runs and the floors it measures against.

Shared by the benchmarks (``bench/``) and the latency suite (``tests/latency``); it uses only the
product's public APIs (the app factories, the composition root, the config).
"""
