"""The serving engine shared by the FastCGI and SCGI gateways.

Three rooms, each unaware of the others' insides:

* :mod:`gateways.server.listen` — listening sockets: unix, TCP, an inherited
  fd (fd 0 from a web server), systemd socket activation.
* :mod:`gateways.server.workers` — processes x threads: the master that
  supervises, the worker threads that accept connections themselves.
* a protocol handler (:mod:`gateways.fastcgi`, :mod:`gateways.scgi`) that
  serves one connection with a sans-IO core from :mod:`gateways.protocol`.
"""
