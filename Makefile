# gmtrack — the two commands of the README, plus install.
#   make bench    build Release and run gmbench; writes out/report.md, out/results.csv, out/*.svg
#   make check    every test (ASan+UBSan, TSan), fuzz smoke runs, examples, install test,
#                 the Rust crate's tests, the Debian packages
#   make coverage line and branch coverage of src/;  make docs  docs/reference.md
#   make deb      Debian packages libgmtrack1, libgmtrack-dev, gmtrack-tools in $(BUILD)/deb
#                 (dpkg-buildpackage + lintian; scripts/update-symbols after an ABI change)
# Extra flags for gmbench: make bench BENCH_ARGS="--size 100000000 --scenario shadow_pages"

BUILD      ?= build
OUT        ?= out
BENCH_ARGS ?=
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all bench check deps release install deb clean coverage docs readme-figures

all: release

deps:
	@scripts/install-deps

release: deps
	cmake -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build $(BUILD)/release -j $(JOBS)

bench: release
	$(BUILD)/release/gmbench --out $(OUT) $(BENCH_ARGS)

check: deps
	@scripts/check

# Line and branch coverage of src/ by the tests (gcov), per file and in total.
coverage: deps
	@scripts/coverage

# The README's figures table, from the last make bench's out/targets.csv.
readme-figures:
	@scripts/readme-figures $(OUT)

# The API reference, docs/reference.md, from the public headers' comments.
docs:
	@scripts/gen-api-ref

# Honours DESTDIR and PREFIX: make install DESTDIR=$PWD/stage
install: release
	DESTDIR=$(DESTDIR) cmake --install $(BUILD)/release --prefix $(PREFIX)

deb: deps
	scripts/build-deb $(BUILD)/deb

clean:
	rm -rf $(BUILD) $(OUT)
