"""A fake Amazon Lightsail API (moto has none): JSON 1.1 over HTTP on a loopback address.

``POST /`` with ``X-Amz-Target: Lightsail_20161128.<Operation>`` and a SigV4 ``Authorization``
header, as boto3 sends it. It serves GetInstances (paged), GetInstance, GetInstanceAccessDetails
and GetInstanceMetricData. It is strict both ways: each request is checked against botocore's own
input shape (unknown or missing members are a ValidationException), and each reply against the
output shape, so a wrong shape in the fake fails loudly instead of teaching the client a lie.

GetInstanceAccessDetails returns a REAL OpenSSH key pair and a certificate signed by the fake's
CA (``ca_public_key``) with a short validity, plus the instance's host keys as registered by the
test, so a real sshd that trusts the CA (``TrustedUserCAKeys``) accepts it.

Control in Python (``add_instance``, ``fail``, ``spike``, ``deny``) or over HTTP:
``POST /_control/instances`` (JSON body = ``add_instance`` keyword arguments),
``POST /_control/fail`` ``{"operation", "type", "message", "times"}``,
``POST /_control/reset``, ``GET /_control/ca``.
Run one with ``python -m tests.fakes.lightsail --host H --port P``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session

from tests.fakes.base import LoopbackFake, QuietHandler, command_line

TARGET_PREFIX = "Lightsail_20161128."
OPERATIONS = ("GetInstances", "GetInstance", "GetInstanceAccessDetails", "GetInstanceMetricData")
_MODEL = botocore.session.get_session().get_service_model("lightsail")
_CRED_SCOPE = re.compile(r"Credential=([^/]+)/\d{8}/([a-z0-9-]+)/lightsail/aws4_request")


class ShapeError(AssertionError):
    """The fake (or a request) does not match botocore's service model."""


# --------------------------------------------------------------------------- shape checking


def check_shape(value: Any, shape: Any, path: str = "$") -> None:
    """Check JSON-decoded ``value`` against a botocore shape; raise ShapeError naming the path."""
    t = shape.type_name
    if t == "structure":
        if not isinstance(value, dict):
            raise ShapeError(
                f"{path}: expected an object for {shape.name}, got {type(value).__name__}"
            )
        unknown = set(value) - set(shape.members)
        if unknown:
            raise ShapeError(f"{path}: unknown members {sorted(unknown)} for {shape.name}")
        for req in shape.required_members:
            if req not in value:
                raise ShapeError(f"{path}: missing required member {req!r} of {shape.name}")
        for k, v in value.items():
            check_shape(v, shape.members[k], f"{path}.{k}")
    elif t == "list":
        if not isinstance(value, list):
            raise ShapeError(f"{path}: expected a list, got {type(value).__name__}")
        for i, v in enumerate(value):
            check_shape(v, shape.member, f"{path}[{i}]")
    elif t == "map":
        if not isinstance(value, dict):
            raise ShapeError(f"{path}: expected a map")
        for k, v in value.items():
            check_shape(k, shape.key, f"{path}<key>")
            check_shape(v, shape.value, f"{path}.{k}")
    elif t == "string":
        if not isinstance(value, str):
            raise ShapeError(f"{path}: expected a string, got {type(value).__name__}")
        if shape.enum and value not in shape.enum:
            raise ShapeError(f"{path}: {value!r} is not one of {shape.enum}")
    elif t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ShapeError(f"{path}: expected an integer, got {value!r}")
    elif t in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ShapeError(f"{path}: expected a number, got {value!r}")
    elif t == "boolean":
        if not isinstance(value, bool):
            raise ShapeError(f"{path}: expected true or false, got {value!r}")
    elif t == "timestamp":
        # JSON 1.1 timestamps are epoch seconds (numbers).
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ShapeError(f"{path}: expected epoch seconds, got {value!r}")
    elif t == "blob":
        if not isinstance(value, str):
            raise ShapeError(f"{path}: expected base64 text")
        base64.b64decode(value, validate=True)
    else:
        raise ShapeError(f"{path}: shape type {t} not handled by the fake")


# --------------------------------------------------------------------------- state


@dataclass
class FakeInstance:
    name: str
    region: str = "us-east-1"
    public_ip: str = "127.0.0.1"
    private_ip: str = "172.26.0.10"
    state: str = "running"
    tags: dict[str, str] = field(default_factory=dict)
    blueprint: str = "debian_12"
    bundle: str = "micro_3_0"
    username: str = "admin"
    # OpenSSH public key lines ("ssh-ed25519 AAAA... comment") of the instance's sshd.
    host_keys: list[str] = field(default_factory=list)
    # Certificate validity in seconds from now; negative gives an already expired certificate.
    cert_valid_s: int = 60
    created: float = field(default_factory=lambda: time.time() - 30 * 86400)
    # metric -> baseline value; spikes: (metric, epoch, value)
    baseline: dict[str, float] = field(default_factory=dict)
    spikes: list[tuple[str, float, float]] = field(default_factory=list)

    def to_json(self, account: str) -> dict[str, Any]:
        code = {"pending": 0, "running": 16, "stopping": 64, "stopped": 80}.get(self.state, 48)
        return {
            "name": self.name,
            "arn": f"arn:aws:lightsail:{self.region}:{account}:Instance/"
            + hashlib.md5(self.name.encode(), usedforsecurity=False).hexdigest(),
            "supportCode": f"{account}/i-{hashlib.sha1(self.name.encode(), usedforsecurity=False).hexdigest()[:17]}",
            "createdAt": self.created,
            "location": {"availabilityZone": f"{self.region}a", "regionName": self.region},
            "resourceType": "Instance",
            "tags": [{"key": k, "value": v} for k, v in self.tags.items()],
            "blueprintId": self.blueprint,
            "blueprintName": "Debian",
            "bundleId": self.bundle,
            "isStaticIp": False,
            "privateIpAddress": self.private_ip,
            "publicIpAddress": self.public_ip,
            "ipAddressType": "ipv4",
            "hardware": {
                "cpuCount": 2,
                "disks": [{"sizeInGb": 40, "isSystemDisk": True, "path": "/dev/xvda"}],
                "ramSizeInGb": 1.0,
            },
            "state": {"code": code, "name": self.state},
            "username": self.username,
            "sshKeyName": "LightsailDefaultKeyPair",
        }


BASELINES = {
    "CPUUtilization": 0.65,
    "NetworkIn": 120_000.0,
    "NetworkOut": 90_000.0,
    "StatusCheckFailed": 0.0,
    "StatusCheckFailed_Instance": 0.0,
    "StatusCheckFailed_System": 0.0,
    "BurstCapacityPercentage": 100.0,
    "BurstCapacityTime": 86400.0,
}


class _Error(Exception):
    def __init__(self, type_: str, message: str, status: int = 400):
        super().__init__(message)
        self.type, self.message, self.status = type_, message, status


class FakeLightsail(LoopbackFake):
    """The fake server; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, page_size: int = 2) -> None:
        super().__init__(host, port)
        self.page_size = page_size
        self.account = "123456789012"
        self.instances: dict[str, FakeInstance] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.denied_keys: set[str] = set()
        self._failures: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._tmp = Path(tempfile.mkdtemp(prefix="fake-lightsail-"))
        self._tmp.chmod(0o700)
        self._ca = self._tmp / "ca"
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "fake-lightsail-ca",
                "-f",
                str(self._ca),
            ],
            check=True,
        )
        self.ca_public_key = (self._tmp / "ca.pub").read_text().strip()

    # ---- lifecycle
    def handler_class(self) -> type[_Handler]:
        return type("Handler", (_Handler,), {"fake": self})

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    # ---- control
    def add_instance(self, name: str, **kwargs: Any) -> FakeInstance:
        inst = FakeInstance(name=name, **kwargs)
        with self._lock:
            self.instances[name] = inst
        return inst

    def fail(self, operation: str, type_: str, message: str = "injected", times: int = 1) -> None:
        """The next ``times`` calls of ``operation`` answer ``{"__type": type_, "message"}``."""
        with self._lock:
            self._failures.append(
                {"operation": operation, "type": type_, "message": message, "times": times}
            )

    def deny(self, access_key_id: str) -> None:
        """Requests signed with this access key get AccessDeniedException."""
        self.denied_keys.add(access_key_id)

    def spike(self, name: str, metric: str, at: float, value: float) -> None:
        self.instances[name].spikes.append((metric, at, value))

    def reset(self) -> None:
        with self._lock:
            self.instances.clear()
            self._failures.clear()
            self.requests.clear()
            self.denied_keys.clear()

    # ---- operations
    def handle(self, op: str, body: dict[str, Any], region: str) -> dict[str, Any]:
        with self._lock:
            for f in self._failures:
                if f["operation"] == op and f["times"] > 0:
                    f["times"] -= 1
                    raise _Error(f["type"], f["message"])
        return getattr(self, "_op_" + op)(body, region)

    def _get(self, name: str, region: str) -> FakeInstance:
        inst = self.instances.get(name)
        if inst is None or inst.region != region:
            raise _Error("NotFoundException", f"The Instance does not exist: {name}")
        return inst

    def _op_GetInstances(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        names = sorted(n for n, i in self.instances.items() if i.region == region)
        start = 0
        if "pageToken" in body:
            try:
                start = int(base64.b64decode(body["pageToken"]).decode())
            except ValueError:
                raise _Error("InvalidInputException", "pageToken is invalid") from None
        page = names[start : start + self.page_size]
        out: dict[str, Any] = {"instances": [self.instances[n].to_json(self.account) for n in page]}
        if start + self.page_size < len(names):
            out["nextPageToken"] = base64.b64encode(str(start + self.page_size).encode()).decode()
        return out

    def _op_GetInstance(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        return {"instance": self._get(body["instanceName"], region).to_json(self.account)}

    def _op_GetInstanceAccessDetails(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        inst = self._get(body["instanceName"], region)
        if body.get("protocol", "ssh") != "ssh":
            raise _Error("InvalidInputException", "only ssh is supported by this instance")
        if inst.state != "running":
            raise _Error("InvalidInputException", f"The instance is not running: {inst.state}")
        work = Path(tempfile.mkdtemp(prefix="access-", dir=self._tmp))
        key = work / "key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lightsail-temp", "-f", str(key)],
            check=True,
        )
        now = time.time()
        not_after = now + inst.cert_valid_s
        # ssh-keygen -V wants absolute times when the window may lie in the past.
        fmt = "%Y%m%d%H%M%S"
        start_s = time.strftime(fmt, time.gmtime(now - 120))
        end_s = time.strftime(fmt, time.gmtime(not_after))
        if inst.cert_valid_s <= 0:
            start_s = time.strftime(fmt, time.gmtime(not_after - 300))
        subprocess.run(
            ["ssh-keygen", "-q", "-s", str(self._ca), "-I", f"lightsail-{inst.name}",
             "-n", inst.username, "-V", f"{start_s}Z:{end_s}Z", str(key) + ".pub"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        details = {
            "certKey": (work / "key-cert.pub").read_text().strip(),
            "expiresAt": float(int(not_after)),
            "ipAddress": inst.public_ip,
            "privateKey": key.read_text(),
            "protocol": "ssh",
            "instanceName": inst.name,
            "username": inst.username,
            "hostKeys": [self._host_key(line, now) for line in inst.host_keys],
        }
        shutil.rmtree(work, ignore_errors=True)
        return {"accessDetails": details}

    @staticmethod
    def _host_key(line: str, now: float) -> dict[str, Any]:
        algo, b64 = line.split()[:2]
        raw = base64.b64decode(b64)
        sha256 = base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")
        sha1 = ":".join(f"{b:02x}" for b in hashlib.sha1(raw, usedforsecurity=False).digest())
        return {
            "algorithm": algo,
            "publicKey": b64,
            "witnessedAt": now - 3600,
            "fingerprintSHA1": sha1,
            "fingerprintSHA256": f"SHA256:{sha256}",
            "notValidBefore": now - 86400,
            "notValidAfter": now + 86400 * 365,
        }

    def _op_GetInstanceMetricData(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        inst = self._get(body["instanceName"], region)
        period = body["period"]
        if not 60 <= period <= 86400 or period % 60:
            raise _Error("InvalidInputException", "period must be a multiple of 60 in 60..86400")
        start, end = float(body["startTime"]), float(body["endTime"])
        if end <= start:
            raise _Error("InvalidInputException", "endTime must be after startTime")
        if (end - start) / period > 1440:
            raise _Error("InvalidInputException", "too many datapoints requested (max 1440)")
        metric = body["metricName"]
        base = inst.baseline.get(metric, BASELINES.get(metric, 0.0))
        data = []
        t = math.floor(start / period) * period
        while t < end:
            value = base
            for m, at, v in inst.spikes:
                if m == metric and t <= at < t + period:
                    value = v
            point: dict[str, Any] = {"timestamp": float(t), "unit": body["unit"]}
            for stat in body["statistics"]:
                key = {"SampleCount": "sampleCount"}.get(stat, stat.lower())
                point[key] = float(period // 60) if stat == "SampleCount" else float(value)
            data.append(point)
            t += period
        return {"metricName": metric, "metricData": data}


class _Handler(QuietHandler):
    fake: FakeLightsail
    protocol_version = "HTTP/1.1"

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        request_id = "fake-" + hashlib.md5(data, usedforsecurity=False).hexdigest()
        self.send_body(status, data, "application/x-amz-json-1.1", {"x-amzn-RequestId": request_id})

    def _error(self, err: _Error) -> None:
        self._reply(err.status, {"__type": err.type, "message": err.message})

    def do_GET(self) -> None:
        if self.path == "/_control/ca":
            self._reply(200, {"ca_public_key": self.fake.ca_public_key})
        else:
            self._reply(404, {"__type": "UnknownOperationException", "message": self.path})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.startswith("/_control/"):
            return self._control(self.path[len("/_control/") :], raw)
        if self.path != "/":
            return self._error(_Error("UnknownOperationException", f"path {self.path}", 404))
        target = self.headers.get("X-Amz-Target", "")
        if not target.startswith(TARGET_PREFIX):
            return self._error(_Error("UnknownOperationException", f"bad X-Amz-Target {target!r}"))
        op = target[len(TARGET_PREFIX) :]
        if op not in OPERATIONS:
            return self._error(
                _Error("UnknownOperationException", f"{op} is not served by the fake")
            )
        if not self.headers.get("Content-Type", "").startswith("application/x-amz-json-1.1"):
            return self._error(
                _Error("SerializationException", "Content-Type must be x-amz-json-1.1")
            )
        m = _CRED_SCOPE.search(self.headers.get("Authorization", ""))
        if m is None:
            return self._error(
                _Error("UnauthenticatedException", "missing SigV4 Authorization", 403)
            )
        key_id, region = m.group(1), m.group(2)
        if key_id in self.fake.denied_keys:
            return self._error(
                _Error(
                    "AccessDeniedException",
                    f"User: arn:aws:iam::{self.fake.account}:user/{key_id} is not authorized to "
                    f"perform: lightsail:{op}",
                )
            )
        try:
            body = json.loads(raw or b"{}")
            check_shape(body, _MODEL.operation_model(op).input_shape, "request")
        except (ValueError, ShapeError) as exc:
            return self._error(_Error("InvalidInputException", f"{op}: {exc}"))
        self.fake.requests.append((op, body))
        try:
            out = self.fake.handle(op, body, region)
        except _Error as err:
            return self._error(err)
        except Exception as exc:  # a bug in the fake or its control data: answer, loudly
            return self._error(_Error("ServiceException", f"fake failed: {exc!r}", 500))
        # The fake's own reply must match botocore's model: fail loudly if it does not.
        try:
            check_shape(out, _MODEL.operation_model(op).output_shape, "reply")
        except ShapeError as exc:
            return self._reply(500, {"__type": "FakeShapeError", "message": str(exc)})
        self._reply(200, out)

    def _control(self, what: str, raw: bytes) -> None:
        data = json.loads(raw or b"{}")
        if what == "instances":
            self.fake.add_instance(**data)
        elif what == "fail":
            self.fake.fail(
                data["operation"],
                data["type"],
                data.get("message", "injected"),
                data.get("times", 1),
            )
        elif what == "reset":
            self.fake.reset()
        else:
            return self._reply(404, {"error": f"unknown control {what}"})
        self._reply(200, {"ok": True})


def main() -> None:
    ap = command_line(__doc__.splitlines()[0])
    a = ap.parse_args()
    # Stopped on SIGTERM (make demo-down, a test's teardown) as on Ctrl-C: the temporary
    # directory holds the CA's private key and must not outlive the process.
    FakeLightsail(a.host, a.port).run_in_foreground("fake Lightsail at {url}")


if __name__ == "__main__":
    main()
