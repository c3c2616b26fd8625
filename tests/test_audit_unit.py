"""The audit writer on its own: never blocks, counts what it drops, never stringifies an object."""

from __future__ import annotations

import io
import json
import os
import stat
import time
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from watchword.domain import CredentialKind, PresentedCredential, Principal, Resource, Transport
from watchword.observe.audit import AuditLog, rfc3339, to_line, whole_line_chunks


def record(**fields: object) -> dict[str, object]:
    return {"ts": time.time(), "request_id": "r", "rpc": "Authenticate", "who": {}, "what": {}, **fields}


def test_principals_and_resources_become_id_fields() -> None:
    principal = Principal(
        id="u1",
        kind=CredentialKind.WATCHWORD_TOKEN,
        transport=Transport.BEARER,
        credential_id="c1",
        organization_id="o1",
        permissions=frozenset({"event.send"}),
        token_id="jti-1",
    )
    line = json.loads(to_line(record(who=principal, what={"resource": Resource(application_id="a1")})))
    assert line["who"] == {
        "kind": "watchword_token",
        "id": "u1",
        "credential_id": "c1",
        "organization_id": "o1",
        "token_id": "jti-1",
    }
    assert line["what"] == {"resource": {"application_id": "a1"}}


def test_any_other_object_drops_the_record_instead_of_printing_it() -> None:
    stream = io.StringIO()
    audit = AuditLog(stream=stream, flush_interval=0.01)
    audit.start()
    presented = PresentedCredential(token="wwak_SECRET_SECRET", transport=Transport.BEARER)
    audit.write(record(who=presented))
    audit.write(record(result="allow"))
    audit.close()
    assert "SECRET" not in stream.getvalue()
    assert audit.dropped == 1
    assert audit.written == 1
    assert json.loads(stream.getvalue())["result"] == "allow"


def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    read, write = os.pipe()  # nobody reads: the writer thread blocks once the pipe is full
    with open(write, "w") as stuck:
        audit = AuditLog(stream=stuck, max_pending=100, flush_interval=0.01)
        audit.start()
        started = time.monotonic()
        for _ in range(20_000):
            audit.write(record(what={"padding": "x" * 200}))
        assert time.monotonic() - started < 2.0, "write() never waits for the writer"
        assert audit.dropped > 0
        os.close(read)  # the blocked write fails: close() returns
        audit.close()


def test_the_file_is_owner_only_and_appended_to(tmp_path) -> None:
    path = tmp_path / "audit.log"
    for rpc in ("First", "Second"):
        audit = AuditLog(path, flush_interval=0.01)
        audit.start()
        audit.write(record(rpc=rpc))
        audit.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [json.loads(line)["rpc"] for line in path.read_text().splitlines()] == ["First", "Second"]


@given(st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False))
def test_rfc3339_timestamps(timestamp: float) -> None:
    text = rfc3339(timestamp)
    assert text.endswith("Z")
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo == UTC
    assert abs(parsed.timestamp() - timestamp) < 0.001 + 1e-6


def test_records_are_written_in_whole_line_chunks_that_a_pipe_writes_atomically() -> None:
    # Worker processes (#13) share stdout or one file: no write may carry part of a record.
    lines = [f'{{"n":{n},"pad":"{"x" * (n * 37 % 900)}"}}\n' for n in range(300)]
    chunks = list(whole_line_chunks(lines, limit=4096))
    assert [line for chunk in chunks for line in chunk] == lines
    assert all(sum(map(len, chunk)) <= 4096 for chunk in chunks)
    assert list(whole_line_chunks(["y" * 5000 + "\n"], limit=4096)) == [["y" * 5000 + "\n"]]
