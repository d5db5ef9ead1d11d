"""What a web server costs the terminal: edge.kiosk (http.server) vs Starlette + uvicorn.

Each server runs alone in a fresh Python process serving one small JSON route; this parent
times its imports, sends it 200 GETs and reads its memory (psutil) and CPU time.

    PYTHONPATH=. .venv/bin/python scripts/web_footprint.py [runs]

docs/design.md ("The two web servers") has the figures.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time

import psutil  # type: ignore[import-untyped]  # no stubs installed

REQUESTS = 200


def child(mode: str, port: int) -> None:
    """Import and start one server, say `ready <import seconds>`, serve until stdin closes.

    mode: `bare` (the interpreter), `stdlib` or `starlette` (a trivial app alone), `agent`
    (only what the edge agent imports anyway: edge.config, paho, cryptography...), `kiosk`
    (edge.kiosk.Kiosk, on top of that) or `agent+starlette` (the trivial app on top of it).
    """
    if mode.startswith("agent") or mode == "kiosk":
        import edge.config  # noqa: F401
    t0 = time.perf_counter()
    if mode == "kiosk":
        from edge.kiosk import Kiosk

        took = time.perf_counter() - t0
        kiosk = Kiosk("127.0.0.1", port)
        kiosk.start()
        print("ready", took, flush=True)
        sys.stdin.read()
        kiosk.close()
    elif mode == "stdlib":
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        took = time.perf_counter() - t0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"fridges": {}, "alerts": [], "uplink": {}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        print("ready", took, flush=True)
        sys.stdin.read()
        httpd.shutdown()
    elif mode.endswith("starlette"):
        import threading

        import uvicorn
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        took = time.perf_counter() - t0

        async def status(request: Request) -> JSONResponse:
            return JSONResponse({"fridges": {}, "alerts": [], "uplink": {}})

        app = Starlette(routes=[Route("/api/status", status)])
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="off",
                                               access_log=False))

        def control() -> None:
            while not server.started:
                time.sleep(0.01)
            print("ready", took, flush=True)
            sys.stdin.read()
            server.should_exit = True

        threading.Thread(target=control, daemon=True).start()
        server.run()
    else:  # bare, agent: no server, for reference
        print("ready", time.perf_counter() - t0, flush=True)
        sys.stdin.read()


def measure(mode: str) -> dict[str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", mode, str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    word, took = proc.stdout.readline().split()
    assert word == "ready"
    ready_s = time.perf_counter() - start
    p = psutil.Process(proc.pid)
    idle = p.memory_full_info()
    cpu0 = sum(p.cpu_times()[:2])
    t0 = time.perf_counter()
    if mode not in ("bare", "agent"):
        for _ in range(REQUESTS):  # one connection each, as the terminal's page polls
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/api/status")
            resp = conn.getresponse()
            assert resp.status == 200, resp.status
            resp.read()
            conn.close()
    wall = time.perf_counter() - t0
    cpu = sum(p.cpu_times()[:2]) - cpu0
    busy = p.memory_full_info()
    threads = p.num_threads()
    proc.stdin.close()
    proc.wait(10)
    mib = 1024 * 1024
    return {"import_s": float(took), "ready_s": ready_s, "rss_idle_mib": idle.rss / mib,
            "rss_mib": busy.rss / mib, "uss_mib": busy.uss / mib, "threads": threads,
            "cpu_ms_per_req": cpu / REQUESTS * 1000, "ms_per_req": wall / REQUESTS * 1000}


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    for n in range(1, runs + 1):
        for mode in ("bare", "stdlib", "starlette", "agent", "kiosk", "agent+starlette"):
            print(json.dumps({"run": n, "mode": mode,
                              **{k: round(v, 3) for k, v in measure(mode).items()}}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
