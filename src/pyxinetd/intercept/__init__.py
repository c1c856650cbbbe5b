"""`flags = INTERCEPT`: an access-checking relay in front of a wait = yes server.

Reference §4.13. A wait = yes server reads the service socket itself, so the master
only ever sees the request that starts it: later clients of the same server are never
checked. With INTERCEPT the server gets a private socket instead (the service's type and
protocol, on the loopback address of the service's family, an ephemeral port), and the
master keeps reading the service socket while that server runs:

  stream.py  every connection is accepted by the master and checked like a wait = no
             service's: the SENSOR deny list, only_from/no_access and TCP Wrappers
             (AccessGate), then access_times. Refused: one `FAIL` line and the
             connection is closed. Admitted: `START` with the server's pid, and the
             connection is relayed to the server's socket (a RedirectSession aimed at
             it: bounded buffers, half-close).
  dgram.py   every datagram is read by the master. A sender's first datagram is checked
             the same way; a refused sender's datagrams are dropped for the rest of this
             server's life (one `FAIL` line); an admitted sender gets a channel, a
             loopback socket connected to the server's: its datagrams go in through it,
             the server's replies come back through it and leave from the service
             socket, to it.
  common.py  the checks and log lines both share, the private socket.
  registry.py  the running intercepted servers, one per service, and the clients held
             for a service's next server, handed to its new socket's runtime when a
             reload replaces the socket; what the dispatcher calls.
  handover.py  a held client admitted by rules a reload has since replaced, judged
             again before it reaches a server.

The server sees its clients as the loopback address. When it exits, the relays deliver
what it wrote and end, the channels forward the replies still queued, and the service
socket goes back to the dispatcher (the usual wait = yes resume). A stream client the
server never accepted (admitted while the server was busy, and the server then exited:
a server that serves one client per start) is not lost: see stream.py.

xinetd 2.3.15.3 forks an interceptor process for this and never gets as far as relaying:
its server's set-up fails (`dup2( 0, 0 ) failed: Bad file descriptor`) and every client
is closed; see docs/compatibility.md.
"""

from pyxinetd.intercept.common import INTERCEPT_FLAG, MAX_TWISTS, Address, Client
from pyxinetd.intercept.dgram import MAX_CHANNELS
from pyxinetd.intercept.registry import CPS_TRIPPED, Interceptors
from pyxinetd.intercept.stream import MAX_CLIENTS

__all__ = ["CPS_TRIPPED", "INTERCEPT_FLAG", "MAX_CHANNELS", "MAX_CLIENTS", "MAX_TWISTS",
           "Address", "Client", "Interceptors"]
