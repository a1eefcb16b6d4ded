"""The serving engine of the daemons (FastCGI, SCGI): rooms that know little of each other.

* :mod:`gateways.server.listen` — listening sockets: unix, TCP, an inherited
  fd (fd 0 from a web server), systemd socket activation.
* :mod:`gateways.server.master` — the master process: forks the workers,
  supervises them, handles the signals; never touches a request.
* :mod:`gateways.server.worker` — a worker process: loads the application,
  runs its threads (:mod:`gateways.server.runners`), which accept the
  connections themselves.
* :mod:`gateways.server.handler` — the one loop from a connection's bytes to
  WSGI responses; the protocol handlers :mod:`gateways.server.fastcgi` and
  :mod:`gateways.server.scgi` add their framing, on the sans-IO cores of
  :mod:`gateways.protocol`.
* :mod:`gateways.server.main` — wires them together for one gateway.

Imports run one way: this package uses the protocol cores, the WSGI core
(:mod:`gateways.environ`, :mod:`gateways.response`), the settings and the
leaves below them; nothing in here imports a gateway, the launcher, the CLI
or the tools.
"""
