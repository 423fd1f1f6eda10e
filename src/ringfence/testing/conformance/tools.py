"""Checks that the everyday tools an agent runs behave inside the sandbox as on a plain host: coreutils' file
commands (gVisor's release in Debian answered EINVAL to the flag `ls` and `stat` pass on every file), and a
command's signal dispositions (a pipeline ends on SIGPIPE only if its commands start with the default one)."""

from __future__ import annotations

from ringfence.testing.conformance.harness import Harness, sandbox

# each line prints one word when its tool did its work: the check compares the words, so a failure names the tool
_FILE_TOOLS = r"""
mkdir -p tree/sub && echo data > tree/sub/file && ln -s sub/file tree/link
ls -la tree | grep -q ' link -> sub/file' && echo ls
test "$(stat -c %s tree/sub/file)" = 5 && echo stat
cp -a tree copy && test -L copy/link && echo cp
mv copy moved && test -f moved/sub/file && echo mv
test "$(find tree -type f | wc -l)" = 1 && echo find
du -s tree >/dev/null && echo du
touch -d 2020-01-01 tree/sub/file && test "$(date -r tree/sub/file +%Y)" = 2020 && echo touch
chmod 600 tree/sub/file && test "$(stat -c %a tree/sub/file)" = 600 && echo chmod
tar -cf t.tar tree && tar -tf t.tar | grep -q sub/file && echo tar
rm -rf tree moved t.tar && test ! -e tree && echo rm
"""
FILE_TOOLS = ["ls", "stat", "cp", "mv", "find", "du", "touch", "chmod", "tar", "rm"]


async def everyday_file_tools_work(h: Harness) -> None:
    _, box = await sandbox(h)
    try:
        done = await box.run(["sh", "-c", _FILE_TOOLS], timeout=120)
    finally:
        await box.destroy()
    assert done.stdout.decode().split() == FILE_TOOLS, done


async def a_pipeline_ends_on_sigpipe(h: Harness) -> None:
    """`yes | head -1` ends, and quietly: `yes` starts with SIGPIPE's default action and dies of it. A command
    started with SIGPIPE ignored (Python ignores it, and a Python launcher passed that on) gets EPIPE instead, and
    `yes` says 'Broken pipe'."""
    _, box = await sandbox(h)
    try:
        piped = await box.run(["sh", "-c", "yes | head -1"], timeout=60)
    finally:
        await box.destroy()
    assert piped.stdout == b"y\n" and piped.stderr == b"" and piped.exit.code == 0, piped
