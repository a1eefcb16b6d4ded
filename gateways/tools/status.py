"""``gateways status``: one screen of what a daemon is doing, read from its ``--stats``.

::

    gateways status unix:/run/myapp/stats.sock
    gateways status 127.0.0.1:9191 --watch

It asks the daemon's stats address (``GET /``, see
:mod:`gateways.server.stats`) twice, ``--interval`` apart, and prints the
master, the totals and one line per worker (state, requests, requests per
second between the two looks, busy threads, parked connections, RSS,
uptime).  ``--watch`` refreshes the screen every ``--interval`` (req/s since
the last look), like uwsgitop, until Ctrl-C or ``--count`` screens;
``--json`` prints the daemon's answer as it is.  Exit status 2 when the
stats address cannot be reached or does not answer JSON.
"""

import json
import sys
import time

from gateways.address import parse_bind
from gateways.tools.request import (
    RequestFailed,
    connect,
    count_option,
    read_all,
    seconds_option,
)

CLEAR = "\x1b[H\x1b[2J"


def add_arguments(parser):
    """The arguments of ``gateways status``."""
    parser.add_argument("address", metavar="ADDRESS",
                        help="the daemon's --stats address: unix:PATH or HOST:PORT")
    parser.add_argument("--watch", action="store_true",
                        help="refresh the screen every --interval until Ctrl-C")
    parser.add_argument("--interval", type=seconds_option, default=1.0, metavar="SECONDS",
                        help="time between two looks (default: 1)")
    parser.add_argument("--count", type=count_option, default=0, metavar="N",
                        help="with --watch: stop after N screens (default: never)")
    parser.add_argument("--json", action="store_true",
                        help="print the daemon's JSON answer as it is")
    parser.add_argument("--timeout", type=seconds_option, default=5.0, metavar="SECONDS",
                        help="give up on the daemon after this long (default: 5)")


def fetch(address, timeout):
    """The daemon's JSON snapshot at ``address`` (a parsed --stats address)."""
    deadline = time.monotonic() + timeout
    with connect(address, timeout) as sock:
        try:
            sock.sendall(b"GET / HTTP/1.0\r\nHost: gateways\r\n\r\n")
        except OSError as exc:
            raise RequestFailed("the connection failed: %s" % (exc.strerror or exc)) from None
        data = read_all(sock, deadline)
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200"):
        raise RequestFailed("%s is not a gateways --stats address (it answered %r)"
                            % (address.text, head[:60]))
    try:
        return json.loads(body)
    except ValueError:
        raise RequestFailed("%s answered something that is not JSON" % address.text) from None


def _duration(seconds):
    seconds = int(max(0, seconds))
    if seconds < 60:
        return "%ds" % seconds
    if seconds < 3600:
        return "%dm%02ds" % divmod(seconds, 60)
    if seconds < 86400:
        return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)
    return "%dd%02dh" % (seconds // 86400, seconds % 86400 // 3600)


def _size(count):
    for unit in ("B", "K", "M", "G"):
        if count < 1024 or unit == "G":
            return ("%d%s" if unit == "B" else "%.1f%s") % (count, unit)
        count /= 1024.0
    return str(count)


def render(now, before=None):
    """The screen for snapshot ``now``; rates against ``before`` (an earlier one)."""
    totals = now["totals"]
    elapsed = (now["now"] - before["now"]) if before else 0.0
    previous = {w["pid"]: w["requests"] for w in before["workers"]} if before else {}

    def rate(count, then):
        if not before or elapsed <= 0:
            return "-"
        return "%.1f" % (max(0, count - then) / elapsed)

    errors = totals["protocol_errors"]
    lines = [
        "gateways %s  %s  master %d  up %s  %s%s" % (
            now["version"], now["gateway"], now["pid"], _duration(now["now"] - now["started"]),
            ", ".join(now["listeners"]), "  STOPPING" if now["stopping"] else ""),
        "requests %d (%s/s)  4xx %d  5xx %d  app exceptions %d  protocol errors %d%s" % (
            totals["requests"],
            rate(totals["requests"], before["totals"]["requests"] if before else 0),
            totals["responses_4xx"], totals["responses_5xx"], totals["app_exceptions"],
            sum(errors.values()),
            " (%s)" % ", ".join("%s %d" % item for item in sorted(errors.items()))
            if errors else ""),
        "workers %d (%d x %d threads wanted)  respawned %d  recycled %d%s" % (
            len(now["workers"]), now["processes"], now["threads"],
            totals["workers_respawned"], totals["workers_recycled"],
            "  last: worker %d %s, %s ago" % (
                now["last_recycle"]["pid"], now["last_recycle"]["reason"],
                _duration(now["now"] - now["last_recycle"]["at"]))
            if now["last_recycle"] else ""),
        "",
        "%8s  %-10s %9s %7s %6s %7s %8s %7s" % ("PID", "STATE", "REQUESTS", "REQ/S", "BUSY",
                                              "PARKED", "RSS", "UP"),
    ]
    for w in now["workers"]:
        lines.append("%8d  %-10s %9d %7s %6s %7d %8s %7s" % (
            w["pid"], w["state"], w["requests"],
            rate(w["requests"], previous.get(w["pid"], 0)),
            "%d/%d" % (w["threads_busy"], w["threads"]), w["parked"], _size(w["rss"]),
            _duration(now["now"] - w["started"])))
    return "\n".join(lines) + "\n"


def run_cli(args):
    """``gateways status``: see the module docstring."""
    address = parse_bind(args.address)
    if address.kind not in ("unix", "tcp"):
        raise RequestFailed("ADDRESS %s: give unix:PATH or HOST:PORT" % address.text)
    if args.json:
        sys.stdout.write(json.dumps(fetch(address, args.timeout), indent=1,
                                    sort_keys=True) + "\n")
        return 0
    out = sys.stdout
    before = fetch(address, args.timeout)
    shown = 0
    try:
        while True:
            time.sleep(args.interval)
            now = fetch(address, args.timeout)
            screen = render(now, before)
            if args.watch and out.isatty():
                screen = CLEAR + screen
            elif args.watch and shown:
                screen = "\n" + screen
            out.write(screen)
            out.flush()
            shown += 1
            if not args.watch or (args.count and shown >= args.count):
                return 0
            before = now
    except KeyboardInterrupt:
        return 0
