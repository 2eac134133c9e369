#!/usr/bin/python3
"""The HotROD-style service of lab/apps/hotrod.ts, thread per connection (ThreadingHTTPServer).

Same roles, paths, answers and tunables as hotrod.ts (read its header); plain only: no trace header
is ever sent. Every call a request causes is made on the thread that serves it: the sequential
calls with http.client over keep-alive connections kept per thread, the driver's fan-out with
asyncio on that same thread (a loop per request, one connection per call), never a thread pool.
"""
import asyncio
import http.client
import json
import math
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "hotrod-data.json"), encoding="utf-8") as f:
    DATA = json.load(f)
ROLE = os.environ.get("HOTROD_ROLE", "")
PORT = int(os.environ.get("HOTROD_PORT", "8080"))
POD = os.environ.get("HOTROD_POD", ROLE)
CONFIG = os.environ.get("HOTROD_CONFIG")
UPSTREAM_TIMEOUT_S = 10.0


class HttpError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


_tunables = {"delayMs": 0, "extraDelayMs": 0, "fanout": 5, "routeBytes": 2048, **DATA["defaults"].get(ROLE, {})}
_stamp = None
_lock = threading.Lock()


def current_tunables():
    """The defaults, then HOTROD_CONFIG when it changed since the last request."""
    global _tunables, _stamp
    if not CONFIG:
        return _tunables
    try:
        mtime = os.stat(CONFIG).st_mtime_ns
        with _lock:
            if mtime != _stamp:
                with open(CONFIG, encoding="utf-8") as f:
                    _tunables = {**_tunables, **DATA["defaults"].get(ROLE, {}), **json.load(f)}
                _stamp = mtime
    except (OSError, ValueError):
        pass  # no file (yet) or half-written: keep what we have
    return _tunables


def fnv1a(s):
    h = 0x811C9DC5
    for b in s.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def parse_point(s):
    try:
        x, y = s.split(",")
        return int(x), int(y)
    except (AttributeError, ValueError):
        raise HttpError(400, "bad location %s: want x,y" % json.dumps(s)) from None


def candidate(location, i):
    x, y = parse_point(location)
    h = fnv1a("%s#%d" % (location, i))
    dx = ((h >> 8) % 201) - 100
    dy = ((h >> 16) % 201) - 100
    return {"id": "T7%05dC" % (h % 100000), "location": "%d,%d" % (x + dx, y + dy)}


def polyline(a, b, size):
    out, k, n = [], 0, 0
    while n < size:
        t = k / 32
        p = "%d,%d;" % (round_half_up(a[0] + (b[0] - a[0]) * t), round_half_up(a[1] + (b[1] - a[1]) * t))
        out.append(p)
        n += len(p)
        k = (k + 1) % 33
    return "".join(out)[:size]


def round_half_up(v):
    """JavaScript's Math.round (Python's round() rounds half to even)."""
    return math.floor(v + 0.5)


def upstream(app):
    host = os.environ.get("%s_SERVICE_HOST" % app.upper())
    port = int(os.environ.get("%s_SERVICE_PORT" % app.upper(), "80"))
    if not host:
        raise HttpError(500, "no %s Service (%s_SERVICE_HOST is not set)" % (app, app.upper()))
    return host, port


_local = threading.local()


def get(app, path):
    """GET from a Service on this thread's keep-alive connection; its JSON, or HttpError."""
    host, port = upstream(app)
    pool = _local.__dict__.setdefault("pool", {})
    for attempt in (0, 1):
        conn = pool.get((host, port))
        fresh = conn is None
        if fresh:
            conn = pool[(host, port)] = http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT_S)
        try:
            conn.request("GET", path)
            res = conn.getresponse()
            body = res.read()
            break
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
            conn.close()
            del pool[(host, port)]
            if fresh or attempt:  # a reused connection closed by the peer is retried once
                raise HttpError(502, "%s %s: %s" % (app, path, e)) from None
        except OSError as e:
            conn.close()
            del pool[(host, port)]
            raise HttpError(502, "%s %s: %s" % (app, path, e)) from None
    return _answer(app, path, res.status, body)


def _answer(app, path, status, body):
    if status != 200:
        raise HttpError(404 if status == 404 else 502, "%s %s: %d %s" % (app, path, status, body.decode(errors="replace")))
    try:
        return json.loads(body)
    except ValueError as e:
        raise HttpError(502, "%s %s: bad JSON: %s" % (app, path, e)) from None


async def _get_async(app, path):
    host, port = upstream(app)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), UPSTREAM_TIMEOUT_S)
    try:
        writer.write(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (path, host, port)).encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), UPSTREAM_TIMEOUT_S)  # to EOF: Connection: close
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise HttpError(502, "%s %s: no HTTP answer" % (app, path)) from None
    return _answer(app, path, status, body)


def fan_out(app, paths):
    """GET every path at once, on this thread (its own asyncio loop): answers in order."""

    async def all_of():
        return await asyncio.gather(*(_get_async(app, p) for p in paths))

    return asyncio.run(all_of())


def handle(path, q, t, traceparent):
    arg = lambda k: q.get(k, [""])[0]  # noqa: E731
    route = "%s %s" % (ROLE, path)
    if route == "frontend /dispatch":
        cid = arg("customer")
        customer = get("customer", "/customer?id=%s" % urllib.parse.quote(cid))
        found = get("driver", "/drivers?location=%s" % urllib.parse.quote(str(customer["location"])))
        drivers = found["drivers"]
        best = drivers[0]
        return {
            "customer": {"id": cid, "name": customer["name"], "location": customer["location"]},
            "driver": {"id": best["id"], "location": best["location"], "etaS": best["etaS"]},
            "routes": len(drivers),
            "served": {"frontend": POD, "customer": customer["pod"], "driver": found["pod"], "route": [d["routePod"] for d in drivers]},
            "traceparents": {
                "frontend": traceparent,
                "customer": customer["traceparent"],
                "driver": found["traceparent"],
                "route": [d["routeTraceparent"] for d in drivers],
            },
        }
    if route == "customer /customer":
        cid = arg("id")
        c = DATA["customers"].get(cid)
        if c is None:
            raise HttpError(404, "no customer %s" % json.dumps(cid))
        return {"id": cid, "name": c["name"], "location": c["location"], "pod": POD, "traceparent": traceparent}
    if route == "driver /drivers":
        location = arg("location")
        parse_point(location)
        cands = [candidate(location, i) for i in range(t["fanout"])]
        paths = ["/route?from=%s&to=%s" % (urllib.parse.quote(c["location"]), urllib.parse.quote(location)) for c in cands]
        routes = fan_out("route", paths)
        drivers = [{**c, "etaS": r["etaS"], "routePod": r["pod"], "routeTraceparent": r["traceparent"]} for c, r in zip(cands, routes)]
        drivers.sort(key=lambda d: (d["etaS"], d["id"]))
        return {"location": location, "drivers": drivers, "pod": POD, "traceparent": traceparent}
    if route == "route /route":
        a, b = parse_point(arg("from")), parse_point(arg("to"))
        eta = (abs(a[0] - b[0]) + abs(a[1] - b[1])) * 3
        return {"from": arg("from"), "to": arg("to"), "etaS": eta, "polyline": polyline(a, b, t["routeBytes"]), "pod": POD, "traceparent": traceparent}
    raise HttpError(404, "%s has no %s" % (ROLE, path))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the Node services

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/healthz":
            return self.send(200, "ok")
        t = current_tunables()
        try:
            body = handle(url.path, urllib.parse.parse_qs(url.query), t, self.headers.get("traceparent"))
        except HttpError as e:
            return self.send(e.status, {"error": str(e), "pod": POD})
        except Exception as e:  # noqa: BLE001 - a bug answers 500, the thread lives on
            return self.send(500, {"error": repr(e), "pod": POD})
        delay_ms = t["delayMs"] + t["extraDelayMs"]
        if delay_ms > 0:
            time.sleep(delay_ms / 1000)
        self.send(200, body)

    def send(self, status, body):
        text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    if ROLE not in ("frontend", "customer", "driver", "route"):
        sys.exit("HOTROD_ROLE=%s: want frontend, customer, driver or route" % json.dumps(ROLE))
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True
    print("%s (%s, plain, thread per connection) listening on :%d pid %d" % (POD, ROLE, PORT, os.getpid()), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
