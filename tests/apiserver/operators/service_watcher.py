"""A minimal kopf operator for the API server tests: it reacts to Service create, update and delete."""

from __future__ import annotations

from typing import Any

import kopf


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.watching.server_timeout = 30


@kopf.on.create("v1", "services", labels={"ilbt": "kopf"})
def on_create(name: str, spec: kopf.Spec, logger: kopf.Logger, **_: Any) -> None:
    logger.info("ilbt-created name=%s type=%s", name, spec.get("type"))


@kopf.on.update("v1", "services", labels={"ilbt": "kopf"})
def on_update(name: str, diff: kopf.Diff, logger: kopf.Logger, **_: Any) -> None:
    logger.info("ilbt-updated name=%s changes=%d", name, len(list(diff)))


@kopf.on.delete("v1", "services", labels={"ilbt": "kopf"})
def on_delete(name: str, logger: kopf.Logger, **_: Any) -> None:
    logger.info("ilbt-deleted name=%s", name)
