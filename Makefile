# SPDX-License-Identifier: BSD-2-Clause
# ngx_http_api_key_module: build, test, run.
#
#   make          build the module (build/ngx_http_api_key_module.so) and apikeyctl
#   make run      start redis-server + nginx with the module on loopback, demo key
#                 (PORT=8080 APP_PORT=PORT+1 REDIS_PORT=6390; RUN_DIR=build/run)
#   make stop     stop what make run (and make example) started
#   make example EXAMPLE=NAME   conf-examples/NAME.conf as shipped, against
#                 the running make run's Redis and application
#   make secret SECRET=FILE     a new HMAC secret file (api_key_hash hmac-sha256)
#   make install  the module, its load_module snippet (enabled as Debian
#                 does), apikeyctl and its man page (DESTDIR, PREFIX=/usr;
#                 README: Installing); make uninstall removes them
#   make deb      build/deb/libnginx-mod-http-api-key_VERSION_ARCH.deb and
#                 apikeyctl_VERSION_ARCH.deb (debian/, dh + dh-sequence-nginx);
#                 make deb-lint runs lintian on them
#   make test     unit tests (GoogleTest) + integration tests (prove t/)
#   make test-asan   the same, everything built with ASan + UBSan in
#                 build/asan, the module loaded into the stock nginx with the
#                 sanitizer runtimes preloaded (README: Sanitizer builds)
#   make bench    benchmarks (wrk)
#   make check-layers   fails on a call between the C glue files (src/*.c)
#                 that points up the layer order of scripts/layers.conf
#   make fuzz     every libFuzzer target of fuzz/ for FUZZ_SECONDS (60) each
#                 (FUZZ_TARGETS="cookie query": only those)
#   make fuzz-replay   the committed corpora and saved crash inputs through
#                 every target (part of make test)
#
# NGINX_SRC selects the nginx build tree (default: Debian's nginx-dev);
# NGINX_CONF_ARGS a file of configure arguments, one a line, used instead of
# the tree's conf_flags and --with-compat (scripts/build-for-nginx.sh writes
# it from the target's nginx -V; README: Building against your nginx).

NGINX_SRC  ?= /usr/share/nginx/src
NGINX_CONF_ARGS ?=
BUILD      ?= $(CURDIR)/build
NGX_BUILD   = $(BUILD)/nginx-src
MODULE      = $(BUILD)/ngx_http_api_key_module.so
CXX        ?= g++
# the default keeps the hardening of the nginx package's flags (the core was
# compiled with them when nginx's build compiled it)
CXXFLAGS   ?= -O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2
LDFLAGS    ?=
# SANITIZE=address,undefined (any -fsanitize= list) builds everything with
# the sanitizers; use a BUILD of its own (make test-asan does).
SANITIZE   ?=
ifneq ($(SANITIZE),)
SAN_FLAGS   = -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
endif
AK_CXXFLAGS = -std=c++17 -Wall -Wextra -Werror -fPIC $(CXXFLAGS) $(SAN_FLAGS)
AK_LDFLAGS  = $(CXXFLAGS) $(SAN_FLAGS) $(LDFLAGS)
ASAN_BUILD  = $(CURDIR)/build/asan

# The C++ core is compiled once, here, with the flags above, into a static
# library of PIC objects that the module (through the addon config), the
# unit tests, apikeyctl and the benchmarks all link: nginx's objs/Makefile
# never compiles a .cpp file (it would use $(CC) and nginx's C flags).
CORE_SRCS  := $(wildcard src/core/*.cpp)
CORE_HDRS  := $(wildcard src/core/*.h src/core/*.hpp)
CORE_OBJS  := $(patsubst src/core/%.cpp,$(BUILD)/core/%.o,$(CORE_SRCS))
CORE_LIB    = $(BUILD)/libakcore.a
UNIT_SRCS  := $(wildcard test/unit/*.cpp)
UNIT_OBJS  := $(patsubst test/unit/%.cpp,$(BUILD)/unit/%.o,$(UNIT_SRCS))
GLUE_SRCS  := $(wildcard src/*.c src/*.h src/*.map) $(CORE_HDRS) config
CLI_SRCS   := $(wildcard src/cli/*.cpp)
CLI_OBJS   := $(patsubst src/cli/%.cpp,$(BUILD)/cli/%.o,$(CLI_SRCS))
CLI        = $(BUILD)/apikeyctl

.PHONY: all module cli core-lib deps unit integration test test-asan run bench clean
.PHONY: stop example secret install uninstall deb deb-lint
.PHONY: check-layers check-layers-selftest check-spdx

all: module cli

deps:
	@sh scripts/deps.sh

# --- the nginx module -------------------------------------------------------

# the sanitizer flags a build directory was made with: a change rebuilds
FLAGS_STAMP = $(BUILD)/.sanitize

$(FLAGS_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo '$(SAN_FLAGS)' | cmp -s - $@ || echo '$(SAN_FLAGS)' >$@

# the C++ compiler and its flags: a change rebuilds every C++ object, and
# a compiler without C++17 is refused here, before anything is compiled
CXX_STAMP = $(BUILD)/.cxx

$(CXX_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo '$(CXX) $(AK_CXXFLAGS)' | cmp -s - $@ || { \
	    CXX='$(CXX)' sh scripts/check-cxx17.sh $(AK_CXXFLAGS) \
	    && echo '$(CXX) $(AK_CXXFLAGS)' >$@; }

.PHONY: FORCE
FORCE:

# the list of glue files (the config compiles every src/*.c): a file added
# or removed configures nginx's build again
GLUE_STAMP = $(BUILD)/.glue-files

$(GLUE_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo '$(sort $(wildcard src/*.c src/*.h))' | cmp -s - $@ \
	    || echo '$(sort $(wildcard src/*.c src/*.h))' >$@

$(NGX_BUILD)/.configured: config scripts/configure-nginx.sh $(FLAGS_STAMP) $(GLUE_STAMP) $(NGINX_CONF_ARGS)
	rm -rf $(NGX_BUILD)
	mkdir -p $(BUILD)
	cp -r $(NGINX_SRC) $(NGX_BUILD)
	cd $(NGX_BUILD) && AK_CC_OPT="$(SAN_FLAGS)" AK_LD_OPT="$(SAN_FLAGS)" \
	    AK_CORE_LIB="$(CORE_LIB)" AK_CONF_ARGS="$(NGINX_CONF_ARGS)" \
	    sh $(CURDIR)/scripts/configure-nginx.sh $(CURDIR)
	touch $@

# nginx's Makefile relinks the module when the library changes (the config
# puts it in LINK_DEPS)
$(MODULE): $(NGX_BUILD)/.configured $(GLUE_SRCS) $(CORE_LIB)
	$(MAKE) -C $(NGX_BUILD) -f objs/Makefile modules
	cp $(NGX_BUILD)/objs/ngx_http_api_key_module.so $@.tmp
	mv -f $@.tmp $@   # a new inode: a running nginx keeps its mapping

module: $(MODULE)

# --- apikeyctl, the ops CLI (blocking sockets + OpenSSL; hiredis as codec) --

$(BUILD)/cli/%.o: src/cli/%.cpp $(CORE_HDRS) $(wildcard src/cli/*.hpp) $(FLAGS_STAMP) $(CXX_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(AK_CXXFLAGS) -Isrc/core -Isrc/cli -c -o $@ $<

$(CLI): $(CLI_OBJS) $(CORE_LIB)
	$(CXX) $(AK_LDFLAGS) -o $@ $^ -lhiredis -lssl -lcrypto

cli: $(CLI)

# --- the C++ core and its unit tests ----------------------------------------

$(BUILD)/core/%.o: src/core/%.cpp $(CORE_HDRS) $(FLAGS_STAMP) $(CXX_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(AK_CXXFLAGS) -Isrc/core -c -o $@ $<

# rebuilt from scratch (no member of a removed .cpp survives)
$(CORE_LIB): $(CORE_OBJS)
	rm -f $@.tmp
	$(AR) rcs $@.tmp $^
	mv -f $@.tmp $@

core-lib: $(CORE_LIB)

$(BUILD)/unit/%.o: test/unit/%.cpp $(CORE_HDRS) $(wildcard test/unit/*.h) $(wildcard src/cli/*.hpp) $(FLAGS_STAMP) $(CXX_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(AK_CXXFLAGS) -Isrc/core -Isrc/cli -c -o $@ $<

# the pure parts of apikeyctl (the --redis URL, the TLS options, cluster
# key slots) are
# unit-tested too
UNIT_CLI_OBJS = $(BUILD)/cli/url.o $(BUILD)/cli/util.o $(BUILD)/cli/slot.o

$(BUILD)/unit_tests: $(UNIT_OBJS) $(UNIT_CLI_OBJS) $(CORE_LIB)
	$(CXX) $(AK_LDFLAGS) -o $@ $^ -lgtest -lgtest_main -lhiredis -lcrypto -pthread

# UBSan reports make the unit tests fail (ASan's always do)
unit: $(BUILD)/unit_tests
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $(BUILD)/unit_tests --gtest_brief=1

# --- layers of the C glue ----------------------------------------------------

# The file-level dependency graph of src/*.c, read with nm from the objects
# nginx's Makefile compiled, against the layer order of scripts/layers.conf:
# an edge that does not point down fails, printed as caller.c -> callee.c
# (symbols). `make check-layers LAYERS_FLAGS=--graph` prints every edge.
GLUE_OBJS = $(patsubst src/%.c,$(NGX_BUILD)/objs/addon/src/%.o,$(wildcard src/*.c))
LAYERS_FLAGS ?=

check-layers: module
	perl scripts/check-layers.pl $(LAYERS_FLAGS) scripts/layers.conf $(GLUE_OBJS)

# the check itself, on a fixture: a clean graph passes, an upward edge, a
# cycle within a layer and an unplaced file fail
check-layers-selftest:
	sh test/layers/run.sh $(BUILD)/layers

# --- integration tests (real nginx, real redis-server) ----------------------

# With SANITIZE set, t/lib/ApiKeyTest.pm preloads the sanitizer runtimes
# into nginx (AK_SANITIZE) and fails a test file on any report.
#
# The files run PROVE_JOBS at a time (most of a file's time is spent
# waiting on timers, not CPU; every file has its own processes, directories
# and ports: free_port claims a port across processes).  t/43-47 (make run,
# install, packages, builds) run one after another within that pool; the
# chaos files t/70-75 (wrk at 64 connections, faults with recovery
# deadlines) run afterwards, alone.  PROVE_JOBS=1: the old serial run.
PROVE_JOBS  ?= 4
TESTS_ALL   := $(sort $(wildcard t/*.t))
TESTS_ALONE := $(sort $(wildcard t/7[0-5]-*.t))
TESTS_POOL  := $(filter-out $(TESTS_ALONE),$(TESTS_ALL))
PROVE_ENV    = AK_MODULE=$(MODULE) AK_CLI=$(CLI) AK_BUILD=$(BUILD) \
	    $(if $(SAN_FLAGS),AK_SANITIZE="$(SANITIZE)" AK_CC="$(CC)")

integration: module cli
	$(PROVE_ENV) prove -I t/lib -j$(PROVE_JOBS) \
	    --rules='seq=t/4[3-7]-*.t' --rules='par=**' $(TESTS_POOL)
	$(PROVE_ENV) prove -I t/lib $(TESTS_ALONE)

# The layer check (make check-layers) is enforced by make test with
# CHECK_LAYERS=1; with 0 it runs, lists the edges that point up, and does
# not fail (until the glue files are restructured along the layers).
CHECK_LAYERS ?= 1

# every tracked source file carries the SPDX line of LICENSE
# (scripts/spdx.sh --fix adds it)
check-spdx:
	sh scripts/spdx.sh

test: deps
	$(MAKE) check-spdx
	$(MAKE) unit
	$(MAKE) check-layers-selftest
	$(if $(filter 1,$(CHECK_LAYERS)),,-)$(MAKE) check-layers
	$(MAKE) fuzz-replay
	$(MAKE) integration

# Everything again under AddressSanitizer + UndefinedBehaviorSanitizer, in
# build/asan (the normal build is untouched).
test-asan: deps
	$(MAKE) BUILD=$(ASAN_BUILD) SANITIZE=address,undefined CXXFLAGS="-O1 -g" unit
	$(MAKE) BUILD=$(ASAN_BUILD) SANITIZE=address,undefined CXXFLAGS="-O1 -g" integration

# --- fuzzing (fuzz/, README: Fuzzing) ---------------------------------------
#
# Each fuzz/fuzz_NAME.cpp is a libFuzzer target, built in build/fuzz with
# clang++ and the core compiled again with coverage instrumentation, ASan
# and UBSan.  make fuzz runs each one for FUZZ_SECONDS from its committed
# seeds (fuzz/corpus/NAME); what it learns goes to build/fuzz/corpus/NAME,
# a crash to build/fuzz/artifacts/NAME.  make fuzz-replay runs every seed
# and every saved crash input (fuzz/crashes/NAME) once through the same
# targets built with $(CXX), ASan and UBSan and a small main
# (fuzz/replay_main.cpp) instead of libFuzzer's: no clang needed.

FUZZ_CXX      ?= clang++
FUZZ_SECONDS  ?= 60
# make fuzz FUZZ_TARGETS="cookie query": only those (default: every one)
FUZZ_TARGETS  ?= $(FUZZ_NAMES)
FUZZ_BUILD     = $(BUILD)/fuzz
FUZZ_REPLAY    = $(BUILD)/fuzz-replay
FUZZ_NAMES    := $(patsubst fuzz/fuzz_%.cpp,%,$(wildcard fuzz/fuzz_*.cpp))
FUZZ_HDRS     := $(wildcard fuzz/*.h) $(CORE_HDRS)
FUZZ_BASE      = -std=c++17 -O1 -g -Wall -Wextra -Werror -fno-omit-frame-pointer \
                 -Isrc/core -Ifuzz -DAK_CACHE_KILL_POINTS
FUZZ_SAN       = -fsanitize=address,undefined -fno-sanitize-recover=undefined
# coverage: checkers are not instrumented (fuzz/coverage-ignore.txt, and
# FUZZ_ORACLE in the targets); FUZZ_NO_CMP targets have no comparison
# tracing in their own file and the core file they drive: their inputs
# choose among fixed keys and operations (cache) or are written out, never
# matched (metrics), so the tracing found nothing more and cost most of
# the time (executions per second 3.9 and 3.9 times as many without it,
# the same edges covered)
FUZZ_COV       = -fsanitize-coverage-ignorelist=fuzz/coverage-ignore.txt
FUZZ_NO_CMP    = cache metrics
$(FUZZ_NO_CMP:%=$(FUZZ_BUILD)/%) $(FUZZ_NO_CMP:%=$(FUZZ_BUILD)/core/%.o): \
    private FUZZ_COV += -fno-sanitize-coverage=trace-cmp
FUZZ_CORE_OBJS = $(patsubst src/core/%.cpp,$(FUZZ_BUILD)/core/%.o,$(CORE_SRCS))
REPLAY_CORE_OBJS = $(patsubst src/core/%.cpp,$(FUZZ_REPLAY)/core/%.o,$(CORE_SRCS))

.PHONY: fuzz fuzz-build fuzz-replay
.SECONDARY: $(FUZZ_CORE_OBJS) $(REPLAY_CORE_OBJS) $(FUZZ_REPLAY)/main.o

$(FUZZ_BUILD)/core/%.o: src/core/%.cpp $(CORE_HDRS) fuzz/coverage-ignore.txt
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_BASE) $(FUZZ_SAN) $(FUZZ_COV) -fsanitize=fuzzer-no-link \
	    -c -o $@ $<

$(FUZZ_BUILD)/%: fuzz/fuzz_%.cpp $(FUZZ_HDRS) $(FUZZ_CORE_OBJS)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_BASE) $(FUZZ_SAN) $(FUZZ_COV) -fsanitize=fuzzer -o $@ $< \
	    $(FUZZ_CORE_OBJS) -lhiredis -lcrypto

fuzz-build: $(addprefix $(FUZZ_BUILD)/,$(FUZZ_NAMES))

# clang and its libFuzzer runtime (Debian: clang, libclang-rt-dev)
fuzz:
	@sh scripts/deps.sh clang libclang-rt-dev
	$(MAKE) $(addprefix $(FUZZ_BUILD)/,$(FUZZ_TARGETS))
	sh fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

$(FUZZ_REPLAY)/core/%.o: src/core/%.cpp $(CORE_HDRS)
	@mkdir -p $(dir $@)
	$(CXX) $(FUZZ_BASE) $(FUZZ_SAN) -c -o $@ $<

$(FUZZ_REPLAY)/main.o: fuzz/replay_main.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(FUZZ_BASE) $(FUZZ_SAN) -c -o $@ $<

$(FUZZ_REPLAY)/%: fuzz/fuzz_%.cpp $(FUZZ_HDRS) $(REPLAY_CORE_OBJS) $(FUZZ_REPLAY)/main.o
	@mkdir -p $(dir $@)
	$(CXX) $(FUZZ_BASE) $(FUZZ_SAN) -o $@ $< $(FUZZ_REPLAY)/main.o \
	    $(REPLAY_CORE_OBJS) -lhiredis -lcrypto

# the lock-free limits with another process acting between two atomic
# steps (test/race: the same core build, its race hooks)
$(FUZZ_REPLAY)/race_tests: $(wildcard test/race/*.cpp) test/unit/cache_zone.h $(CORE_HDRS) $(REPLAY_CORE_OBJS)
	@mkdir -p $(dir $@)
	$(CXX) $(FUZZ_BASE) $(FUZZ_SAN) -Itest/unit -o $@ $(wildcard test/race/*.cpp) \
	    $(REPLAY_CORE_OBJS) -lgtest -lgtest_main -lhiredis -lcrypto -pthread

# UBSan's reports abort too (-fno-sanitize-recover)
fuzz-replay: $(addprefix $(FUZZ_REPLAY)/,$(FUZZ_NAMES)) $(FUZZ_REPLAY)/race_tests
	@for t in $(FUZZ_NAMES); do \
	    $(FUZZ_REPLAY)/$$t fuzz/corpus/$$t fuzz/crashes/$$t || exit 1; \
	done
	$(FUZZ_REPLAY)/race_tests --gtest_brief=1

# make run: ports on 127.0.0.1 (checked before anything starts), the
# directory of its config, logs and PID files
PORT       ?= 8080
APP_PORT   ?=
REDIS_PORT ?= 6390
RUN_DIR    ?= $(BUILD)/run
RUN_ENV     = PORT='$(PORT)' APP_PORT='$(APP_PORT)' REDIS_PORT='$(REDIS_PORT)'
STOP_CMD    = make stop$(if $(filter $(BUILD)/run,$(RUN_DIR)),, RUN_DIR=$(RUN_DIR))

run: deps
	@$(MAKE) --no-print-directory module cli
	@$(RUN_ENV) sh scripts/run.sh start $(BUILD) $(RUN_DIR) '$(STOP_CMD)'

stop:
	@sh scripts/run.sh stop $(RUN_DIR)

example:
	@$(RUN_ENV) sh scripts/run.sh example $(BUILD) $(RUN_DIR) '$(EXAMPLE)'

secret:
	@test -n '$(SECRET)' || { echo 'make secret SECRET=/etc/nginx/api-key.secret' >&2; exit 2; }
	@sh scripts/make-secret.sh '$(SECRET)'

clean:
	rm -rf $(BUILD)

# --- make install / make uninstall -----------------------------------------
#
# Debian's layout by default: the module where nginx loads modules from
# (MODULES_DIR, nginx's --modules-path), mod-http-api-key.conf with its
# load_module line in nginx's modules-available and the enabled link in
# /etc/nginx/modules-enabled (relative, so that it also resolves inside a
# DESTDIR), apikeyctl in $(PREFIX)/bin, apikeyctl.1 in $(PREFIX)/share/man.
# The load_module line is "modules/..." (relative to nginx's prefix, as
# Debian's own module packages write it) when MODULES_DIR is Debian's, else
# the module's absolute path.  Nothing is built as root by make install
# when the build is up to date.

PREFIX        ?= /usr
MODULES_DIR   ?= /usr/lib/nginx/modules
NGINX_SHARE   ?= /usr/share/nginx
NGINX_CONFDIR ?= /etc/nginx
BINDIR        ?= $(PREFIX)/bin
MAN1DIR       ?= $(PREFIX)/share/man/man1
MOD_NAME       = ngx_http_api_key_module.so
MOD_CONF       = mod-http-api-key.conf
MOD_LINK       = 50-mod-http-api-key.conf
MOD_LOAD       = $(if $(filter /usr/lib/nginx/modules,$(MODULES_DIR)),modules/$(MOD_NAME),$(MODULES_DIR)/$(MOD_NAME))
# the link's target, from $(NGINX_CONFDIR)/modules-enabled
MOD_LINK_TARGET = $(shell realpath -m --relative-to='$(NGINX_CONFDIR)/modules-enabled' '$(NGINX_SHARE)/modules-available/$(MOD_CONF)')

install: module cli
	install -d '$(DESTDIR)$(MODULES_DIR)' '$(DESTDIR)$(NGINX_SHARE)/modules-available' \
	    '$(DESTDIR)$(NGINX_CONFDIR)/modules-enabled' '$(DESTDIR)$(BINDIR)' \
	    '$(DESTDIR)$(MAN1DIR)'
	install -m 0644 $(MODULE) '$(DESTDIR)$(MODULES_DIR)/$(MOD_NAME)'
	printf 'load_module %s;\n' '$(MOD_LOAD)' \
	    >'$(DESTDIR)$(NGINX_SHARE)/modules-available/$(MOD_CONF)'
	chmod 0644 '$(DESTDIR)$(NGINX_SHARE)/modules-available/$(MOD_CONF)'
	ln -sfn '$(MOD_LINK_TARGET)' '$(DESTDIR)$(NGINX_CONFDIR)/modules-enabled/$(MOD_LINK)'
	install -m 0755 $(CLI) '$(DESTDIR)$(BINDIR)/apikeyctl'
	install -m 0644 man/apikeyctl.1 '$(DESTDIR)$(MAN1DIR)/apikeyctl.1'

# --- make deb: the Debian packages (debian/) ----------------------------------
#
# Built from a copy of the tree (without build/ and .git) in build/deb/src,
# so that the work tree stays clean; the .deb files land in build/deb.

DEB_DIR = $(BUILD)/deb

deb:
	@sh scripts/deps.sh debhelper dpkg-dev nginx-dev libhiredis-dev libssl-dev
	rm -rf '$(DEB_DIR)'
	mkdir -p '$(DEB_DIR)/src'
	tar -c --exclude=./build --exclude=./.git -f - . | tar -x -C '$(DEB_DIR)/src'
	# (this make's variables must not reach debian/rules' make: MAKEFLAGS)
	cd '$(DEB_DIR)/src' && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES \
	    dpkg-buildpackage -b -us -uc >../build.log 2>&1 \
	    || { tail -40 '$(DEB_DIR)/build.log' >&2; exit 1; }
	@ls -1 '$(DEB_DIR)'/*.deb

deb-lint:
	@sh scripts/deps.sh lintian
	lintian --info --display-info --pedantic '$(DEB_DIR)'/*.changes

uninstall:
	rm -f '$(DESTDIR)$(MODULES_DIR)/$(MOD_NAME)' \
	    '$(DESTDIR)$(NGINX_SHARE)/modules-available/$(MOD_CONF)' \
	    '$(DESTDIR)$(NGINX_CONFDIR)/modules-enabled/$(MOD_LINK)' \
	    '$(DESTDIR)$(BINDIR)/apikeyctl' '$(DESTDIR)$(MAN1DIR)/apikeyctl.1'

# --- benchmarks (bench/, results in bench/RESULTS.md) ----------------------
#
#   make bench          wrk against the alternatives, memory per key, and the
#                       micro-benchmarks (a few minutes; installs what it needs)
#   make bench-micro    Google Benchmark micro-benchmarks of the core, then
#                       the 1M-key cache lookups and a memory read in
#                       interleaved rounds, median and spread
#                       (BENCH_MICRO_ROUNDS, 9; BENCH_MICRO_MIN_TIME;
#                       BENCH_MICRO_FILTER)
#   make bench-revoke   revocation latency over busy keep-alive connections
#   make bench-callgrind   instructions per request, bare nginx against the
#                       module with a cached key, per function (valgrind)
#   make bench-failover   failovers under load: the unavailability window of
#                       keys not cached and the cached keys' errors, Redis
#                       Sentinel (bench/failover-sentinel.sh) then Redis
#                       Cluster (bench/failover-cluster.sh)
#   make bench-cluster-rate   the accuracy of rate_scope=cluster: two nodes,
#                       80/20 load, 30 s per rate (bench/cluster-rate.sh)
#   make bench-scale    the core cache in shared memory, hit by N forked
#                       processes (1 2 4 8): hits/s per process and in total,
#                       scaling against one process, CPU ns per hit
#                       (bench/scale.sh): the module's lock-free lookups,
#                       then every lookup under a mutex (SCALE_MODE=lockfree
#                       or lock: one of them; SCALE_PROCS, SCALE_SECONDS,
#                       SCALE_ROUNDS, SCALE_KEYS, SCALE_WRITER_RATE)
#   make bench-tls      api_key_redis over TLS against plaintext: cache misses
#                       and cached keys (wrk), system calls per miss (strace),
#                       reconnects with and without session reuse, and the
#                       same under callgrind (about 4 minutes; also run by
#                       make bench, after the main table)
#   make bench-miss     the tail of cache misses (p50, p99, p99.9) at 1, 32
#                       and 256 connections, against Redis's own round trip
#                       and the module's read histogram, over 5 runs
#                       (bench/misstail.sh, about 6 minutes; also run by
#                       make bench, after bench-tls)

BENCH_BUILD  = $(BUILD)/bench
BENCH_MICRO  = $(BENCH_BUILD)/micro_bench
BENCH_SIZES  = $(BENCH_BUILD)/ak_sizes
BENCH_REVOKE = $(BENCH_BUILD)/revoke_bench
BENCH_SCALE  = $(BENCH_BUILD)/scale_bench
BENCH_CXX    = $(CXX) -std=c++17 -O2 -g -Wall -Wextra -Werror -Isrc/core

.PHONY: bench-deps bench-micro bench-revoke bench-callgrind bench-tls \
        bench-failover bench-cluster-rate bench-scale bench-miss

bench-deps:
	@sh bench/deps.sh

$(BENCH_MICRO): bench/micro/micro.cpp $(CORE_LIB) src/core/ak_core.h
	@mkdir -p $(dir $@)
	$(BENCH_CXX) -o $@ bench/micro/micro.cpp $(CORE_LIB) -lbenchmark -lpthread -lcrypto

$(BENCH_SIZES): bench/tools/ak_sizes.cpp $(CORE_LIB) src/core/ak_core.h
	@mkdir -p $(dir $@)
	$(BENCH_CXX) -o $@ bench/tools/ak_sizes.cpp $(CORE_LIB) -lcrypto

$(BENCH_REVOKE): bench/revoke/revoke_bench.cpp
	@mkdir -p $(dir $@)
	$(BENCH_CXX) -o $@ bench/revoke/revoke_bench.cpp -lhiredis

$(BENCH_SCALE): bench/scale/scale.cpp $(CORE_LIB) src/core/ak_core.h
	@mkdir -p $(dir $@)
	$(BENCH_CXX) -o $@ bench/scale/scale.cpp $(CORE_LIB) -lcrypto -pthread

bench: bench-deps
	$(MAKE) module $(BENCH_MICRO) $(BENCH_SIZES)
	bash bench/run.sh $(BUILD)
	bash bench/tls.sh $(BUILD)
	bash bench/misstail.sh $(BUILD)

bench-micro: bench-deps
	$(MAKE) $(BENCH_MICRO)
	bash bench/micro.sh $(BUILD)

bench-revoke: bench-deps
	$(MAKE) module $(BENCH_REVOKE)
	bash bench/revoke.sh $(BUILD)

bench-callgrind: bench-deps
	$(MAKE) module
	bash bench/callgrind.sh $(BUILD)

bench-scale:
	$(MAKE) $(BENCH_SCALE)
	bash bench/scale.sh $(BUILD)

bench-tls: bench-deps
	$(MAKE) module
	bash bench/tls.sh $(BUILD)

bench-miss: bench-deps
	$(MAKE) module
	bash bench/misstail.sh $(BUILD)

# Redis failovers: bench/failover-sentinel.sh, then
# bench/failover-cluster.sh; each rewrites its section of bench/RESULTS.md
bench-failover: bench-deps
	$(MAKE) module
	bash bench/failover-sentinel.sh $(BUILD)
	bash bench/failover-cluster.sh $(BUILD)

bench-cluster-rate:
	$(MAKE) module cli
	bash bench/cluster-rate.sh $(BUILD)

# --- faults under load and soak (bench/chaos.pl, bench/soak.pl) ------------
#
#   make chaos          one fault at a time under 64 connections of load
#                       (about 1.5 min): table on stdout and in bench/CHAOS.md
#   make soak           SOAK_MINUTES (10) of steady load with changes and a
#                       reload every minute: bench/soak.csv, bench/soak.png,
#                       the "soak" section of bench/RESULTS.md

SOAK_MINUTES ?= 10

.PHONY: chaos soak

chaos: bench-deps
	$(MAKE) module
	AK_MODULE=$(MODULE) AK_TEST_TIMEOUT=900 perl -I t/lib bench/chaos.pl

soak: bench-deps
	$(MAKE) module
	AK_MODULE=$(MODULE) SOAK_MINUTES=$(SOAK_MINUTES) \
	    AK_TEST_TIMEOUT=$$(( $(SOAK_MINUTES) * 60 + 600 )) \
	    perl -I t/lib bench/soak.pl
