#!/usr/bin/env bash
# The install path for real, in Debian 13 (trixie): build the .deb there, install it with apt,
# then have the root helper install a newer edged package from edged's firmware folder with
# apt-get, and refuse a foreign one. Not a pytest test (needs root, debootstrap, a mirror, a few
# minutes); run by hand: sudo tests/integration/privileged/chroot_check.sh
# No systemd as PID 1 in a chroot: the unit and polkit are checked in tests/ and docs/privileged.md.
set -euo pipefail
cd "$(dirname "$0")/../../.."
MIRROR=${MIRROR:-$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WORK=$(mktemp -d /tmp/edged-privileged-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
CHROOT="$WORK/trixie"
if [ -f .cache/trixie.tar.gz ]; then
  mkdir -p "$CHROOT" && tar -xzf .cache/trixie.tar.gz -C "$CHROOT"
else
  debootstrap --variant=minbase trixie "$CHROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; exit 1; }
fi
printf '#!/bin/sh\nexit 101\n' > "$CHROOT/usr/sbin/policy-rc.d"; chmod +x "$CHROOT/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$CHROOT/etc/resolv.conf"
mkdir -p "$CHROOT/build/edged"
git ls-files -z | xargs -0 tar -cf - | tar -xf - -C "$CHROOT/build/edged"
unshare -m --propagation private sh -c "
  mount -t proc proc '$CHROOT/proc'
  mount -t tmpfs tmpfs '$CHROOT/run'
  chroot '$CHROOT' /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 sh -euc '
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends build-essential debhelper dh-python \
      pybuild-plugin-pyproject python3-all python3-setuptools >/tmp/deps.log 2>&1 || { tail -30 /tmp/deps.log; exit 1; }
    cd /build/edged
    dpkg-buildpackage -us -uc -b >/tmp/build.log 2>&1 || { tail -40 /tmp/build.log; exit 1; }
    apt-get install -y -q --no-install-recommends /build/edged_*_all.deb >/tmp/install.log 2>&1 \
      || { tail -30 /tmp/install.log; exit 1; }
    echo \"== shipped\"
    ls -l /usr/lib/systemd/system/edged-install@.service /usr/share/polkit-1/rules.d/50-edged.rules
    echo \"== postinst lines about starting units\"
    grep -n \"start\\|restart\\|daemon-reload\" /var/lib/dpkg/info/edged.postinst || true
    echo \"== a newer edged, repacked from the built one\"
    mkdir -p /tmp/repack && dpkg-deb -R /build/edged_*_all.deb /tmp/repack
    sed -i \"s/^Version: .*/Version: 0.1.0+test1/\" /tmp/repack/DEBIAN/control
    install -d -o edged -g edged /var/lib/edged/firmware
    dpkg-deb --root-owner-group -b /tmp/repack /var/lib/edged/firmware/edged_0.1.0+test1_all.deb >/dev/null
    chown edged:edged /var/lib/edged/firmware/edged_0.1.0+test1_all.deb
    echo 0.1.0+test1 > /var/lib/edged/firmware/edged_0.1.0+test1_all.deb.version
    chown edged:edged /var/lib/edged/firmware/edged_0.1.0+test1_all.deb.version
    echo \"== a foreign package is refused\"
    mkdir -p /tmp/foreign/DEBIAN
    printf \"Package: evil\\nVersion: 1\\nArchitecture: all\\nMaintainer: x <x@example.invalid>\\nDescription: x\\n\" > /tmp/foreign/DEBIAN/control
    dpkg-deb --root-owner-group -b /tmp/foreign /var/lib/edged/firmware/evil.deb >/dev/null
    chown edged:edged /var/lib/edged/firmware/evil.deb
    if python3 -I -m edged.privileged.installhelper evil.deb; then echo \"FAIL: evil.deb installed\"; exit 1; fi
    if dpkg-query -W evil 2>/dev/null; then echo \"FAIL: evil is installed\"; exit 1; fi
    echo \"== root helper installs the newer edged\"
    python3 -I -m edged.privileged.installhelper edged_0.1.0+test1_all.deb
    test \"\$(dpkg-query -W -f=\"\\\${Version}\" edged)\" = 0.1.0+test1
    test -f /var/lib/edged/firmware/edged_0.1.0+test1_all.deb
    dpkg-query -W edged
  '
"
echo "the root helper installs a checked edged package with apt on Debian 13"
