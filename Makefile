# paykit: build, test, demo, bench.
#   make            build paykit.core for Lua 5.4 and for LuaJIT (build/<lua>/paykit/core.so)
#   make test       install missing Debian packages (as root), build, run every spec suite
#   make demo       the demo purchase flow against the local sandbox
#   make bench      provider calls and transport next to wrk (BENCH_QUICK=1: a short smoke run)
#   make install    install for Lua 5.4 with LuaRocks (offline: --deps-mode=none)
#   make docs       the API reference (LDoc) in docs/api/
#   make deps       install the Debian packages paykit needs (as root)

CC      ?= cc
V       ?= 0
Q        = $(if $(filter 1,$(V)),,@)   # make V=1 shows the compiler command
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra
PKGCONF ?= pkg-config

DEP_CFLAGS := $(shell $(PKGCONF) --cflags libcurl openssl 2>/dev/null)
DEP_LIBS   := $(shell $(PKGCONF) --libs libcurl openssl 2>/dev/null) -lhttp_parser
LUA54_CFLAGS  := $(shell $(PKGCONF) --cflags lua5.4 2>/dev/null)
LUAJIT_CFLAGS := $(shell $(PKGCONF) --cflags luajit 2>/dev/null)

SRC := $(sort $(wildcard csrc/*.c))
HDR := $(wildcard csrc/*.h)

CORE54 = build/lua5.4/paykit/core.so
COREJIT = build/luajit/paykit/core.so

# Debian packages: building, testing, the sandbox (nginx + its Lua module), benchmarking.
DEB_PKGS = build-essential pkg-config lua5.4 liblua5.4-dev luajit2 libluajit2-5.1-dev \
  lua-cjson lua-busted luarocks nginx libnginx-mod-http-lua lua-resty-core \
  libcurl4-openssl-dev libssl-dev libhttp-parser-dev curl wrk valgrind openssl chromium lua-ldoc \
  lua-socket lua-sec lua5.1 lua-curl
# lua-socket: a listener with a full backlog in the connect-timeout specs; lua-sec, lua5.1 and
# lua-curl: the other Lua HTTP clients the benchmark compares with.
# node and npm (browser specs) come from Debian's nodejs/npm when the machine has no node.
NODE_PKGS = nodejs npm

.PHONY: all build test demo bench deps clean valgrind docs install
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

valgrind: build
	bash spec/run --valgrind

demo: deps
	@$(MAKE) --no-print-directory build
	@bash examples/demo/run

bench: deps
	@$(MAKE) --no-print-directory build
	@BENCH_QUICK=$(BENCH_QUICK) bash bench/run

install: deps
	luarocks make rockspec/paykit-scm-1.rockspec --deps-mode=none

docs:
	@command -v ldoc >/dev/null || $(MAKE) --no-print-directory deps
	ldoc -q .
	@echo "API reference: docs/api/index.html"

clean:
	rm -rf build docs/api
