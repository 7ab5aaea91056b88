"""jada-agent: an AI orchestrator daemon, its Google Sheet sync, and the remediator that keeps them healthy."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jada-agent")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+src"
