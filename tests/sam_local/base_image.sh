#!/usr/bin/env bash
# Builds the offline stand-in for the Lambda python3.12 base image and prints its tag:
#
#     tests/sam_local/base_image.sh CACHE_DIR PYTHON [ARG...]
#
# No registry holds images here, so the image is made from parts that are reachable: a Debian minbase root file
# system (debootstrap, from the mirror apt is configured with), the very CPython 3.12 that PYTHON runs (copied to the
# same prefix, since a pyenv build finds its libpython by that path), and the runtime interface client `awslambdaric`
# from PyPI under /var/runtime, started by /var/runtime/bootstrap the way Lambda starts a runtime. SAM CLI adds its
# own Runtime Interface Emulator on top at invoke time.
#
# The tag is a content stamp: a hash of this script, the runtime pins, the interpreter's build and the Debian suite.
# An image with that tag is reused as it is (about 0.1 s); anything that changes it builds a new one (about 30 s on
# a quiet machine, minutes on a loaded one; debootstrap's packages are cached in CACHE_DIR/debs).
set -euo pipefail

cache=$(mkdir -p "$1" && cd "$1" && pwd)
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
requirements=$here/runtime-requirements.txt
repository=connvault-sam-local/python3.12

prefix=$("$@" -I -c 'import sys; print(sys.base_prefix)')
version=$("$@" -I -c 'import sys; print(sys.version.replace(chr(10), " "))')
case $prefix in
/usr | /usr/local | /)
    echo "base_image.sh: $prefix is the system's own Python, not a self-contained prefix to copy" >&2
    exit 2
    ;;
esac
arch=$(dpkg --print-architecture)
suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
key=$({
    cat "${BASH_SOURCE[0]}" "$requirements"
    echo "$prefix|$version|$arch|$suite"
    sha256sum "$prefix"/bin/python3.12 "$prefix"/lib/libpython3.12.so* 2>/dev/null || true
} | sha256sum | cut -c1-16)
tag=$repository:$key

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag"
    exit 0
fi
# Two runs (worktrees) needing the same new image build it once.
exec 9>/var/lock/connvault-sam-local-image.lock
flock -w 1200 9
if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag"
    exit 0
fi

if ! command -v debootstrap >/dev/null; then
    echo "installing debootstrap (apt-get) ..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2
fi
mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' |
    awk -v suite="$suite" '$2 == suite { print $1; exit }')
[ -n "$mirror" ] || { echo "base_image.sh: apt has no source for $suite" >&2; exit 2; }

work=$(mktemp -d /var/tmp/connvault-sam-local-image.XXXXXX)
root=$work/root
cleanup() {
    # debootstrap mounts /proc and /sys in the tree while it installs; never delete through a mount.
    for mounted in "$root/proc" "$root/sys"; do
        if mountpoint -q "$mounted"; then umount -l "$mounted"; fi
    done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

echo "building $tag: debootstrap $suite minbase ..." >&2
started=$SECONDS
mkdir -p "$cache/debs"
# libssl3: Python's _ssl and _hashlib; the rest: every other extension module of the standard library that links a
# shared library minbase lacks (checked below).
debootstrap --variant=minbase --cache-dir="$cache/debs" \
    --include=libssl3,ca-certificates,libffi8,libexpat1,libsqlite3-0,libreadline8,libncursesw6,libnsl2 \
    "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
for mounted in "$root/proc" "$root/sys"; do
    if mountpoint -q "$mounted"; then umount -l "$mounted"; fi
done

echo "building $tag: CPython $version from $prefix, awslambdaric ..." >&2
# The interpreter and its standard library; not its site-packages (a function sees only its bundle and the layer,
# as in Lambda), its tests, or its Tk and IDLE.
mkdir -p "$root$prefix"
tar -C "$prefix" -cf - \
    --exclude='./lib/python3.12/site-packages/*' --exclude=./lib/python3.12/test \
    --exclude='./lib/python3.12/config-3.12-*' --exclude=./lib/python3.12/idlelib \
    --exclude=./lib/python3.12/tkinter --exclude=./lib/python3.12/turtledemo \
    --exclude=./lib/python3.12/ensurepip --exclude='./lib/python3.12/lib-dynload/_tkinter*' . |
    tar -C "$root$prefix" -xf -
mkdir -p "$root/var/runtime" "$root/var/task" "$root/opt"
"$@" -m pip install --quiet --disable-pip-version-check --no-warn-script-location --only-binary=:all: \
    --no-deps --target "$root/var/runtime" -r "$requirements" >&2
"$@" -I -m compileall -q --invalidation-mode unchecked-hash "$root/var/runtime" >&2
cat >"$root/var/runtime/bootstrap" <<EOF
#!/bin/sh
# Lambda starts the runtime as /var/runtime/bootstrap; SAM's emulator passes the handler as \$1.
exec $prefix/bin/python3.12 -m awslambdaric "\${1:-\$_HANDLER}"
EOF
chmod 755 "$root/var/runtime/bootstrap"

# Every extension module must find its libraries inside the tree, and the runtime must import.
missing=$(for module in "$root$prefix"/lib/python3.12/lib-dynload/*.so; do
    chroot "$root" /usr/bin/ldd "${module#"$root"}" | grep 'not found' | sed "s|^|$(basename "$module"): |"
done || true)
[ -z "$missing" ] || { echo "base_image.sh: libraries missing from the image:" >&2; echo "$missing" >&2; exit 1; }
chroot "$root" /usr/bin/env -i PYTHONPATH=/var/runtime "$prefix/bin/python3.12" -c \
    'import ssl, ctypes, decimal, lzma, bz2, zlib, uuid, sqlite3, pyexpat, awslambdaric.bootstrap, runtime_client'

rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale
# /proc, /sys and /dev stay empty: the container runtime mounts its own.
tar -C "$root" -cf - --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' . |
    docker import \
        --change "ENV PATH=$prefix/bin:/usr/local/bin:/usr/bin:/bin" \
        --change 'ENV PYTHONPATH=/var/task:/opt/python/lib/python3.12/site-packages:/opt/python:/var/runtime' \
        --change 'ENV LANG=C.UTF-8 TZ=:/etc/localtime LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime' \
        --change 'WORKDIR /var/task' \
        --change 'ENTRYPOINT ["/var/runtime/bootstrap"]' \
        --change "LABEL connvault.sam-local.base=$key" \
        - "$tag" >/dev/null
echo "built $tag in $((SECONDS - started)) s" >&2
echo "$tag"
