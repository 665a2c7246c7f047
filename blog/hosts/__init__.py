"""The hosts lab: every process of a deployment on a host of its own, on one machine, with
real network distance between them (``flask --app blog hosts up``; root only).

On one machine's loopback a hop costs tens of microseconds, so the tutorial's warning ("a
function call costs 1 µs, an HTTP call 10 ms+") cannot be seen: the cost that grows with the
network between services is missing. This package puts it back without leaving the machine:

- ``netns``: network namespaces from Python (``setns(2)`` through ctypes: 3.11 has no
  ``os.setns``), ``ip``/``tc``/``nft`` in a namespace, the processes living in one;
- ``plan``: which hosts, which addresses (198.18.0.0/24, RFC 2544's benchmarking range, and only
  inside the lab's namespaces), which links, and the config file the hosts run with;
- ``relay``: the one relay program: the delay proxy in front of each service host (RTT and
  jitter, since this kernel has no netem) and the forwarder joining the lab to the root
  namespace (databases, broker, registry in; the monolith out on 127.0.0.1);
- ``lab``: building and removing it all, with a state file of everything made;
- ``cli``: ``hosts up|down|status|set``.

Nothing here is imported by the product's request path: only the CLI and the lab use it.
"""
