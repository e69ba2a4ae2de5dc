# Sourced by deploy/image.sh and deploy/image-test.sh: where the image and buildah's storage are.
# shellcheck shell=bash
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
CACHE=${WORKER_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/worker/image}
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -n 1)
IMAGE=${IMAGE:-projection-worker:$VERSION}
# buildah's run state belongs in a tmpfs, one folder per storage folder.
RUNROOT=${XDG_RUNTIME_DIR:-/run}/worker-buildah/$(printf '%s' "$CACHE" | sha256sum | cut -c1-12)

export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
bah() {
    buildah --root "$CACHE/storage" --runroot "$RUNROOT" "$@"
}
