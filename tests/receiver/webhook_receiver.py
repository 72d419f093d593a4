#!/usr/bin/env python3
"""A Standard Webhooks receiver for legacy-bridge's tests.

Every POST (other than /control) is verified with the `standardwebhooks` package, not with
legacy-bridge's code: a bad signature is answered 401. Each such request is logged as one
JSON line {"webhook_id", "verified", "status", "subject", "type", "sequence", "id",
"received_at"} (unix seconds), before the answer is sent.

    python webhook_receiver.py --port 0 --secret whsec_... [--log FILE]

prints `PORT <n>` as its first line of stdout once listening on 127.0.0.1.

    POST /control {"status": 500, "count": 2}     answer 500 to the next 2 requests
    POST /control {"status": 503, "count": null, "retry_after": "7", "delay_ms": 500}
                                                   503 with Retry-After, after 0.5 s, forever
    POST /control {"status": 200}                  back to normal
    POST /control {"subjects": {"A1/S01": 400}}    400 to events of subject A1/S01 (forever;
                                                   other requests as status/count say)
    GET  /received                                 entries logged since this process started
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

NORMAL = {"status": 200, "count": None, "retry_after": None, "delay_ms": 0, "subjects": {}}


class State:
    def __init__(self, secret, log_path):
        self.webhook = Webhook(secret)
        self.log_path = log_path
        self.lock = threading.Lock()
        self.mode = dict(NORMAL)
        self.entries = []

    def control(self, mode):
        with self.lock:
            self.mode = {key: mode.get(key, NORMAL[key]) for key in NORMAL}

    def next_answer(self, subject):
        """The status, Retry-After and delay for the next verified request (of `subject`)."""
        with self.lock:
            mode = dict(self.mode)
            if subject in (mode["subjects"] or {}):
                return mode["subjects"][subject], None, mode["delay_ms"] or 0
            if mode["count"] is not None:
                if mode["count"] <= 0:
                    self.mode = dict(NORMAL)
                    mode = dict(NORMAL)
                else:
                    self.mode["count"] -= 1
            return mode["status"], mode["retry_after"], mode["delay_ms"] or 0

    def record(self, entry):
        with self.lock:
            self.entries.append(entry)
            if self.log_path:
                with open(self.log_path, "a", encoding="utf-8") as log:
                    log.write(json.dumps(entry) + "\n")

    def received(self):
        with self.lock:
            return list(self.entries)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None  # set in main

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def do_GET(self):
        if self.path != "/received":
            return self.answer(404)
        self.answer(200, json.dumps(self.state.received()).encode())

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/control":
            self.state.control(json.loads(body))
            return self.answer(200, b"{}")
        try:
            event = self.state.webhook.verify(body, dict(self.headers.items()))
            verified = True
        except Exception:  # any failure to verify, a non-UTF-8 body included
            event, verified = None, False
        event = event if isinstance(event, dict) else {}
        status, retry_after, delay_ms = (
            (401, None, 0) if not verified else self.state.next_answer(event.get("subject"))
        )
        self.state.record({
            "webhook_id": self.headers.get("webhook-id"),
            "verified": verified,
            "status": status,
            "subject": event.get("subject"),
            "type": event.get("type"),
            "sequence": event.get("sequence"),
            "id": event.get("id"),
            "received_at": time.time(),
        })
        time.sleep(delay_ms / 1000)
        self.answer(status, b"{}", [("Retry-After", str(retry_after))] if retry_after else [])


def main():
    parser = argparse.ArgumentParser(description="Standard Webhooks test receiver")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--log")
    args = parser.parse_args()
    Handler.state = State(args.secret, args.log)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
