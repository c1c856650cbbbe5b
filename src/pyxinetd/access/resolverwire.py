"""What the master and the name resolver helper send each other (pyxinetd.access.resolver
is the master's side, pyxinetd.access.resolverhelper the helper).

One JSON object per SOCK_SEQPACKET packet, at most MAX_PACKET bytes. A request for a
`spawn` or `aclexec` command carries the ShellContext it runs in, flattened into the
request's fields (`message()`, read back by `read()`).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PACKET = 65_536


@dataclass(frozen=True)
class ShellContext:
    """What a spawn or aclexec command runs as: under xinetd, libwrap runs it from the
    child that checks the request, which already has the service's user, groups and
    umask, and the environment of xinetd itself plus the rule's `setenv` pairs so far.
    None fields are left as the helper has them (it runs as the daemon)."""

    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None
    umask: int | None = None
    setenv: tuple[tuple[str, str], ...] = ()
    # Added to the helper's nice value (the daemon's), as nice(2) adds.
    nice: int = 0

    def message(self) -> dict[str, object]:
        return {"uid": self.uid, "gid": self.gid,
                "groups": None if self.groups is None else list(self.groups),
                "umask": self.umask, "setenv": [list(pair) for pair in self.setenv],
                "nice": self.nice}

    @staticmethod
    def read(message: dict[str, object]) -> ShellContext:
        """The context of a request packet; wrong types are dropped (defaults)."""
        def number(key: str) -> int | None:
            value = message.get(key)
            return value if isinstance(value, int) else None
        groups = message.get("groups")
        pairs = message.get("setenv")
        return ShellContext(
            number("uid"), number("gid"),
            tuple(g for g in groups if isinstance(g, int)) if isinstance(groups, list)
            else None,
            number("umask"),
            tuple((str(p[0]), str(p[1])) for p in pairs
                  if isinstance(p, list) and len(p) == 2) if isinstance(pairs, list)
            else (),
            number("nice") or 0)


DAEMON_CONTEXT = ShellContext()
