# Thin wrapper around CMake. `make run` and `make test` are the two commands
# the README promises: both install what is missing first.
BUILD ?= build
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CONFIG ?= deploy/recoveryd.yaml

.PHONY: all bootstrap build run test sim sanitize format format-check lint-api bench soak storm fuzz chaos clean install deb

all: build

bootstrap:
	@scripts/bootstrap

$(BUILD)/CMakeCache.txt:
	@scripts/bootstrap
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	@cmake --build $(BUILD) -j $(JOBS)

run: bootstrap build
	@mkdir -p var
	$(BUILD)/bin/recoveryd --config $(CONFIG)

test: bootstrap build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 300

# The deterministic simulation over many seeds (docs/testing.md):
# make sim SEEDS=5000 [SEED=1]; one seed's trace: make sim SEED=42 SEEDS=1 VERBOSE=1
SEEDS ?= 1000
SEED ?= 1
sim: build
	DSIM_VERBOSE=$(VERBOSE) $(BUILD)/bin/dsim $(SEED) $(SEEDS)

# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer. Its
# tests' time limits are 3x (tests/CMakeLists.txt; RD_TEST_TIME_FACTOR
# overrides it).
sanitize:
	@scripts/bootstrap
	cmake -S . -B build-san -DCMAKE_BUILD_TYPE=Debug -DSANITIZE=address,undefined $(CMAKE_FLAGS)
	cmake --build build-san -j $(JOBS)
	cd build-san && ctest --output-on-failure -j $(JOBS) --timeout 600

# The daemon, its plugins, policies, config, systemd unit and man page, the
# plugin header and recoveryd-plugin.pc (cmake/RecoverydInstall.cmake), and
# the client library and recoveryctl (api/c), under PREFIX (DESTDIR for
# staging). The config and the unit are made for the prefix given here.
PREFIX ?= /usr/local
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix $(PREFIX)

# The Debian package (cmake/RecoverydPackage.cmake): a Release build for
# prefix /usr in build-deb, without the tests, packed by CPack into
# build-deb/recoveryd_VERSION-1_ARCH.deb. Install it with
#   apt-get install ./build-deb/recoveryd_*.deb
deb:
	@scripts/bootstrap
	cmake -S . -B build-deb -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DRD_TESTS=OFF $(CMAKE_FLAGS)
	cmake --build build-deb -j $(JOBS)
	cd build-deb && cpack -G DEB
	@ls build-deb/recoveryd_*.deb

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

format:
	clang-format -i $(FORMAT_FILES)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_FILES) && echo "format-check: ok"

# api/openapi.yaml through Redocly's linter (rules and exceptions in
# redocly.yaml); node and npm come from Debian when there is no npx.
lint-api:
	@scripts/bootstrap --lint
	@scripts/lint-api

bench:
	@scripts/bootstrap --bench
	tests/bench/heartbeats/run.sh

# A chaos run (tests/chaos, docs/chaos.md): DURATION seconds of faults drawn
# from SEED (a new seed each run unless given; a failing run prints its
# own), then the checker. Results in CHAOS_OUT (result.json, run.svg,
# history.jsonl, logs). `make chaos SEED=1234 DURATION=600` replays a schedule.
SEED ?=
DURATION ?= 120
CHAOS_AGENTS ?= 4
CHAOS_RATE ?= 3
CHAOS_REPLICAS ?= 3
CHAOS_NET ?= proxy
CHAOS_OUT ?= $(BUILD)/chaos
chaos: build
	RECOVERYD_BINARY=$(abspath $(BUILD))/bin/recoveryd python3 tests/chaos/run.py \
		$(if $(SEED),--seed $(SEED)) --duration $(DURATION) \
		--agents $(CHAOS_AGENTS) --rate $(CHAOS_RATE) --replicas $(CHAOS_REPLICAS) \
		--net $(CHAOS_NET) --out $(CHAOS_OUT)
# An hour (DURATION seconds) of a heartbeating fleet; PASS/FAIL on the slope
# of the engine's RSS, descriptors, data directory and heartbeat p99
# (tests/bench/soak/run.sh, docs/benchmarks.md "Soak"). With TASKS=N (and
# CKPT_MS, STEPS, RETENTION) the fleet also runs N tasks that checkpoint,
# complete and are replaced, and the task table, the raft log, pruning and
# completions are checked too.
# (DURATION given on the command line or in the environment wins over the
# hour; the chaos target's own default does not apply here.)
SOAK_DURATION = $(if $(filter-out file default undefined,$(origin DURATION)),$(DURATION),3600)
soak:
	@scripts/bootstrap --bench
	DURATION=$(SOAK_DURATION) tests/bench/soak/run.sh

# The failure storm of issue 16: 10,000 agents, 100,000 tasks, three
# replicas, 20% crash then 30% partitioned (tests/bench/scale/storm.sh,
# docs/benchmarks.md "Failure storm"; AGENTS, TASKS, ... from the environment).
storm:
	@scripts/bootstrap --bench
	tests/bench/scale/storm.sh

# The libFuzzer targets of tests/fuzz/ (clang, build-fuzz), FUZZ_TIME
# seconds each (docs/fuzzing.md).
FUZZ_TIME ?= 60
fuzz:
	@scripts/bootstrap --fuzz
	FUZZ_TIME=$(FUZZ_TIME) scripts/fuzz

clean:
	rm -rf $(BUILD) build-san build-fuzz build-deb
