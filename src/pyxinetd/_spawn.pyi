# Stub for the optional C extension built from _spawn.c.
from collections.abc import Sequence

def spawn(path: bytes, argv: Sequence[bytes], envp: Sequence[bytes], sock_fd: int, *,
          setsid: bool = ..., groups: Sequence[int] | None = ..., gid: int = ...,
          uid: int = ..., umask: int = ..., nice: int | None = ...,
          rlimits: Sequence[tuple[int, int, int]] = ..., stderr_fd: int = ...) -> int: ...

def guard_faults(signals: Sequence[int]) -> None: ...
def dumpable(flag: int = -1, /) -> int: ...
