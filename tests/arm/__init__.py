"""The installed .deb exercised inside a Debian 13 chroot (arm64, armhf under qemu, or amd64).

``scripts/arm-test`` copies this package into each chroot and runs ``python3 -m arm.smoke`` and
``python3 -m arm.figures`` there with Debian's own python3 and the packaged edged; only the
standard library, edged and its Debian dependencies are imported. ``report.py`` runs on the host.
"""
