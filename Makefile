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

# Slow suites, run by hand (not in CI): the .deb on a Debian 13 chroot.
.PHONY: deb-check
deb-check:
	scripts/deb-check
