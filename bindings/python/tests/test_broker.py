"""Runtime(broker=path): gms_runtime_options.broker, the socket of gmsd
(docs/broker.md). With a gmsd of the test's own (build/gmsd, next to the
libgms under test): the runtime's memory is gmsd's leases, the option wins
over GMS_BROKER, and the variable applies without it. Without gmsd: the
refusals of wrong values, each naming the option."""

import json
import os
import pathlib
import subprocess
import time

import pytest

import gms
from gms import _lib


def _gmsd_binary():
    for d in (os.path.dirname(_lib.path), os.path.join(_lib._REPO, "build")):
        exe = os.path.join(d, "gmsd")
        if os.access(exe, os.X_OK):
            return exe
    return None


@pytest.fixture(scope="module")
def gmsd(tmp_path_factory):
    exe = _gmsd_binary()
    if exe is None:
        pytest.skip("no gmsd next to libgms or in build/ (make build makes it)")
    d = tmp_path_factory.mktemp("gmsd")
    policy = d / "policy.json"
    policy.write_text(json.dumps({"lease_bytes": 2 << 20, "tenants": [
        {"name": "self", "uids": [os.getuid()], "quota_bytes": 8 << 20, "quota_leases": 4}]}))
    sock = d / "gmsd.sock"
    # Not the sanitizer runtime pytest.sh --asan preloads into python: an
    # ASan build of gmsd carries its own.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    with open(d / "gmsd.log", "w") as log:
        proc = subprocess.Popen([exe, "--policy", str(policy), "--socket", str(sock)],
                                stderr=log, env=env)
    deadline = time.monotonic() + 5
    while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if not sock.exists():
        proc.kill()
        proc.wait()
        pytest.fail("gmsd did not start: " + (d / "gmsd.log").read_text())
    yield sock
    proc.terminate()
    assert proc.wait(10) == 0, (d / "gmsd.log").read_text()


@pytest.fixture
def no_variable(monkeypatch):
    monkeypatch.delenv("GMS_BROKER", raising=False)
    return monkeypatch


def _round_trip(rt):
    with rt.context("self", "u") as ctx, ctx.alloc(4096) as buf:
        buf.write(b"through gmsd")
        assert buf.read(12) == b"through gmsd"


def test_broker_option_opens_a_client_of_gmsd(gmsd, no_variable):
    with gms.Runtime(broker=str(gmsd)) as rt:
        assert rt.backend == "broker"
        _round_trip(rt)
    with gms.Runtime(broker=pathlib.Path(gmsd)) as rt:  # os.PathLike
        assert rt.backend == "broker"
    with gms.Runtime(backend="host") as rt:  # no broker: the host backend
        assert rt.backend == "host"


def test_broker_option_wins_over_the_variable(gmsd, no_variable):
    no_variable.setenv("GMS_BROKER", "/nonexistent/by-the-variable.sock")
    with gms.Runtime(broker=gmsd) as rt:
        assert rt.backend == "broker"
    no_variable.setenv("GMS_BROKER", str(gmsd))
    with pytest.raises(gms.BackendError,
                       match="gms_runtime_options.broker=/nonexistent/by-the-option.sock: "
                             "cannot connect to gmsd"):
        gms.Runtime(broker="/nonexistent/by-the-option.sock")
    # Without the option the variable applies.
    with gms.Runtime(backend="host") as rt:
        assert rt.backend == "broker"
        _round_trip(rt)


def test_broker_option_names_a_missing_socket(no_variable):
    with pytest.raises(gms.BackendError) as e:
        gms.Runtime(broker="/nonexistent/gmsd.sock")
    assert "gms_runtime_options.broker=/nonexistent/gmsd.sock" in str(e.value)
    assert e.value.code == -9  # GMS_E_BACKEND


@pytest.mark.parametrize("broker,backend,message", [
    ("", "auto", 'gms_runtime_options.broker is "": give gmsd\'s socket path'),
    ("/" + "x" * 200, "auto", "the path is 201 bytes; a Unix socket's is at most 107"),
    ("/run/gms/gmsd.sock", "hip", "gmsd serves host or CUDA memory, never HIP"),
])
def test_broker_option_refuses_wrong_values(no_variable, broker, backend, message):
    with pytest.raises(gms.InvalidArgument) as e:
        gms.Runtime(broker=broker, backend=backend)
    assert message in str(e.value)


def test_broker_option_refuses_a_nul():
    with pytest.raises(ValueError):
        gms.Runtime(broker="/run/gms\0/gmsd.sock")
