"""The one YAML loader for files a person writes (settings, rule packs): safe and bounded.

``yaml.safe_load`` builds no objects but still lets a few hundred bytes of aliases (``&a`` /
``*a`` nested nine deep) stand for a billion nodes: the load itself is cheap (the aliases share
one object), every walk over the result is not (``remediator check`` reached 1.8 GB). So the
composed node graph is measured before anything is built, counting each alias as the nodes it
stands for, and a document that would expand beyond :data:`MAX_NODES` is refused, as is a file
beyond :data:`MAX_BYTES`. Errors are ``yaml.YAMLError`` with a ``problem`` a person can act on.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000  # far above any real settings file or rule pack, far below harm


class DocumentTooLarge(yaml.YAMLError):
    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = None


def _expanded(node: yaml.Node, memo: dict[int, int]) -> int:
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = 1  # a recursive alias counts once, not for ever
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            total += _expanded(child, memo)
            if total > MAX_NODES:
                break
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            total += _expanded(key, memo) + _expanded(value, memo)
            if total > MAX_NODES:
                break
    memo[id(node)] = total
    return total


class _BoundedLoader(yaml.SafeLoader):
    def compose_document(self) -> Any:
        node = super().compose_document()
        if node is not None and _expanded(node, {}) > MAX_NODES:
            raise DocumentTooLarge(
                f"aliases (*name) expand it beyond {MAX_NODES} nodes; write the values out"
            )
        return node


def load(text: str) -> Any:
    """Parse one YAML document like ``yaml.safe_load``, refusing oversized or alias-bomb input."""
    if len(text) > MAX_BYTES:
        raise DocumentTooLarge(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
