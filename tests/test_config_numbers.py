"""Issue 17: numbers in the configuration are ASCII digits too, and every bad one is a ConfigError
(exit 2 with a message), never a traceback."""

from __future__ import annotations

import pytest

from registry.config import ConfigError
from registry.settings import load


@pytest.mark.parametrize("listen", [":²", ":٣٣", ":５０００", ":1_0", ":70000", ":", ":" + "9" * 5000])
def test_listen_port_is_ascii_digits_below_65536(listen: str) -> None:
    with pytest.raises(ConfigError, match="listen"):
        load(None, environ={"REGISTRY_LISTEN": listen})


@pytest.mark.parametrize("value", ["١", "٣.٥", "1_0", "nan", "inf", "-inf", "1e999", "0x10", ""])
def test_float_option_from_text_is_an_ascii_decimal(value: str) -> None:
    with pytest.raises(ConfigError, match="gc.grace_period"):
        load(None, environ={"REGISTRY_GC_GRACE_PERIOD": value})


@pytest.mark.parametrize("value, expected", [("30", 30.0), ("0.5", 0.5), (" 2.5 ", 2.5), ("1e-3", 0.001),
                                             ("+4", 4.0), (".5", 0.5)])
def test_float_option_reads_plain_decimals(value: str, expected: float) -> None:
    assert load(None, environ={"REGISTRY_GC_GRACE_PERIOD": value}).gc.grace_period == expected


def test_yaml_number_too_long_for_python_is_a_config_error(tmp_path) -> None:
    config = tmp_path / "registry.yml"
    config.write_text("workers: " + "9" * 5000 + "\n")  # PyYAML's int() raises ValueError past 4,300 digits
    with pytest.raises(ConfigError, match="registry.yml"):
        load(None, environ={"REGISTRY_CONFIG": str(config)})


@pytest.mark.parametrize("env", [
    {"REGISTRY_LIMITS_HEADER_BYTES": "512"},
    {"REGISTRY_LIMITS_HEADER_TOTAL_BYTES": "1024"},  # smaller than a line may be
])
def test_header_limits_are_sane(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="header"):
        load(None, environ=env)


def test_header_limit_defaults() -> None:
    limits = load(None, environ={}).limits
    assert (limits.header_bytes, limits.header_total_bytes) == (16384, 65536)
