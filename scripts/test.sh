#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need when missing,
# then runs the format check, clippy with -D warnings, and every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# GNU time measures the coordinator's peak RSS in bins/coordinator/tests/it/hostile.rs.
[ -x /usr/bin/time ] || need_apt+=(time)
pkg-config --exists openssl 2>/dev/null || need_apt+=(libssl-dev pkg-config)
# The dashboard's tests load the page in a real headless browser ($CHROMIUM, or one of
# these on PATH); Debian's package is `chromium` (/usr/bin/chromium).
if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 \
    && ! command -v chromium-browser >/dev/null 2>&1 && ! command -v google-chrome >/dev/null 2>&1; then
    need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: installing ${need_apt[*]} with apt-get" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "test.sh: missing ${need_apt[*]}; install them (e.g. sudo apt-get install ${need_apt[*]})" >&2
        exit 1
    fi
fi
# The tests start their own redis-server processes; make sure Debian's packaged
# service (if apt just installed it) does not matter to them.

echo "== cargo fmt --all --check" >&2
cargo fmt --all --check
echo "== cargo clippy --workspace --all-targets -- -D warnings" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo check -p vramroute-registry --no-default-features (no TLS, no Cluster, no OpenSSL)" >&2
cargo check -p vramroute-registry --no-default-features --locked
echo "== cargo package (library crates, manifest check)" >&2
# Packages the library crates together without the verification build (~11 s; the full
# verified form takes minutes and lives in docs/releasing.md).
cargo package --workspace \
    --exclude vramroute-reporter --exclude vramroute-coordinator \
    --exclude vramroute-benches --exclude vramroute-examples \
    --no-verify --locked --allow-dirty >/dev/null
echo "== cargo test --workspace" >&2
cargo test --workspace --locked
# The crate's copy of SOLLOL's records against the canonical captures, when the shared
# folder sits beside the checkout (a clone alone does not carry it).
for shared in ../shared/sollol-records ../../shared/sollol-records; do
    if [ -d "$shared" ]; then
        echo "== SOLLOL fixtures against $shared" >&2
        cargo test -p vramroute-registry --locked --test it -- --ignored crate_copy_is_byte_identical
        break
    fi
done
echo "test.sh: all checks passed" >&2
