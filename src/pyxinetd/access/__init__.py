"""Access control: only_from/no_access (lists), TCP Wrappers (hostsaccess, hoststables), the
non-blocking name resolver (resolver) and the per-request gate that ties them into
dispatch (gate). See docs/access-control.md."""
