"""A stand-in control plane for the pod agent's tests: it takes /report posts on 127.0.0.1 and keeps what a control
plane would store (first copy of each line and point), when each report came, and the report fields the agent
sends (status, live rows, metrics source). Until `refuse_for_s` has passed it answers 503. A GET (a boot fetch)
answers 410 with podtui's JSON refusal, as for a run that has ended."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ReportSink:
    def __init__(self, refuse_for_s: float = 0.0, answer: dict[str, Any] | None = None) -> None:
        self.open_at = time.time() + refuse_for_s
        self.refused = 0
        self.reports: list[tuple[float, dict[str, Any]]] = []
        """(arrival time, body) of every report taken."""
        self.logged: dict[int, tuple[str, str]] = {}
        """seq -> (stream, text)"""
        self.lines: dict[int, str] = {}
        """seq -> text"""
        self.metrics: dict[tuple[str, int], float] = {}
        self.statuses: list[str] = []
        self.live: list[list[str]] = []
        self.sources: list[str] = []
        self.answer = answer or {"stop": False}
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if time.time() < sink.open_at:
                    sink.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                sink.take(body)
                data = json.dumps(sink.answer).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # a boot fetch: this stand-in says the run is over, as podtui does
                data = json.dumps({"error": {"code": "run_ended", "message": "the run has ended"}}).encode()
                self.send_response(410)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self, body: dict[str, Any]) -> None:
        self.reports.append((time.time(), body))
        for line in body.get("logs", []):
            self.logged.setdefault(line["seq"], (line["stream"], line["text"]))
            self.lines.setdefault(line["seq"], line["text"])
        for m in body.get("metrics", []):
            self.metrics.setdefault((m["name"], m["step"]), m["value"])
        if body.get("status"):
            self.statuses.append(body["status"])
        if "live" in body:
            self.live.append(body["live"])
        if "metrics_source" in body:
            self.sources.append(body["metrics_source"])
