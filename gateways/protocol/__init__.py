"""Sans-IO protocol cores: bytes in, events out; events in, bytes out.

No sockets, threads or clocks in here (the design of h11).  A core is fed
whatever bytes arrived, in any split, and returns the events they complete;
it turns the server's answers into bytes.  A peer that breaks the protocol
gets a :class:`ProtocolError` subclass naming the violation, with a one-line
``reason`` for the log; the server closes that connection and carries on.
"""


class ProtocolError(Exception):
    """The peer broke the protocol; ``str(error)`` is a one-line reason."""

    def __init__(self, reason=None):
        super().__init__(reason or self.__doc__.strip().splitlines()[0])

    @property
    def reason(self):
        return str(self)


def join_repeated(name, old, new):
    """Combine a meta-variable sent twice into one (RFC 3875 §4.1.18).

    nginx before 1.23 sends a repeated request header as two parameters;
    cookies are joined with ``; ``, other fields with ``, `` (RFC 9110 §5.3).
    """
    return old + ("; " if name == "HTTP_COOKIE" else ", ") + new
