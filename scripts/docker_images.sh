#!/usr/bin/env bash
# Build the images of the compose stack with no image registry: a Debian bookworm base made with
# debootstrap from the Debian mirror apt already uses, the Python packages from a wheelhouse that
# the host's pip fills. Safe to run again: each step is skipped when its result is up to date
# (the base image exists; the images carry a label with the hash of their inputs; the wheelhouse,
# filled only for a worker build, matches pyproject.toml), so a second run takes seconds.
#
#   scripts/docker_images.sh            base image, wheelhouse, automl-worker, automl-postgres
#   BASE_IMAGE=python:3.11-slim ...     build on a public base instead (needs a registry)
#
# Starts dockerd when none answers and stops it again at the end (scripts/dockerd.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-automl-base:bookworm}
WORKER_IMAGE=${AUTOML_WORKER_IMAGE:-automl-worker:latest}
POSTGRES_IMAGE=${AUTOML_POSTGRES_IMAGE:-automl-postgres:15}
WHEELHOUSE=docker/wheelhouse
PYTHON=${PYTHON:-python3.11}
# The mirror apt uses here, so that the base image needs no other network.
MIRROR=${DEBIAN_MIRROR:-$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' \
    /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -n 1 | awk "{print \$2}" || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

log() { echo "docker_images: $*" >&2; }

bash scripts/dockerd.sh install
state=$(bash scripts/dockerd.sh start)
if [ "$state" = started ]; then
    trap 'bash scripts/dockerd.sh stop' EXIT
fi

t0=$(date +%s)

# 1. The base image: Python 3.11 (the same minor version as the host, so the wheelhouse fits)
#    and PostgreSQL 15, from Debian's own packages.
if [ "$BASE_IMAGE" = automl-base:bookworm ] && ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    root=$(mktemp -d /var/tmp/automl-base.XXXXXX)
    trap 'rm -rf "$root"; [ "$state" = started ] && bash scripts/dockerd.sh stop' EXIT
    log "debootstrap bookworm from $MIRROR (a few minutes)"
    debootstrap --variant=minbase \
        --include=python3,python3-venv,postgresql-15,ca-certificates \
        bookworm "$root" "$MIRROR" >/var/tmp/automl-debootstrap.log 2>&1 || {
        log "debootstrap failed; see /var/tmp/automl-debootstrap.log: $(tail -n 1 /var/tmp/automl-debootstrap.log)"
        exit 1
    }
    # The package install created a cluster of its own; the postgres image makes its own.
    rm -rf "$root"/var/lib/postgresql/15 "$root"/etc/postgresql/15 \
        "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import \
        -c 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV LANG=C.UTF-8' \
        -c 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
    log "base image $BASE_IMAGE made in $(($(date +%s) - t0)) s"
fi

# 2. The wheelhouse: every wheel the worker image installs, from the host's package index. Filled
#    only when the worker image is to be built (a fresh clone whose image is current skips it).
stamp="$WHEELHOUSE/.stamp"
want=$(sha256sum <pyproject.toml | cut -c1-16)
fill_wheelhouse() {
    [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
    log "filling $WHEELHOUSE with the host's pip"
    mkdir -p "$WHEELHOUSE"
    # The build backend too: pip builds automl itself inside the image with no index.
    # (pip warns once per index folder that lacks a package: noise here, left out.)
    "$PYTHON" -m pip download -q -d "$WHEELHOUSE" --only-binary=:all: \
        "torch==2.14.1" "torchvision==0.29.1" "setuptools>=68" wheel pip \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
    "$PYTHON" -m pip wheel -q -w "$WHEELHOUSE" ".[grpc]" "torch==2.14.1" "torchvision==0.29.1" \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
    rm -f "$WHEELHOUSE"/automl-*.whl # built again from the sources in the image
    echo "$want" >"$stamp"
}

# 3. The images, rebuilt only when an input changed (the label holds the inputs' hash).
inputs_hash() { # extra text (the wheelhouse's version), then the paths copied into the image
    local extra=$1
    shift
    { git ls-files -s -- "$@" 2>/dev/null; git diff -- "$@" 2>/dev/null; echo "$BASE_IMAGE $extra"; } |
        sha256sum | cut -c1-16
}

build() { # image dockerfile context extra inputs...
    local image=$1 dockerfile=$2 context=$3 extra=$4
    shift 4
    local hash current t
    hash=$(inputs_hash "$extra" "$@")
    current=$(docker image inspect -f '{{ index .Config.Labels "org.automl.inputs" }}' "$image" 2>/dev/null || true)
    if [ "$current" = "$hash" ]; then
        log "$image is up to date"
        return 0
    fi
    if [ "$image" = "$WORKER_IMAGE" ]; then
        fill_wheelhouse
    fi
    log "building $image"
    t=$(date +%s)
    # The legacy builder (Debian's docker.io has no buildx) prints a deprecation notice: dropped.
    docker build -q -f "$dockerfile" --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --label "org.automl.inputs=$hash" -t "$image" "$context" >/dev/null \
        2> >(grep -v -e DEPRECATED -e buildx -e '^ *$' >&2)
    log "$image built in $(($(date +%s) - t)) s"
}

build "$POSTGRES_IMAGE" docker/postgres/Dockerfile docker/postgres "" docker/postgres
build "$WORKER_IMAGE" docker/Dockerfile . "wheelhouse $want" docker/Dockerfile .dockerignore \
    pyproject.toml README.md automl workers search_spaces
log "images ready in $(($(date +%s) - t0)) s"
