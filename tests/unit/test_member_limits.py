"""The `sync:` limits on what a member cluster may send: their parsing, and the watch line splitter that holds at
most one line of `maxWatchLineBytes` however the stream is cut."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from multicluster.config import MIB, SyncConfig, parse_config
from multicluster.errors import ConfigError
from multicluster.watchlines import Lines, LineTooLong
from multicluster.wire import event_head


def _sync(tmp_path: Path, sync: dict[str, Any]) -> SyncConfig:
    kubeconfig = tmp_path / "k"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    doc = {"clusters": [{"metadata": {"clusterName": "c1", "configPath": str(kubeconfig)}}], "sync": sync}
    return parse_config(doc, tmp_path, check_files=False).sync


def test_defaults_bound_every_member_read(tmp_path: Path) -> None:
    s = _sync(tmp_path, {})
    assert (s.max_list_page_bytes, s.max_watch_line_bytes, s.max_object_bytes) == (32 * MIB, 16 * MIB, 4 * MIB)
    assert (s.max_types_per_cluster, s.max_connections_per_cluster, s.list_timeout_seconds) == (500, 32, 120.0)


def test_limits_are_read_from_the_sync_section(tmp_path: Path) -> None:
    s = _sync(tmp_path, {"maxListPageBytes": 8 * MIB, "maxWatchLineBytes": 2 * MIB, "maxObjectBytes": MIB,
                         "maxTypesPerCluster": 40, "maxConnectionsPerCluster": 4, "listTimeoutSeconds": 7.5})
    assert (s.max_list_page_bytes, s.max_watch_line_bytes, s.max_object_bytes) == (8 * MIB, 2 * MIB, MIB)
    assert (s.max_types_per_cluster, s.max_connections_per_cluster, s.list_timeout_seconds) == (40, 4, 7.5)


@pytest.mark.parametrize(("sync", "message"), [
    ({"maxListPageBytes": 100}, "sync.maxListPageBytes: must be at least 1024 bytes, got 100"),
    ({"maxWatchLineBytes": "16Mi"}, "sync.maxWatchLineBytes: expected a number of bytes, got str"),
    ({"maxObjectBytes": 64 * MIB}, "sync.maxObjectBytes (67108864) is larger than sync.maxListPageBytes"),
    ({"maxTypesPerCluster": 0}, "sync.maxTypesPerCluster: must be greater than 0, got 0"),
    ({"maxConnectionsPerCluster": True}, "sync.maxConnectionsPerCluster: expected an integer, got a boolean"),
    ({"listTimeoutSeconds": -1}, "sync.listTimeoutSeconds: must be greater than 0, got -1"),
    ({"maxObjectByte": 1}, 'sync: unknown key "maxObjectByte" (did you mean "maxObjectBytes"?)'),
])
def test_a_bad_limit_is_refused_naming_the_field(tmp_path: Path, sync: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _sync(tmp_path, sync)
    assert err.value.message.startswith(message), err.value.message


def _split(stream: bytes, size: int, limit: int = 1 << 20) -> list[bytes]:
    lines = Lines(limit)
    out: list[bytes] = []
    for i in range(0, len(stream), size):
        out += lines.feed(stream[i:i + size])
    last = lines.rest()
    return out + ([last] if last else [])


EVENTS = [orjson.dumps({"type": "ADDED", "object": {"metadata": {"name": f"cm{i}"}, "data": {"k": "v" * i}}})
          for i in range(0, 300, 7)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 100, 1000, 65536])
def test_lines_are_the_same_however_the_stream_is_cut(size: int) -> None:
    stream = b"\n".join(EVENTS[:5]) + b"\n\n  \n" + b"\n".join(EVENTS[5:]) + b"\n"
    assert _split(stream, size) == EVENTS


def test_a_stream_may_end_without_a_newline() -> None:
    assert _split(b"\n".join(EVENTS), 50) == EVENTS


@pytest.mark.parametrize("size", [1000, 4096, 70_000])
def test_a_line_over_the_limit_is_refused_before_it_is_held(size: int) -> None:
    """The old splitter held an endless line whole, copying it at every chunk (`buf += chunk`)."""
    lines = Lines(64 * 1024)
    chunk = b"x" * size
    fed = 0
    with pytest.raises(LineTooLong) as err:
        for _ in range(10_000):
            lines.feed(chunk)
            fed += size
    assert fed <= 64 * 1024 and err.value.size > 64 * 1024


def test_a_line_exactly_at_the_limit_passes() -> None:
    line = b"y" * 4096
    assert _split(line + b"\n" + line + b"\n", 1000, limit=4096) == [line, line]
    assert _split(line + b"\n" + line + b"\n", 10_000, limit=4096) == [line, line]
    with pytest.raises(LineTooLong):
        _split(line + b"y\n", 10_000, limit=4096)


def test_an_event_too_large_to_store_is_decoded_only_for_its_identity() -> None:
    raw = orjson.dumps({"type": "MODIFIED", "object": {"metadata": {"name": "big", "namespace": "ns",
                                                                    "resourceVersion": "42", "labels": {"a": "b"}},
                                                       "data": {"k": "v" * 100_000}}})
    assert event_head(raw) == {"type": "MODIFIED", "object": {"metadata": {"name": "big", "namespace": "ns",
                                                                           "resourceVersion": "42"}}}
    for bad in (b"{not json", b"[1, 2]", b'{"type": "ADDED", "object": [1]}'):
        with pytest.raises(ValueError):
            event_head(bad)
