"""Google credential lifecycle: load, refresh, classify errors, diagnose, install atomically
(0600, backup, verify, roll back), re-authenticate, fetch from AWS Secrets Manager / SSM,
service-account mode and the expiry forecast.

Entry points (each a thin ``jada-agent credentials ...`` sub-command):
``diagnose(settings)``, ``install(settings, kind, name, ...)``, ``login(settings, ...)``,
``forecast(settings)``; the sync job uses ``load_for_use(settings)``.
"""

from agent.credentials.diagnose import Diagnosis, diagnose
from agent.credentials.errors import CAUSES, CredentialError
from agent.credentials.forecast import forecast
from agent.credentials.google import load_for_use, refresh
from agent.credentials.install import InstallOutcome, install
from agent.credentials.login import LoginOutcome, login

__all__ = [
    "CAUSES",
    "CredentialError",
    "Diagnosis",
    "InstallOutcome",
    "LoginOutcome",
    "diagnose",
    "forecast",
    "install",
    "load_for_use",
    "login",
    "refresh",
]
