# Set-up and checks. Every target makes what it needs: the Debian -dev packages
# (installed with apt-get when missing), the virtual environment .venv, the build.
#
#   make demo    the demo site (example/) on a local S3 server started for it:
#                http://127.0.0.1:8000/ and its admin (demo / demo), until Ctrl-C
#   make test    the whole test suite
#
#   make bench   the small-operation and collectstatic benchmarks against the peers on
#                Ceph RGW (bench/small.py, bench/collectstatic.py; writes
#                bench/results.json and its sections of bench/RESULTS.md)
#   make bench-large  the large-file benchmark against its peers on Ceph RGW
#                     (bench/large.py; writes bench/results-large.json, bench/RESULTS.md)
#
#   make fault-table  rewrites README.rst's fault table from a run of tests/test_faults.py
#   make soak     SOAK_THREADS (8) threads x SOAK_SECONDS (600) of mixed operations on
#                 Ceph RGW (bench/soak.py; writes bench/results-soak.json): no error,
#                 no growth of memory, file descriptors or connections after warm-up
#
#   make fuzz     each libFuzzer target of fuzz/ for FUZZ_SECONDS (60) seconds
#   make fuzz-ci  all of them in about a minute
#
# Other targets: build, check (one quick pass in .venv), lint (ruff, mypy --strict,
# stubtest), sanitize (ASan and UBSan over
# the suite), valgrind (memcheck over the C-level tests), clean.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEBS   := gcc make pkg-config libcurl4-openssl-dev libssl-dev zlib1g-dev libxml2-dev openssl \
          ca-certificates binutils
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP  := $(VENV)/.installed
# the lean static libcurl and libxml2 that every build here links (scripts/build-deps,
# from Debian's source packages; setup.py reads S3_DEPS)
DEPS   := $(CURDIR)/build/deps
export S3_DEPS := $(DEPS)

.PHONY: lint demo test check build deps sanitize valgrind clean bench bench-large soak fuzz fuzz-ci fuzz-build \
	fault-table

deps:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel

$(DEPS)/.built: scripts/build-deps
	bash scripts/build-deps $(DEPS)

$(STAMP): $(PY) setup.py pyproject.toml $(wildcard csrc/*.c csrc/*.h) $(DEPS)/.built
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

# build-deps first, every time: it rebuilds when Debian's source packages change
build: deps
	@bash scripts/build-deps $(DEPS)
	@$(MAKE) --no-print-directory $(STAMP)

demo: build
	$(PY) example/run.py

check: build
	$(PY) -m pytest -q

# ruff (check and format) and mypy --strict on the package, and mypy's stubtest of the
# extension's _s3.pyi against the built module (pyproject.toml holds their settings)
lint: build
	$(PY) -m pip install -q -e '.[test,lint]'
	$(PY) -m ruff check
	$(PY) -m ruff format --check
	$(PY) -m mypy
	$(PY) -m mypy.stubtest django_s3_storage._s3

test: build
	bash scripts/test-all

# the whole suite on an extension built with ASan and UBSan; any report fails it
sanitize: build
	S3_SANITIZE=1 $(PY) setup.py -q build_ext --inplace --force
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(PY) -m pytest -q -p no:cacheprovider
	$(PY) setup.py -q build_ext --inplace --force

# the C-level tests under valgrind's memcheck: an invalid read or write, a use of
# uninitialised memory or a definite leak of the extension fails it
# (tests that time the GIL, count parts in flight or fork are left out: valgrind runs
# one thread at a time, 20 to 50 times slower)
VALGRIND_TESTS ?= tests/test_sigv4.py tests/test_gzip.py tests/test_client.py tests/test_reader.py tests/test_writer.py
VALGRIND_SKIP ?= gil or fork or in_flight_at_once
valgrind: build
	@command -v valgrind >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends valgrind; }
	PYTHONMALLOC=malloc valgrind --quiet --error-exitcode=99 --track-origins=no \
	  --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
	  --suppressions=tests/valgrind.supp \
	  $(PY) -m pytest -q -p no:cacheprovider $(VALGRIND_TESTS) -k "not ($(VALGRIND_SKIP))"

# the fault x operation x outcome table of README.rst ("Reliability"), from a run on moto
fault-table: build
	S3_WRITE_FAULT_TABLE=1 S3_TEST_BACKEND=moto $(PY) -m pytest -q -p no:cacheprovider tests/test_faults.py

# the peers' venvs under bench/venvs/, then 3 interleaved rounds of each on a Ceph RGW
# that each script starts (scripts/rgw) and stops; bench/results.json holds both
bench: build
	VENV=$(VENV) bash bench/peers.sh
	VENV=$(VENV) BENCH_COMMAND="make bench" $(PY) bench/small.py --rgw
	VENV=$(VENV) BENCH_COMMAND="make bench" $(PY) bench/collectstatic.py --rgw
	$(PY) -c 'import json; json.dump({k: json.load(open("bench/results-" + k + ".json")) for k in ("small", "collectstatic")}, open("bench/results.json", "w"), indent=1)'

# the peers' venvs under bench/venvs/, then 3 interleaved rounds on a Ceph RGW that
# bench/large.py starts (scripts/rgw) and stops
bench-large: build
	VENV=$(VENV) bash bench/peers.sh
	VENV=$(VENV) BENCH_COMMAND="make bench-large" $(PY) bench/large.py --rgw

# a Ceph RGW of its own (scripts/rgw), stopped however the run ends; PYTHONPATH: the
# checkout's extension wins (one built with build_ext --inplace)
SOAK_SECONDS ?= 600
SOAK_THREADS ?= 8
SOAK_RGW_MEM ?= 4294967296
soak: build
	@dir=$$(mktemp -d -u "$${TMPDIR:-/tmp}/s3-soak-rgw.XXXXXX"); \
	trap 'bash scripts/rgw stop "$$dir"' EXIT; \
	echo "starting Ceph RGW in $$dir"; \
	rgw_env=$$(RGW_OSD_MEM=$(SOAK_RGW_MEM) bash scripts/rgw start "$$dir") || exit 1; \
	env $$rgw_env PYTHONPATH="$(CURDIR)" SOAK_COMMAND="make soak SOAK_SECONDS=$(SOAK_SECONDS) SOAK_THREADS=$(SOAK_THREADS)" \
	  $(PY) bench/soak.py --seconds $(SOAK_SECONDS) --threads $(SOAK_THREADS) \
	  --json bench/results-soak.json

# libFuzzer comes with Debian's clang in libclang-rt-<version>-dev
FUZZ_SECONDS ?= 60
FUZZ_DEBS := clang libclang-rt-14-dev

fuzz-build: deps
	@$(MAKE) -s deps DEBS="$(FUZZ_DEBS)"
	sh fuzz/build.sh

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) sh fuzz/run.sh

fuzz-ci: fuzz-build
	FUZZ_SECONDS=10 sh fuzz/run.sh

clean:
	rm -rf build dist *.egg-info django_s3_storage/*.so fuzz/build
