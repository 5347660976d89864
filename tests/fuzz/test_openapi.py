"""Schemathesis against a live daemon process: every operation of its /openapi.json (the GET routes, POST /v1/join
and DELETE /v1/unjoin) gets generated requests — valid and invalid parameters, bodies and path segments — and every
response must be a non-5xx that matches the documented schema for its status code.

The schema is loaded at import time from the same function the daemon serves it from (schemathesis' lazy
`from_fixture` loader does not work with pytest 9), and the fixture checks that the live /openapi.json is exactly
that document."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, assume, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from multicluster.api.openapi import document
from multicluster.testing.daemonproc import DaemonProc
from multicluster.testing.harness import Harness
from tests.faults.helpers import proc_config, sqlite_doc

pytestmark = [pytest.mark.integration, pytest.mark.faults]

schema = schemathesis.openapi.from_dict(document())
# Examples per operation: 40 keeps the whole run at ~20 s on 2 cores; MC_FUZZ_EXAMPLES=500 for a longer hunt.
EXAMPLES = int(os.environ.get("MC_FUZZ_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def daemon_url(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    p = DaemonProc(tmp, proc_config(harness, sqlite_doc(tmp / "store.db"), ["configmaps", "namespaces", "deployments"]))
    p.start(env={"MULTICLUSTER_STATE_DIR": str(tmp / "state")}, log_level="INFO")
    try:
        p.wait_ready(120)
        status, raw = p.get("/openapi.json")
        assert status == 200 and orjson.loads(raw) == orjson.loads(orjson.dumps(document()))
        yield p.url
        assert p.alive(), f"the daemon died under fuzzing; see {p.log_path}"
        status, raw = p.get("/v1/clusters")
        assert status == 200 and {c["name"] for c in orjson.loads(raw)["clusters"]} == set(harness.servers)
    finally:
        code = p.stop()
    assert code == 0, f"exit code {code}; see {p.log_path}"


# Required: no 5xx and every response matches its documented schema. The other three keep the document honest
# about status codes, content types and headers as well.
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance,
          response_headers_conformance]


# The HTTP parser refuses a request line past 64 KiB itself, with a plain-text 400, before any route runs
# (tests/faults/test_abuse.py checks that answer); the document describes what the routes answer.
PARSER_LINE_LIMIT = 65536


def _request_line_bytes(case: schemathesis.Case, base_url: str) -> int:
    kw = case.as_transport_kwargs(base_url=base_url)
    url = requests.Request(kw["method"], kw["url"], params=kw.get("params")).prepare().url or ""
    return len(kw["method"]) + len(urlsplit(url)._replace(scheme="", netloc="").geturl()) + len(" HTTP/1.1")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation(case: schemathesis.Case, daemon_url: str) -> None:
    assume(_request_line_bytes(case, daemon_url) < PARSER_LINE_LIMIT)
    # A watch streams until its client leaves (tests/api/test_sse.py drives it); a generated request would wait
    # for an end that never comes.
    assume(str((case.query or {}).get("watch", "")).strip().lower() not in ("true", "1", "yes", "t", "y", "on"))
    case.call_and_validate(base_url=daemon_url, checks=CHECKS)
