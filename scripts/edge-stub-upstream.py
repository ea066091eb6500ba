#!/usr/bin/env python3
"""A stand-in upstream for smoke-testing the Worker until the native mock
upstream (`syncoord mock-upstream`) can be used instead.

Binds 127.0.0.1 on an ephemeral port, prints its base URL on the first line
of stdout, and answers every request with JSON naming the method, path and
a per-server call number. `GET /__stub/calls` returns how many other calls
it has served (not counted itself). Stops on SIGTERM or SIGINT.
"""

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
calls = 0


class Handler(BaseHTTPRequestHandler):
    def _answer(self):
        global calls
        if self.path == "/__stub/calls":
            with lock:
                body = json.dumps({"calls": calls}).encode()
        else:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            with lock:
                calls += 1
                n = calls
            body = json.dumps({"method": self.command, "path": self.path, "call": n}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, format, *args):
        sys.stderr.write("stub-upstream: " + (format % args) + "\n")


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)

    def stop(*_):
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
