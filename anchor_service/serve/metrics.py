"""The service's own counters, exported beside Serve's metrics on Ray's Prometheus endpoint.

Ray prefixes application metrics with `ray_` and counters end in `_total`, so these appear
as `ray_anchor_scored_items_total`, `ray_anchor_parse_failures_total` and
`ray_anchor_rejected_requests_total`, each also tagged with Serve's deployment, replica and
application.
"""

from __future__ import annotations

from collections.abc import Iterable

SCORED_ITEMS = "anchor_scored_items"
PARSE_FAILURES = "anchor_parse_failures"
REJECTED_REQUESTS = "anchor_rejected_requests"

# Reasons a request is rejected (the `reason` tag).
UNAUTHORIZED = "unauthorized"
TOO_LARGE = "too_large"
INVALID = "invalid"
OVERLOADED = "overloaded"
UNAVAILABLE = "unavailable"
TIMED_OUT = "timed_out"


class ServiceMetrics:
    """Counters of one ingress replica (created inside the replica: Ray must be running)."""

    def __init__(self) -> None:
        from ray.serve.metrics import Counter

        self.scored_items = Counter(
            SCORED_ITEMS,
            description="Explanations the judge answered, by status (scored, unscored, empty).",
            tag_keys=("status",),
        )
        self.parse_failures = Counter(
            PARSE_FAILURES,
            description="Model output that could not be read: `judge` (an unscored verdict) "
            "or `policy` (an answer with no option letter).",
            tag_keys=("source",),
        )
        self.rejected_requests = Counter(
            REJECTED_REQUESTS,
            description="Requests answered with an error, by reason (unauthorized, too_large, "
            "timed_out, invalid, overloaded, unavailable).",
            tag_keys=("reason",),
        )

    def record_scores(self, statuses: Iterable[str]) -> None:
        """Count judged items by status; an `unscored` one is also a judge parse failure."""
        for status in statuses:
            self.scored_items.inc(tags={"status": status})
            if status == "unscored":
                self.parse_failures.inc(tags={"source": "judge"})

    def record_unparseable_answers(self, count: int) -> None:
        if count:
            self.parse_failures.inc(count, tags={"source": "policy"})

    def record_rejected(self, reason: str) -> None:
        self.rejected_requests.inc(tags={"reason": reason})
