#!/usr/bin/env bash
# Build and test the container image with buildah: no daemon, no container registry.
#
#   deploy/image.sh base           make (or reuse) the local Debian base image
#   deploy/image.sh build          build deploy/Containerfile into $IMAGE
#   deploy/image.sh test           build, then run the worker inside the image against PostgreSQL
#   deploy/image.sh push DEST      copy $IMAGE elsewhere, e.g. docker://registry/projection-worker:0.1.0
#                                  or oci-archive:projection-worker.tar
#   deploy/image.sh clean          remove this script's images and layers (the base tarball stays)
#
# Needs buildah and, for the local base, debootstrap (Debian packages), run as root. The base is
# Debian bookworm (minbase) with python3 and python3-venv, made by debootstrap once and kept as a
# tarball in $WORKER_IMAGE_CACHE/base, named by a hash of everything that went into it; buildah's
# own storage (the vfs driver, which needs no kernel overlay support) is in
# $WORKER_IMAGE_CACHE/storage. Set BASE_IMAGE to build from another image instead (for example
# docker.io/library/python:3.11-slim-bookworm where a registry is reachable).
#
# Environment:
#   WORKER_IMAGE_CACHE  where the base tarball and buildah's storage go
#                       (default: ${XDG_CACHE_HOME:-~/.cache}/worker/image)
#   IMAGE               the image's name (default: projection-worker:<version in pyproject.toml>)
#   BASE_IMAGE          the base to build from (default: the local Debian base)
#   DEBIAN_MIRROR       a Debian mirror for debootstrap (default: debootstrap's own)
#   WORKER_IMAGE_STORE_LIMIT_MB
#                       past this size of buildah's storage a build drops the cached layers of
#                       earlier builds (default 4096)
#   HOST_CA_BUNDLE      a CA bundle the build's npm and pip also trust, for networks behind a
#                       TLS-inspecting proxy (default: $SSL_CERT_FILE or the system bundle; empty:
#                       none). It is mounted for the build steps only, never copied into a layer.
#   WORKER_EVENT_STORE__DATABASE_URI
#                       the PostgreSQL server the test uses (a superuser; default
#                       postgresql://postgres@127.0.0.1:5432/postgres). The test creates a scratch
#                       database and role on it and drops them afterwards.
set -euo pipefail

# shellcheck source=deploy/image-common.sh
. "$(dirname "$0")/image-common.sh"

# The local base: what goes into it, and the name it is kept under.
SUITE=bookworm
INCLUDE=python3,python3-venv
BASE_RECIPE=2 # raise when the way the base is made or trimmed changes

say() { printf 'image: %s\n' "$*" >&2; }
die() {
    printf 'image: error: %s\n' "$*" >&2
    exit 1
}

need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is not installed (Debian: apt-get install -y $tool)"
    done
    [ "$(id -u)" = 0 ] || die "buildah runs here as root (chroot isolation, no user namespaces)"
}

base_name() {
    local arch key
    arch=$(dpkg --print-architecture)
    key=$(printf '%s\n' "$SUITE" minbase "$INCLUDE" "$arch" "$(debootstrap --version)" \
        "${DEBIAN_MIRROR:-}" "$BASE_RECIPE" | sha256sum | cut -c1-12)
    printf '%s-python3-%s-%s' "$SUITE" "$arch" "$key"
}

# The local base image's name, making it first when it is missing: from the cached tarball, or
# from a new debootstrap run that is then cached.
ensure_base() {
    need buildah debootstrap
    local name tarball image tmp ctr
    name=$(base_name)
    tarball="$CACHE/base/$name.tar"
    image="localhost/worker-base:$name"
    if bah inspect --type image "$image" >/dev/null 2>&1; then
        say "base $image (cached)"
        printf '%s\n' "$image"
        return
    fi
    if [ ! -f "$tarball" ]; then
        mkdir -p "$CACHE/base"
        tmp=$(mktemp -d "$CACHE/base/.debootstrap.XXXXXX")
        say "debootstrap $SUITE (minbase, $INCLUDE) into $tmp"
        # shellcheck disable=SC2086 # DEBIAN_MIRROR is one word or nothing
        if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp/rootfs" \
            ${DEBIAN_MIRROR:-} >"$tmp/debootstrap.log" 2>&1; then
            tail -n 20 "$tmp/debootstrap.log" >&2
            rm -rf "$tmp"
            die "debootstrap failed"
        fi
        # What a slim image leaves out: package caches and lists, manuals, translations.
        (
            cd "$tmp/rootfs"
            rm -rf var/cache/apt/archives/*.deb var/cache/apt/*.bin var/lib/apt/lists/* \
                usr/share/man/* usr/share/info/* usr/share/locale/* var/log/*.log
            find usr/share/doc -type f ! -name copyright -delete
            find usr/share/doc -mindepth 1 -type d -empty -delete
        )
        tar -C "$tmp/rootfs" --numeric-owner -cf "$tmp/base.tar" .
        mv "$tmp/base.tar" "$tarball"
        rm -rf "$tmp"
        say "base tarball $tarball ($(du -h "$tarball" | cut -f1))"
    fi
    ctr=$(bah from scratch)
    bah add "$ctr" "$tarball" / >/dev/null
    bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd python3 "$ctr"
    bah commit --quiet --rm "$ctr" "$image" >/dev/null
    say "base $image imported from $tarball"
    printf '%s\n' "$image"
}

build() {
    need buildah
    local base pull args=() ca=${HOST_CA_BUNDLE-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
    if [ -n "${BASE_IMAGE:-}" ]; then
        base=$BASE_IMAGE
        pull=missing
    else
        base=$(ensure_base)
        pull=never
    fi
    if [ -n "$ca" ] && [ -f "$ca" ]; then
        args+=(--volume "$ca:/run/host-ca-bundle.pem:ro" --build-arg CA_BUNDLE=/run/host-ca-bundle.pem)
    fi
    say "building $IMAGE from $base"
    local start=$SECONDS
    bah bud --quiet --layers --pull="$pull" -f "$ROOT/deploy/Containerfile" \
        --ignorefile "$ROOT/deploy/Containerfile.dockerignore" \
        --build-arg BASE_IMAGE="$base" --build-arg VERSION="$VERSION" "${args[@]}" \
        -t "$IMAGE" "$ROOT" >/dev/null
    say "built $IMAGE in $((SECONDS - start)) s; size $(image_size)"
    prune
}

# Every build whose sources changed leaves its old layers behind (--layers keeps them for the
# cache). Past a size, drop every image no name points at: the next build is a cold one.
prune() {
    local used limit=${WORKER_IMAGE_STORE_LIMIT_MB:-4096}
    used=$(du -sm "$CACHE/storage" | cut -f1)
    if [ "$used" -gt "$limit" ]; then
        bah rmi --prune --force >/dev/null 2>&1 || true
        say "storage was $used MB (over $limit MB): pruned to $(du -sm "$CACHE/storage" | cut -f1) MB"
    fi
}

image_size() {
    bah images --format '{{.Size}}' "$IMAGE" | head -n 1
}

push() {
    need buildah
    [ $# -eq 1 ] || die "usage: deploy/image.sh push DESTINATION"
    bah push "$IMAGE" "$1"
}

clean() {
    need buildah
    bah rm --all >/dev/null 2>&1 || true
    bah rmi --all --force >/dev/null 2>&1 || true
    say "removed the images in $CACHE/storage (the base tarball in $CACHE/base stays)"
}

case "${1:-}" in
    base) ensure_base >/dev/null ;;
    build) build ;;
    test)
        build
        exec "$ROOT/deploy/image-test.sh"
        ;;
    push)
        shift
        push "$@"
        ;;
    clean) clean ;;
    *) die "usage: deploy/image.sh base|build|test|push DESTINATION|clean" ;;
esac
