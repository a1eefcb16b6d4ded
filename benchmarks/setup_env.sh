#!/usr/bin/env bash
# Build the virtualenvs the benchmarks run, in a place the web servers'
# worker user (www-data) can reach:
#
#   benchmarks/setup_env.sh            # -> /var/tmp/gateways-bench/{venv,venv-flup103}
#
#   venv           gateways (this checkout) + flup6 1.1.1   FastCGI peers, CGI scripts,
#                  + gunicorn 27                            the uwsgi-protocol peer
#   venv-flup103   flup 1.0.3                               the SCGI peer
#
# flup 1.0.3 and flup6 both install the package "flup", so they live in two
# virtualenvs.  uWSGI needs no virtualenv: Debian's uwsgi-plugin-python3 runs
# /usr/bin/python3, and the benchmark app uses only the standard library.
#
# Idempotent: a virtualenv that exists is reused, and gateways is re-installed
# from this checkout on every run (--force-reinstall --no-deps), so the
# benchmarks always measure the code in the work tree, not an older build.
#
# Environment: GATEWAYS_BENCH_DIR (default /var/tmp/gateways-bench),
# PYTHON (default /usr/bin/python3).  Needs network access to PyPI.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
base=${GATEWAYS_BENCH_DIR:-/var/tmp/gateways-bench}
python=${PYTHON:-/usr/bin/python3}
pip_opts=(-q --disable-pip-version-check)

say() { printf '==> %s\n' "$*" >&2; }

make_venv() {
    local venv=$1
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 9))'; then
        say "creating $venv from $python"
        rm -rf "$venv"
        "$python" -m venv "$venv"
    fi
}

mkdir -p "$base"
chmod 0755 "$base"

make_venv "$base/venv"
say "installing gateways ($repo) and flup6 into $base/venv"
"$base/venv/bin/python" -m pip install "${pip_opts[@]}" "$repo" "flup6==1.1.1" "gunicorn==27.0.1"
"$base/venv/bin/python" -m pip install "${pip_opts[@]}" --force-reinstall --no-deps "$repo"

make_venv "$base/venv-flup103"
say "installing flup 1.0.3 into $base/venv-flup103"
"$base/venv-flup103/bin/python" -m pip install "${pip_opts[@]}" "flup==1.0.3"

chmod -R go+rX "$base"

# The web servers' workers (CGI scripts) and the backends run as www-data.
if [ "$(id -u)" = 0 ] && id www-data >/dev/null 2>&1; then
    check=(runuser -u www-data --)
else
    check=()
fi
(cd / && "${check[@]}" "$base/venv/bin/python" -c 'import gateways, flup.server.fcgi') \
    || { say "www-data cannot import gateways/flup6 from $base/venv"; exit 1; }
(cd / && "${check[@]}" "$base/venv-flup103/bin/python" -c 'import flup.server.scgi') \
    || { say "www-data cannot import flup 1.0.3 from $base/venv-flup103"; exit 1; }
say "ready: $base/venv (gateways $("$base/venv/bin/python" -c 'import gateways; print(gateways.__version__)'), flup6), $base/venv-flup103 (flup 1.0.3)"
