"""Lightsail through boto3 against the fake API, and temporary SSH access against a real sshd."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.aws import lightsail as L
from agent.aws import ssh as S
from agent.aws.inventory import build, parse_jada_tag
from tests.fakes.lightsail import FakeLightsail

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def short_tmp():
    """A short private directory: ssh's control socket path must stay under 104 bytes."""
    d = Path(tempfile.mkdtemp(prefix="jt-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def host_key(tmp_path) -> str:
    """A real OpenSSH host public key line."""
    key = tmp_path / "hostkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return (tmp_path / "hostkey.pub").read_text().strip()


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
    )


# --------------------------------------------------------------------------- API and errors


def test_list_instances_follows_pages_and_stays_in_its_region(fake_lightsail: FakeLightsail):
    for i in range(5):
        fake_lightsail.add_instance(f"web-{i}")
    fake_lightsail.add_instance("eu-1", region="eu-west-1")
    names = [i.name for i in L.list_instances("us-east-1")]
    assert names == [f"web-{i}" for i in range(5)]
    assert sum(1 for op, body in fake_lightsail.requests if op == "GetInstances") == 3


def test_unknown_instance_is_a_clear_error(fake_lightsail: FakeLightsail):
    with pytest.raises(L.InstanceNotFound, match=r"no instance 'ghost' in us-east-1"):
        L.access_details("ghost", "us-east-1")


def test_access_denied_is_a_clear_error_naming_the_permission(fake_lightsail: FakeLightsail):
    fake_lightsail.add_instance("web-1")
    fake_lightsail.deny("AKIDTESTHEALTH")
    with pytest.raises(L.AccessDenied, match="lightsail:GetInstanceAccessDetails"):
        L.access_details("web-1", "us-east-1")


def test_stopped_instance_gives_no_access(fake_lightsail: FakeLightsail):
    fake_lightsail.add_instance("web-1", state="stopped")
    with pytest.raises(L.InstanceNotReady, match="not running"):
        L.access_details("web-1", "us-east-1")


def test_fake_rejects_a_request_that_breaks_the_service_model(fake_lightsail: FakeLightsail):
    import botocore.exceptions

    fake_lightsail.add_instance("web-1")
    c = L.client("us-east-1")
    with pytest.raises(botocore.exceptions.ClientError, match="InvalidInputException"):
        # 90 s is not a multiple of 60: the real API refuses it too.
        c.get_instance_metric_data(
            instanceName="web-1",
            metricName="CPUUtilization",
            period=90,
            startTime=datetime.now(UTC) - timedelta(hours=1),
            endTime=datetime.now(UTC),
            unit="Percent",
            statistics=["Maximum"],
        )


def test_metric_data_returns_the_seven_metrics_with_the_spike(fake_lightsail: FakeLightsail):
    fake_lightsail.add_instance("web-1")
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=7)
    spike_at = (end - timedelta(days=2)).timestamp()
    fake_lightsail.spike("web-1", "CPUUtilization", spike_at, 97.0)
    data = L.metric_data("web-1", "us-east-1", start, end)
    assert set(data) == set(L.HEALTH_METRICS)
    cpu = data["CPUUtilization"]
    assert len(cpu) <= L.MAX_DATAPOINTS
    assert max(v for _, v in cpu) == 97.0
    assert data["BurstCapacityPercentage"][0][1] == 100.0


# --------------------------------------------------------------------------- temporary files


def test_access_files_are_private_and_host_keys_pinned(
    fake_lightsail: FakeLightsail, short_tmp, host_key
):
    tmp_path = short_tmp
    fake_lightsail.add_instance("web-1", host_keys=[host_key])
    details = L.access_details("web-1", "us-east-1")
    with S.temporary_access(details, directory=tmp_path / "acc") as access:
        d = Path(access["dir"])
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        for name in ("id", "id-cert.pub", "known_hosts"):
            assert stat.S_IMODE((d / name).stat().st_mode) == 0o600
        assert (d / "known_hosts").read_text() == (
            "lightsail-web-1 " + " ".join(host_key.split()[:2]) + "\n"
        )
        assert "StrictHostKeyChecking=yes" in access["options"]
        assert "BEGIN OPENSSH PRIVATE KEY" in (d / "id").read_text()
    assert not d.exists()


def test_access_directory_is_removed_when_the_block_fails(
    fake_lightsail: FakeLightsail, short_tmp, host_key
):
    tmp_path = short_tmp
    fake_lightsail.add_instance("web-1", host_keys=[host_key])
    details = L.access_details("web-1", "us-east-1")
    target = tmp_path / "acc"
    with pytest.raises(RuntimeError, match="boom"), S.temporary_access(details, directory=target):
        assert (target / "id").exists()
        raise RuntimeError("boom")
    assert not target.exists()


def test_expired_certificate_is_a_clear_error_and_leaves_nothing(
    fake_lightsail: FakeLightsail, tmp_path, host_key
):
    fake_lightsail.add_instance("web-1", cert_valid_s=-60, host_keys=[host_key])
    details = L.access_details("web-1", "us-east-1")
    target = tmp_path / "acc"
    with (
        pytest.raises(S.ExpiredCertificate, match="expired at"),
        S.temporary_access(details, directory=target),
    ):
        pass
    assert not target.exists()


def test_access_without_host_keys_refuses_trust_on_first_use(
    fake_lightsail: FakeLightsail, tmp_path
):
    fake_lightsail.add_instance("web-1", host_keys=[])
    with pytest.raises(L.LightsailError, match="trust on first use"):
        S.write_access(L.access_details("web-1", "us-east-1"), tmp_path / "acc")


def test_access_is_never_written_into_the_repository(fake_lightsail: FakeLightsail, host_key):
    fake_lightsail.add_instance("web-1", host_keys=[host_key])
    target = ROOT / "should-not-exist"
    with pytest.raises(L.LightsailError, match="inside the repository"):
        S.write_access(L.access_details("web-1", "us-east-1"), target)
    assert not target.exists()


# --------------------------------------------------------------------------- inventory


def test_inventory_groups_by_region_tag_and_state(fake_lightsail: FakeLightsail):
    fake_lightsail.add_instance("a", tags={"role": "jada", "env": "prod"}, public_ip="127.0.0.5")
    fake_lightsail.add_instance("b", tags={"role": "jada"})
    fake_lightsail.add_instance("c", state="stopped", tags={"role": "jada"})
    fake_lightsail.add_instance("d", region="eu-west-1", tags={"role": "web"})
    inv = build(["us-east-1", "eu-west-1"], tags=[("role", "jada")], states=None, jada_tag=None)
    assert inv["lightsail"]["hosts"] == ["a", "b", "c"]
    assert inv["state_running"]["hosts"] == ["a", "b"]
    assert inv["state_stopped"]["hosts"] == ["c"]
    assert inv["tag_env_prod"]["hosts"] == ["a"]
    assert inv["region_us_east_1"]["hosts"] == ["a", "b", "c"]
    assert inv["_meta"]["hostvars"]["a"]["ansible_host"] == "127.0.0.5"
    assert "d" not in inv["_meta"]["hostvars"]
    running = build(["us-east-1"], jada_tag=None)
    assert running["lightsail"]["hosts"] == ["a", "b"]


def test_inventory_lists_only_the_instances_tagged_jada_in_the_group_site_yml_targets(
    fake_lightsail: FakeLightsail,
):
    fake_lightsail.add_instance("jada-1", tags={"jada": ""})
    fake_lightsail.add_instance("jada-2", tags={"jada": "prod", "env": "prod"})
    fake_lightsail.add_instance("web-1", tags={"env": "prod"})
    fake_lightsail.add_instance("db-1")
    inv = build(["us-east-1"])
    assert inv["jada"]["hosts"] == ["jada-1", "jada-2"]
    assert "jada" in inv["all"]["children"]
    assert set(inv["_meta"]["hostvars"]) == {"jada-1", "jada-2"}  # no access to the others
    assert inv["_meta"]["untagged"] == 2
    assert build(["us-east-1"], jada_tag=("env", "prod"))["jada"]["hosts"] == ["jada-2", "web-1"]
    assert build(["us-east-1"], jada_tag=("jada", "prod"))["jada"]["hosts"] == ["jada-2"]
    assert build(["us-east-1"], jada_tag=None)["jada"]["hosts"] == [
        "db-1", "jada-1", "jada-2", "web-1",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("", ("jada", None)), ("role", ("role", None)), ("role=jada", ("role", "jada")),
     ("*", None), (" env = prod ", ("env", "prod"))],
)  # fmt: skip
def test_the_jada_tag_variable_reads_key_or_key_value(spec, expected):
    assert parse_jada_tag(spec) == expected


@pytest.mark.parametrize("spec", ["=x", "a=1,b=2"])
def test_a_malformed_jada_tag_variable_is_refused_with_the_expected_form(spec):
    with pytest.raises(ValueError, match="expected one tag, as KEY or KEY=VALUE"):
        parse_jada_tag(spec)


def _ansible_inventory(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                JADA_LIGHTSAIL_REGIONS="us-east-1", **env)  # fmt: skip
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", "inventory/lightsail.py",
         *args],
        capture_output=True, text=True, env=full, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip


def test_site_yml_lists_the_tagged_instance_as_its_host(fake_lightsail: FakeLightsail):
    fake_lightsail.add_instance("jada-prod-1", tags={"jada": ""}, public_ip="127.0.0.9")
    fake_lightsail.add_instance("web-1", public_ip="127.0.0.10")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               JADA_LIGHTSAIL_REGIONS="us-east-1")  # fmt: skip
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventory/lightsail.py",
         "site.yml", "--list-hosts"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "hosts (1):" in out.stdout and "jada-prod-1" in out.stdout, out.stdout
    assert "web-1" not in out.stdout


def test_untagged_instances_only_give_a_warning_naming_the_tag_variable(
    fake_lightsail: FakeLightsail,
):
    fake_lightsail.add_instance("web-1")
    r = _ansible_inventory("--list")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["_meta"]["hostvars"] == {}
    assert "1 instance(s) found, none tagged 'jada'" in r.stderr
    assert "JADA_LIGHTSAIL_JADA_TAG" in r.stderr
    bad = _ansible_inventory("--list", JADA_LIGHTSAIL_JADA_TAG="a=1,b=2")
    assert "expected one tag, as KEY or KEY=VALUE" in bad.stderr


def test_ansible_reads_the_inventory_script(fake_lightsail: FakeLightsail):
    fake_lightsail.add_instance("jada-1", tags={"role": "jada"}, public_ip="127.0.0.9")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               JADA_LIGHTSAIL_REGIONS="us-east-1", JADA_LIGHTSAIL_JADA_TAG="role=jada")  # fmt: skip
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", "inventory/lightsail.py",
         "--list"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=True,
    )  # fmt: skip
    inv = json.loads(out.stdout)
    assert inv["_meta"]["hostvars"]["jada-1"]["ansible_host"] == "127.0.0.9"
    assert "jada-1" in inv["tag_role_jada"]["hosts"]
    assert inv["jada"]["hosts"] == ["jada-1"]


# --------------------------------------------------------------------------- real sshd


def test_ssh_with_temporary_access_runs_a_command_and_pins_the_host_key(fake_lightsail, sshd):
    fake_lightsail.add_instance("web-1", username=sshd.user, host_keys=[sshd.host_public_key])
    with S.temporary_access(L.access_details("web-1", "us-east-1"), port=sshd.port) as access:
        r = subprocess.run(S.ssh_argv(access, ["echo", "hello"]), capture_output=True, text=True)
        assert (r.returncode, r.stdout) == (0, "hello\n"), r.stderr


def test_ssh_refuses_a_host_whose_key_is_not_the_pinned_one(fake_lightsail, sshd, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = (tmp_path / "other.pub").read_text().strip()
    fake_lightsail.add_instance("web-1", username=sshd.user, host_keys=[wrong])
    with S.temporary_access(L.access_details("web-1", "us-east-1"), port=sshd.port) as access:
        r = subprocess.run(
            S.ssh_argv(access, ["true"], control_persist=None), capture_output=True, text=True
        )
    assert r.returncode == 255
    assert "Host key verification failed" in r.stderr


def test_control_master_outlives_the_short_certificate(fake_lightsail, sshd):
    fake_lightsail.add_instance(
        "web-1", username=sshd.user, host_keys=[sshd.host_public_key], cert_valid_s=3
    )
    with S.temporary_access(L.access_details("web-1", "us-east-1"), port=sshd.port) as access:
        first = subprocess.run(S.ssh_argv(access, ["echo", "1"]), capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        time.sleep(4)  # the certificate has expired now
        fresh = subprocess.run(
            S.ssh_argv(access, ["echo", "2"], control_persist=None), capture_output=True, text=True
        )
        assert fresh.returncode == 255  # a new connection is refused ...
        reused = subprocess.run(S.ssh_argv(access, ["echo", "3"]), capture_output=True, text=True)
        assert (reused.returncode, reused.stdout) == (0, "3\n")  # ... the master still serves
        sockets = list(Path(access["dir"]).glob("cm-*"))
        assert sockets
    assert not Path(access["dir"]).exists()
    master_alive = subprocess.run(
        ["ssh", "-o", f"ControlPath={sockets[0]}", "-O", "check", "x"], capture_output=True
    )
    assert master_alive.returncode != 0


def test_cli_ssh_runs_the_command_and_deletes_the_key(fake_lightsail, sshd, short_tmp):
    tmp_path = short_tmp
    fake_lightsail.add_instance("web-1", username=sshd.user, host_keys=[sshd.host_public_key])
    env = dict(os.environ, JADA_SSH_TMPDIR=str(tmp_path), JADA_AGENT_CONFIG="/dev/null")
    r = _cli(
        "lightsail", "ssh", "--port", str(sshd.port), "web-1", "--", "echo", "via-cli", env=env
    )
    assert (r.returncode, r.stdout) == (0, "via-cli\n"), r.stderr
    assert list(tmp_path.glob("jada-ssh-*")) == []


def test_cli_ssh_unknown_instance_exits_with_a_clear_message(fake_lightsail, tmp_path):
    env = dict(os.environ, JADA_SSH_TMPDIR=str(tmp_path), JADA_AGENT_CONFIG="/dev/null")
    r = _cli("lightsail", "ssh", "ghost", "--", "true", env=env)
    assert r.returncode == 1
    assert "no instance 'ghost' in us-east-1" in r.stderr
    assert list(tmp_path.glob("jada-ssh-*")) == []


def test_ansible_runs_through_lightsail_run_and_the_access_is_removed(
    fake_lightsail, sshd, short_tmp
):
    tmp_path = short_tmp
    fake_lightsail.add_instance(
        "jada-1", username=sshd.user, host_keys=[sshd.host_public_key], tags={"jada": ""}
    )
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        JADA_SSH_TMPDIR=str(tmp_path),
        JADA_AGENT_CONFIG="/dev/null",
        JADA_LIGHTSAIL_REGIONS="us-east-1",
        ANSIBLE_HOST_KEY_CHECKING="True",
    )
    r = _cli(
        "lightsail", "run", "--port", str(sshd.port), "--",
        str(Path(sys.executable).parent / "ansible"), "-i", "inventory/lightsail.py", "all",
        "-m", "ansible.builtin.command", "-a", "echo reached-over-cert",
        "-e", "ansible_python_interpreter=/usr/bin/python3",
        env=env, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reached-over-cert" in r.stdout
    assert list(tmp_path.glob("jada-run-*")) == []


def test_lightsail_run_cleans_up_on_sigterm(fake_lightsail, tmp_path):
    env = dict(os.environ, JADA_SSH_TMPDIR=str(tmp_path), JADA_AGENT_CONFIG="/dev/null")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "lightsail", "run", "--", "sleep", "30"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.time() + 20
    while not list(tmp_path.glob("jada-run-*")) and time.time() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob("jada-run-*")), "the run did not create its access directory"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.glob("jada-run-*")) == []


def test_cli_access_writes_private_files_and_prints_ansible_vars(
    fake_lightsail, short_tmp, host_key
):
    fake_lightsail.add_instance("web-1", host_keys=[host_key], public_ip="127.0.0.7")
    target = short_tmp / "acc"
    env = dict(os.environ, JADA_AGENT_CONFIG="/dev/null")
    r = _cli("lightsail", "access", "web-1", "--dir", str(target), "--json", env=env)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["ansible_vars"]["ansible_host"] == "127.0.0.7"
    assert "StrictHostKeyChecking=yes" in data["ansible_vars"]["ansible_ssh_common_args"]
    assert "BEGIN OPENSSH PRIVATE KEY" not in r.stdout  # the key stays in its 0600 file
    assert stat.S_IMODE((target / "id").stat().st_mode) == 0o600
    again = _cli("lightsail", "access", "web-1", "--dir", str(target), env=env)
    assert again.returncode == 64
    assert "expected a new or empty directory" in again.stderr


def test_fake_fails_loudly_when_its_own_reply_breaks_the_service_model(
    fake_lightsail: FakeLightsail, monkeypatch
):
    import botocore.exceptions

    from tests.fakes import lightsail as fake_module

    real = fake_module.FakeInstance.to_json
    monkeypatch.setattr(
        fake_module.FakeInstance, "to_json", lambda self, account: real(self, account) | {"ram": 1}
    )
    fake_lightsail.add_instance("web-1")
    with pytest.raises(
        botocore.exceptions.ClientError, match=r"FakeShapeError.*unknown members \['ram'\]"
    ):
        L.client("us-east-1").get_instance(instanceName="web-1")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("expired", "the certificate for instance 'web-1' expired at"),
        ("denied", "access denied by AWS (AccessDeniedException)"),
        ("stopped", "is not running"),
    ],
)
def test_cli_ssh_failures_are_one_clear_line_and_leave_no_files(
    fake_lightsail, short_tmp, host_key, setup, message
):
    fake_lightsail.add_instance(
        "web-1",
        host_keys=[host_key],
        cert_valid_s=-60 if setup == "expired" else 60,
        state="stopped" if setup == "stopped" else "running",
    )
    if setup == "denied":
        fake_lightsail.deny("AKIDTESTHEALTH")
    env = dict(os.environ, JADA_SSH_TMPDIR=str(short_tmp), JADA_AGENT_CONFIG="/dev/null")
    r = _cli("lightsail", "ssh", "web-1", "--", "true", env=env)
    assert r.returncode == 1
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert list(short_tmp.glob("jada-ssh-*")) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_fake_as_a_process_removes_its_ca_key_when_stopped(tmp_path, signum):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.lightsail", "--host", "127.0.0.1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().startswith("fake Lightsail at http://127.0.0.1:")
        (ca_dir,) = tmp_path.glob("fake-lightsail-*")
        assert (ca_dir / "ca").exists()  # the CA's private key
        proc.send_signal(signum)
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(tmp_path.glob("fake-lightsail-*")) == []
