"""Issue 10, acceptance 4: docs/configuration.md is generated from the config's own definitions and a
stale copy fails the suite."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from registry.config import add_arguments, options
from registry.config_docs import main, render

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "configuration.md"
REGENERATE = "make docs (python -m registry.config_docs > docs/configuration.md)"


def test_the_page_is_up_to_date():
    assert PAGE.read_text() == render(), f"docs/configuration.md is stale; regenerate it: {REGENERATE}"


def test_every_option_has_a_row_with_its_names():
    page = PAGE.read_text()
    for spec in options():
        row = next((line for line in page.splitlines() if line.startswith(f"| `{spec.dotted}` |")), None)
        assert row is not None, f"{spec.dotted} missing"
        assert f"`{spec.env}`" in row and spec.flag[2:] in row


def test_documented_flags_are_the_servers_flags():
    serve = argparse.ArgumentParser()
    add_arguments(serve)  # what `registry serve` (and every command taking the config) adds
    real = {flag for action in serve._actions for flag in action.option_strings}
    documented = re.findall(r"`(--(?:\[no-\])?[a-z0-9-]+)", PAGE.read_text())
    assert documented
    for flag in documented:
        assert flag.replace("[no-]", "") in real, flag
        if "[no-]" in flag:
            assert flag.replace("[no-]", "no-") in real, flag


def test_check_mode_reports_a_stale_page(tmp_path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text(render().replace("REGISTRY_LISTEN", "REGISTRY_LISTEN_OLD"))
    assert main(["--check", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err
    stale.write_text(render())
    assert main(["--check", str(stale)]) == 0


def test_the_generator_runs_as_documented():
    result = subprocess.run([sys.executable, "-m", "registry.config_docs"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0 and result.stdout == render()
