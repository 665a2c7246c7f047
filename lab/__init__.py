"""The latency lab: topologies, the processes it runs and the floors it measures against.

Shared by the benchmarks (``bench/``) and the latency suite (``tests/latency``); it uses only the
product's public APIs (the app factories, the composition root, the config, ``blog.serving``).

- ``topology``: which domains run extracted (``BLOG_BENCH_TOPOLOGY``, or the config file);
- ``configs``: the config files of the lab's monolith and services (the user's cost settings,
  throw-away state);
- ``cpus``: CPU sets (``taskset`` syntax) and pinning;
- ``processes``: the lab's services, its monolith under the production server, the lean
  baseline and the ladder's floor servers, all ``blog.serving.ServerProcess``;
- ``floor_servers``, ``floor_flask``: F0's socket server and the ladder's bare WSGI function and
  bare Flask app, to take a hop apart;
- ``lean_app``, ``lean_wsgi``: the lean baseline, the post list as a bare Flask + SQLAlchemy
  route;
- ``wrk``: running wrk pinned and bounded, and reading its summary;
- ``keepalive``: the plain keep-alive ``http.client`` client (the floor and the load generator);
- ``payloads``: the 1-megapixel JPEG and its multipart upload body;
- ``server_timing``: reading ``Server-Timing`` headers;
- ``procstat``: CPU time and memory of process trees, from /proc;
- ``stats``: percentiles.
"""
