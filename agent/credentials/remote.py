"""Credentials published in AWS Secrets Manager or SSM Parameter Store (through boto3).

The secret holds the whole authorized-user JSON (client_id, client_secret, refresh_token,
token_uri, scopes), so an operator who rotates the OAuth client secret or re-authenticates
updates one place and every host pulls it. Endpoints follow botocore's own variables
(``AWS_ENDPOINT_URL``), which is how tests point boto3 at moto.
"""

from __future__ import annotations

from typing import Any

from agent.config import Settings


class SecretStoreError(RuntimeError):
    """The secret store could not be read or written; the message names the store and the name."""


def _client(service: str, settings: Settings) -> Any:
    import boto3
    from botocore.config import Config

    cfg = Config(
        connect_timeout=5,
        read_timeout=max(5, int(settings.google.timeout)),
        retries={"max_attempts": 2, "mode": "standard"},
    )
    return boto3.client(service, region_name=settings.aws.region, config=cfg)


def fetch(kind: str, name: str, settings: Settings) -> bytes:
    """The stored credential JSON; ``kind`` is ``secret`` or ``parameter``."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if kind == "secret":
            resp = _client("secretsmanager", settings).get_secret_value(SecretId=name)
            text = resp.get("SecretString")
            if text is None:
                blob = resp.get("SecretBinary")
                if blob is None:
                    raise SecretStoreError(f"Secrets Manager secret {name!r} holds no value")
                return bytes(blob)
            return text.encode("utf-8")
        if kind == "parameter":
            resp = _client("ssm", settings).get_parameter(Name=name, WithDecryption=True)
            return str(resp["Parameter"]["Value"]).encode("utf-8")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        store = "Secrets Manager secret" if kind == "secret" else "SSM parameter"
        raise SecretStoreError(f"{store} {name!r}: {code}") from None
    except BotoCoreError as exc:
        raise SecretStoreError(f"AWS unreachable for {name!r}: {type(exc).__name__}") from None
    raise ValueError(f"unknown secret store kind {kind!r}")


def push(name: str, data: bytes, settings: Settings) -> str:
    """Store ``data`` as the secret's current value (creating the secret); returns its version."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client("secretsmanager", settings)
    text = data.decode("utf-8")
    try:
        try:
            resp = client.put_secret_value(SecretId=name, SecretString=text)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            resp = client.create_secret(
                Name=name,
                SecretString=text,
                Description="jada-agent Google authorized-user token",
            )
        return str(resp.get("VersionId", ""))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        raise SecretStoreError(f"Secrets Manager secret {name!r}: {code}") from None
    except BotoCoreError as exc:
        raise SecretStoreError(f"AWS unreachable for {name!r}: {type(exc).__name__}") from None


def configured_sources(settings: Settings) -> list[tuple[str, str]]:
    out = []
    if settings.google.secret_name:
        out.append(("secret", settings.google.secret_name))
    if settings.google.parameter_name:
        out.append(("parameter", settings.google.parameter_name))
    return out


__all__ = ["SecretStoreError", "configured_sources", "fetch", "push"]
