"""
Read a NetStructer server's metrics as Prometheus does, and print a summary.

Start a server with metrics (``echo_server.py --metrics 9100``, or
``twistd netstructer --metrics tcp:9100:interface=127.0.0.1``), then::

    python examples/scrape_metrics.py http://127.0.0.1:9100

It reads ``/metrics`` with ``prometheus_client``'s own parser (``pip
install 'netstructer[metrics]'``) and ``/healthz``.
"""

from __future__ import annotations

import argparse
from urllib.error import HTTPError
from urllib.request import urlopen

from prometheus_client.parser import text_string_to_metric_families

# The samples to show, and how to call them; see the metrics how-to for all.
SHOWN = {
    "netstructer_sessions_open": "sessions open",
    "netstructer_handshakes_total": "handshakes",
    "netstructer_values_received_total": "values received",
    "netstructer_values_sent_total": "values sent",
}


def fetch(url: str) -> tuple[int, str]:
    """
    GET a URL: its status and text (an HTTP error status is an answer too).
    """
    if not url.startswith(("http://", "https://")):
        raise SystemExit(f"not an HTTP URL: {url}")
    try:
        with urlopen(url, timeout=10) as response:  # noqa: S310 (checked above)
            return response.status, response.read().decode()
    except HTTPError as error:
        return error.code, error.read().decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the metrics listener, such as http://127.0.0.1:9100")
    args = parser.parse_args()

    status, text = fetch(args.base.rstrip("/") + "/metrics")
    if status != 200:
        raise SystemExit(f"/metrics answered {status}")
    # Add each sample up over its labels (such as the suite), except the
    # outcome of the handshakes, which is worth seeing.
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = SHOWN.get(sample.name)
            if label is None:
                continue
            if "outcome" in sample.labels:
                label += f" ({sample.labels['outcome']})"
            totals[label] = totals.get(label, 0.0) + sample.value
    for label, value in sorted(totals.items()):
        print(f"{label}: {value:g}")

    status, text = fetch(args.base.rstrip("/") + "/healthz")
    print(f"health: {status} {text.strip()}")


if __name__ == "__main__":
    main()
