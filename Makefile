# MMSA-C build. `make` builds the library and the programs into bin/;
# `make check` runs every test; `make deps` installs the Debian packages;
# `make asan` builds with AddressSanitizer + UBSan and runs the tests.

BUILD   ?= build
BIN     ?= bin
CC      := mpicc
CXX     := mpicxx
PKGS    := hdf5-openmpi yaml-0.1 openbabel-3 cairo
SAN     ?= 0
OPT     ?= -O2

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN     := -Wall -Wextra -Werror
CPPFLAGS := -Iinclude -D_GNU_SOURCE $(PKG_CFLAGS)
CFLAGS   := -std=c11 $(OPT) -g $(WARN) -fno-strict-aliasing
CXXFLAGS := -std=c++17 $(OPT) -g $(WARN) -Wno-deprecated-declarations
LDLIBS   := $(PKG_LIBS) -lblis -lscalapack-openmpi -lz -lstdc++ -lm
ifeq ($(FUZZ),1)
  # libFuzzer build (make fuzz): the library instrumented for coverage, ASan and UBSan;
  # only the fuzz targets link the fuzzer runtime (tests/fuzz/README in tests/README.md).
  export OMPI_CC := clang
  export OMPI_CXX := clang++
  FUZZFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  CFLAGS   += $(FUZZFLAGS)
  CXXFLAGS += $(FUZZFLAGS)
endif
ifeq ($(SAN),1)
  SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  CFLAGS   += $(SANFLAGS)
  CXXFLAGS += $(SANFLAGS)
  LDFLAGS  += $(SANFLAGS)
endif

# Kernels written as plain row loops get the loop vectoriser: GCC 12 at -O2 vectorises
# only loops whose trip count is a known multiple of the vector width. Baseline x86-64
# SIMD (the default build runs on any x86-64). Neither flag changes a value: float sums
# are never reassociated (no -ffast-math), so no loop that reduces is vectorised, and
# -fno-trapping-math only lets a select compute both sides (nothing reads FP exception
# flags).
VEC_CFLAGS := -ftree-vectorize -fvect-cost-model=dynamic -fno-trapping-math
VEC_SRC    := src/nn/graph_ops.c src/nn/conv.c src/nn/norm.c src/nn/ops_basic.c src/nn/dropout.c src/core/rng.c \
              src/nn/cfconv.c src/core/optim.c
ifneq ($(FUZZ),1)
$(VEC_SRC:%.c=$(BUILD)/%.o): CFLAGS += $(VEC_CFLAGS)
# im2col copies runs of kw * Cin floats (9 in the first layer): loops, not memcpy calls.
$(BUILD)/src/nn/conv.o: CFLAGS += -fno-tree-loop-distribute-patterns
endif
# The optimiser's update calls sqrtf on values >= 0: errno is never set, so dropping it
# only lets the loop vectorise.
$(BUILD)/src/core/optim.o: CFLAGS += -fno-math-errno
# The AMX bf16 kernel: only called after blas.c has found AMX-BF16 at run time, so the
# build still runs on any x86-64.
$(BUILD)/src/core/gemm_amx.o: CFLAGS += -mamx-tile -mamx-bf16 -mavx512f -mavx512bw -mavx512bf16
# The float32 AVX-512 kernel: likewise only called after blas.c has found AVX-512F.
$(BUILD)/src/core/gemm_avx512.o: CFLAGS += -mavx512f

LIB_C    := $(wildcard src/core/*.c src/nn/*.c src/chem/*.c src/data/*.c src/dist/*.c src/model/*/*.c)
LIB_CXX  := $(wildcard src/chem/*.cpp)
LIB_OBJ  := $(LIB_C:%.c=$(BUILD)/%.o) $(LIB_CXX:%.cpp=$(BUILD)/%.o)
LIB      := $(BUILD)/libmmsa.a

APPS     := $(patsubst src/apps/%.c,$(BIN)/%,$(wildcard src/apps/*.c))
TEST_SRC := $(wildcard tests/test_*.c)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_LIB := $(BUILD)/tests/gradcheck.o $(BUILD)/tests/testutil.o
BENCH    := $(patsubst benchmarks/%.c,$(BUILD)/benchmarks/%,$(wildcard benchmarks/bench_*.c))

DEB_PKGS := libopenmpi-dev openmpi-bin libscalapack-openmpi-dev libblis-dev \
            libhdf5-openmpi-dev hdf5-tools libopenbabel-dev openbabel libyaml-dev \
            libcmocka-dev pkg-config make gcc g++ python3 python3-numpy python3-h5py \
            python3-rdkit python3-sklearn zlib1g-dev libcairo2-dev gnuplot-nox

.PHONY: all lib apps tests bench bench-only check check-only check-slurm asan demo deps clean \
        fuzz fuzz-deps fuzz-build fuzz-only fuzz-smoke
all: apps

lib: $(LIB)
apps: $(APPS)
tests: $(TESTS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN)/%: $(BUILD)/src/apps/%.o $(LIB)
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_LIB) $(LIB)
	$(CC) $(LDFLAGS) $< $(TEST_LIB) $(LIB) $(LDLIBS) -lcmocka -o $@

$(BUILD)/benchmarks/%: $(BUILD)/benchmarks/%.o $(LIB)
	$(CC) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

# Tests: every tests/test_*.c is a cmocka program; tests/run_tests.sh knows which
# ones run under mpirun and with how many ranks, and prints the summary line last.
# check and demo install the packages first, then re-run make so that the
# pkg-config flags are read after the packages exist.
check: deps
	@$(MAKE) --no-print-directory check-only

check-only: $(TESTS) $(APPS)
	@BUILD=$(BUILD) BIN=$(BIN) sh tests/run_tests.sh

# The Slurm script tested for real on a single-node Slurm started by the script (root;
# it installs slurmctld, slurmd, slurm-client and munge itself). Not part of make check.
check-slurm: deps
	@$(MAKE) --no-print-directory apps
	@BIN=$(BIN) bash jobs/test_slurm.sh

asan: deps
	@$(MAKE) --no-print-directory SAN=1 OPT=-O1 BUILD=build-asan BIN=build-asan/bin check-only

bench: deps
	@$(MAKE) --no-print-directory bench-only

# bench_train needs a dataset (the demo's, after `make demo`, unless BENCH_DATA names
# another); bench_spectrum_embed is the embedding tool of benchmarks/spectrum_probe.py
# (it needs a trained checkpoint), so bench-only names it and moves on.
BENCH_DATA ?= demo-out/demo.h5
bench-only: $(BENCH)
	@for b in $(BENCH); do \
	    args=""; \
	    case $$b in \
	    */bench_spectrum_embed) echo "== $$b: not run (the tool of benchmarks/spectrum_probe.py; needs --ckpt)"; continue ;; \
	    */bench_train) if [ ! -f "$(BENCH_DATA)" ]; then \
	            echo "== $$b: skipped, no dataset $(BENCH_DATA) (run make demo, or make bench-only BENCH_DATA=FILE)"; continue; fi; \
	        args="--dataset $(BENCH_DATA) --job configs/tiny.yaml --steps 5" ;; \
	    esac; \
	    echo "== $$b $$args"; BLIS_NUM_THREADS=1 $$b $$args || exit 1; \
	done

demo: deps
	@$(MAKE) --no-print-directory apps
	@BIN=$(BIN) sh configs/demo.sh

# Fuzzing (tests/README.md): libFuzzer targets tests/fuzz/fuzz_*.c, built with clang into
# FUZZ_BUILD, each run for FUZZ_S seconds from its committed seed corpus
# tests/fuzz/corpus/<target> plus a scratch corpus under FUZZ_BUILD (new inputs land there,
# crashes in FUZZ_BUILD/crashes). One process at a time. fuzz-smoke replays the committed
# corpus and the crash inputs of tests/fuzz/regress through every target (seconds).
FUZZ_BUILD    ?= build-fuzz
FUZZ_S        ?= 60
FUZZ_TARGETS  ?= $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_DEB_PKGS := clang libclang-rt-14-dev
FUZZ_BINS     := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz/%)

fuzz: deps fuzz-deps
	@$(MAKE) --no-print-directory fuzz-only

fuzz-build:
	@$(MAKE) --no-print-directory FUZZ=1 OPT=-O1 BUILD=$(FUZZ_BUILD) BIN=$(FUZZ_BUILD)/bin $(FUZZ_BINS)

fuzz-only: fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_S=$(FUZZ_S) sh tests/fuzz/run_fuzz.sh run $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) sh tests/fuzz/run_fuzz.sh smoke $(FUZZ_TARGETS)

$(FUZZ_BUILD)/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz_common.h tests/fuzz/fuzz_chem.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/fuzz $(CFLAGS) -fsanitize=fuzzer -c $< -o $@.o
	$(CXX) $(CXXFLAGS) -fsanitize=fuzzer $@.o $(LIB) $(LDLIBS) -o $@

fuzz-deps:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(FUZZ_DEB_PKGS)"

# Installs the Debian packages once; quick when they are already there.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: all Debian packages present"; fi

clean:
	rm -rf build build-asan bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
