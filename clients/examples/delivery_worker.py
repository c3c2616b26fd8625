"""Example webhook delivery worker: every webhook is proved by what Watchword's SignOutbound returns.

Reads events (one JSON object per line) from a file or stdin, posts each to the customer's endpoint
through WatchwordSigner, and prints one JSON line per event with the outcome. The worker's own caller
token (an admin token, or a static token holding `outbound.sign`) comes from DELIVERY_WATCHWORD_TOKEN,
never from the command line.

    DELIVERY_WATCHWORD_TOKEN=wwst_... .venv/bin/python clients/examples/delivery_worker.py \\
        --watchword 127.0.0.1:50051 --credential OUTBOUND_CREDENTIAL_ID \\
        --url https://customer.example/hooks events.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

import httpx

from watchword_client import (
    OutboundSigningError,
    WatchwordClient,
    WatchwordError,
    WatchwordSigner,
    WatchwordUnavailable,
)

TOKEN_VARIABLE = "DELIVERY_WATCHWORD_TOKEN"


def read_events(source: TextIO) -> Iterable[dict[str, object]]:
    for number, line in enumerate(source, start=1):
        if line.strip():
            event = json.loads(line)
            if not isinstance(event, dict):
                raise SystemExit(f"line {number}: an event must be a JSON object")
            yield event


def deliver(http: httpx.Client, url: str, event: dict[str, object]) -> dict[str, object]:
    """Post one event; the outcome as a JSON-ready dict (never raises for one bad delivery)."""
    body = json.dumps(event, separators=(",", ":")).encode()
    # A stable id per event: the receiver deduplicates redeliveries by webhook-id.
    headers = {"content-type": "application/json"}
    if "id" in event:
        headers["webhook-id"] = f"msg_{event['id']}"
    outcome: dict[str, object] = {"event": event.get("id")}
    try:
        response = http.post(url, content=body, headers=headers)
    except OutboundSigningError as error:
        retry_after = error.error.retry_after.total_seconds() if error.error.retry_after else None
        return outcome | {
            "outcome": "retry_later" if error.retryable else "failed",
            "reason": error.error.reason,
            "retry_after": retry_after,
        }
    except (
        WatchwordUnavailable
    ) as error:  # Watchword down or slow: this delivery waits, nothing unsigned goes
        return outcome | {"outcome": "retry_later", "reason": error.reason or error.code}
    except WatchwordError as error:  # e.g. the worker's token may not sign: fix the configuration
        return outcome | {"outcome": "failed", "reason": error.reason or error.code}
    except httpx.HTTPError as error:
        return outcome | {"outcome": "retry_later", "reason": type(error).__name__}
    delivered = 200 <= response.status_code < 300
    return outcome | {
        "outcome": "delivered" if delivered else "rejected",
        "status": response.status_code,
        "webhook_id": response.request.headers.get("webhook-id"),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--watchword", default=os.environ.get("WATCHWORD_ADDRESS", "127.0.0.1:50051"))
    parser.add_argument("--ca-file", default=os.environ.get("WATCHWORD_CA_FILE"), help="PEM roots: use TLS")
    parser.add_argument("--credential", required=True, help="the outbound credential's id")
    parser.add_argument("--url", required=True, help="the customer's webhook endpoint")
    parser.add_argument("events", nargs="?", default="-", help="JSON lines file; '-' for stdin")
    arguments = parser.parse_args(argv)
    token = os.environ.get(TOKEN_VARIABLE)
    if not token:
        raise SystemExit(f"{TOKEN_VARIABLE} is not set: the worker needs its caller token")
    source = sys.stdin if arguments.events == "-" else open(arguments.events, encoding="utf-8")  # noqa: SIM115
    all_delivered = True
    with (
        source,
        WatchwordClient(arguments.watchword, root_ca_file=arguments.ca_file, token=token) as watchword,
        httpx.Client(auth=WatchwordSigner(arguments.credential, client=watchword), timeout=10) as http,
    ):
        for event in read_events(source):
            result = deliver(http, arguments.url, event)
            all_delivered &= result["outcome"] == "delivered"
            print(json.dumps(result), flush=True)
    sys.exit(0 if all_delivered else 1)


if __name__ == "__main__":
    main()
