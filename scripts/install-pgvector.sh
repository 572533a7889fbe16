#!/usr/bin/env bash
# Build and install pgvector for the local PostgreSQL 15 on Debian bookworm.
#
# Debian bookworm ships no pgvector package for PostgreSQL 15, so this script
# fetches the pgvector *source* package from Debian trixie (using a private,
# temporary apt configuration so the system's apt sources stay untouched),
# builds it against postgresql-server-dev-15 and installs it.
#
# Idempotent: exits 0 immediately when `vector` is already listed in
# pg_available_extensions (or its control file is already installed).
#
# Environment overrides:
#   PG_MAJOR        PostgreSQL major version            (default: 15)
#   PGHOST_CHECK    host used for the availability check (default: 127.0.0.1)
#   PGUSER_CHECK    user used for the availability check (default: postgres)
#   PGDB_CHECK      database used for the check          (default: postgres)
#   PGVECTOR_SUITE  Debian suite to take the source from (default: trixie)
#   DEBIAN_MIRROR   Debian mirror URL (default: derived from the system's apt sources)
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
PG_BINDIR="/usr/lib/postgresql/${PG_MAJOR}/bin"
PG_CONFIG="${PG_BINDIR}/pg_config"
PGHOST_CHECK="${PGHOST_CHECK:-127.0.0.1}"
PGUSER_CHECK="${PGUSER_CHECK:-postgres}"
PGDB_CHECK="${PGDB_CHECK:-postgres}"
PGVECTOR_SUITE="${PGVECTOR_SUITE:-trixie}"
KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"
export DEBIAN_FRONTEND=noninteractive

log() { printf '[install-pgvector] %s\n' "$*"; }
die() { printf '[install-pgvector] ERROR: %s\n' "$*" >&2; exit 1; }

# --- 0. already installed? ---------------------------------------------------
vector_available() {
    if command -v pg_isready >/dev/null 2>&1 \
        && pg_isready -q -h "$PGHOST_CHECK" >/dev/null 2>&1; then
        [ "$(psql -X -A -t -h "$PGHOST_CHECK" -U "$PGUSER_CHECK" -d "$PGDB_CHECK" \
              -c "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'" \
              2>/dev/null)" = "1" ]
    else
        # Server not reachable: fall back to looking for the control file.
        [ -x "$PG_CONFIG" ] && [ -f "$("$PG_CONFIG" --sharedir)/extension/vector.control" ]
    fi
}

if vector_available; then
    log "pgvector already available for PostgreSQL ${PG_MAJOR}; nothing to do."
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get / make install)"
SECONDS=0

ensure_pg_running() {
    command -v pg_isready >/dev/null 2>&1 || return 0
    if ! pg_isready -q -h "$PGHOST_CHECK" >/dev/null 2>&1; then
        log "PostgreSQL not accepting connections; starting cluster ${PG_MAJOR}/main"
        pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" main start \
            || die "could not start PostgreSQL ${PG_MAJOR}/main"
        for _ in $(seq 1 30); do
            pg_isready -q -h "$PGHOST_CHECK" >/dev/null 2>&1 && break
            sleep 1
        done
        pg_isready -q -h "$PGHOST_CHECK" >/dev/null 2>&1 \
            || die "PostgreSQL ${PG_MAJOR} did not come up"
    fi
}

# --- 1. build dependencies ---------------------------------------------------
server_pkgs_version() {
    dpkg-query -W -f='${Package}=${Version} ' \
        "postgresql-${PG_MAJOR}" "postgresql-client-${PG_MAJOR}" 2>/dev/null || true
}
before="$(server_pkgs_version)"
# Only ask apt for what is missing, so already-installed tools are not upgraded.
missing=()
for pkg in "postgresql-server-dev-${PG_MAJOR}" build-essential dpkg-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing build dependencies: ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "build dependencies already installed"
fi
after="$(server_pkgs_version)"
if [ "$before" != "$after" ]; then
    log "note: PostgreSQL packages changed: '${before% }' -> '${after% }'"
fi
ensure_pg_running
[ -x "$PG_CONFIG" ] || die "$PG_CONFIG not found after installing postgresql-server-dev-${PG_MAJOR}"

# --- 2. find the Debian mirror used by this machine --------------------------
# Prints "URI SUITE..." for every enabled deb/deb-src entry in the system's
# apt sources (both one-line *.list and deb822 *.sources formats).
list_apt_entries() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        sed -e 's/#.*//' -e 's/\[[^]]*\]//g' "$f" \
            | awk '$1 == "deb" || $1 == "deb-src" { s = $2; for (i = 3; i <= NF; i++) s = s " " $i; print s }'
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '
            function flush() {
                if (uris != "" && suites != "" && tolower(enabled) != "no" && types ~ /(^| )deb(-src)?( |$)/) {
                    n = split(uris, u, " ")
                    for (i = 1; i <= n; i++) print u[i] " " suites
                }
                types = uris = suites = last = ""; enabled = "yes"
            }
            BEGIN { enabled = "yes" }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]/   { # continuation line of a multi-line field
                         v = $0; gsub(/^[ \t]+|[ \t]+$/, "", v)
                         if (last == "uris") uris = uris " " v
                         else if (last == "suites") suites = suites " " v
                         else if (last == "types") types = types " " v
                         next }
            {
                key = tolower($0); sub(/:.*/, "", key)
                val = $0; sub(/^[^:]*:[ \t]*/, "", val); gsub(/[ \t]+$/, "", val)
                last = key
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "enabled") enabled = val
            }
            END { flush() }
        ' "$f"
    done
}

find_debian_mirror() {
    local codename
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
    # First http(s) URI that serves the plain release suite (not -security/-updates).
    list_apt_entries | awk -v c="$codename" '
        $1 ~ /^https?:\/\// {
            for (i = 2; i <= NF; i++) if ($i == c) { sub(/\/+$/, "", $1); print $1; exit }
        }'
}

MIRROR="${DEBIAN_MIRROR:-$(find_debian_mirror)}"
[ -n "$MIRROR" ] || die "could not derive a Debian mirror from /etc/apt/sources.list{,.d/*}; set DEBIAN_MIRROR"
log "using Debian mirror ${MIRROR} (suite ${PGVECTOR_SUITE}) for the pgvector source"

# --- 3. fetch the pgvector source with a private apt configuration ----------
WORKDIR="$(mktemp -d /tmp/pgvector-build.XXXXXX)"
trap 'rm -rf "$WORKDIR"' EXIT

mkdir -p "$WORKDIR/lists/partial" "$WORKDIR/src"
signed_by=""
[ -f "$KEYRING" ] && signed_by="[signed-by=${KEYRING}] "
printf 'deb-src %s%s %s main\n' "$signed_by" "$MIRROR" "$PGVECTOR_SUITE" > "$WORKDIR/sources.list"

APT_PRIVATE=(
    -o "Dir::Etc::SourceList=$WORKDIR/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$WORKDIR/lists"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    -o "APT::Sandbox::User=root"
)

log "fetching ${PGVECTOR_SUITE} source index (private apt lists)"
apt-get "${APT_PRIVATE[@]}" update -qq
log "downloading pgvector source package"
( cd "$WORKDIR/src" && apt-get "${APT_PRIVATE[@]}" source --download-only -qq pgvector >/dev/null )

dsc="$(ls "$WORKDIR"/src/pgvector_*.dsc 2>/dev/null | head -n1)"
[ -n "$dsc" ] || die "pgvector source package not found in ${PGVECTOR_SUITE}"
log "unpacking $(basename "$dsc")"
# apt already verified the .dsc/.tar hashes against the signed Sources index;
# dpkg-source re-checks the checksums. Its gpgv chatter about the uploader's
# key (not in any installed keyring) is only shown if extraction fails.
if ! out="$(dpkg-source -q -x "$dsc" "$WORKDIR/pgvector" 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "dpkg-source failed to unpack $(basename "$dsc")"
fi

# --- 4. build and install ----------------------------------------------------
log "building pgvector against $("$PG_CONFIG" --version)"
make -s -C "$WORKDIR/pgvector" -j"$(nproc)" PG_CONFIG="$PG_CONFIG" OPTFLAGS="" >/dev/null
log "installing pgvector"
make -s -C "$WORKDIR/pgvector" PG_CONFIG="$PG_CONFIG" install >/dev/null

ensure_pg_running
if vector_available; then
    version="$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" \
        "$("$PG_CONFIG" --sharedir)/extension/vector.control")"
    log "pgvector ${version} installed for PostgreSQL ${PG_MAJOR} in ${SECONDS}s"
    log "enable per database with: CREATE EXTENSION IF NOT EXISTS vector;"
else
    die "pgvector was built but 'vector' is still not in pg_available_extensions"
fi
