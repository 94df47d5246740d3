"""A slow origin for the fleet coalescing run: every GET waits 500 ms, answers max-age=3600,
and is counted (GET /count answers the count)."""
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

count = 0
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        global count
        if self.path == "/count":
            body = str(count).encode()
            self.send_response(200)
            self.send_header("Cache-Control", "no-store")
        else:
            with lock:
                count += 1
            time.sleep(0.5)
            body = b"x" * 1024
            self.send_response(200)
            self.send_header("Cache-Control", "max-age=3600")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
