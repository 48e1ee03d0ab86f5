-- Times the parts of a Moka 3D start where they run inside the whole call: each part's function
-- is wrapped (inclusive CPU time; the wrapping costs ~1 us per wrapped call, charged to the
-- enclosing part) and the inclusive times are split into exclusive ones. Shared by
-- bench/breakdown.lua (plain Lua, libcurl transport) and bench/nginx_client.lua (/breakdown,
-- the cosocket transport). In nginx, call prepare() before paykit.cosocket is first loaded.
--   local split = require "bench.split"
--   split.prepare()                          -- wraps paykit.url.parse (cosocket keeps a copy)
--   local text = split.run(gw, n, "core" | "cosocket")
local M = {}
local spent = {}
local clock = os.clock

local function wrap(name, fn)
  spent[name] = 0
  return function(...)
    local c0 = clock()
    local a, b, c, d = fn(...)
    spent[name] = spent[name] + (clock() - c0)
    return a, b, c, d
  end
end

function M.prepare()
  local url = require "paykit.url"
  if not spent.url then url.parse = wrap("url", url.parse) end
end

function M.run(gw, n, transport)
  local F = require "bench.fixtures"
  local gateway = require "paykit.gateway"
  local redact = require "paykit.redact"
  local http = require "paykit.http"
  local Moka = getmetatable(gw)
  Moka.call = wrap("call", Moka.call)
  gateway.json = wrap("json", gateway.json)
  http.request = wrap("http", http.request)
  redact.text = wrap("redact", redact.text)
  local cj = http.cjson()
  cj.decode = wrap("decode", cj.decode)
  if transport == "cosocket" then
    local cosocket = require "paykit.cosocket"
    cosocket.request = wrap("transport", cosocket.request)
  else
    local real = gw.http:core_client()
    gw.http.client = { request = wrap("transport", function(_, r) return real:request(r) end) }
  end
  spent.url = spent.url or 0
  gw:start_3d(F.moka_payment)
  for k in pairs(spent) do spent[k] = 0 end
  collectgarbage("collect")
  local c0 = clock()
  for _ = 1, n do gw:start_3d(F.moka_payment) end
  local total = clock() - c0
  local function us(x) return x * 1e6 / n end
  local rows = {
    { "validation, body table, result (start_3d outside call)", total - spent.call },
    { "Moka:call outside json and http (envelope, checks, log lines)", spent.call - spent.json - spent.http },
    { "gateway.json", spent.json },
    { "paykit.http:request outside transport/redact/decode", spent.http - spent.transport - spent.redact - spent.decode },
    { "redact.text (url)", spent.redact },
    { "transport (" .. transport .. ") outside url parsing", spent.transport - spent.url },
    { "url parsing in the transport", spent.url },
    { "cjson decode", spent.decode },
    { "whole", total },
  }
  local out = { "  inside the whole call (inclusive times split into exclusive parts):" }
  for _, r in ipairs(rows) do out[#out + 1] = string.format("    %-60s %8.1f us", r[1], us(r[2])) end
  return table.concat(out, "\n") .. "\n"
end

return M
