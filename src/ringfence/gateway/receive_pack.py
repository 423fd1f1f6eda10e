"""The head of a push (git-receive-pack request), read as a stream and judged before anything is forwarded.

Owns: `PushHeadReader`, which reads the update request as git's receive-pack does (gitprotocol-pack(5),
"Reference Update Request"; receive-pack.c read_head_info and queue_commands_from_cert):

    update-requests = *shallow ( command-list | push-cert )
    command-list    = PKT-LINE(command NUL capability-list) *PKT-LINE(command) flush-pkt
    push-cert       = PKT-LINE("push-cert" NUL capability-list LF) header lines, PKT-LINE(LF),
                      *PKT-LINE(command LF), signature lines, PKT-LINE("push-cert-end" LF), then flush-pkt
    push-options    = *PKT-LINE(push-option) flush-pkt          (only if the push-options capability was asked)

and then the pack, which the caller streams on untouched. It refuses whatever git might read differently from us
(a NUL anywhere but the first line, a command outside the certificate of a signed push, lines after
push-cert-end, malformed object ids), and bounds the head's size and its number of commands.
`check_push` then holds the commands to the session's rule: exactly one branch, no deletes, nothing else.
Pure: bytes in, decisions out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ringfence.gateway.pktline import PktLineError, PktLineReader, Special

_OID = re.compile(rb"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_ZERO = re.compile(rb"^0+$")
MAX_HEAD_BYTES = 1 << 20
MAX_COMMANDS = 1000


class PushRefused(ValueError):
    """The push is malformed or not allowed; the message says why (the gateway answers 400 or 403)."""

    def __init__(self, reason: str, *, malformed: bool) -> None:
        super().__init__(reason)
        self.reason, self.malformed = reason, malformed


@dataclass(frozen=True, slots=True)
class RefUpdate:
    old: str
    new: str
    ref: str

    @property
    def deletes(self) -> bool:
        return _ZERO.match(self.new.encode()) is not None

    @property
    def creates(self) -> bool:
        return _ZERO.match(self.old.encode()) is not None


@dataclass(frozen=True, slots=True)
class PushHead:
    commands: tuple[RefUpdate, ...]
    capabilities: frozenset[str]
    shallow: tuple[str, ...] = ()
    push_options: tuple[str, ...] = ()
    signed: bool = False
    length: int = 0  # bytes of the head; the pack starts right after
    refs: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "refs", tuple(c.ref for c in self.commands))


def _malformed(reason: str) -> PushRefused:
    return PushRefused(reason, malformed=True)


def _command(line: bytes, where: str) -> RefUpdate:
    parts = line.split(b" ")
    if len(parts) != 3:
        raise _malformed(f"{where}: a command is 'old-id new-id ref', got {line[:120]!r}")
    old, new, ref = parts
    if not _OID.match(old) or not _OID.match(new) or len(old) != len(new):
        raise _malformed(f"{where}: object ids in {line[:120]!r} are not hexadecimal ids of one length")
    if not ref or any(b < 0x21 or b == 0x7F for b in ref):
        raise _malformed(f"{where}: ref name {ref[:120]!r} is empty or holds spaces or control bytes")
    try:
        ref_text = ref.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed(f"{where}: ref name {ref[:120]!r} is not UTF-8") from None
    return RefUpdate(old.decode(), new.decode(), ref_text)


class PushHeadReader:
    """Feed the request body (already de-chunked and decompressed); `feed` answers the PushHead once the head is
    complete (the bytes after it are in `pack_start`), None while more is needed, or raises PushRefused."""

    def __init__(self, *, max_head: int = MAX_HEAD_BYTES, max_commands: int = MAX_COMMANDS) -> None:
        self._reader = PktLineReader()
        self._max_head, self._max_commands = max_head, max_commands
        self._state = "start"  # start -> commands | cert -> cert-end -> options -> done
        self._shallow: list[str] = []
        self._commands: list[RefUpdate] = []
        self._cert_commands: list[RefUpdate] = []
        self._caps: frozenset[str] = frozenset()
        self._options: list[str] = []
        self._signed = False
        self._cert_body = False  # inside the certificate, past its header (commands, then signature)
        self._in_signature = False
        self.pack_start = b""

    def feed(self, data: bytes) -> PushHead | None:
        self._reader.feed(data)
        try:
            while self._state != "done":
                packet = self._reader.next()
                if packet is None:
                    return None
                if self._reader.consumed > self._max_head:
                    raise _malformed(f"push head is over {self._max_head} bytes")
                self._step(packet)
        except PktLineError as exc:
            raise _malformed(str(exc)) from None
        self.pack_start = self._reader.rest()
        commands = tuple(self._cert_commands if self._signed else self._commands)
        return PushHead(
            commands, self._caps, tuple(self._shallow), tuple(self._options), self._signed, self._reader.consumed
        )

    def _add(self, target: list[RefUpdate], command: RefUpdate) -> None:
        target.append(command)
        if len(self._commands) + len(self._cert_commands) > self._max_commands:
            raise _malformed(f"more than {self._max_commands} ref updates in one push")

    def _step(self, packet: bytes | Special) -> None:
        state = self._state
        if isinstance(packet, Special):
            if state == "start":
                raise _malformed("the push ended before any command")
            if state == "cert":
                raise _malformed("flush inside a push certificate (no push-cert-end)")
            if state in ("commands", "cert-end"):
                self._state = "options" if "push-options" in self._caps else "done"
                return
            if state == "options":
                self._state = "done"
                return
        assert isinstance(packet, bytes)
        if state == "start" and packet.startswith(b"shallow "):
            oid = packet[8:].rstrip(b"\n")
            if not _OID.match(oid):
                raise _malformed(f"shallow line {packet[:100]!r} does not name an object id")
            self._shallow.append(oid.decode())
            return
        if state == "start":
            line, nul, caps = packet.partition(b"\x00")
            if not nul:
                raise _malformed("the first command carries no capability list (no NUL)")
            if b"\x00" in caps:
                raise _malformed("two NUL bytes in the first command")
            self._caps = frozenset(c.decode("ascii", "replace") for c in caps.rstrip(b"\n").split(b" ") if c)
            if line == b"push-cert":
                self._signed = True
                self._state = "cert"
                return
            self._add(self._commands, _command(line.rstrip(b"\n"), "first command"))
            self._state = "commands"
            return
        if b"\x00" in packet:
            raise _malformed("a NUL byte after the first command")
        if state == "commands":
            self._add(self._commands, _command(packet.rstrip(b"\n"), "command"))
            return
        if state == "cert":
            self._cert_line(packet)
            return
        if state == "cert-end":
            raise _malformed("a line after push-cert-end: commands of a signed push are only those it signs")
        if state == "options":
            option = packet.rstrip(b"\n")
            if not option or any(b < 0x20 or b == 0x7F for b in option):
                raise _malformed(f"push option {option[:80]!r} is empty or holds control bytes")
            self._options.append(option.decode("utf-8", "replace"))

    def _cert_line(self, packet: bytes) -> None:
        if packet == b"push-cert-end\n":
            if not self._cert_body:
                raise _malformed("push certificate has no blank line before its commands")
            self._state = "cert-end"
            return
        if not packet.endswith(b"\n"):
            raise _malformed("a push certificate line does not end with LF")
        if not self._cert_body:
            if packet == b"\n":
                self._cert_body = True
            return  # header fields: certificate version, pusher, pushee, nonce, push-option
        if self._in_signature or packet.startswith(b"-----BEGIN "):
            self._in_signature = True  # the detached signature, until push-cert-end
            return
        self._add(self._cert_commands, _command(packet[:-1], "certified command"))


def check_push(head: PushHead, branch: str) -> None:
    """The session's rule: every command updates or creates `refs/heads/<branch>` exactly; no deletes; at least
    one command. Any forbidden command refuses the whole push (atomic or not)."""
    allowed = f"refs/heads/{branch}"
    if not head.commands:
        raise PushRefused("a push with no ref update", malformed=True)
    for command in head.commands:
        if command.ref != allowed:
            raise PushRefused(
                f"push to {command.ref[:200]!r} refused: this session may push only to {allowed}", malformed=False
            )
        if command.deletes:
            raise PushRefused(f"deleting {allowed} is refused", malformed=False)
    if len(head.commands) != len(set(head.refs)):
        raise PushRefused("the same ref is updated twice in one push", malformed=True)
