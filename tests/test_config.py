"""Configuration: defaults, then the TOML file, then RINGFENCE_* variables, then flags; bad values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringfence.config import ConfigError, load_settings


def test_defaults_live_under_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings({"data_dir": tmp_path}, environ={})
    assert settings.db_url == f"sqlite:///{tmp_path / 'ringfence.db'}"
    assert settings.key_file == tmp_path / "master.key"
    assert settings.listen == "127.0.0.1:8600"


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    (tmp_path / "ringfence.toml").write_text('listen = "127.0.0.1:9000"\nsweep_interval_seconds = 60\n')
    from_file = load_settings({"data_dir": tmp_path}, environ={})
    assert (from_file.listen, from_file.sweep_interval_seconds) == ("127.0.0.1:9000", 60)
    from_env = load_settings({"data_dir": tmp_path}, environ={"RINGFENCE_LISTEN": "127.0.0.1:9100"})
    assert from_env.listen == "127.0.0.1:9100" and from_env.sweep_interval_seconds == 60
    from_flag = load_settings(
        {"data_dir": tmp_path, "listen": "[::1]:9200"}, environ={"RINGFENCE_LISTEN": "127.0.0.1:9100"}
    )
    assert from_flag.listen == "[::1]:9200"


def test_the_config_file_can_be_named(tmp_path: Path) -> None:
    named = tmp_path / "elsewhere.toml"
    named.write_text(f'data_dir = "{tmp_path / "d"}"\n')
    assert load_settings(environ={"RINGFENCE_CONFIG": str(named)}).data_dir == tmp_path / "d"


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("colour = 'red'\n", {}, "colour: Extra inputs are not permitted"),
        ("", {"RINGFENCE_LISTEN": "8600"}, "listen must be HOST:PORT"),
        ("", {"RINGFENCE_LISTEN": "127.0.0.1:70000"}, "listen must be HOST:PORT"),
        ("sweep_interval_seconds = 0\n", {}, "sweep_interval_seconds: Input should be greater than 0"),
        ("listen = [\n", {}, "is not valid TOML"),
        ("sandbox_memory = 'lots'\n", {}, "sandbox_memory: .*size 'lots' is not a number"),
        ("", {"RINGFENCE_SANDBOX_PIDS": "2"}, "sandbox_pids: Input should be greater than or equal to 4"),
        ("sandbox_rootfs = '/nonexistent'\n", {}, "sandbox_rootfs: .*has no usr directory"),
        ("sandbox_cpu_weight = 0\n", {}, "sandbox_cpu_weight: Input should be greater than or equal to 1"),
    ],
)
def test_bad_configuration_names_the_setting(tmp_path: Path, text: str, environ: dict, message: str) -> None:
    (tmp_path / "ringfence.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings({"data_dir": tmp_path}, environ=environ)


def test_sandbox_limits_come_from_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "ringfence.toml").write_text("sandbox_memory = '512M'\nsandbox_workspace_size = '0'\n")
    limits = load_settings({"data_dir": tmp_path}, environ={"RINGFENCE_SANDBOX_CPU_WEIGHT": "50"}).sandbox_limits()
    assert (limits.memory_bytes, limits.workspace_bytes, limits.cpu_weight) == (512 * 2**20, None, 50)
