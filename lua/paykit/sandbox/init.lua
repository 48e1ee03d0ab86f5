-- The local sandbox: one nginx (with its Lua module, LuaJIT) on 127.0.0.1 that behaves like
-- Moka, MoCoPay and Zippy, so that paykit and its users can work without credentials.
--
--   local sandbox = require "paykit.sandbox"
--   local base = sandbox.start{ port = 8790 }   --> "http://127.0.0.1:8790"
--   -- providers at base .. "/<name>" for every registered provider with a simulator
--   -- (paykit.kit.registry: moka, mocopay, zippy, and any registered before start)
--   sandbox.stop{ port = 8790 }
--
-- Fault modes, for testing your own error handling (see paykit.sandbox.faults):
--   sandbox.fault{ provider = "moka", mode = "drop", count = 1, match = "/PaymentDealer/DoDirectPayment" }
--   sandbox.requests{ provider = "moka", path = "/PaymentDealer/DoDirectPayment" }.count  --> 1
--   sandbox.clear_faults()
--
-- It runs from a source tree where `make build` has built the LuaJIT core (build/luajit).
local nginx = require "paykit.sandbox.nginx"

local M = {}

M.DEFAULT_PORT = 8790
-- The simulators served: every provider of paykit.kit.registry that has one (read when the
-- sandbox starts, so a provider registered by a spec or an application is served too).
local registry = require "paykit.kit.registry"
setmetatable(M, { __index = function(_, k)
  if k == "PROVIDERS" then
    local out = {}
    for _, e in ipairs(registry.simulators()) do out[#out + 1] = e.name end
    return out
  end
end })

local function port_of(opts)
  local port = tonumber(opts and opts.port) or tonumber(os.getenv("PAYKIT_SANDBOX_PORT")) or M.DEFAULT_PORT
  if port ~= math.floor(port) or port < 1 or port > 65535 then error("sandbox: port must be 1..65535", 2) end
  return math.floor(port)
end

local function name_of(port) return "sandbox-" .. port end

local HTTP_BLOCK = [[
  lua_socket_log_errors off;
  lua_code_cache on;
  lua_shared_dict paykit_sandbox_faults 2m;
  lua_shared_dict paykit_sandbox_requests 4m;
  init_by_lua_block { require("paykit.sandbox.util").configure{ port = ${PORT}, simulators = ${SIMULATORS} } }
  server {
    listen 127.0.0.1:${PORT};
    client_max_body_size 1m;
    default_type text/plain;
${LOCATIONS}
    location /_sink/   { content_by_lua_block { require("paykit.sandbox.util").sink() } }
    location /_sandbox/ { content_by_lua_block { require("paykit.sandbox.util").admin() } }
    location = /       { content_by_lua_block { require("paykit.sandbox.util").index() } }
  }
]]

function M.url(opts) return "http://127.0.0.1:" .. port_of(opts) end

-- A Lua literal of a string (for the generated nginx config).
local function lit(s) return string.format("%q", s) end

-- The registered simulators as the config's Lua table and its nginx locations.
local function served()
  local entries, locations = {}, {}
  for _, e in ipairs(registry.simulators()) do
    entries[#entries + 1] = "{ name = " .. lit(e.name) .. ", module = " .. lit(e.simulator) ..
      ", title = " .. lit(e.title) .. ", doc = " .. lit(e.doc or "") .. " }"
    locations[#locations + 1] = "    location /" .. e.name .. "/ { content_by_lua_block { require(\"paykit.sandbox.util\").dispatch(" ..
      lit(e.name) .. ") } }"
  end
  return "{ " .. table.concat(entries, ", ") .. " }", table.concat(locations, "\n")
end

-- Starts the sandbox (stopping a leftover one on the same port first); returns its base URL.
-- opts: port, log_level ("warn"), workers (1: the simulators keep their state in one worker's
-- memory; more workers share only the faults and the request log).
function M.start(opts)
  local port = port_of(opts)
  local workers = opts and opts.workers or 1
  if type(workers) ~= "number" or workers ~= math.floor(workers) or workers < 1 or workers > 64 then
    error("sandbox: workers must be 1..64", 2)
  end
  local simulators, locations = served()
  nginx.start(name_of(port), HTTP_BLOCK, { PORT = port, LOG_LEVEL = (opts and opts.log_level) or "warn",
    WORKERS = workers, SIMULATORS = simulators, LOCATIONS = locations })
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

---------------------------------------------------------------------------- fault modes

-- For your tests: arm, list and clear the sandbox's faults and read its request log over
-- HTTP (libcurl, or cosockets inside nginx). Every call takes the sandbox's address as `url`
-- (a base URL, "http://127.0.0.1:8790") or `port` (default: PAYKIT_SANDBOX_PORT or 8790).
-- They return the decoded answer, or nil and a paykit error (a refused fault is a
-- validation error naming the field).

local SANDBOX_KEYS = { url = true, port = true }

local function base_of(opts)
  if opts and opts.url ~= nil then
    if type(opts.url) ~= "string" or not opts.url:match("^https?://[^/]+") then error("sandbox: url must be http://host:port", 3) end
    return (opts.url:gsub("/+$", ""))
  end
  return M.url{ port = opts and opts.port }
end

local transport
local function admin_call(method, base, path, body)
  local http = require "paykit.http"
  local errors = require "paykit.errors"
  transport = transport or http.new { retry = false, timeout = 10, connect_timeout = 5 }
  local res, err = transport:request { method = method, url = base .. path, body = body, json = true,
                                       op = "sandbox.admin" }
  if not res then return nil, err end
  if res.status >= 200 and res.status < 300 and res.json ~= nil then return res.json end
  local j = type(res.json) == "table" and res.json or {}
  local message = "sandbox " .. method .. " " .. path .. ": HTTP " .. res.status ..
    (type(j.error) == "string" and (": " .. j.error) or "")
  if res.status == 400 then
    return nil, errors.new { kind = "validation", code = "invalid", field = j.field, status = 400, message = message }
  end
  return nil, errors.new { kind = "provider", code = "sandbox.http_" .. res.status, status = res.status, message = message }
end

local function query(opts, names)
  local pairs_ = {}
  for _, k in ipairs(names) do
    local v = opts and opts[k]
    if v ~= nil then pairs_[#pairs_ + 1] = k .. "=" .. require("paykit.core").pct_encode(tostring(v)) end
  end
  return #pairs_ > 0 and ("?" .. table.concat(pairs_, "&")) or ""
end

-- Arms a fault: spec = {provider=, mode=, count=, match=, method=, delay_ms=, status=, body=,
-- content_type=, process=, keep=} (plus url/port). Returns the armed fault (with its `id`).
function M.fault(spec)
  if type(spec) ~= "table" then error("sandbox.fault expects a table", 2) end
  local body = {}
  for k, v in pairs(spec) do if not SANDBOX_KEYS[k] then body[k] = v end end
  return admin_call("POST", base_of(spec), "/_sandbox/faults", body)
end

-- The armed faults (opts.provider: only that provider's).
function M.faults(opts)
  return admin_call("GET", base_of(opts), "/_sandbox/faults" .. query(opts, { "provider" }))
end

-- Disarms faults: all, one provider's (opts.provider) or one (opts.id). Returns {cleared = n}.
function M.clear_faults(opts)
  local path = "/_sandbox/faults"
  if opts and opts.id ~= nil then
    local n = tonumber(opts.id)
    if not n or n ~= math.floor(n) then error("sandbox.clear_faults: id must be a fault's id", 2) end
    path = path .. string.format("/%d", n)
  end
  return admin_call("DELETE", base_of(opts), path .. query(opts, { "provider" }))
end

-- The request log: {count, last (the newest seq), totals = {provider = n}, requests = {{seq,
-- provider, method, path, fault, mode, use, processed, outcome, status}, ...}}, filtered by
-- opts.provider, opts.path (exact, or a prefix ending in *), opts.method and opts.since (a seq:
-- only the requests after it, e.g. the `last` of an earlier call).
function M.requests(opts)
  return admin_call("GET", base_of(opts), "/_sandbox/requests" .. query(opts, { "provider", "path", "method", "since" }))
end

function M.clear_requests(opts)
  return admin_call("DELETE", base_of(opts), "/_sandbox/requests")
end

return M
