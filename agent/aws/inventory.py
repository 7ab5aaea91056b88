"""The Lightsail dynamic inventory for Ansible (``inventory/lightsail.py`` calls :func:`main`).

Instances come from the regions in ``JADA_LIGHTSAIL_REGIONS`` (comma-separated; default the
settings' ``aws.region``), filtered by ``JADA_LIGHTSAIL_TAGS`` (``key=value`` or ``key``, comma-
separated, all must match) and ``JADA_LIGHTSAIL_STATES`` (default ``running``; ``all`` for every
state). Groups: ``lightsail``, ``region_<region>``, ``state_<state>``, ``tag_<key>`` and
``tag_<key>_<value>``. ``ansible_host`` is the public address.

Only the jada hosts of the account are listed: the instances that carry the jada tag, by default
the tag key ``jada`` (any value, or none), changed with ``JADA_LIGHTSAIL_JADA_TAG`` (``key`` or
``key=value``; ``*`` takes every instance). They form the group ``jada`` that ``site.yml`` deploys
to, so other instances of the account are never deployed to, audited by ``health.yml`` (which
runs on ``all``) or given temporary access. When the regions hold instances but none carries the
tag, a warning on stderr says so, since ``site.yml`` would then deploy to no host.

When ``JADA_LIGHTSAIL_ACCESS_DIR`` is set (``jada-agent lightsail run`` sets it to a private
temporary directory it removes afterwards), each running instance gets temporary SSH access
written under it and the host variables that make Ansible use it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

from agent.aws.lightsail import Instance, LightsailError, access_details, list_instances

ACCESS_DIR_ENV = "JADA_LIGHTSAIL_ACCESS_DIR"
PORT_ENV = "JADA_LIGHTSAIL_SSH_PORT"
JADA_TAG_ENV = "JADA_LIGHTSAIL_JADA_TAG"
JADA_GROUP = "jada"
DEFAULT_JADA_TAG: tuple[str, str | None] = ("jada", None)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def parse_tags(spec: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        out.append((key, value if sep else None))
    return out


def parse_jada_tag(spec: str | None) -> tuple[str, str | None] | None:
    """``JADA_LIGHTSAIL_JADA_TAG``: ``key`` or ``key=value``; ``*`` (every instance) is None."""
    spec = (spec or "").strip()
    if not spec:
        return DEFAULT_JADA_TAG
    if spec == "*":
        return None
    key, sep, value = spec.partition("=")
    if not key.strip() or "," in spec:
        raise ValueError(
            f"{JADA_TAG_ENV}={spec!r}: expected one tag, as KEY or KEY=VALUE (or * for every "
            "listed instance)"
        )
    return key.strip(), value.strip() if sep else None


def _matches(
    inst: Instance, tags: Sequence[tuple[str, str | None]], states: AbstractSet[str] | None
) -> bool:
    if states is not None and inst.state not in states:
        return False
    return all(k in inst.tags and (v is None or inst.tags[k] == v) for k, v in tags)


def build(
    regions: list[str],
    tags: Sequence[tuple[str, str | None]] = (),
    states: AbstractSet[str] | None = frozenset({"running"}),
    access_dir: Path | None = None,
    port: int = 22,
    jada_tag: tuple[str, str | None] | None = DEFAULT_JADA_TAG,
) -> dict[str, Any]:
    """The inventory in Ansible's ``--list`` JSON form (with ``_meta.hostvars``).

    ``jada_tag`` (``(key, value or None)``, or None for every instance) selects the instances
    listed, all in the group ``jada``; ``_meta.untagged`` counts the instances it left out.
    """
    groups: dict[str, set[str]] = {"lightsail": set(), JADA_GROUP: set()}
    hostvars: dict[str, dict[str, Any]] = {}
    untagged = 0
    for region in regions:
        for inst in list_instances(region):
            if not _matches(inst, list(tags), states):
                continue
            if jada_tag is not None and not _matches(inst, [jada_tag], None):
                untagged += 1
                continue
            name = inst.name
            groups["lightsail"].add(name)
            groups[JADA_GROUP].add(name)
            groups.setdefault(f"region_{_safe(inst.region)}", set()).add(name)
            groups.setdefault(f"state_{_safe(inst.state)}", set()).add(name)
            for k, v in inst.tags.items():
                groups.setdefault(f"tag_{_safe(k)}", set()).add(name)
                if v:
                    groups.setdefault(f"tag_{_safe(k)}_{_safe(v)}", set()).add(name)
            hv: dict[str, Any] = {
                "ansible_host": inst.public_ip or inst.private_ip,
                "lightsail_instance_name": name,
                "lightsail_region": inst.region,
                "lightsail_state": inst.state,
                "lightsail_tags": inst.tags,
                "lightsail_blueprint": inst.blueprint,
                "lightsail_bundle": inst.bundle,
            }
            if inst.username:
                hv["ansible_user"] = inst.username
            if access_dir is not None and inst.state == "running":
                hv.update(_access_vars(inst, access_dir, port))
            hostvars[name] = hv
    out: dict[str, Any] = {g: {"hosts": sorted(h)} for g, h in sorted(groups.items())}
    out["all"] = {"children": sorted(groups)}
    out["_meta"] = {"hostvars": hostvars, "untagged": untagged}
    return out


def _access_vars(inst: Instance, access_dir: Path, port: int) -> dict[str, Any]:
    from agent.aws.ssh import ansible_vars, write_access

    try:
        details = access_details(inst.name, inst.region)
        access = write_access(details, access_dir / _safe(inst.name), port=port)
    except LightsailError as exc:
        print(f"lightsail inventory: no access to {inst.name}: {exc}", file=sys.stderr)
        return {"lightsail_access_error": str(exc)}
    return ansible_vars(access)


def _regions() -> list[str]:
    env = os.environ.get("JADA_LIGHTSAIL_REGIONS", "")
    if env.strip():
        return [r.strip() for r in env.split(",") if r.strip()]
    from agent import config

    try:
        return [config.load().aws.region]
    except config.ConfigError:
        return [os.environ.get("AWS_DEFAULT_REGION", "us-east-1")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Lightsail dynamic inventory for Ansible")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--host")
    args = parser.parse_args(argv)
    states_env = os.environ.get("JADA_LIGHTSAIL_STATES", "running").strip()
    states = None if states_env == "all" else {s.strip() for s in states_env.split(",")}
    access_env = os.environ.get(ACCESS_DIR_ENV)
    try:
        jada_tag = parse_jada_tag(os.environ.get(JADA_TAG_ENV))
    except ValueError as exc:
        print(f"lightsail inventory: {exc}", file=sys.stderr)
        return 1
    try:
        inv = build(
            _regions(),
            parse_tags(os.environ.get("JADA_LIGHTSAIL_TAGS", "")),
            states,
            Path(access_env) if access_env else None,
            int(os.environ.get(PORT_ENV) or 22),
            jada_tag,
        )
    except LightsailError as exc:
        print(f"lightsail inventory: {exc}", file=sys.stderr)
        return 1
    untagged = inv["_meta"].pop("untagged")
    if untagged and not inv[JADA_GROUP]["hosts"] and jada_tag is not None:
        wanted = jada_tag[0] + ("" if jada_tag[1] is None else f"={jada_tag[1]}")
        print(
            f"lightsail inventory: {untagged} instance(s) found, none tagged {wanted!r}: the "
            f"group {JADA_GROUP} is empty (tag the instances to deploy to, or set {JADA_TAG_ENV})",
            file=sys.stderr,
        )
    if args.host:
        json.dump(inv["_meta"]["hostvars"].get(args.host, {}), sys.stdout)
    else:
        json.dump(inv, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0
