"""An application whose response outlives a patient client, and says when it is closed.

It streams ``chunk N`` lines, 0.1 s apart, for a minute; its iterable's
``close()`` (PEP 3333: the gateway must call it whatever happens) writes the
file ``MARKERS/NAME``, where MARKERS is the environment variable
``CLOSING_MARKERS`` (SetEnv, setenv.add-environment, or the process's own
environment) and NAME the letters and digits of the query string.  The
marker says how many chunks went out, whether SIGTERM had been caught (the
CGI gateway's handler leaves SIGTERM ignored once it fired) and the pid.
"""

import _signal
import os
import time

CHUNKS = 600
DELAY = 0.1


class SlowBody:
    def __init__(self, path):
        self.path = path
        self.sent = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.sent >= CHUNKS:
            raise StopIteration
        if self.sent:
            time.sleep(DELAY)
        self.sent += 1
        return b"chunk %d\n" % self.sent

    def close(self):
        sigterm = _signal.getsignal(_signal.SIGTERM) == _signal.SIG_IGN
        with open(self.path, "w") as f:
            f.write("closed after %d chunks, sigterm=%s, pid=%d\n"
                    % (self.sent, sigterm, os.getpid()))


def application(environ, start_response):
    markers = environ.get("CLOSING_MARKERS") or os.environ["CLOSING_MARKERS"]
    name = "".join(c for c in environ.get("QUERY_STRING", "") if c.isalnum()) or "marker"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return SlowBody(os.path.join(markers, name))
