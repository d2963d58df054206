# maas — build entry point.
#
#   make            release build: build/maas
#   make debug      AddressSanitizer + UBSan build (what the unit tests use)
#   make test       install missing packages, build, run every test
#   make run        install missing packages, build, start the demo
#   make demo-model retrain the demo model data/demo-kjv.gguf (maas train, ~35 min)
#   make unit       build the unit tests (ASan + UBSan) into build/dbg/tests
#   make tsan       build the engine, server and ledger tests under ThreadSanitizer
#                   into build/tsan/tests (run by `make test`)
#   make fuzz       build the libFuzzer targets (clang), replay each corpus and
#                   fuzz each target for FUZZ_SECONDS (default 20)
#   make bench      build the benchmarks
#   make soak       the serving soak under SIGKILLs for SOAK_SECONDS (default 600)
#                   with SOAK_KILLS restarts (default 40); `make test` runs a 60 s one
#
# Layout: one module per folder under src/, layered bottom-up in LAYERS. Each
# module becomes an archive; a unit test tests/unit/<module>_*.c links its
# module and every module below it, so a module can be tested before the ones
# above it exist. Files named *_avx2.c / *_avxvnni.c / *_avx512.c / *_amx.c are compiled
# with that instruction set only; everything else stays baseline x86-64 and the right
# kernel is chosen at run time.

.DEFAULT_GOAL := all
LAYERS := core template gguf kernels tokenizer grammar sample model train engine store billing server cli

CC      ?= cc
CSTD    := -std=gnu11
WARN    := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wvla -Wno-format-truncation
INC     := -Isrc $(shell pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
LIBS    := -lm -lpthread -lpcre2-8 -licuuc -licudata -lsqlite3 -lsodium -lmicrohttpd -ljansson -lpq

REL_FLAGS := -O2 -g -DNDEBUG
DBG_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
TSAN_FLAGS := -O1 -g -fsanitize=thread -fno-omit-frame-pointer
FUZZ_FLAGS := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -Wno-unknown-warning-option

AVX2_FLAGS   := -mavx2 -mfma -mf16c -mbmi2
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx2 -mfma -mf16c -mbmi2
AVXVNNI_FLAGS := -mavx2 -mfma -mf16c -mbmi2 -mavxvnni
AMX_FLAGS := $(AVX512_FLAGS) -mamx-tile -mamx-int8 -mamx-bf16

# By the end of the file's name only (gemm_avx512.c, not any path holding "_avx").
isa_flags = $(if $(filter %_amx.c,$(notdir $(1))),$(AMX_FLAGS),$(if $(filter %_avx512.c,$(notdir $(1))),$(AVX512_FLAGS),\
	$(if $(filter %_avxvnni.c,$(notdir $(1))),$(AVXVNNI_FLAGS),$(if $(filter %_avx2.c,$(notdir $(1))),$(AVX2_FLAGS),))))

mod_srcs = $(wildcard src/$(1)/*.c)
MODULES  := $(foreach m,$(LAYERS),$(if $(call mod_srcs,$(m)),$(m)))
# modules strictly below and including $(1), in link order (top first)
below_incl = $(call reverse,$(wordlist 1,$(call index_of,$(1),$(LAYERS)),$(LAYERS)))
index_of = $(words $(call upto,$(1),$(2)))
upto = $(if $(filter $(1),$(firstword $(2))),$(1),$(firstword $(2)) $(call upto,$(1),$(wordlist 2,$(words $(2)),$(2))))
reverse = $(if $(1),$(call reverse,$(wordlist 2,$(words $(1)),$(1))) $(firstword $(1)))

# ---- per-configuration rules -------------------------------------------------
# $(1) = config name (rel, dbg, tsan, fuzz), $(2) = compiler, $(3) = flags
define CONFIG
build/$(1)/obj/%.o: %.c
	@mkdir -p $$(dir $$@)
	$(2) $(CSTD) $(WARN) $(INC) $(3) $$(call isa_flags,$$<) -MMD -MP -c $$< -o $$@
endef

# Generated sources compiled into a module: the web console's files (web/*)
# become a C table in the server (src/server/console.c serves them).
WEB_FILES  := $(sort $(wildcard web/*))
GEN_server := build/gen/console_web.c
build/gen/console_web.c: $(WEB_FILES) scripts/embed_web.sh
	sh scripts/embed_web.sh $@ $(WEB_FILES)

# $(1) = config, $(2) = module
define ARCHIVE
build/$(1)/lib$(2).a: $(patsubst %.c,build/$(1)/obj/%.o,$(call mod_srcs,$(2)) $(GEN_$(2)))
	@rm -f $$@
	ar rcs $$@ $$^
endef

$(eval $(call CONFIG,rel,$(CC),$(REL_FLAGS)))
$(eval $(call CONFIG,dbg,$(CC),$(DBG_FLAGS)))
$(eval $(call CONFIG,tsan,$(CC),$(TSAN_FLAGS)))
$(eval $(call CONFIG,fuzz,clang,$(FUZZ_FLAGS)))
$(foreach c,rel dbg tsan fuzz,$(foreach m,$(MODULES),$(eval $(call ARCHIVE,$(c),$(m)))))
.SECONDEXPANSION:

libs_for = $(foreach m,$(call below_incl,$(2)),$(if $(call mod_srcs,$(m)),build/$(1)/lib$(m).a))

# ---- the program ---------------------------------------------------------------
ALL_REL_LIBS := $(foreach m,$(call reverse,$(MODULES)),build/rel/lib$(m).a)
ALL_DBG_LIBS := $(foreach m,$(call reverse,$(MODULES)),build/dbg/lib$(m).a)

.PHONY: all debug test run fuzz fuzz-build bench clean setup unit tsan soak screenshots demo-model
all: build/maas

build/maas: $(ALL_REL_LIBS)
	$(CC) $(REL_FLAGS) -o $@ -Wl,--start-group $^ -Wl,--end-group $(LIBS)

build/maas-debug: $(ALL_DBG_LIBS)
	$(CC) $(DBG_FLAGS) -o $@ -Wl,--start-group $^ -Wl,--end-group $(LIBS)

debug: build/maas-debug

# ---- unit tests ------------------------------------------------------------------
UNIT_SRCS := $(wildcard tests/unit/*_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,build/dbg/tests/%,$(UNIT_SRCS))
test_module = $(firstword $(subst _, ,$(notdir $(1))))

build/dbg/tests/%: tests/unit/%.c tests/unit/test.h $$(call libs_for,dbg,$$(call test_module,$$*))
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(INC) -Itests/unit $(DBG_FLAGS) -MMD -MP -MF $@.d -o $@ $< -Wl,--start-group $(filter %.a,$^) -Wl,--end-group $(LIBS)

unit: $(UNIT_BINS)

# The threaded modules' tests again under ThreadSanitizer: the engine (its
# worker thread and the scheduler), the server (HTTP threads, jobs, sweeps)
# and the ledger writer thread. (billing_pg forks after starting threads,
# which TSan cannot follow.)
TSAN_SRCS := $(wildcard tests/unit/engine_*.c tests/unit/server_*.c tests/unit/billing_ledger.c tests/unit/billing_crash.c \
	tests/unit/core_basics.c)
TSAN_BINS := $(patsubst tests/unit/%.c,build/tsan/tests/%,$(TSAN_SRCS))

build/tsan/tests/%: tests/unit/%.c tests/unit/test.h $$(call libs_for,tsan,$$(call test_module,$$*))
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(INC) -Itests/unit $(TSAN_FLAGS) -MMD -MP -MF $@.d -o $@ $< -Wl,--start-group $(filter %.a,$^) -Wl,--end-group $(LIBS)

tsan: $(TSAN_BINS)

# ---- fuzz targets ------------------------------------------------------------------
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
# fuzz_<module>_<what>.c links <module> and below
fuzz_module = $(word 2,$(subst _, ,$(notdir $(1))))

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $$(call libs_for,fuzz,$$(call fuzz_module,fuzz_$$*))
	@mkdir -p $(dir $@)
	clang $(CSTD) $(WARN) -Wno-unknown-warning-option $(INC) -O1 -g -fsanitize=fuzzer,address,undefined -o $@ $< -Wl,--start-group $(filter %.a,$^) -Wl,--end-group $(LIBS)

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	scripts/run_tests.sh fuzz

# ---- benchmarks --------------------------------------------------------------------
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(patsubst bench/%.c,build/bench/%,$(BENCH_SRCS))
build/bench/%: bench/%.c $(ALL_REL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(INC) $(REL_FLAGS) -march=native -o $@ $< -Wl,--start-group $(ALL_REL_LIBS) -Wl,--end-group $(LIBS)
bench: build/maas $(BENCH_BINS)

# ---- one-command entry points ---------------------------------------------------------
setup:
	@scripts/setup.sh

test: setup
	$(MAKE) -j$$(nproc) build/maas unit tsan fuzz-build
	scripts/run_tests.sh

run: setup
	$(MAKE) -j$$(nproc) build/maas
	scripts/demo.sh

# Retrains data/demo-kjv.gguf, the model `make run` serves (about 35 minutes on 2 cores).
demo-model: setup
	$(MAKE) -j$$(nproc) build/maas
	scripts/demo_model.sh

soak: build/maas
	SOAK_SECONDS=$${SOAK_SECONDS:-600} SOAK_KILLS=$${SOAK_KILLS:-40} bash tests/integration/serve_soak.sh

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)

# The web console's screenshots in docs/, made by the browser test's chromium.
screenshots: build/maas
	mkdir -p docs
	SHOTS=$(CURDIR)/docs bash tests/integration/console_browser.sh
