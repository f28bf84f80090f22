"""Per-stage Kubernetes resources, as the ``dagster-k8s/config`` tag dagster-k8s reads.

Each stage has a default (more CPU for downsample, more memory for optical_flow); a dataset
file overrides any quantity per stage::

    stages:
      downsample:
        k8s_resources:
          requests: {cpu: "8"}          # memory keeps the stage default
          limits: {memory: 16Gi}

With ``V2D_EXECUTOR=k8s`` (:mod:`v2d_dagster.executor`) every step runs in its own pod, and
the step's pod gets these requests and limits. In one-pod-per-run mode the run pod is sized by
the run launcher (deploy/README.md). This module never imports dagster: it only builds values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from v2d_core.errors import ConfigError

K8S_CONFIG_TAG = "dagster-k8s/config"
SECTIONS = ("requests", "limits")
# Kubernetes' quantity grammar, e.g. 500m, 2, 1.5, 4Gi, 1e3.
QUANTITY = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")

# No CPU limits: a throttled ffmpeg only gets slower. Memory limits sit above the requests,
# so a pod that outgrows its estimate is killed before it starves its node.
DEFAULT_RESOURCES: Mapping[str, Mapping[str, Mapping[str, str]]] = {
    "download": {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    "subset": {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    "downsample": {"requests": {"cpu": "4", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
    "optical_flow": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "12Gi"}},
}


def stage_resources(stage: str, overrides: Mapping[str, Any] | None = None) -> dict[str, dict[str, str]]:
    """The stage's container resources: its defaults, each quantity replaced by ``overrides``'s."""
    if not isinstance(overrides, Mapping | None):
        raise ConfigError(f"k8s_resources must map requests/limits to quantities, got {overrides!r}")
    unknown = sorted(set(overrides or {}) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"k8s_resources takes requests and limits, not {', '.join(unknown)}")
    defaults = DEFAULT_RESOURCES.get(stage, {})
    resources = {}
    for section in SECTIONS:
        given = (overrides or {}).get(section) or {}
        if not isinstance(given, Mapping):
            raise ConfigError(f"k8s_resources.{section} must map a resource to a quantity, got {given!r}")
        merged = {**defaults.get(section, {}), **{str(k): _quantity(section, k, v) for k, v in given.items()}}
        if merged:
            resources[section] = merged
    return resources


def _quantity(section: str, name: str, value: Any) -> str:
    text = str(value)
    if isinstance(value, bool) or not isinstance(value, str | int | float) or not QUANTITY.match(text):
        raise ConfigError(
            f"k8s_resources.{section}.{name} must be a Kubernetes quantity such as 2, 500m or 4Gi, "
            f"got {value!r}"
        )
    return text


def k8s_config_tags(resources: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The op tag that gives a step's pod ``resources`` under dagster-k8s."""
    return {K8S_CONFIG_TAG: json.dumps({"container_config": {"resources": resources}}, sort_keys=True)}
