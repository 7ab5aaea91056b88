"""The Google fake seen from a sandbox host: bound to the link-local address, driven over HTTP."""

from __future__ import annotations

import json

import pytest

from tests.fakes.google import FakeGoogle

# Runs in the guest with its own python3 (stdlib only): one refresh, then one control call.
GUEST = r"""
import json, sys, urllib.error, urllib.parse, urllib.request
base, token = sys.argv[1], json.loads(sys.stdin.read())  # never a token in argv
def refresh():
    form = urllib.parse.urlencode({k: token[k] for k in ("client_id", "client_secret", "refresh_token")} | {"grant_type": "refresh_token"}).encode()
    req = urllib.request.Request(base + "/token", data=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, sorted(json.loads(r.read()))
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())["error"]
before = refresh()
ctl = urllib.request.Request(base + "/_control/revoke_all", data=b"{}", headers={"Content-Type": "application/json"})
urllib.request.urlopen(ctl, timeout=10).close()
print(json.dumps({"before": before, "after": refresh()}))
"""


@pytest.mark.sandbox
def test_a_guest_reaches_the_fake_and_flips_its_switches_over_http(sandbox_host):
    with FakeGoogle(host=sandbox_host.host_address) as fake:
        token = fake.issue_refresh_token()
        proc = sandbox_host.run(
            ["python3", "-c", GUEST, fake.url], input=json.dumps(token), timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        seen = json.loads(proc.stdout)
        assert seen["before"] == [200, ["access_token", "expires_in", "scope", "token_type"]]
        assert seen["after"] == [400, "invalid_grant"]
        assert fake.refresh_tokens[token["refresh_token"]].revoked
