"""The server's Prometheus metrics (prometheus-client), one registry per application: two apps in one process
(tests) never count into each other's."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("mauto_http_requests", "HTTP requests answered, by route and status.",
                                ["route", "status"], registry=registry)
        self.latency = Histogram("mauto_http_request_seconds", "Time to answer a request, by route.", ["route"],
                                 registry=registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.events = Counter("mauto_events_accepted", "Events accepted by POST /v1/events (duplicates not "
                                                       "counted).", registry=registry)
        self.duplicates = Counter("mauto_events_duplicate", "Events posted again with an id already stored.",
                                  registry=registry)
        self.unsubscribes = Counter("mauto_unsubscribes", "Unsubscribes recorded, by channel and source.",
                                    ["channel", "source"], registry=registry)
        self.opens = Counter("mauto_opens", "Opens recorded, prefetched by a privacy proxy or not.",
                             ["prefetched"], registry=registry)
        self.clicks = Counter("mauto_clicks", "Clicks recorded.", registry=registry)
        self.feedback = Counter("mauto_provider_feedback", "Bounces, complaints, deliveries and STOPs recorded, "
                                                           "by provider and kind.", ["provider", "kind"],
                                registry=registry)
        self.commit = Histogram("mauto_store_commit_seconds", "Time of one grouped write transaction, commit "
                                                              "included.", registry=registry,
                                buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5))
        self.group = Histogram("mauto_store_group_jobs", "Requests written by one grouped commit.",
                               registry=registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        self.in_flight = Gauge("mauto_http_requests_in_flight", "Requests being answered.", registry=registry)

    def committed(self, seconds: float, jobs: int) -> None:
        self.commit.observe(seconds)
        self.group.observe(jobs)

    def text(self) -> bytes:
        return generate_latest(self.registry)
