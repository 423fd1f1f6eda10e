"""The gVisor backend's C programs are built by the host's compiler: once per source (a later backend on the same
root takes the build as it is), anew when a source changes, and a missing compiler or a source that does not build
is a clear error that names it, with nothing half-built left where a sandbox would bind it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ringfence.sandbox import native
from ringfence.sandbox.spec import SandboxError


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copied = tmp_path / "sources"
    shutil.copytree(native.SOURCES, copied)
    monkeypatch.setattr(native, "SOURCES", copied)
    return copied


def test_a_build_is_reused_and_a_changed_source_builds_anew(tmp_path: Path, sources: Path) -> None:
    first = native.build(tmp_path / "native")
    made = first.launch.stat().st_mtime_ns
    again = native.build(tmp_path / "native")
    assert again == first and again.launch.stat().st_mtime_ns == made  # taken as it was, not rebuilt
    for program in (first.init, first.launch, first.compat):
        assert program.stat().st_mode & 0o777 == 0o755
    with (sources / "launch.c").open("a") as source:
        source.write("/* changed */\n")
    changed = native.build(tmp_path / "native")
    assert changed.launch.parent != first.launch.parent and changed.launch.exists() and first.launch.exists()


def test_no_compiler_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    with pytest.raises(SandboxError, match=r"C compiler.*make installs Debian's gcc"):
        native.build(tmp_path / "native")


def test_a_source_that_does_not_build_names_the_program_and_leaves_nothing(tmp_path: Path, sources: Path) -> None:
    (sources / "init.c").write_text("int main(void) { return undeclared; }\n")
    with pytest.raises(SandboxError, match=r"(?s)the gVisor backend's init did not build .*undeclared"):
        native.build(tmp_path / "native")
    assert list((tmp_path / "native").iterdir()) == []
