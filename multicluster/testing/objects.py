"""Manifests the harness users create again and again (tests, demo, benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def crd(
    group: str,
    plural: str,
    kind: str,
    *,
    short_names: Sequence[str] = (),
    versions: Sequence[str] = ("v1",),
    printer_columns: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    """A namespaced CRD with a schemaless (preserve-unknown-fields) spec; the first version is the storage one."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "shortNames": list(short_names)},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": v,
                    "served": True,
                    "storage": i == 0,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    **({"additionalPrinterColumns": list(printer_columns)} if printer_columns else {}),
                }
                for i, v in enumerate(versions)
            ],
        },
    }
