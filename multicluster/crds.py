"""The CustomResourceDefinitions this project serves, as packaged YAML.

The canonical text lives in multicluster/crds/*.yaml (package data, so an installed wheel can install its own
CRDs); manifests/crds.yaml is the same documents joined for `kubectl apply -f`, and a test keeps the two equal.
Each CRD carries a `multicluster.practice.com/crd-revision` label: the controller upgrades a cluster's copy only
when that number is missing or lower than ours, so an older controller never downgrades a newer schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, cast

import yaml

from multicluster.types import KubeObject

GROUP = "mulitcluster.practice.com"  # the Go original's spelling (sic), kept for compatibility
VERSION = "v1alpha1"
REVISION_LABEL = "multicluster.practice.com/crd-revision"
FILES = ("multiclusterresource.yaml", "multicluster.yaml")


@dataclass(frozen=True, slots=True)
class CRD:
    name: str
    kind: str
    plural: str
    revision: int
    body: KubeObject


def crd_text(filename: str) -> str:
    """The packaged YAML of one CRD file."""
    return resources.files("multicluster").joinpath("crds", filename).read_text(encoding="utf-8")


def bundle_text() -> str:
    """All CRDs as one multi-document YAML: exactly the content of manifests/crds.yaml."""
    return "---\n".join(crd_text(f) for f in FILES)


def revision_of(obj: Mapping[str, Any]) -> int:
    """The crd-revision label of a CRD object; 0 when absent or not a number (the Go original used `version: "0.1"`)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    try:
        return int(str(labels.get(REVISION_LABEL, "0")))
    except ValueError:
        return 0


@cache
def load() -> tuple[CRD, ...]:
    out = []
    for f in FILES:
        body = cast(KubeObject, yaml.safe_load(crd_text(f)))
        names = body["spec"]["names"]
        out.append(CRD(body["metadata"]["name"], names["kind"], names["plural"], revision_of(body), body))
    return tuple(out)


def multiclusterresource() -> CRD:
    return next(c for c in load() if c.kind == "MultiClusterResource")
