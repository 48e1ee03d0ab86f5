# paykit.core for LuaRocks (the rockspecs' build.type = "make"; `make -f rockspec/core.mk`).
#
# LuaRocks passes LUA, LUA_INCDIR, CFLAGS, LIBFLAG and the external dependencies' dirs. Every
# build output goes to $(OUT) (default build/rock/<interpreter>, ignored by git): nothing is
# written into csrc/ or ./paykit/. The install pass copies the module to $(INST_LIBDIR).
#
# Lua 5.1 means LuaJIT 2.1 (paykit does not support plain Lua 5.1): when LUA_INCDIR holds
# Lua 5.1's own headers, the core is compiled against LuaJIT's (LUAJIT_INCDIR, by default
# from `pkg-config luajit`; Debian: libluajit2-5.1-dev; from LuaRocks, set it in the environment:
# `LUAJIT_INCDIR=/path/to/luajit-2.1 luarocks ... make`, since build_variables cannot name it).
#
# A rock for another Lua (5.4) also builds a LuaJIT core when LuaJIT's headers are there
# (SANDBOX_LUAJIT=auto|yes|no), installed as $(INST_LIBDIR)/paykit/luajit/paykit/core.so:
# the one the installed paykit-sandbox loads inside nginx (nginx's Lua module is LuaJIT).

LUA        ?= lua5.4
LUA_INCDIR ?= /usr/include/lua5.4
CC         ?= cc
CFLAGS     ?= -O2 -fPIC
LIBFLAG    ?= -shared
PKGCONF    ?= pkg-config
OUT        ?= build/rock/$(notdir $(LUA))
SANDBOX_LUAJIT ?= auto

CURL_INCDIR ?= /usr/include
CURL_LIBDIR ?= /usr/lib
OPENSSL_INCDIR ?= /usr/include
OPENSSL_LIBDIR ?= /usr/lib
HTTP_PARSER_INCDIR ?= /usr/include
HTTP_PARSER_LIBDIR ?= /usr/lib
HIREDIS_INCDIR ?= /usr/include
HIREDIS_LIBDIR ?= /usr/lib

SRC := $(sort $(wildcard csrc/*.c))
HDR := $(wildcard csrc/*.h)

LUAJIT_INCDIR ?= $(patsubst -I%,%,$(filter -I%,$(shell $(PKGCONF) --cflags luajit 2>/dev/null)))
IS_LUA51 := $(shell grep -qsE 'define LUA_VERSION_NUM[[:space:]]+501' '$(LUA_INCDIR)/lua.h' && echo yes)
HAS_LUAJIT_H := $(wildcard $(LUA_INCDIR)/luajit.h)

ifeq ($(IS_LUA51),yes)
  ifeq ($(HAS_LUAJIT_H),)
    ifeq ($(LUAJIT_INCDIR),)
      $(error paykit needs LuaJIT 2.1 for Lua 5.1: install LuaJIT's headers (Debian: libluajit2-5.1-dev) or set LUAJIT_INCDIR=... in the environment)
    endif
    TARGET_INCDIR := $(LUAJIT_INCDIR)
  else
    TARGET_INCDIR := $(LUA_INCDIR)
  endif
  SANDBOX_CORE :=
else
  TARGET_INCDIR := $(LUA_INCDIR)
  ifeq ($(SANDBOX_LUAJIT),no)
    SANDBOX_CORE :=
  else ifneq ($(LUAJIT_INCDIR),)
    SANDBOX_CORE := $(OUT)/luajit/paykit/core.so
  else ifeq ($(SANDBOX_LUAJIT),yes)
    $(error SANDBOX_LUAJIT=yes but LuaJIT's headers were not found (pkg-config luajit, or LUAJIT_INCDIR=... in the environment))
  else
    SANDBOX_CORE :=
  endif
endif

DEP_INC  = -I$(CURL_INCDIR) -I$(OPENSSL_INCDIR) -I$(HTTP_PARSER_INCDIR) -I$(HIREDIS_INCDIR)
DEP_LIBS = -L$(CURL_LIBDIR) -L$(OPENSSL_LIBDIR) -L$(HTTP_PARSER_LIBDIR) -L$(HIREDIS_LIBDIR) -lcurl -lssl -lcrypto -lhttp_parser -lhiredis

CORE := $(OUT)/paykit/core.so

.PHONY: core install-core
core: $(CORE) $(SANDBOX_CORE)
	@echo "paykit.core built in $(OUT) (Lua headers: $(TARGET_INCDIR)$(if $(SANDBOX_CORE),; LuaJIT core for the sandbox too))"

# Compiled into a temporary name, then renamed: a reader never sees half a module.
$(CORE): $(SRC) $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fPIC $(LIBFLAG) -I$(TARGET_INCDIR) $(DEP_INC) -o $@.tmp $(SRC) $(DEP_LIBS)
	@mv -f $@.tmp $@

$(OUT)/luajit/paykit/core.so: $(SRC) $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fPIC $(LIBFLAG) -I$(LUAJIT_INCDIR) $(DEP_INC) -o $@.tmp $(SRC) $(DEP_LIBS)
	@mv -f $@.tmp $@

install-core: core
	@test -n "$(INST_LIBDIR)" || { echo "INST_LIBDIR is not set (LuaRocks sets it)"; exit 1; }
	mkdir -p '$(INST_LIBDIR)/paykit'
	cp -f $(CORE) '$(INST_LIBDIR)/paykit/core.so'
ifneq ($(SANDBOX_CORE),)
	mkdir -p '$(INST_LIBDIR)/paykit/luajit/paykit'
	cp -f $(SANDBOX_CORE) '$(INST_LIBDIR)/paykit/luajit/paykit/core.so'
endif
