"""Build configuration objects directly, without the loader.

`make_service(**overrides)` returns a ServiceConfig with the defaults xinetd would
give an UNLISTED external stream service on 127.0.0.1; any field can be overridden.
A dgram socket_type defaults to udp. `make_config(*services)` wraps them.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from pyxinetd.config.model import (Configuration, Defaults, Origin, Rlimits, ServiceConfig,
                                   SocketType)


def make_service(**overrides: Any) -> ServiceConfig:
    name = overrides.get("name", "test")
    socket_type = SocketType(overrides.get("socket_type", SocketType.STREAM))
    dgram = socket_type is SocketType.DGRAM
    server = overrides.get("server", "/bin/cat")
    fields: dict[str, Any] = dict(
        name=name,
        id=name,
        origin=Origin("<factory>", 1),
        types=frozenset({"UNLISTED"}),
        flags=frozenset(),
        socket_type=socket_type,
        protocol="udp" if dgram else "tcp",
        protocol_number=17 if dgram else 6,
        port=0,
        wait=dgram,
        user=None,
        user_name=None,
        group=None,
        groups=False,
        supplementary_groups=(),
        server=server,
        server_argv=(os.path.basename(server),) if server else (),
        environment=tuple(f"{k}={v}" for k, v in os.environ.items()),
        passenv=None,
        env=(),
        instances=None,
        per_source=None,
        cps=(50, 10),
        max_load=None,
        bind="127.0.0.1",
        family=socket.AF_INET,
        v6only=False,
        only_from=None,
        no_access=(),
        access_times=(),
        redirect=None,
        banner=None,
        banner_success=None,
        banner_fail=None,
        umask=None,
        nice=None,
        rlimits=Rlimits(),
        log_type=None,
        log_on_success=frozenset(),
        log_on_failure=frozenset(),
        deny_time=0,
        libwrap=None,
        rpc_version=None,
        rpc_number=None,
    )
    fields.update(overrides)
    if "id" not in overrides:
        fields["id"] = fields["name"]
    fields["socket_type"] = SocketType(fields["socket_type"])
    for key in ("types", "flags", "log_on_success", "log_on_failure"):
        fields[key] = frozenset(fields[key])
    return ServiceConfig(**fields)


def make_config(*services: ServiceConfig, path: str = "<factory>") -> Configuration:
    return Configuration(path=path, defaults=Defaults(), services=tuple(services))


def service_text(name: str, **attrs: object) -> str:
    """A `service NAME { ... }` entry in configuration-file syntax, one `key = value`
    line per keyword argument, in order."""
    body = "".join(f"\t{key} = {value}\n" for key, value in attrs.items())
    return f"service {name}\n{{\n{body}}}\n"
