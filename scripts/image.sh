#!/usr/bin/env bash
# Builds the bridge's container image with podman from deploy/Dockerfile, without Docker and
# without a container registry:
#
#   scripts/image.sh base     the local base image: Debian bookworm (debootstrap, minbase) with
#                             Python 3.11, imported with `podman import`; built once, cached
#   scripts/image.sh build    the base if missing, then `podman build --build-arg BASE=<it>`
#   scripts/image.sh env      prints the environment podman needs here (eval "$(... env)")
#
# Users build with the default base (python:3.11-slim) from their registry:
#   podman build -f deploy/Dockerfile -t alm-kafka-bridge:0.1.0 .
#
# Podman's settings come from deploy/podman/containers.conf through CONTAINERS_CONF, and its
# image store lives in the cache below, so no system file is touched.
#
#   ALM_BRIDGE_CACHE   cache root (default ~/.cache/alm-bridge); the store is $ALM_BRIDGE_CACHE/containers
#   IMAGE              tag to build (default localhost/alm-kafka-bridge:<version from pyproject.toml>)
#   BASE_IMAGE         local base tag (default localhost/alm-bridge-base:bookworm)
#   DEBIAN_MIRROR      debootstrap's mirror (default: the one apt uses, else deb.debian.org)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${ALM_BRIDGE_CACHE:-${HOME}/.cache/alm-bridge}"
store="${cache}/containers"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "${repo_root}/pyproject.toml" | head -n 1)"
image="${IMAGE:-localhost/alm-kafka-bridge:${version}}"
base_image="${BASE_IMAGE:-localhost/alm-bridge-base:bookworm}"
# What the base must hold for deploy/Dockerfile: `python` (3.11, as in python:3.11-slim), venv
# with its bundled pip, CA certificates; groupadd/useradd come with minbase's passwd.
base_packages="python3,python3-venv,python-is-python3,ca-certificates"

log() { printf '[image] %s\n' "$*" >&2; }

podman_env() {
    mkdir -p "${store}/storage" "${store}/run"
    # storage.conf needs absolute paths, so it is written here rather than shipped.
    cat >"${store}/storage.conf.new" <<EOF
[storage]
driver = "overlay"
graphroot = "${store}/storage"
runroot = "${store}/run"
EOF
    mv "${store}/storage.conf.new" "${store}/storage.conf"
    export CONTAINERS_CONF="${repo_root}/deploy/podman/containers.conf"
    export CONTAINERS_STORAGE_CONF="${store}/storage.conf"
}

mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
        echo "${DEBIAN_MIRROR}"
        return
    fi
    local uri
    uri="$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' \
        /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | awk '{ print $2 }' | head -n 1 || true)"
    echo "${uri:-http://deb.debian.org/debian}"
}

unmount_under() {
    # debootstrap mounts /proc and /sys inside the target; an interrupted run leaves them.
    local dir="$1" mnt
    awk -v d="${dir}/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r mnt; do
        umount -l "${mnt}" || true
    done
}

ensure_base() {
    if podman image exists "${base_image}"; then
        log "base ${base_image} present"
        return
    fi
    for tool in debootstrap podman; do
        command -v "${tool}" >/dev/null || { log "ERROR: ${tool} is missing (scripts/ensure-tools.sh installs it)"; return 1; }
    done
    local rootfs="${cache}/image/rootfs-bookworm" started
    started=$(date +%s)
    log "debootstrap bookworm (minbase + ${base_packages}) from $(mirror) into ${rootfs}"
    unmount_under "${rootfs}"
    rm -rf --one-file-system "${rootfs}"
    mkdir -p "${rootfs}"
    debootstrap --variant=minbase --include="${base_packages}" bookworm "${rootfs}" "$(mirror)" \
        >"${cache}/image/debootstrap.log" 2>&1 \
        || { unmount_under "${rootfs}"; tail -n 30 "${cache}/image/debootstrap.log" >&2; return 1; }
    unmount_under "${rootfs}"
    # What an image never needs: package caches and lists, documentation, locales.
    rm -rf "${rootfs}"/var/cache/apt/* "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/log/* \
        "${rootfs}"/usr/share/doc/* "${rootfs}"/usr/share/man/* "${rootfs}"/usr/share/info/* \
        "${rootfs}"/usr/share/locale/*
    tar -C "${rootfs}" --numeric-owner --one-file-system -c . \
        | podman import --quiet --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "${base_image}" >/dev/null
    rm -rf --one-file-system "${rootfs}"
    log "base ${base_image} built in $(( $(date +%s) - started ))s"
}

build() {
    ensure_base
    local started
    started=$(date +%s)
    log "podman build -f deploy/Dockerfile --build-arg BASE=${base_image} -t ${image}"
    # pip in the builder trusts what this host trusts (a TLS-inspecting proxy's CA, say):
    # the host's CA bundle and a pip.conf naming it are mounted for the RUN steps only and
    # never reach a layer.
    local ca="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}" trust=()
    if [[ -f "${ca}" ]]; then
        printf '[global]\ncert = /run/build-ca/ca.crt\n' >"${store}/build-pip.conf"
        trust=(--volume "${ca}:/run/build-ca/ca.crt:ro" --volume "${store}/build-pip.conf:/etc/pip.conf:ro")
    fi
    podman build --quiet --format docker "${trust[@]}" --file "${repo_root}/deploy/Dockerfile" \
        --build-arg "BASE=${base_image}" --build-arg "APP_VERSION=${version}" --tag "${image}" \
        "${repo_root}" >/dev/null
    # The builder stage's layers stay in the store (untagged): they are the cache that makes
    # the next build take seconds.
    log "image ${image} built in $(( $(date +%s) - started ))s, size $(podman image inspect --format '{{.Size}}' "${image}") bytes"
}

podman_env
case "${1:-build}" in
    base) ensure_base ;;
    build) build ;;
    env)
        printf 'export CONTAINERS_CONF=%q\n' "${CONTAINERS_CONF}"
        printf 'export CONTAINERS_STORAGE_CONF=%q\n' "${CONTAINERS_STORAGE_CONF}"
        printf 'IMAGE=%q\n' "${image}"
        printf 'BASE_IMAGE=%q\n' "${base_image}"
        ;;
    *)
        echo "usage: $0 base|build|env" >&2
        exit 2
        ;;
esac
