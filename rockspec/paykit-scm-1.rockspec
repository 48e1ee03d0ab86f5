-- paykit from a checkout (the development version), Lua 5.4 and LuaJIT 2.1 (see README, Install):
--   luarocks --lua-version=5.4 --tree T make rockspec/paykit-scm-1.rockspec --deps-mode=none
rockspec_format = "3.0"
package = "paykit"
version = "scm-1"
source = {
  -- `luarocks make` builds the checked-out tree and never fetches this (releases: the
  -- versioned rockspec, whose source is the tagged tarball)
  url = "git+file://.",
  branch = "main",
}
description = {
  summary = "Payments through provider APIs (Moka, MoCoPay, Zippy) for Lua 5.4 and OpenResty",
  detailed = [[
paykit takes payments through provider APIs from plain Lua 5.4 (game servers, workers) and
from OpenResty request handlers (LuaJIT 2.1). A C core does transport (libcurl), hashing
(OpenSSL) and parsing; a thin Lua layer gives provider objects with one uniform purchase flow.
Ships paykit-sandbox, a local simulator of the three providers on nginx.]],
  license = "MIT",
  labels = { "payments", "openresty", "curl" },
}
dependencies = { "lua >= 5.1", "lua-cjson" }
test_dependencies = { "busted" }
external_dependencies = {
  -- by library: Debian keeps curl/curl.h under the multiarch include dir, which the compiler
  -- searches but LuaRocks' header probe does not
  CURL = { library = "curl" },
  OPENSSL = { header = "openssl/evp.h", library = "crypto" },
  HTTP_PARSER = { header = "http_parser.h", library = "http_parser" },
  HIREDIS = { header = "hiredis/hiredis.h", library = "hiredis" },
}
build = {
  -- paykit.core: rockspec/core.mk compiles csrc/*.c under build/rock/<interpreter>, never into
  -- the source tree; for --lua-version=5.1 against LuaJIT 2.1's headers (see core.mk).
  type = "make",
  makefile = "rockspec/core.mk",
  build_target = "core",
  build_variables = {
    CC = "$(CC)", CFLAGS = "$(CFLAGS)", LIBFLAG = "$(LIBFLAG)", LUA = "$(LUA)", LUA_INCDIR = "$(LUA_INCDIR)",
    CURL_INCDIR = "$(CURL_INCDIR)", CURL_LIBDIR = "$(CURL_LIBDIR)",
    OPENSSL_INCDIR = "$(OPENSSL_INCDIR)", OPENSSL_LIBDIR = "$(OPENSSL_LIBDIR)",
    HTTP_PARSER_INCDIR = "$(HTTP_PARSER_INCDIR)", HTTP_PARSER_LIBDIR = "$(HTTP_PARSER_LIBDIR)",
    HIREDIS_INCDIR = "$(HIREDIS_INCDIR)", HIREDIS_LIBDIR = "$(HIREDIS_LIBDIR)",
  },
  install_target = "install-core",
  install_variables = {
    CC = "$(CC)", CFLAGS = "$(CFLAGS)", LIBFLAG = "$(LIBFLAG)", LUA = "$(LUA)", LUA_INCDIR = "$(LUA_INCDIR)",
    CURL_INCDIR = "$(CURL_INCDIR)", CURL_LIBDIR = "$(CURL_LIBDIR)",
    OPENSSL_INCDIR = "$(OPENSSL_INCDIR)", OPENSSL_LIBDIR = "$(OPENSSL_LIBDIR)",
    HTTP_PARSER_INCDIR = "$(HTTP_PARSER_INCDIR)", HTTP_PARSER_LIBDIR = "$(HTTP_PARSER_LIBDIR)",
    HIREDIS_INCDIR = "$(HIREDIS_INCDIR)", HIREDIS_LIBDIR = "$(HIREDIS_LIBDIR)",
    INST_LIBDIR = "$(LIBDIR)",
  },
  install = {
    -- every Lua module under lua/ (spec/rockspec_spec.lua checks the list against the tree)
    lua = {
      ["paykit"] = "lua/paykit/init.lua",
      ["paykit.batch"] = "lua/paykit/batch.lua",
      ["paykit.cosocket"] = "lua/paykit/cosocket.lua",
      ["paykit.errors"] = "lua/paykit/errors.lua",
      ["paykit.gateway"] = "lua/paykit/gateway.lua",
      ["paykit.http"] = "lua/paykit/http.lua",
      ["paykit.journal"] = "lua/paykit/journal/init.lua",
      ["paykit.journal.states"] = "lua/paykit/journal/states.lua",
      ["paykit.journal.sweep"] = "lua/paykit/journal/sweep.lua",
      ["paykit.journal.wrap"] = "lua/paykit/journal/wrap.lua",
      ["paykit.loop"] = "lua/paykit/loop.lua",
      ["paykit.loop.cqueues"] = "lua/paykit/loop/cqueues.lua",
      ["paykit.loop.luv"] = "lua/paykit/loop/luv.lua",
      ["paykit.metrics"] = "lua/paykit/metrics.lua",
      ["paykit.money"] = "lua/paykit/money.lua",
      ["paykit.providers.mocopay"] = "lua/paykit/providers/mocopay.lua",
      ["paykit.providers.mocopay_codes"] = "lua/paykit/providers/mocopay_codes.lua",
      ["paykit.providers.mocopay_sign"] = "lua/paykit/providers/mocopay_sign.lua",
      ["paykit.providers.moka"] = "lua/paykit/providers/moka.lua",
      ["paykit.providers.moka_codes"] = "lua/paykit/providers/moka_codes.lua",
      ["paykit.providers.zippy"] = "lua/paykit/providers/zippy.lua",
      ["paykit.providers.zippy_fields"] = "lua/paykit/providers/zippy_fields.lua",
      ["paykit.providers.zippy_request"] = "lua/paykit/providers/zippy_request.lua",
      ["paykit.providers.zippy_wire"] = "lua/paykit/providers/zippy_wire.lua",
      ["paykit.providers.moka_request"] = "lua/paykit/providers/moka_request.lua",
      ["paykit.providers.moka_checks"] = "lua/paykit/providers/moka_checks.lua",
      ["paykit.providers.moka_wire"] = "lua/paykit/providers/moka_wire.lua",
      ["paykit.providers.moka_ops"] = "lua/paykit/providers/moka_ops.lua",
      ["paykit.providers.moka_notice"] = "lua/paykit/providers/moka_notice.lua",
      ["paykit.providers.mocopay_request"] = "lua/paykit/providers/mocopay_request.lua",
      ["paykit.providers.mocopay_wire"] = "lua/paykit/providers/mocopay_wire.lua",
      ["paykit.providers.mocopay_notice"] = "lua/paykit/providers/mocopay_notice.lua",
      ["paykit.kit"] = "lua/paykit/kit/init.lua",
      ["paykit.kit.options"] = "lua/paykit/kit/options.lua",
      ["paykit.kit.ops"] = "lua/paykit/kit/ops.lua",
      ["paykit.kit.wire"] = "lua/paykit/kit/wire.lua",
      ["paykit.kit.checks"] = "lua/paykit/kit/checks.lua",
      ["paykit.kit.signature"] = "lua/paykit/kit/signature.lua",
      ["paykit.kit.notify"] = "lua/paykit/kit/notify.lua",
      ["paykit.kit.json"] = "lua/paykit/kit/json.lua",
      ["paykit.kit.registry"] = "lua/paykit/kit/registry.lua",
      ["paykit.providers.zippy_notice"] = "lua/paykit/providers/zippy_notice.lua",
      ["paykit.providers.zippy_oauth"] = "lua/paykit/providers/zippy_oauth.lua",
      ["paykit.redact"] = "lua/paykit/redact.lua",
      ["paykit.redis"] = "lua/paykit/redis.lua",
      ["paykit.runtime"] = "lua/paykit/runtime.lua",
      ["paykit.sandbox"] = "lua/paykit/sandbox/init.lua",
      ["paykit.sandbox.faults"] = "lua/paykit/sandbox/faults.lua",
      ["paykit.sandbox.mocopay"] = "lua/paykit/sandbox/mocopay.lua",
      ["paykit.sandbox.moka"] = "lua/paykit/sandbox/moka.lua",
      ["paykit.sandbox.moka_cards"] = "lua/paykit/sandbox/moka_cards.lua",
      ["paykit.sandbox.moka_common"] = "lua/paykit/sandbox/moka_common.lua",
      ["paykit.sandbox.moka_pay"] = "lua/paykit/sandbox/moka_pay.lua",
      ["paykit.sandbox.nginx"] = "lua/paykit/sandbox/nginx.lua",
      ["paykit.sandbox.util"] = "lua/paykit/sandbox/util.lua",
      ["paykit.sandbox.zippy"] = "lua/paykit/sandbox/zippy.lua",
      ["paykit.sandbox.zippy_pages"] = "lua/paykit/sandbox/zippy_pages.lua",
      ["paykit.store"] = "lua/paykit/store/init.lua",
      ["paykit.store.base"] = "lua/paykit/store/base.lua",
      ["paykit.store.memory"] = "lua/paykit/store/memory.lua",
      ["paykit.store.redis"] = "lua/paykit/store/redis.lua",
      ["paykit.store.shdict"] = "lua/paykit/store/shdict.lua",
      ["paykit.url"] = "lua/paykit/url.lua",
    },
    bin = { ["paykit-sandbox"] = "bin/paykit-sandbox" },
  },
}
-- `luarocks test`: busted with the specs in .busted; busted must be a rock in a tree
-- LuaRocks searches (`luarocks install busted`). See README, Install.
test = {
  type = "busted",
  flags = { "--run=rock" },
}
