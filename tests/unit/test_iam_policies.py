"""The least-privilege IAM policy documents in files/iam: valid JSON policies that name exactly the
actions the code calls, on one resource each where AWS allows it, and linked from the README."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IAM = ROOT / "files" / "iam"
ONE_SECRET = "arn:aws:secretsmanager:REGION:ACCOUNT_ID:secret:jada/google-token-??????"
ONE_TOPIC = "arn:aws:sns:REGION:ACCOUNT_ID:jada-alerts"


def policy(name: str) -> dict:
    return json.loads((IAM / name).read_text())


def actions(doc: dict) -> set[str]:
    out: set[str] = set()
    for st in doc["Statement"]:
        out |= {st["Action"]} if isinstance(st["Action"], str) else set(st["Action"])
    return out


def _camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def calls(path: str, client: str) -> set[str]:
    """``service:Operation`` for each boto3 client method the module calls. For a real service
    only the names that are its operations (botocore's own model says which): a module also
    calls ``botocore.session.get_session()`` and the like, which are no API actions."""
    text = (ROOT / path).read_text()
    found = {
        f"{client}:{_camel(m)}"
        for m in re.findall(r"\.(get_\w+|put_\w+|create_\w+|publish)\(", text)
    }
    if client == "x":
        return found
    import botocore.session

    ops = botocore.session.get_session().get_service_model(client).operation_names
    return {c for c in found if c.split(":", 1)[1] in ops}


@pytest.mark.parametrize("name", sorted(p.name for p in IAM.glob("*.json")))
def test_each_document_is_an_allow_only_policy_without_wildcard_actions(name: str):
    doc = policy(name)
    assert doc["Version"] == "2012-10-17"
    assert doc["Statement"]
    for st in doc["Statement"]:
        assert set(st) <= {"Sid", "Effect", "Action", "Resource"}, st
        assert st["Effect"] == "Allow"
        assert all("*" not in a and re.fullmatch(r"[a-z0-9]+:[A-Za-z]+", a) for a in actions(
            {"Statement": [st]}
        )), st  # fmt: skip


def test_the_controller_may_do_exactly_what_the_lightsail_code_calls():
    doc = policy("controller.json")
    assert (
        actions(doc)
        == calls("agent/aws/lightsail.py", "lightsail")
        == {
            "lightsail:GetInstances",
            "lightsail:GetInstance",
            "lightsail:GetInstanceAccessDetails",
            "lightsail:GetInstanceMetricData",
        }
    )
    # Listing needs "*"; access and metrics are limited to instances.
    scoped = [st for st in doc["Statement"] if "lightsail:GetInstanceAccessDetails" in st["Action"]]
    assert scoped[0]["Resource"].startswith("arn:aws:lightsail:REGION:ACCOUNT_ID:Instance/")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("host-secretsmanager.json", {"secretsmanager:GetSecretValue", "sns:Publish"}),
        ("host-ssm.json", {"ssm:GetParameter", "sns:Publish"}),
    ],
)
def test_a_host_may_read_one_secret_and_publish_to_one_topic(name: str, expected: set[str]):
    doc = policy(name)
    assert actions(doc) == expected
    for st in doc["Statement"]:
        resource = st["Resource"]
        assert isinstance(resource, str), "one resource per statement"
        assert "*" not in resource
        if st["Action"] == ["sns:Publish"]:
            assert resource == ONE_TOPIC
    code = calls("agent/credentials/remote.py", "x") | calls("agent/remediator/deliver.py", "x")
    for action in expected:
        assert "x:" + action.split(":")[1] in code, f"{action} is not called by the code"


def test_the_operator_may_publish_the_one_secret_only():
    doc = policy("operator-publish.json")
    assert actions(doc) == {"secretsmanager:PutSecretValue", "secretsmanager:CreateSecret"}
    assert [st["Resource"] for st in doc["Statement"]] == [ONE_SECRET]


def test_the_readme_links_every_policy_document():
    readme = (ROOT / "README.md").read_text()
    for p in IAM.glob("*.json"):
        assert f"(files/iam/{p.name})" in readme, p.name
