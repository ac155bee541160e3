#!/usr/bin/env python3
"""A shop's webhook receiver for the gateway's events (contract 4.4), standard library only.

    WEBHOOK_SECRET=... python3 webhook_receiver.py [port]

then set the gateway's `webhooks.url` to http://<this host>:<port>/ and `webhooks.secret`
to the same secret. It checks `X-Gateway-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>">` over the raw bytes, refuses timestamps more than 5 minutes away
(replays), answers 2xx only once the event is handled, and handles each event id once:
delivery is at least once, so the same event may come again.
"""
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = os.environ["WEBHOOK_SECRET"].encode()
TOLERANCE_S = 300
seen = set()  # a real shop keeps handled event ids in its database


def verified(header, body):
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit() or abs(time.time() - int(stamps[0])) > TOLERANCE_S:
        return False
    expected = hmac.new(SECRET, stamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(v, expected) for k, v in parts if k == "v1")


def handle(event):
    # Act on the money here, e.g. refund when type == "payment.refund_required", then call
    # POST /api/v1/payments/<id>/refunded {"refund_no": ...} on the gateway.
    print(event["id"], event["type"], json.dumps(event["data"]), flush=True)


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not verified(self.headers.get("X-Gateway-Signature", ""), body):
            return self.answer(400, b"bad signature")
        event = json.loads(body)
        if event["id"] not in seen:
            handle(event)
            seen.add(event["id"])
        self.answer(200, b"ok")

    def answer(self, status, text):
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    print("listening on", port, flush=True)
    HTTPServer(("127.0.0.1", port), Receiver).serve_forever()
