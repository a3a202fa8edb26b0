#!/usr/bin/env python3
"""A tiny Alertmanager webhook receiver for scripts/e2e.sh (standard library only).

Listens on 127.0.0.1 on a port the OS picks, writes that port to --port-file once
it is listening, and appends every notification it receives (the JSON body
Alertmanager POSTs) as one line to --out. Answers 200 to every POST.
"""

import argparse
import http.server
import json
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port-file", required=True, help="where to write the port")
    parser.add_argument("--out", required=True, help="JSON lines file of notifications")
    args = parser.parse_args()

    out = open(args.out, "a", encoding="utf-8")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            try:
                doc = json.loads(body)
            except ValueError:
                doc = {"unparsable": body.decode("utf-8", "replace")}
            out.write(json.dumps(doc, ensure_ascii=False) + "\n")
            out.flush()
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, fmt: str, *fargs) -> None:
            sys.stderr.write("webhook: " + (fmt % fargs) + "\n")

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{server.server_address[1]}\n")
    os.replace(tmp, args.port_file)  # atomic: readers never see half a port
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
