"""What `registry run` costs to start is mostly what it imports and builds before the fork (bench/runtime.py has
the figures). These tests keep the start path lean without timing anything: a real `run` must not load the
modules that start-up was cut free of, and the verbs' table must still give every verb its parser."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from registry.runtime import cli
from registry.runtime.cgroups import Resources
from registry.runtime.records import as_json
from registry.runtime.state import Spec, State
from tests.runtime.conftest import REPO, Runtime

# Each cost milliseconds on every start (measured with -X importtime) and is needed only by other verbs or modes:
# dataclasses brings inspect, ast and dis; socket brings selectors and hundreds of enum members; tarfile and
# tempfile are for cp and volumes; subprocess for bridge networking.
NOT_ON_THE_START_PATH = ("dataclasses", "inspect", "typing", "socket", "subprocess", "tarfile", "tempfile",
                         "asyncio", "aiohttp", "threading")

# Run as `python -S`: no site, so a development install's import hooks load nothing on their own, and every
# module in sys.modules was loaded by the runtime. os._exit is where the CLI ends (exit_now); the top process
# writes what it loaded there, its forked children do not.
_PROBE = """
import json, os, sys
sys.path.insert(0, {repo!r})
top, real_exit = os.getpid(), os._exit

def exit_and_report(code):
    if os.getpid() == top:
        with open({out!r}, "w") as f:
            json.dump(sorted(sys.modules), f)
    real_exit(code)

os._exit = exit_and_report
from registry.runtime.__main__ import exit_now, main
exit_now(main({argv!r}))
"""


def test_a_foreground_run_loads_none_of_the_heavy_modules(runtime: Runtime, pulled_base: str,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "modules.json"
    argv = ["run", "--rm", "--pull", "never", pulled_base, "true"]
    probe = _PROBE.format(repo=str(REPO), out=str(out), argv=argv)
    result = subprocess.run([sys.executable, "-S", "-c", probe], env=runtime.env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(out.read_text()))
    assert "registry.runtime.monitor" in loaded  # the probe saw a real start
    assert not loaded & set(NOT_ON_THE_START_PATH), sorted(loaded & set(NOT_ON_THE_START_PATH))


def test_every_verb_has_its_parser_and_help_lists_them_all() -> None:
    result = subprocess.run([sys.executable, "-m", "registry.runtime", "--help"], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    for verb in cli.VERBS:
        assert verb in result.stdout
        one = subprocess.run([sys.executable, "-m", "registry", verb, "--help"], capture_output=True, text=True,
                             cwd=REPO, timeout=60)
        assert one.returncode == 0 and one.stdout.startswith(f"usage: registry {verb}"), (verb, one.stderr)


@pytest.mark.parametrize("argv", [["nonsense"], ["run"], ["run", "--memory", "lots", "img"]])
def test_usage_errors_still_say_what_is_wrong(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "registry", *argv], capture_output=True, text=True, cwd=REPO,
                            timeout=60)
    assert result.returncode == 2
    assert "usage: registry" in result.stderr and "Traceback" not in result.stderr


def test_records_round_trip_through_their_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """State files written by the plain records read back equal (as the dataclasses before them did)."""
    monkeypatch.setenv("REGISTRY_RUNTIME_ROOT", str(tmp_path))
    spec = Spec(image="i", image_digest="sha256:" + "a" * 64, lowers=["l/x"], args=["true"], env=["A=1"], cwd="/",
                user="0", hostname="h", ports=[("", 8080, 80)], volumes=[("/h", "/c", True)],
                resources=Resources(memory=1 << 25, device_read_bps=[("/dev/sda", 1 << 20)]))
    state = State(id="0" * 64, name="n", spec=spec, cgroups={"dirs": {}}, network={"mode": "none"})
    state.save()
    again = State.load(state.id)
    assert again == state
    assert as_json(again) == json.loads(json.dumps(as_json(state)))
    assert "memory=33554432" in repr(again.spec.resources)
    assert Spec(**{**spec.__dict__, "tty": True}).tty and not spec.tty  # exec's copy with changes
