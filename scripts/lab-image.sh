#!/usr/bin/env bash
# Build the lab base image once: Debian 12 with systemd as PID 1, from a debootstrap root file
# system imported with `podman import` (no container registry is reachable from here).
# Skips the build when the image already exists. Needs root, podman and debootstrap.
#
#   DYSSECT_LAB_IMAGE   image name (default localhost/dyssect-lab:bookworm)
#   DYSSECT_LAB_MIRROR  Debian mirror URL (default: the one apt uses on this machine)
#   DYSSECT_LAB_REBUILD=1  rebuild even if the image exists
set -euo pipefail

IMAGE="${DYSSECT_LAB_IMAGE:-localhost/dyssect-lab:bookworm}"
SUITE=bookworm
# python3-venv/-pip: the controller role builds a venv; ca-certificates: pip over HTTPS.
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-apt,python3-venv,python3-pip,sudo,iproute2,procps,ca-certificates

if [[ "${DYSSECT_LAB_REBUILD:-0}" != 1 ]] && podman image exists "$IMAGE"; then
    echo "lab-image: $IMAGE already present, not rebuilding"
    exit 0
fi

# The mirror apt uses here: first URIs line of a deb822 .sources file that serves $SUITE,
# else the first `deb URL $SUITE` line of a one-line sources list.
find_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] || continue
        uri=$(awk -v suite="$SUITE" '
            function out() { if (uri != "" && ok && !done) { print uri; done = 1 } }
            /^[[:space:]]*$/ { out(); uri = ""; ok = 0; next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
            END { out() }' "$f")
        if [[ -n "$uri" ]]; then
            echo "$uri"
            return 0
        fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r "$f" ]] || continue
        uri=$(awk -v suite="$SUITE" '$1 == "deb" && $3 == suite && !done { print $2; done = 1 }' "$f")
        if [[ -n "$uri" ]]; then
            echo "$uri"
            return 0
        fi
    done
}
MIRROR="${DYSSECT_LAB_MIRROR:-$(find_mirror || true)}"
if [[ -z "$MIRROR" ]]; then
    echo "lab-image: no apt source for $SUITE found under /etc/apt; set DYSSECT_LAB_MIRROR" >&2
    exit 1
fi

start=$(date +%s)
ROOTFS=$(mktemp -d /var/tmp/dyssect-lab-rootfs.XXXXXX)
trap 'rm -rf --one-file-system "$ROOTFS"' EXIT

echo "lab-image: debootstrap $SUITE into $ROOTFS"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" \
    >"$ROOTFS.log" 2>&1 || {
    tail -n 30 "$ROOTFS.log" >&2
    exit 1
}
rm -f "$ROOTFS.log"

# Each container must generate its own machine id at first boot.
: >"$ROOTFS/etc/machine-id"
rm -f "$ROOTFS/var/lib/dbus/machine-id"
# No getty on a container console; it only fails and clutters `systemctl --failed`.
chroot "$ROOTFS" systemctl mask console-getty.service getty@tty1.service \
    systemd-remount-fs.service >/dev/null 2>&1 || true
# Trust the CAs this machine trusts (a TLS-inspecting egress proxy needs its CA inside the
# containers too, for pip), and point pip at the system bundle like the host does.
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
    chroot "$ROOTFS" update-ca-certificates >/dev/null
fi
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$ROOTFS/etc/pip.conf"
chroot "$ROOTFS" apt-get clean

echo "lab-image: importing as $IMAGE"
tar -C "$ROOTFS" -c . | podman import \
    --change 'CMD ["/lib/systemd/systemd"]' \
    --change 'STOPSIGNAL SIGRTMIN+3' \
    --change 'LABEL org.dyssect.lab=bookworm' \
    --change "LABEL org.dyssect.lab.packages=$PACKAGES" \
    - "$IMAGE" >/dev/null
echo "lab-image: built $IMAGE in $(($(date +%s) - start)) s"
