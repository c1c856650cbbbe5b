"""A stream nowait RPC-style server: writes one line on its connection and exits."""

import os

os.write(1, b"tcp-rpc\n")
