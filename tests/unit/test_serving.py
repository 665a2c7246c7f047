"""Each server's command line: keep-alive, graceful stop, the configured workers and threads."""

from __future__ import annotations

import sys

from blog.config import ServerConfig
from blog.serving import server_command


def test_granian_serves_wsgi_with_workers_and_blocking_threads():
    argv = server_command(ServerConfig("granian", workers=2, threads=8), "blog.wsgi:app", 5000)
    assert argv[:3] == [sys.executable, "-m", "granian"]
    assert argv[-1] == "blog.wsgi:app"
    flags = dict(zip(argv[3:-1:2], argv[4:-1:2], strict=False))
    assert flags["--interface"] == "wsgi"
    assert (flags["--host"], flags["--port"]) == ("127.0.0.1", "5000")
    assert (flags["--workers"], flags["--blocking-threads"]) == ("2", "8")
    assert "--no-access-log" in argv  # the app logs each request itself, with its request id


def test_gunicorn_uses_the_gthread_config_and_the_configured_counts():
    argv = server_command(ServerConfig("gunicorn", workers=3, threads=4), "x.wsgi:app", 4000, 1)
    assert argv[:3] == [sys.executable, "-m", "gunicorn"]
    assert argv[argv.index("-c") + 1].endswith("extracted/gunicorn.conf.py")
    assert argv[argv.index("--workers") + 1] == "1"  # the launcher's override wins
    assert argv[argv.index("--threads") + 1] == "4"
    assert "127.0.0.1:4000" in argv


def test_waitress_is_one_process_with_threads():
    argv = server_command(ServerConfig("waitress", workers=1, threads=6), "x.wsgi:app", 4001)
    assert argv == [
        sys.executable,
        "-m",
        "waitress",
        "--listen=127.0.0.1:4001",
        "--threads=6",
        "x.wsgi:app",
    ]
