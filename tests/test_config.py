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
        ("", {"RINGFENCE_SANDBOX_BACKEND": "firecracker"}, "sandbox_backend: Input should be 'bubblewrap' or 'gvisor'"),
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


# A value for every setting, as a variable would carry it, and how it reads back (A3: nothing documented is
# ignored). Derived from the model: a new setting without a sample here fails the test below.
SAMPLES: dict[str, tuple[str, object]] = {
    "data_dir": ("{tmp}/d", "{tmp}/d"),
    "database_url": ("sqlite:////x.db", "sqlite:////x.db"),
    "master_key_file": ("{tmp}/k", "{tmp}/k"),
    "listen": ("127.0.0.1:9999", "127.0.0.1:9999"),
    "sweep_interval_seconds": ("7", 7.0),
    "policy_file": ("{tmp}/p.toml", "{tmp}/p.toml"),
    "sandbox_dir": ("{tmp}/s", "{tmp}/s"),
    "sandbox_rootfs": ("/", "/"),
    "sandbox_backend": ("gvisor", "gvisor"),
    "sandbox_memory": ("512M", "512M"),
    "sandbox_pids": ("99", 99),
    "sandbox_workspace_size": ("1G", "1G"),
    "sandbox_cpu_weight": ("50", 50),
    "sandbox_timeout_seconds": ("12", 12.0),
    "sandbox_network_modes": ("none,trusted", ["none", "trusted"]),
    "providers": (
        '{"llm": {"kind": "openai", "base_url": "https://llm.example/v1", "api_key_file": "/k"}}',
        {"llm": {"kind": "openai", "base_url": "https://llm.example/v1", "api_key_file": Path("/k")}},
    ),
    "egress_allow_ranges": ("10.1.0.0/16, 192.168.5.0/24", ["10.1.0.0/16", "192.168.5.0/24"]),
    "demo": ("false", False),
}


def test_every_setting_has_its_variable(tmp_path: Path) -> None:
    from ringfence.config import ENV, Settings

    assert set(SAMPLES) == set(Settings.model_fields), "give each new setting a sample above"
    for name, (text, expected) in SAMPLES.items():
        settings = load_settings({}, environ={ENV[name]: text.replace("{tmp}", str(tmp_path))})
        got = getattr(settings, name)
        if name == "providers":
            got = {key: value.model_dump() for key, value in got.items()}
        want = expected.replace("{tmp}", str(tmp_path)) if isinstance(expected, str) else expected
        assert (str(got) if isinstance(got, Path) else got) == want, name


def test_a_list_setting_also_takes_a_json_array_and_a_bad_one_is_named(tmp_path: Path) -> None:
    loaded = load_settings({"data_dir": tmp_path}, environ={"RINGFENCE_EGRESS_ALLOW_RANGES": '["10.9.0.0/16"]'})
    assert loaded.egress_allow_ranges == ["10.9.0.0/16"]
    with pytest.raises(ConfigError, match="RINGFENCE_EGRESS_ALLOW_RANGES is not a JSON array"):
        load_settings({"data_dir": tmp_path}, environ={"RINGFENCE_EGRESS_ALLOW_RANGES": "[10.9"})


def test_an_unknown_ringfence_variable_is_a_warning_naming_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    environ = {"RINGFENCE_EGRES_ALLOW_RANGES": "10.0.0.0/8", "RINGFENCE_TOKEN": "t", "RINGFENCE_CONFIG": "/nope"}
    with caplog.at_level("WARNING", logger="ringfence.config"):
        load_settings({"data_dir": tmp_path}, environ=environ)
    assert [r.getMessage().split(" ")[0] for r in caplog.records] == ["RINGFENCE_EGRES_ALLOW_RANGES"]


def test_a_bad_egress_allow_range_stops_the_server_naming_the_setting(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "RINGFENCE_EGRESS_ALLOW_RANGES": "10.0.0.0/33", "RINGFENCE_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "ringfence", "serve", "--listen", "127.0.0.1:1"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "egress_allow_ranges" in done.stderr, done.stderr[-500:]
