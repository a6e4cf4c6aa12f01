"""The sandbox's sample app: one page with a greeting, which `kapsa sandbox tour` changes."""

import os
from http.server import BaseHTTPRequestHandler, HTTPServer

GREETING = "Hello from Kapsa"


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{GREETING}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    # In a container the port must be reachable from outside the pod.
    address = ("0.0.0.0", int(os.environ.get("PORT", "8080")))  # noqa: S104
    HTTPServer(address, Hello).serve_forever()
