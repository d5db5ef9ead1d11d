#!/usr/bin/env bash
# Idempotent setup for `make demo` and `make test` on Debian/Ubuntu: a Python >= 3.11
# virtualenv in .venv with the project installed editable (with test extras), and the
# mosquitto broker binary. Safe to run before every build: each step is skipped when done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv
STAMP="$VENV/.xiaodian-pyproject.sha256"
BROKER_PACKAGES=(mosquitto mosquitto-clients)

say() { echo "bootstrap: $*" >&2; }
die() { say "$*"; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# Prints the path of the first interpreter that is Python 3.11 or newer.
find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.14 python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

# --- virtualenv -------------------------------------------------------------------------
if ! venv_ok; then
    python=$(find_python) || die "Python 3.11 or newer not found (looked for" \
        "\$PYTHON, python3.14 ... python3.11, python3); install it or set PYTHON=/path/to/python"
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    # Debian ships venv/ensurepip separately (python3.X-venv).
    if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
        if is_root; then
            say "installing python$version-venv"
            apt-get update
            DEBIAN_FRONTEND=noninteractive apt-get install -y "python$version-venv"
        else
            die "Python $version lacks the venv module; run: sudo apt-get install -y python$version-venv"
        fi
    fi
    say "creating $VENV with $python (Python $version)"
    rm -rf "$VENV"
    "$python" -m venv "$VENV" || { rm -rf "$VENV"; die "could not create $VENV"; }
fi

# --- the project ------------------------------------------------------------------------
# Reinstall only when pyproject.toml changed since the last successful install.
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$wanted" ]; then
    say "installing the project and its test extras into $VENV"
    "$VENV/bin/python" -m pip install --quiet -e '.[test]'
    echo "$wanted" >"$STAMP"
fi

# MicroPython stubs for the firmware type-check, kept apart from .venv where they would
# shadow CPython's typeshed in the host mypy run.
if [ ! -f .fw-stubs/machine.pyi ]; then
    say "installing MicroPython stubs into .fw-stubs"
    "$VENV/bin/python" -m pip install --quiet --target .fw-stubs \
        "micropython-rp2-stubs>=1.28,<1.30" "micropython-stdlib-stubs>=1.28,<1.30"
fi

# --- the broker -------------------------------------------------------------------------
# Debian puts mosquitto in /usr/sbin, which is not on an ordinary user's PATH.
have_mosquitto() {
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] ||
        [ -x /usr/local/sbin/mosquitto ]
}
if ! have_mosquitto; then
    if is_root; then
        # The package may also start a system broker on 127.0.0.1:1883; we never use it
        # (every demo and test starts its own on a free port), so it is left alone.
        say "installing ${BROKER_PACKAGES[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${BROKER_PACKAGES[@]}"
    else
        die "mosquitto is not installed; run: sudo apt-get install -y ${BROKER_PACKAGES[*]}"
    fi
fi
if ! command -v mosquitto_pub >/dev/null 2>&1; then
    say "note: mosquitto-clients not installed; the CLI-client test will be skipped"
fi

# --- libfaketime: the fault tests jump the edge agent's wall clock a day ------------------
if ! ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1; then
    if is_root; then
        say "installing faketime (for the clock-jump fault test)"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y faketime
    else
        say "note: faketime not installed; the clock-jump test will be skipped" \
            "(sudo apt-get install -y faketime)"
    fi
fi

# --- PostgreSQL: the cloud database tests run on SQLite and on a private PostgreSQL -------
# devstack/testkit/pg_server.py starts its own server (initdb + postgres from Debian's package, a free
# loopback port, a temporary cluster); it needs only the server binaries.
have_pg_server() {
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 ||
        { command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1; }
}
if ! have_pg_server; then
    if is_root; then
        # The package also sets up a system cluster on port 5432; the tests never use it.
        say "installing postgresql (server binaries for the PostgreSQL database tests)"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
    else
        say "note: PostgreSQL server not installed; the PostgreSQL database tests will be" \
            "skipped (sudo apt-get install -y postgresql)"
    fi
fi

# --- chromium: the browser tests drive Debian's build (Playwright downloads nothing) -----
if ! command -v chromium >/dev/null 2>&1; then
    if is_root; then
        say "installing chromium (for the browser tests)"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
    else
        say "note: chromium not installed; the browser tests will be skipped" \
            "(sudo apt-get install -y chromium)"
    fi
fi

# --- CJK fonts: the pages are Chinese first; without a CJK font Chromium draws boxes -------
if ! fc-list 2>/dev/null | grep -qi "Noto Sans CJK\|WenQuanYi"; then
    if is_root; then
        say "installing fonts-noto-cjk (Chinese text in the browser screenshots)"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y fonts-noto-cjk
    else
        say "note: no CJK font; screenshots will show boxes (sudo apt-get install -y fonts-noto-cjk)"
    fi
fi

# --- browser libraries: uPlot for the owner's charts, from the npm registry ----------------
# package.json + package-lock.json pin it; `npm ci` installs exactly that into node_modules/,
# and its dist files are copied into cloud_gateway/static/vendor/ (gitignored), which the
# cloud serves itself: a phone in a shop never loads a chart library from a CDN.
VENDOR=cloud_gateway/static/vendor
LOCK_STAMP=node_modules/.xiaodian-lock.sha256
if ! command -v npm >/dev/null 2>&1; then
    if is_root; then
        say "installing nodejs and npm (to fetch the pages' chart library)"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm
    else
        die "npm is not installed; run: sudo apt-get install -y nodejs npm"
    fi
fi
lock=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$LOCK_STAMP" 2>/dev/null || true)" != "$lock" ] ||
    [ ! -f node_modules/uplot/dist/uPlot.iife.min.js ]; then
    say "installing the pages' browser libraries (npm ci)"
    npm ci --ignore-scripts --no-audit --no-fund >/dev/null
    echo "$lock" >"$LOCK_STAMP"
fi
mkdir -p "$VENDOR"
for f in uPlot.iife.min.js uPlot.min.css; do
    if ! cmp -s "node_modules/uplot/dist/$f" "$VENDOR/$f"; then
        cp "node_modules/uplot/dist/$f" "$VENDOR/$f"
    fi
done
cp node_modules/uplot/LICENSE "$VENDOR/uPlot.LICENSE" 2>/dev/null || true

# --- tshark: the Wireshark dissector of the serial protocol is tested on golden captures ---
if ! command -v tshark >/dev/null 2>&1; then
    if is_root; then
        say "installing tshark (for the serial-capture dissector test)"
        # Not setuid dumpcap: the test reads files, it never captures from interfaces.
        echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y tshark
    else
        say "note: tshark not installed; the dissector test will be skipped" \
            "(sudo apt-get install -y tshark)"
    fi
fi

# --- the store terminal's package: a clean Debian root to install it in, and the kiosk's
# compositor for verifying its unit (tests/packaging, docs/deploy.md) ----------------------
if ! command -v debootstrap >/dev/null 2>&1 || ! command -v cage >/dev/null 2>&1; then
    if is_root; then
        say "installing debootstrap and cage (for the terminal package's tests)"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap cage
    else
        say "note: debootstrap or cage missing; the terminal package tests will be skipped" \
            "(sudo apt-get install -y debootstrap cage)"
    fi
fi
