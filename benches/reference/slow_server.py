#!/usr/bin/env python3
# Verbatim copy of ../shared/bench/slow_server.py (path relative to the repository root);
# only this two-line header is added, so the benchmark runs from a clean clone.
"""Loopback HTTP server for benchmarks: GET /delay/<ms> answers 200 after <ms>; /status/<code> answers that code."""
import sys, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        parts = self.path.strip("/").split("/")
        code = 200
        if parts[0] == "delay" and len(parts) > 1:
            time.sleep(int(parts[1]) / 1000)
        elif parts[0] == "status" and len(parts) > 1:
            code = int(parts[1])
        body = b"ok\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
