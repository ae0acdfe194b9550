"""Read a service's `/metrics` (Prometheus text format) from the command line."""

from __future__ import annotations

from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def scrape(url: str, timeout: float = 5.0) -> list[Sample]:
    """Every sample the endpoint exposes; raises `httpx.HTTPError` when it does not answer."""
    reply = httpx.get(url, timeout=timeout)
    reply.raise_for_status()
    return [s for family in text_string_to_metric_families(reply.text) for s in family.samples]


def totals(samples: list[Sample], name: str, *labels: str) -> dict[str, float]:
    """The values of the samples called `name`, summed by `labels` (joined with '/')."""
    summed: dict[str, float] = defaultdict(float)
    for sample in samples:
        if sample.name == name:
            summed["/".join(sample.labels.get(label, "") for label in labels)] += sample.value
    return dict(summed)


def describe(counts: dict[str, float]) -> str:
    """`held 40, unlocked 12`: the non-zero counts, by label; `none` when all are zero."""
    shown = [f"{key} {value:g}" for key, value in sorted(counts.items()) if value]
    return ", ".join(shown) or "none"
