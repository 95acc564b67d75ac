#!/usr/bin/env bash
# `make image-test`: the Dockerfile, built and run as a user would, against the local emulator.
#
# 1. Docker: Debian's docker.io (dockerd started here if none runs, niced, with no bridge: every
#    container here uses the host's network, on 127.0.0.1 only).
# 2. Base images. Where registries cannot be reached (this machine), stand-ins are built from
#    Debian packages and tagged with the names the Dockerfile uses, so the Dockerfile itself is
#    built unchanged:
#    - rust:1.95-slim-bookworm: debootstrap bookworm (minbase + gcc, libc6-dev, ca-certificates, as
#      the official slim image has) + this machine's Rust toolchain at the official image's paths
#      (RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo);
#    - gcr.io/distroless/cc-debian12:nonroot: the files of libc6, libgcc-s1 and the CA bundle from
#      the same bookworm, /etc/passwd with nonroot (65532), no shell, no package manager.
#    Where the real images can be pulled, set IMAGE_TEST_PULL=1 and nothing is stood in.
# 3. docker build of the committed tree (git archive HEAD: what CI would build, not the files
#    other people are editing), BuildKit, --network host so cargo can fetch crates.
# 4. The image runs with --network host --read-only --user 65532:65532 against the emulator:
#    create-streams (the compose file's one-shot), then the service (production profile, JSON logs);
#    ready; records written and read back byte for byte; then SIGTERM in the middle of steady load:
#    the container must exit 0, log the drain, and every write answered 200 must be in the stream.
# Expensive: a release build inside a container (~8 min of both cores, niced).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache=${IMAGE_TEST_CACHE:-/var/cache/kinesis-writer-image-test}
image=kinesis-writer:image-test
docker=/usr/bin/docker   # Debian's client (BuildKit built in); /usr/local/bin/docker may lack buildx
export DOCKER_BUILDKIT=1

need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need dockerd docker.io
need debootstrap debootstrap
[ -x "$docker" ] || docker=$(command -v docker)
python3 -c 'import requests' 2>/dev/null || python3 -m pip install -q requests

if ! "$docker" info >/dev/null 2>&1; then
  echo "image-test: starting dockerd (niced, no bridge, no iptables; log /var/log/kw-dockerd.log)"
  nohup nice -n 19 dockerd --bridge=none --iptables=false --ip6tables=false >/var/log/kw-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do "$docker" info >/dev/null 2>&1 && break; sleep 1; done
  "$docker" info >/dev/null
fi

work=$(mktemp -d /tmp/kw-image-test.XXXXXX)
# shellcheck source=SCRIPTDIR/../deploy/test/lib.sh
. deploy/test/lib.sh
container=kw-image-test-$$
cleanup() {
  local status=$?
  touch "$work/stop"
  "$docker" rm -f "$container" >/dev/null 2>&1 || true
  [ -n "${load_pid:-}" ] && kill -TERM "$load_pid" 2>/dev/null || true
  emulator_stop
  if [ "$status" -ne 0 ]; then echo "image-test FAILED (logs kept in $work)" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
ts() { date -u +%H:%M:%S; }

# ---- base images ------------------------------------------------------------------------------
rust_tag=rust:1.95-slim-bookworm
runtime_tag=gcr.io/distroless/cc-debian12:nonroot
if [ "${IMAGE_TEST_PULL:-0}" = 1 ]; then
  "$docker" pull "$rust_tag" && "$docker" pull "$runtime_tag"
fi
mkdir -p "$cache"
if ! "$docker" image inspect "$rust_tag" >/dev/null 2>&1 || ! "$docker" image inspect "$runtime_tag" >/dev/null 2>&1; then
  if [ ! -d "$cache/rootfs-builder" ]; then
    echo "$(ts) debootstrap bookworm (minbase + gcc libc6-dev ca-certificates) into $cache"
    rm -rf "$cache/rootfs-builder.tmp"
    nice -n 19 debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates \
      bookworm "$cache/rootfs-builder.tmp" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1
    mv "$cache/rootfs-builder.tmp" "$cache/rootfs-builder"
  fi
  rootfs=$cache/rootfs-builder
fi

if ! "$docker" image inspect "$rust_tag" >/dev/null 2>&1; then
  echo "$(ts) stand-in $rust_tag: bookworm + this machine's Rust toolchain"
  toolchain=$(rustc --print sysroot)
  version=$(rustc --version | awk '{print $2}')
  stage=$cache/rust-stage
  rm -rf "$stage"
  mkdir -p "$stage/usr/local/rustup/toolchains/$version-x86_64-unknown-linux-gnu" "$stage/usr/local/cargo/bin"
  # bin/ and lib/ (compilers, std); share/ (documentation) is left out.
  cp -a "$toolchain/bin" "$toolchain/lib" "$stage/usr/local/rustup/toolchains/$version-x86_64-unknown-linux-gnu/"
  for b in cargo rustc rustdoc; do
    ln -s "/usr/local/rustup/toolchains/$version-x86_64-unknown-linux-gnu/bin/$b" "$stage/usr/local/cargo/bin/$b"
  done
  tar -C "$rootfs" -c . | "$docker" import \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV RUST_VERSION=$version" - kw-stand-in/bookworm:base >/dev/null
  # This machine reaches crates.io through a TLS proxy whose CA is in the host's trust store
  # (/usr/local/share/ca-certificates); the stand-in trusts what the host trusts, as a company's
  # own base images do. The real rust image needs nothing of the kind where crates.io is direct.
  mkdir -p "$stage/local-ca"
  cp /usr/local/share/ca-certificates/*.crt "$stage/local-ca/" 2>/dev/null || true
  printf 'FROM kw-stand-in/bookworm:base\nCOPY usr /usr\nCOPY local-ca/ /usr/local/share/ca-certificates/\nRUN update-ca-certificates\n' >"$stage/Dockerfile"
  "$docker" build -q --network host -t "$rust_tag" "$stage" >/dev/null
  rm -rf "$stage"
fi

if ! "$docker" image inspect "$runtime_tag" >/dev/null 2>&1; then
  echo "$(ts) stand-in $runtime_tag: libc6, libgcc-s1, CA certificates, user nonroot, no shell"
  stage=$cache/distroless-stage
  rm -rf "$stage"
  mkdir -p "$stage"
  # The packages' own files (as distroless/cc has them), then the generated CA bundle.
  cat "$rootfs/var/lib/dpkg/info/libc6:amd64.list" "$rootfs/var/lib/dpkg/info/libgcc-s1:amd64.list" \
    | grep -v -e '^/usr/share/doc' -e '^/usr/share/lintian' -e '^/\.$' \
    | sed -E 's|^/||; s#^(lib|lib64|bin|sbin)(/|$)#usr/\1\2#' >"$stage/files"
  # Bookworm has merged /usr: the lists say /lib/..., the files are under usr/lib/...; the
  # top-level lib and lib64 links (the ELF interpreter is /lib64/ld-linux-x86-64.so.2) come along.
  tar -C "$rootfs" --no-recursion -cf - lib lib64 -T "$stage/files" etc etc/ssl etc/ssl/certs \
    etc/ssl/certs/ca-certificates.crt usr/lib/os-release etc/os-release | tar -C "$stage" -xf -
  rm -f "$stage/files"
  mkdir -p "$stage/home/nonroot" "$stage/tmp" "$stage/root" "$stage/etc"
  chmod 1777 "$stage/tmp"; chmod 700 "$stage/root"; chown 65532:65532 "$stage/home/nonroot"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$stage/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$stage/etc/group"
  printf 'hosts: files dns\n' >"$stage/etc/nsswitch.conf"
  tar -C "$stage" -c . | "$docker" import --change 'USER 65532' --change 'WORKDIR /home/nonroot' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' - "$runtime_tag" >/dev/null
  rm -rf "$stage"
fi

[ "${IMAGE_TEST_BASES_ONLY:-0}" = 1 ] && { echo "base images ready: $rust_tag, $runtime_tag"; exit 0; }

# ---- build ------------------------------------------------------------------------------------
git archive --format=tar HEAD | tar -C "$work" --one-top-level=context -xf -
echo "$(ts) docker build of HEAD ($(git rev-parse --short HEAD)), the unchanged Dockerfile"
build_started=$SECONDS
if ! nice -n 19 "$docker" build --network host --progress plain -t "$image" "$work/context" >"$work/build.log" 2>&1; then
  tail -40 "$work/build.log" >&2
  exit 1
fi
echo "$(ts) built $image in $((SECONDS - build_started)) s: $("$docker" image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}'), user $("$docker" image inspect -f '{{.Config.User}}' "$image")"
# (Nothing to show when every step came from the cache.)
{ grep -E 'kinesis-writer [0-9]|Finished' "$work/build.log" || echo "every step cached"; } | sed 's/^/  build: /' | tail -3

# ---- run --------------------------------------------------------------------------------------
kinesis_port=$(free_port)
port=$(free_port)
emulator_start "$kinesis_port"
run=("$docker" run --network host --read-only --user 65532:65532
  -e AWS_REGION=us-east-1 -e AWS_ACCESS_KEY_ID=test -e AWS_SECRET_ACCESS_KEY=test
  -e AWS_EC2_METADATA_DISABLED=true -e "APP_KINESIS__ENDPOINT_URL=http://127.0.0.1:$kinesis_port")
"${run[@]}" --rm -e APP_ENVIRONMENT=local -e APP_DEV__CREATE_STREAMS=image-test:1 "$image" create-streams \
  >"$work/create.log" 2>&1 || { cat "$work/create.log" >&2; exit 1; }
echo "$(ts) create-streams in the image: $(tail -1 "$work/create.log")"

# The production profile from the image, with only what a laptop must change: loopback and a port,
# no keys (the emulator), one allowed stream.
"${run[@]}" -d --name "$container" --stop-timeout 40 \
  -e APP_SERVER__HOST=127.0.0.1 -e "APP_SERVER__PORT=$port" \
  -e APP_AUTH__REQUIRED=false -e APP_STREAMS__ALLOWED=image-test "$image" >/dev/null
wait_http "http://127.0.0.1:$port/health/ready" 30 || { "$docker" logs "$container" >&2; exit 1; }
echo "$(ts) container $container ready on 127.0.0.1:$port: read-only root $("$docker" inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$container"), user $("$docker" inspect -f '{{.Config.User}}' "$container"), network $("$docker" inspect -f '{{.HostConfig.NetworkMode}}' "$container")"
"$docker" exec "$container" /bin/sh -c true >/dev/null 2>&1 && { echo "FAIL: the runtime image has a shell" >&2; exit 1; }

# Some records first, then read back: byte for byte.
: >"$work/acked-first"
for i in $(seq 1 20); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: text/plain' \
    --data-binary "image-first-$i" "http://127.0.0.1:$port/streams/image-test/records")
  [ "$code" = 200 ] && echo "image-first-$i" >>"$work/acked-first"
done
stream_data image-test "$kinesis_port" >"$work/stream-first"
compare_records "$work/acked-first" "$work/stream-first"

# SIGTERM in the middle of steady load.
python3 deploy/test/load.py --url "http://127.0.0.1:$port" --stream image-test --rate 300 --workers 16 \
  --duration 60 --stop-file "$work/stop" --acked "$work/acked-load" --tag "img$$" >"$work/load.json" &
load_pid=$!
sleep 3
echo "$(ts) SIGTERM to the container (docker stop, grace 40 s) under load"
stop_started=$(date +%s.%N)
"$docker" stop -t 40 "$container" >/dev/null
stop_ended=$(date +%s.%N)
exit_code=$("$docker" inspect -f '{{.State.ExitCode}}' "$container")
touch "$work/stop"
wait "$load_pid"; load_pid=""
"$docker" logs "$container" >"$work/container.log" 2>&1
python3 - "$work/load.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"client: {r['requests']} requests, statuses {r['statuses']}, unanswered (service gone) {r['failures']} "
      f"{r['failure_types']}, p99 {r['p99_ms']} ms")
PY
echo "container: exit code $exit_code, stopped in $(printf %.2f "$(echo "$stop_ended - $stop_started" | bc)") s; log: $(grep -c . "$work/container.log") JSON lines, last: $(tail -1 "$work/container.log" | head -c 160)"
cat "$work/acked-first" "$work/acked-load" >"$work/acked"
stream_data image-test "$kinesis_port" >"$work/stream"
ok=true
compare_records "$work/acked" "$work/stream" || ok=false
[ "$exit_code" = 0 ] || { echo "FAIL: exit code $exit_code" >&2; ok=false; }
grep -q 'draining in-flight requests' "$work/container.log" || { echo "FAIL: no drain in the log" >&2; ok=false; }
grep -q 'Drain timeout passed' "$work/container.log" && { echo "FAIL: the drain timed out" >&2; ok=false; }
grep -q '"Stopped"' "$work/container.log" || { echo "FAIL: no Stopped in the log" >&2; ok=false; }
$ok || exit 1
echo "image-test: PASSED"
