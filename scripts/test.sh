#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need when it is missing
# (a PostgreSQL server; moto's local S3 server and the DuckDB Python package, in a virtual
# environment of their own), then
# runs every test (the library's example and documentation included), in the one profile
# everything here builds in (release; see Cargo.toml).
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p sparkify-core  # extra arguments go to `cargo test`
set -euo pipefail
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
export HOME
cd "$(dirname "$0")/.."

cache="${SPARKIFY_CACHE:-$HOME/.cache/sparkify}"
mkdir -p "$cache"

# A PostgreSQL server: the warehouse sink's tests start their own temporary ones with it.
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && [ -z "${SPARKIFY_PG_BIN:-}" ]; then
    echo "test.sh: installing PostgreSQL (Debian package postgresql)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    # PostgreSQL refuses to run as root; the tests run it as this user.
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

# Chromium: the HTML report's test renders the page in it, headless.
if ! command -v chromium >/dev/null 2>&1 && [ -z "${SPARKIFY_CHROMIUM:-}" ]; then
    echo "test.sh: installing Chromium (Debian package chromium)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# tmux: the end-to-end tests look at what a terminal shows of a load.
if ! command -v tmux >/dev/null 2>&1; then
    echo "test.sh: installing tmux (Debian package tmux)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null
fi

# The DuckDB Python package: the end-to-end tests open our output file with it.
venv="$cache/venv"
if ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
    echo "test.sh: installing the duckdb Python package into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet duckdb
fi
# jsonschema: the end-to-end tests check real summaries against docs/summary.schema.json.
if ! "$venv/bin/python" -c 'import jsonschema' 2>/dev/null; then
    echo "test.sh: installing the jsonschema Python package into $venv" >&2
    "$venv/bin/pip" install --quiet jsonschema
fi
export SPARKIFY_PYTHON="$venv/bin/python"

# A local S3-compatible server (moto_server): the S3 tests start one on a free loopback port
# and a watchdog stops it when the test process ends.
if [ -z "${SPARKIFY_MOTO:-}" ]; then
    if command -v moto_server >/dev/null 2>&1 && moto_server --help >/dev/null 2>&1; then
        SPARKIFY_MOTO="$(command -v moto_server)"
    else
        if [ ! -x "$venv/bin/moto_server" ]; then
            echo "test.sh: installing moto[server] into $venv" >&2
            "$venv/bin/pip" install --quiet 'moto[server]'
        fi
        SPARKIFY_MOTO="$venv/bin/moto_server"
    fi
fi
export SPARKIFY_MOTO

# A build folder shared by checkouts at different paths (CI's clone, a working copy) holds
# test binaries with the other checkout's path compiled in (env!("CARGO_MANIFEST_DIR")), and
# cargo judges freshness by mtimes, so an older working copy would reuse them and read the
# other checkout's fixtures. When the last user of the folder was another checkout, make our
# sources newer so that our crates (not DuckDB) are built again here.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    mkdir -p "$CARGO_TARGET_DIR"
    mark="$CARGO_TARGET_DIR/.sparkify-checkout"
    if [ "$(cat "$mark" 2>/dev/null)" != "$PWD" ]; then
        find crates tests benches -type f -exec touch {} +
        touch Cargo.toml
        echo "$PWD" >"$mark"
    fi
fi

cargo fmt --all -- --check
python3 scripts/module-cycles.py
cargo clippy --release --workspace --all-targets -- -D warnings
# The library's documentation, every public item of it, with no broken or private link.
RUSTDOCFLAGS="-D warnings" cargo doc --release --workspace --no-deps
cargo test --release --workspace "$@"
