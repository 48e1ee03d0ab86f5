-- The local sandbox: one nginx (with its Lua module, LuaJIT) on 127.0.0.1 that behaves like
-- Moka, MoCoPay and Zippy, so that paykit and its users can work without credentials.
--
--   local sandbox = require "paykit.sandbox"
--   local base = sandbox.start{ port = 8790 }   --> "http://127.0.0.1:8790"
--   -- providers at base .. "/moka", base .. "/mocopay", base .. "/zippy"
--   sandbox.stop{ port = 8790 }
--
-- It runs from a source tree where `make build` has built the LuaJIT core (build/luajit).
local nginx = require "paykit.sandbox.nginx"

local M = {}

M.DEFAULT_PORT = 8790
M.PROVIDERS = { "moka", "mocopay", "zippy" }

local function port_of(opts)
  local port = tonumber(opts and opts.port) or tonumber(os.getenv("PAYKIT_SANDBOX_PORT")) or M.DEFAULT_PORT
  if port ~= math.floor(port) or port < 1 or port > 65535 then error("sandbox: port must be 1..65535", 2) end
  return math.floor(port)
end

local function name_of(port) return "sandbox-" .. port end

local HTTP_BLOCK = [[
  lua_socket_log_errors off;
  lua_code_cache on;
  init_by_lua_block { require("paykit.sandbox.util").configure{ port = ${PORT} } }
  server {
    listen 127.0.0.1:${PORT};
    client_max_body_size 1m;
    default_type text/plain;
    location /moka/    { content_by_lua_block { require("paykit.sandbox.util").dispatch("moka") } }
    location /mocopay/ { content_by_lua_block { require("paykit.sandbox.util").dispatch("mocopay") } }
    location /zippy/   { content_by_lua_block { require("paykit.sandbox.util").dispatch("zippy") } }
    location /_sink/   { content_by_lua_block { require("paykit.sandbox.util").sink() } }
    location /_sandbox/ { content_by_lua_block { require("paykit.sandbox.util").admin() } }
    location = /       { content_by_lua_block { require("paykit.sandbox.util").index() } }
  }
]]

function M.url(opts) return "http://127.0.0.1:" .. port_of(opts) end

-- Starts the sandbox (stopping a leftover one on the same port first); returns its base URL.
function M.start(opts)
  local port = port_of(opts)
  nginx.start(name_of(port), HTTP_BLOCK, { PORT = port, LOG_LEVEL = (opts and opts.log_level) or "warn" })
  return M.url{ port = port }
end

function M.stop(opts)
  nginx.handle(name_of(port_of(opts))):stop()
end

function M.running(opts)
  return nginx.handle(name_of(port_of(opts))):running()
end

function M.error_log(opts)
  return nginx.handle(name_of(port_of(opts))):error_log()
end

return M
