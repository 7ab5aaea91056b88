"""jada-agent: an AI orchestrator daemon, its Google Sheet sync, and the remediator that heals them.

``__version__`` is looked up on first use: ``importlib.metadata`` costs several MB of RSS, which
the long-running services (the remediator's idle budget is 30 MB) should not pay at import.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("jada-agent")
        except PackageNotFoundError:  # running from a source tree
            value = "0.0.0+src"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
