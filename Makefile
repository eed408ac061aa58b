# Thin aliases; scripts/dev does the work (and installs what it needs).
.PHONY: demo test lint bench
demo:
	scripts/demo
test:
	scripts/test
lint:
	scripts/dev lint
bench:
	scripts/dev bench

# The outbox under faults (also part of `make test`; this runs it alone).
.PHONY: reliability
reliability:
	scripts/dev reliability

# About 10 minutes: the outbox under a flapping broker, RSS/fd/thread growth (tests/soak).
# Options through SOAK_ARGS, e.g. make soak SOAK_ARGS="--minutes 3 --devices 100".
.PHONY: soak
soak:
	.venv/bin/python -m tests.soak.soak_outbox $(SOAK_ARGS)

# Slow suites, run by hand (not in CI): the .deb on a Debian 13 chroot.
.PHONY: deb-check
deb-check:
	scripts/deb-check

# By hand, as root (not in CI: about half an hour): the .deb on arm64 and armhf Debian 13 under
# qemu user emulation, next to native amd64 (scripts/arm-test). MIRROR=... and ARCHES=... pass on.
.PHONY: arm-test
arm-test:
	scripts/arm-test
