"""The bwrap command line as a pure function: what is isolated, what is bound, what the environment holds."""

from __future__ import annotations

from pathlib import Path

from ringfence.sandbox.mounts import MountPlan, bwrap_argv


def plan() -> list[str]:
    return bwrap_argv(
        "bwrap", MountPlan(Path("/srv/sbx/sbx_1/workspace"), {"EXTRA": "1"}, "rf-1"), ["sh", "-c", "echo hi"]
    )


def test_every_namespace_is_new_and_the_sandbox_cannot_make_more() -> None:
    argv = plan()
    for flag in (
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ):
        assert flag in argv
    assert "--share-net" not in argv


def test_only_system_directories_and_the_workspace_are_visible() -> None:
    argv = plan()
    sources = [argv[i + 1] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind")]
    writable = [argv[i + 1] for i, a in enumerate(argv) if a == "--bind"]
    assert writable == ["/srv/sbx/sbx_1/workspace"]
    for source in sources:
        assert not source.startswith(("/root", "/home", "/var", "/run", "/proc", "/sys", "/srv/sbx/sbx_2"))
        assert source in ("/srv/sbx/sbx_1/workspace",) or source.startswith(("/usr", "/etc/"))
    assert not any(s in ("/etc", "/etc/shadow", "/etc/passwd") for s in sources)


def test_the_environment_is_rebuilt_from_an_explicit_list() -> None:
    argv = plan()
    names = [argv[i + 1] for i, a in enumerate(argv) if a == "--setenv"]
    assert set(names) == {"PATH", "HOME", "TMPDIR", "LANG", "TERM", "USER", "LOGNAME", "SHELL", "EXTRA"}
    assert argv[-4:] == ["--", "sh", "-c", "echo hi"]
