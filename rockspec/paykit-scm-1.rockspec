-- paykit for LuaRocks: `luarocks --lua-version=5.4 make rockspec/paykit-scm-1.rockspec --deps-mode=none`
-- (build.modules is checked against lua/ by spec/rockspec_spec.lua: every module is listed.)
rockspec_format = "3.0"
package = "paykit"
version = "scm-1"
source = { url = "git+file:///dev/null/paykit.git" } -- `luarocks make` builds the checked-out tree
description = {
  summary = "Payments through provider APIs (Moka, MoCoPay, Zippy) for Lua 5.4 and OpenResty",
  detailed = [[
paykit takes payments through provider APIs from plain Lua 5.4 (game servers, workers) and
from OpenResty request handlers. A C core does transport (libcurl), hashing (OpenSSL) and
parsing; a thin Lua layer gives provider objects with one uniform purchase flow.]],
  license = "MIT",
  labels = { "payments", "openresty", "curl" },
}
dependencies = { "lua >= 5.1", "lua-cjson" }
external_dependencies = {
  -- by library: Debian keeps curl/curl.h under the multiarch include dir, which the compiler
  -- searches but LuaRocks' header probe does not
  CURL = { library = "curl" },
  OPENSSL = { header = "openssl/evp.h", library = "crypto" },
  HTTP_PARSER = { header = "http_parser.h", library = "http_parser" },
}
build = {
  type = "builtin",
  modules = {
    ["paykit.core"] = {
      sources = { "csrc/core.c", "csrc/crypto.c", "csrc/codec.c", "csrc/http.c", "csrc/httpparse.c",
        "csrc/json.c" },
      libraries = { "curl", "ssl", "crypto", "http_parser" },
      incdirs = { "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)", "$(HTTP_PARSER_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)", "$(HTTP_PARSER_LIBDIR)" },
    },
    ["paykit.batch"] = "lua/paykit/batch.lua",
    ["paykit.cosocket"] = "lua/paykit/cosocket.lua",
    ["paykit.errors"] = "lua/paykit/errors.lua",
    ["paykit.gateway"] = "lua/paykit/gateway.lua",
    ["paykit.http"] = "lua/paykit/http.lua",
    ["paykit"] = "lua/paykit/init.lua",
    ["paykit.money"] = "lua/paykit/money.lua",
    ["paykit.providers.mocopay"] = "lua/paykit/providers/mocopay.lua",
    ["paykit.providers.mocopay_codes"] = "lua/paykit/providers/mocopay_codes.lua",
    ["paykit.providers.moka"] = "lua/paykit/providers/moka.lua",
    ["paykit.providers.moka_codes"] = "lua/paykit/providers/moka_codes.lua",
    ["paykit.providers.zippy"] = "lua/paykit/providers/zippy.lua",
    ["paykit.providers.zippy_notice"] = "lua/paykit/providers/zippy_notice.lua",
    ["paykit.providers.zippy_oauth"] = "lua/paykit/providers/zippy_oauth.lua",
    ["paykit.redact"] = "lua/paykit/redact.lua",
    ["paykit.url"] = "lua/paykit/url.lua",
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
  },
  install = { bin = { ["paykit-sandbox"] = "bin/paykit-sandbox" } },
}
test = { type = "busted" }
