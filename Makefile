# paykit: build, test, demo, bench.
#   make            build paykit.core for Lua 5.4 and for LuaJIT (build/<lua>/paykit/core.so)
#   make test       install missing Debian packages (as root), build, run every spec suite
#   make demo       the demo purchase flow against the local sandbox
#   make bench      provider calls and transport next to wrk (BENCH_QUICK=1: a short smoke run),
#                   then the journal's cost per payment and paykit.loop's tick overrun
#   make install    install for Lua 5.4 with LuaRocks (offline: --deps-mode=none; TREE=dir for a tree)
#   make install-luajit   the same rock for LuaJIT 2.1 (luarocks --lua-version=5.1)
#   make dist       the release tarball build/dist/paykit-$(VERSION).tar.gz (DIST_REF, default HEAD)
#                   and its source rock build/dist/paykit-$(VERSION)-1.src.rock (luarocks pack)
#   make docs       the API reference (LDoc) in docs/api/
#   make deps       install the Debian packages paykit needs (as root)
#   make fuzz       libFuzzer + ASan + UBSan targets for the C parsers, each run FUZZ_TIME
#                   seconds (default 4: ~25 s in all); by hand: make fuzz FUZZ_TIME=600

CC      ?= cc
V       ?= 0
Q        = $(if $(filter 1,$(V)),,@)   # make V=1 shows the compiler command
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra
PKGCONF ?= pkg-config

DEP_CFLAGS := $(shell $(PKGCONF) --cflags libcurl openssl 2>/dev/null)
DEP_LIBS   := $(shell $(PKGCONF) --libs libcurl openssl 2>/dev/null) -lhttp_parser -lhiredis
LUA54_CFLAGS  := $(shell $(PKGCONF) --cflags lua5.4 2>/dev/null)
LUAJIT_CFLAGS := $(shell $(PKGCONF) --cflags luajit 2>/dev/null)

SRC := $(sort $(wildcard csrc/*.c))
HDR := $(wildcard csrc/*.h)

CORE54 = build/lua5.4/paykit/core.so
COREJIT = build/luajit/paykit/core.so

# Debian packages: building, testing, the sandbox (nginx + its Lua module), benchmarking.
DEB_PKGS = build-essential pkg-config lua5.4 liblua5.4-dev luajit2 libluajit2-5.1-dev \
  lua-cjson lua-busted luarocks nginx libnginx-mod-http-lua lua-resty-core \
  libcurl4-openssl-dev libssl-dev libhttp-parser-dev curl wrk valgrind openssl chromium lua-ldoc lua-discount \
  lua-socket lua-sec lua5.1 lua-curl clang-14 libclang-rt-14-dev libhiredis-dev redis-server \
  lua-luv lua-cqueues lua-check strace
# lua-discount: LDoc's Markdown (config.ld format = "discount").
# lua-socket: a listener with a full backlog in the connect-timeout specs; lua-sec, lua5.1 and
# lua-curl: the other Lua HTTP clients the benchmark compares with. clang-14 and
# libclang-rt-14-dev: libFuzzer and the sanitizers for make fuzz. libhiredis-dev: the Redis
# client of the C core (csrc/redis.c); redis-server: the store and journal specs start one.
# lua-luv, lua-cqueues: the event loops paykit.loop.luv and paykit.loop.cqueues attach to (loop,
# loop_adapters, examples, readme and docs specs). lua-check: luacheck, which spec/run runs.
# strace: loop_spec reads the poll timeouts of one loop step.
# node and npm (browser specs) come from Debian's nodejs/npm when the machine has no node.
NODE_PKGS = nodejs npm

VERSION := $(shell sed -n 's/^\#define PAYKIT_VERSION "\(.*\)"/\1/p' csrc/paykit.h)
ROCKSPEC ?= rockspec/paykit-$(VERSION)-1.rockspec
TREE     ?=
DIST_REF ?= HEAD

.PHONY: lint all build test demo bench deps clean valgrind docs install install-luajit dist fuzz fuzz-build
all: build
build: $(CORE54) $(COREJIT)

# Compile into a temporary file, then rename: a concurrent reader never loads half a module.
$(CORE54): $(SRC) $(HDR) Makefile
	@mkdir -p $(@D)
	@echo "  CC  $@"
	$(Q)$(CC) $(CFLAGS) $(WARN) -fPIC -shared $(LUA54_CFLAGS) $(DEP_CFLAGS) -o $@.tmp.$$$$ $(SRC) $(DEP_LIBS) && mv -f $@.tmp.$$$$ $@

$(COREJIT): $(SRC) $(HDR) Makefile
	@mkdir -p $(@D)
	@echo "  CC  $@"
	$(Q)$(CC) $(CFLAGS) $(WARN) -fPIC -shared $(LUAJIT_CFLAGS) $(DEP_CFLAGS) -o $@.tmp.$$$$ $(SRC) $(DEP_LIBS) && mv -f $@.tmp.$$$$ $@

deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v node >/dev/null 2>&1 || missing="$$missing $(NODE_PKGS)"; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; else \
	if [ "$$(id -u)" != 0 ]; then echo "deps: missing:$$missing (run 'make deps' as root)"; exit 1; fi; \
	echo "deps: installing$$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	@# Debian's LuaRocks defaults to Lua 5.1; paykit's `luarocks make` is for Lua 5.4.
	@if [ "$$(id -u)" = 0 ] && [ "$$(luarocks config lua_version 2>/dev/null)" != 5.4 ]; then \
	  luarocks config --scope system lua_version 5.4 >/dev/null && echo "deps: LuaRocks now defaults to Lua 5.4"; fi

test: deps
	@$(MAKE) --no-print-directory build
	@bash spec/run

# luacheck (Debian's lua-check) over the Lua sources, with .luacheckrc; spec/run runs it too.
lint:
	luacheck lua spec examples bench

valgrind: build
	bash spec/run --valgrind

demo: deps
	@$(MAKE) --no-print-directory build
	@bash examples/demo/run

bench: deps
	@$(MAKE) --no-print-directory build
	@BENCH_QUICK=$(BENCH_QUICK) bash bench/run

# LuaRocks builds paykit.core under build/rock/ (rockspec/core.mk), never into csrc/.
install: deps
	luarocks --lua-version=5.4 $(if $(TREE),--tree=$(TREE)) make $(ROCKSPEC) --deps-mode=none

install-luajit: deps
	luarocks --lua-version=5.1 $(if $(TREE),--tree=$(TREE)) make $(ROCKSPEC) --deps-mode=none

# The source of the versioned rockspec: git archive of DIST_REF (the release tag vX.Y.Z when
# releasing; committed files only). The rockspec names the tarball relative to the checkout
# (file://build/dist/...); luarocks pack fetches from a temporary directory, so dist packs a
# copy of the rockspec whose URL is made absolute.
dist:
	@mkdir -p build/dist
	git archive --format=tar.gz --prefix=paykit-$(VERSION)/ -o build/dist/paykit-$(VERSION).tar.gz $(DIST_REF)
	sed 's|url = "file://build/dist/|url = "file://$(CURDIR)/build/dist/|' $(ROCKSPEC) > build/dist/$(notdir $(ROCKSPEC))
	cd build/dist && rm -f paykit-$(VERSION)-1.src.rock && luarocks pack $(notdir $(ROCKSPEC))

docs:
	@command -v ldoc >/dev/null || $(MAKE) --no-print-directory deps
	ldoc -q .
	@echo "API reference: docs/api/index.html"

# ---- fuzzing (fuzz/README.md): one binary per target, the csrc part under test built with
# the fuzzer's instrumentation and linked with liblua5.4, which drives it through its bindings.
FUZZ_CC    ?= clang-14
FUZZ_TIME  ?= 4
FUZZ_FLAGS  = -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
LUA54_LIBS := $(shell $(PKGCONF) --libs lua5.4 2>/dev/null)
FUZZ_TARGETS = pct form money hex b64 httpparse httpparse_fast json json_pick shape
FUZZ_BINS = $(addprefix build/fuzz/,$(FUZZ_TARGETS))

# target: csrc part, register function, extra libraries
fuzz_part_pct = codec paykit_codec_register
fuzz_part_form = codec paykit_codec_register
fuzz_part_money = codec paykit_codec_register
fuzz_part_hex = crypto paykit_crypto_register -lcrypto
fuzz_part_b64 = crypto paykit_crypto_register -lcrypto
fuzz_part_httpparse = httpparse paykit_httpparse_register -lhttp_parser
fuzz_part_httpparse_fast = httpparse paykit_httpparse_register -lhttp_parser
fuzz_part_json = json paykit_json_register
fuzz_part_json_pick = json paykit_json_register
fuzz_part_shape = shape paykit_shape_register

fuzz-build: $(FUZZ_BINS)

build/fuzz/%: fuzz/fuzz.c fuzz/targets/%.lua fuzz/targets/common.lua $(SRC) $(HDR) Makefile
	@mkdir -p $(@D)
	@echo "  FUZZ $@"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) $(WARN) $(LUA54_CFLAGS) \
	  -DTARGET_LUA='"$(CURDIR)/fuzz/targets/$*.lua"' -DREGISTER=$(word 2,$(fuzz_part_$*)) \
	  -o $@ fuzz/fuzz.c csrc/$(word 1,$(fuzz_part_$*)).c $(LUA54_LIBS) $(wordlist 3,9,$(fuzz_part_$*))

fuzz: fuzz-build
	@FUZZ_TIME=$(FUZZ_TIME) bash fuzz/run $(FUZZ_TARGETS)

clean:
	rm -rf build docs/api
