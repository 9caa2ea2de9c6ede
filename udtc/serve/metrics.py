"""``/metrics`` in the Prometheus text exposition format (version 0.0.4), written by hand: a few
counters, gauges and one histogram need no client library. Updated on the event loop only."""

from __future__ import annotations

from collections import defaultdict

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)  # seconds


class Metrics:
    def __init__(self, paths: tuple[str, ...]):
        self.paths = set(paths)
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)  # (method, path, status) -> count
        self.latency: dict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKETS))  # path -> bucket counts
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.latency_count: dict[str, int] = defaultdict(int)
        self.in_flight = 0

    def path_label(self, path: str) -> str:
        return path if path in self.paths else "other"  # bounded label values

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        path = self.path_label(path)
        self.requests[(method, path, status)] += 1
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.latency[path][i] += 1
        self.latency_sum[path] += seconds
        self.latency_count[path] += 1

    def render(self, gauges: dict[str, tuple[str, float]], counters: dict[str, tuple[str, float]]) -> str:
        """The exposition text; ``gauges``/``counters``: name -> (help, value) read at scrape time."""
        lines = ["# HELP udtc_http_requests_total HTTP requests by method, path and status code.",
                 "# TYPE udtc_http_requests_total counter"]
        for (method, path, status), count in sorted(self.requests.items()):
            lines.append(f'udtc_http_requests_total{{method="{method}",path="{path}",status="{status}"}} {count}')
        lines += ["# HELP udtc_http_request_duration_seconds Time from request to response, by path.",
                  "# TYPE udtc_http_request_duration_seconds histogram"]
        for path in sorted(self.latency_count):
            for bound, count in zip(BUCKETS, self.latency[path]):
                lines.append(f'udtc_http_request_duration_seconds_bucket{{path="{path}",le="{bound}"}} {count}')
            lines.append(f'udtc_http_request_duration_seconds_bucket{{path="{path}",le="+Inf"}} {self.latency_count[path]}')
            lines.append(f'udtc_http_request_duration_seconds_sum{{path="{path}"}} {self.latency_sum[path]:.6f}')
            lines.append(f'udtc_http_request_duration_seconds_count{{path="{path}"}} {self.latency_count[path]}')
        for name, (help_text, value) in counters.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value:g}"]
        for name, (help_text, value) in {**gauges, "udtc_http_requests_in_flight": (
                "HTTP requests being handled.", self.in_flight)}.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"
