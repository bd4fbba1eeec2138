# ngx_http_api_key_module: build, test, run.
#
#   make          build the module (build/ngx_http_api_key_module.so) and apikeyctl
#   make run      start redis-server + nginx with the module on loopback, demo key
#   make test     unit tests (GoogleTest) + integration tests (prove t/)
#   make test-asan   the same, everything built with ASan + UBSan in
#                 build/asan, the module loaded into the stock nginx with the
#                 sanitizer runtimes preloaded (README: Sanitizer builds)
#   make bench    benchmarks (wrk)
#
# NGINX_SRC selects the nginx build tree (default: Debian's nginx-dev).

NGINX_SRC  ?= /usr/share/nginx/src
BUILD      ?= $(CURDIR)/build
NGX_BUILD   = $(BUILD)/nginx-src
MODULE      = $(BUILD)/ngx_http_api_key_module.so
CXX        ?= g++
CXXFLAGS   ?= -O2 -g
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

CORE_SRCS  := $(wildcard src/core/*.cpp)
CORE_OBJS  := $(patsubst src/core/%.cpp,$(BUILD)/core/%.o,$(CORE_SRCS))
UNIT_SRCS  := $(wildcard test/unit/*.cpp)
UNIT_OBJS  := $(patsubst test/unit/%.cpp,$(BUILD)/unit/%.o,$(UNIT_SRCS))
GLUE_SRCS  := $(wildcard src/*.c src/*.h) $(CORE_SRCS) $(wildcard src/core/*.h src/core/*.hpp) config
CLI_SRCS   := $(wildcard src/cli/*.cpp)
CLI_OBJS   := $(patsubst src/cli/%.cpp,$(BUILD)/cli/%.o,$(CLI_SRCS))
CLI        = $(BUILD)/apikeyctl

.PHONY: all module cli deps unit integration test test-asan run bench clean

all: module cli

deps:
	@sh scripts/deps.sh

# --- the nginx module -------------------------------------------------------

# the sanitizer flags a build directory was made with: a change rebuilds
FLAGS_STAMP = $(BUILD)/.sanitize

$(FLAGS_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo '$(SAN_FLAGS)' | cmp -s - $@ || echo '$(SAN_FLAGS)' >$@

.PHONY: FORCE
FORCE:

$(NGX_BUILD)/.configured: config $(FLAGS_STAMP)
	rm -rf $(NGX_BUILD)
	mkdir -p $(BUILD)
	cp -r $(NGINX_SRC) $(NGX_BUILD)
	cd $(NGX_BUILD) && AK_CC_OPT="$(SAN_FLAGS)" AK_LD_OPT="$(SAN_FLAGS)" \
	    sh $(CURDIR)/scripts/configure-nginx.sh $(CURDIR)
	touch $@

$(MODULE): $(NGX_BUILD)/.configured $(GLUE_SRCS)
	$(MAKE) -C $(NGX_BUILD) -f objs/Makefile modules
	cp $(NGX_BUILD)/objs/ngx_http_api_key_module.so $@.tmp
	mv -f $@.tmp $@   # a new inode: a running nginx keeps its mapping

module: $(MODULE)

# --- apikeyctl, the ops CLI (synchronous hiredis is fine here) -------------

$(BUILD)/cli/%.o: src/cli/%.cpp $(wildcard src/core/*.h src/core/*.hpp src/cli/*.hpp) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(AK_CXXFLAGS) -Isrc/core -Isrc/cli -c -o $@ $<

$(CLI): $(CLI_OBJS) $(CORE_OBJS)
	$(CXX) $(AK_LDFLAGS) -o $@ $^ -lhiredis -lcrypto

cli: $(CLI)

# --- the C++ core and its unit tests ----------------------------------------

$(BUILD)/core/%.o: src/core/%.cpp $(wildcard src/core/*.h src/core/*.hpp) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(AK_CXXFLAGS) -Isrc/core -c -o $@ $<

$(BUILD)/unit/%.o: test/unit/%.cpp $(wildcard src/core/*.h src/core/*.hpp test/unit/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(AK_CXXFLAGS) -Isrc/core -c -o $@ $<

$(BUILD)/unit_tests: $(CORE_OBJS) $(UNIT_OBJS)
	$(CXX) $(AK_LDFLAGS) -o $@ $^ -lgtest -lgtest_main -lcrypto -pthread

# UBSan reports make the unit tests fail (ASan's always do)
unit: $(BUILD)/unit_tests
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $(BUILD)/unit_tests --gtest_brief=1

# --- integration tests (real nginx, real redis-server) ----------------------

# With SANITIZE set, t/lib/ApiKeyTest.pm preloads the sanitizer runtimes
# into nginx (AK_SANITIZE) and fails a test file on any report.
integration: module cli
	AK_MODULE=$(MODULE) AK_CLI=$(CLI) AK_BUILD=$(BUILD) \
	    $(if $(SAN_FLAGS),AK_SANITIZE="$(SANITIZE)" AK_CC="$(CC)") \
	    prove -I t/lib -r t/

test: deps
	$(MAKE) unit
	$(MAKE) integration

# Everything again under AddressSanitizer + UndefinedBehaviorSanitizer, in
# build/asan (the normal build is untouched).
test-asan: deps
	$(MAKE) BUILD=$(ASAN_BUILD) SANITIZE=address,undefined CXXFLAGS="-O1 -g" unit
	$(MAKE) BUILD=$(ASAN_BUILD) SANITIZE=address,undefined CXXFLAGS="-O1 -g" integration

run: deps
	$(MAKE) module cli
	sh scripts/run.sh $(BUILD)

clean:
	rm -rf $(BUILD)

# --- benchmarks (bench/, results in bench/RESULTS.md) ----------------------
#
#   make bench          wrk against the alternatives, memory per key, and the
#                       micro-benchmarks (a few minutes; installs what it needs)
#   make bench-micro    Google Benchmark micro-benchmarks of the core
#   make bench-revoke   revocation latency over busy keep-alive connections
#   make bench-callgrind   instructions per request, bare nginx against the
#                       module with a cached key, per function (valgrind)

BENCH_BUILD  = $(BUILD)/bench
BENCH_MICRO  = $(BENCH_BUILD)/micro_bench
BENCH_SIZES  = $(BENCH_BUILD)/ak_sizes
BENCH_REVOKE = $(BENCH_BUILD)/revoke_bench
BENCH_CXX    = $(CXX) -std=c++17 -O2 -g -Wall -Wextra -Werror -Isrc/core

.PHONY: bench-deps bench-micro bench-revoke bench-callgrind

bench-deps:
	@sh bench/deps.sh

$(BENCH_MICRO): bench/micro/micro.cpp $(CORE_OBJS) src/core/ak_core.h
	@mkdir -p $(dir $@)
	$(BENCH_CXX) -o $@ bench/micro/micro.cpp $(CORE_OBJS) -lbenchmark -lpthread -lcrypto

$(BENCH_SIZES): bench/tools/ak_sizes.cpp $(CORE_OBJS) src/core/ak_core.h
	@mkdir -p $(dir $@)
	$(BENCH_CXX) -o $@ bench/tools/ak_sizes.cpp $(CORE_OBJS) -lcrypto

$(BENCH_REVOKE): bench/revoke/revoke_bench.cpp
	@mkdir -p $(dir $@)
	$(BENCH_CXX) -o $@ bench/revoke/revoke_bench.cpp -lhiredis

bench: bench-deps
	$(MAKE) module $(BENCH_MICRO) $(BENCH_SIZES)
	bash bench/run.sh $(BUILD)

bench-micro: bench-deps
	$(MAKE) $(BENCH_MICRO)
	bash bench/micro.sh $(BUILD)

bench-revoke: bench-deps
	$(MAKE) module $(BENCH_REVOKE)
	bash bench/revoke.sh $(BUILD)

bench-callgrind: bench-deps
	$(MAKE) module
	bash bench/callgrind.sh $(BUILD)
