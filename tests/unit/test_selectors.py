"""Label and field selector parsing: Kubernetes grammar, Requirement output, errors that point at the token."""

from __future__ import annotations

import pytest

from multicluster.errors import QueryError
from multicluster.selectors import FIELD_KEYS, format_requirements, parse_field_selector, parse_label_selector
from multicluster.store.base import Requirement as R


@pytest.mark.parametrize(("text", "want"), [
    ("", ()),
    ("   ", ()),
    (None, ()),
    ("a=b", (R("a", "=", ("b",)),)),
    ("a==b", (R("a", "=", ("b",)),)),
    ("a!=b", (R("a", "!=", ("b",)),)),
    ("a in (x,y)", (R("a", "in", ("x", "y")),)),
    ("a in (x, y , z)", (R("a", "in", ("x", "y", "z")),)),
    ("a in (x,x)", (R("a", "in", ("x",)),)),
    ("a notin (x)", (R("a", "notin", ("x",)),)),
    ("a in(x)", (R("a", "in", ("x",)),)),
    ("a", (R("a", "exists"),)),
    ("!a", (R("a", "!"),)),
    ("! a", (R("a", "!"),)),
    ("a=", (R("a", "=", ("",)),)),
    ("a in (x,)", (R("a", "in", ("x", "")),)),
    (" a = b , c ", (R("a", "=", ("b",)), R("c", "exists"))),
    ("app.kubernetes.io/name=web,tier in (a,b),!canary,env!=prod,x",
     (R("app.kubernetes.io/name", "=", ("web",)), R("tier", "in", ("a", "b")), R("canary", "!"),
      R("env", "!=", ("prod",)), R("x", "exists"))),
    ("k_1.x-y=V_1.2-3", (R("k_1.x-y", "=", ("V_1.2-3",)),)),
    ("in=notin", None),  # keywords are not keys
    ("a" * 63 + "=" + "b" * 63, (R("a" * 63, "=", ("b" * 63,)),)),
    ("example.com/" + "k" * 63 + "=v", (R("example.com/" + "k" * 63, "=", ("v",)),)),
])
def test_label_selectors(text: str | None, want: tuple[R, ...] | None) -> None:
    if want is None:
        with pytest.raises(QueryError):
            parse_label_selector(text)
        return
    assert parse_label_selector(text) == want


@pytest.mark.parametrize(("text", "message"), [
    ("a=(b", 'labelSelector: unexpected "(" at position 3, expected a label value'),
    ("app=web,(x)", 'labelSelector: unexpected "(" at position 9'),
    ("a in x", 'labelSelector: unexpected "x" at position 6, expected "(" after "in"'),
    ("a in (x", "labelSelector: unexpected end of selector at position 8"),
    ("a in ()", 'labelSelector: "in" at position 3 needs at least one value'),
    ("a notin ()", 'labelSelector: "notin" at position 3 needs at least one value'),
    ("a in (x y)", 'labelSelector: unexpected "y" at position 9'),
    ("a,,b", 'labelSelector: unexpected "," at position 3'),
    ("a,", "labelSelector: unexpected end of selector at position 3"),
    (",a", 'labelSelector: unexpected "," at position 1'),
    ("=b", 'labelSelector: unexpected "=" at position 1'),
    ("a=b c", 'labelSelector: unexpected "c" at position 5, expected "," or the end'),
    ("a=b=c", 'labelSelector: unexpected "=" at position 4'),
    ("!a=b", 'labelSelector: unexpected "=" at position 3'),
    ("!", "labelSelector: unexpected end of selector at position 2"),
    ("a)", 'labelSelector: unexpected ")" at position 2'),
    ("a>3", 'labelSelector: operator ">" at position 2 is not supported'),
    ("a<3", 'labelSelector: operator "<" at position 2 is not supported'),
    ("-a=b", 'labelSelector: label key "-a" at position 1 is not a valid label key'),
    ("a-=b", 'labelSelector: label key "a-" at position 1 is not a valid label key'),
    ("a" * 64 + "=b", "is not a valid label key"),
    ("Example.com/a=b", "has an invalid prefix"),
    ("/a=b", "has an invalid prefix"),
    ("a/b/c=d", "has an invalid prefix"),
    ("a/=b", "is not a valid label key"),
    ("a=" + "b" * 64, 'label value "' + "b" * 64 + '" at position 3 is not valid'),
    ("a=-b", 'label value "-b" at position 3 is not valid'),
    ("a in (ok,bad-)", 'label value "bad-" at position 10 is not valid'),
    ("a=b;c", "is not valid"),
    ("a='x'", "is not valid"),
])
def test_label_selector_errors_point_at_the_token(text: str, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_label_selector(text)
    assert message in info.value.message
    assert info.value.hint


def test_error_names_the_parameter() -> None:
    with pytest.raises(QueryError, match=r"^selector: unexpected"):
        parse_label_selector("a in x", param="selector")
    with pytest.raises(QueryError, match=r"^-l: field"):
        parse_field_selector("x=y", param="-l")


@pytest.mark.parametrize(("text", "want"), [
    ("", ()),
    ("metadata.name=x", (R("metadata.name", "=", ("x",)),)),
    ("status.phase!=Running", (R("status.phase", "!=", ("Running",)),)),
    ("spec.nodeName==n1", (R("spec.nodeName", "=", ("n1",)),)),
    ("metadata.namespace=ns,status.phase=Pending",
     (R("metadata.namespace", "=", ("ns",)), R("status.phase", "=", ("Pending",)))),
    (" status.phase = Running ", (R("status.phase", "=", ("Running",)),)),
    ("spec.nodeName=", (R("spec.nodeName", "=", ("",)),)),
    (r"metadata.name=a\,b", (R("metadata.name", "=", ("a,b",)),)),
    (r"metadata.name=a\=b\!c\\d", (R("metadata.name", "=", ("a=b!c\\d",)),)),
    ("metadata.name=it's; DROP TABLE x", (R("metadata.name", "=", ("it's; DROP TABLE x",)),)),
])
def test_field_selectors(text: str, want: tuple[R, ...]) -> None:
    assert parse_field_selector(text) == want


@pytest.mark.parametrize(("text", "message"), [
    ("spec.replicas=3", 'fieldSelector: field "spec.replicas" at position 1 is not supported'),
    ("status.phase=Running,foo=bar", 'field "foo" at position 22 is not supported'),
    ("status.phase", '"status.phase" at position 1 has no operator'),
    ("status.phase in (a)", "has no operator"),
    ("status.phase===a", 'unexpected "=" at position 15'),
    ("status.phase=!a", 'unexpected "!" at position 14'),
    ("status.phase=a=b", 'unexpected "=" at position 15'),
    ("status.phase=a,", "empty requirement at position 16"),
    (",status.phase=a", "empty requirement at position 1"),
    ("=x", "missing field name at position 1"),
    (r"metadata.name=a\x", "invalid escape at position 16"),
    ("status.phase>a", "has no operator"),
])
def test_field_selector_errors(text: str, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_field_selector(text)
    assert message in info.value.message
    assert info.value.hint


def test_unsupported_field_lists_the_supported_ones() -> None:
    with pytest.raises(QueryError) as info:
        parse_field_selector("spec.replicas=3")
    assert info.value.hint is not None
    for key in FIELD_KEYS:
        assert key in info.value.hint


@pytest.mark.parametrize("text", ["a=b", "a!=b", "a in (x,y)", "a notin (x)", "a", "!a",
                                  "app.kubernetes.io/name=web,tier in (a,b),!canary"])
def test_format_round_trips(text: str) -> None:
    reqs = parse_label_selector(text)
    assert parse_label_selector(format_requirements(reqs)) == reqs
