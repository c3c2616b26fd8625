"""The audit writer on its own: never blocks, counts what it drops, never stringifies an object."""

from __future__ import annotations

import io
import json
import os
import stat
import time
from datetime import UTC, datetime

import pytest
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


def _plain(value: object) -> object:
    """What to_line must print for `value`, worked out without any of its remembered encodings."""
    if isinstance(value, Resource):
        return {k: v for k, v in _fields_of(value).items() if v}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _fields_of(resource: Resource) -> dict[str, str]:
    return {
        "organization_id": resource.organization_id,
        "application_id": resource.application_id,
        "event_type": resource.event_type,
        "object_id": resource.object_id,
    }


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["application.list", "application.get", "é\u2028"]),
            st.sampled_from(["o1", "o2", ""]),
            st.sampled_from(["", "a1"]),
            st.sampled_from(["allow", "deny", "refused", '"q"']),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_remembered_encodings_print_what_a_fresh_encoding_prints(
    cases: list[tuple[str, str, str, str, bool]],
) -> None:
    for action, organization, application, result, with_entry in cases:
        what: dict[str, object] = {"action": action, "resource": Resource(organization, application)}
        if with_entry:
            what["entry"] = 3
        line = to_line(record(what=what, result=result, reason=result, rule="S3", peer="p:1"))
        parsed = json.loads(line)
        assert parsed["what"] == _plain(what)
        assert (parsed["result"], parsed["reason"], parsed["peer"]) == (result, result, "p:1")
        assert line.isascii()


def test_a_remembered_what_never_lets_another_object_through() -> None:
    to_line(record(what={"action": "a", "resource": Resource("o1")}))
    with pytest.raises(TypeError):
        to_line(record(what={"action": "a", "resource": object()}))
