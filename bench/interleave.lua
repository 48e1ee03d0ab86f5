-- Is a call the sum of its parts? The Moka provider layer alone (a canned answer, as
-- bench/layer.lua), the bare wire request alone (core.wire_client():request of a request of the
-- same size to a local nginx, one keep-alive connection), the two one after the other in each
-- loop turn, and the whole call (bench/providers.lua) over the same connection; then a 30 µs
-- sleep alone and with the layer after it. CPU µs per call (os.clock over N calls; median and
-- minimum of 3 interleaved rounds) in this process:
--   nsrun <name> lua5.4 bench/interleave.lua [N]     (and luajit; N default 10000)
-- When "bare + layer" costs more than "bare" and "layer" apart, the layer runs slower after a
-- socket round trip than in a hot loop (its code and data no longer in the caches after the
-- kernel, the server and the wake-up ran): the instructions a change saves show in a call's
-- CPU time by that factor, not one for one. Starts its own nginx (1 worker) on
-- 127.0.0.1:18797 and stops it.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local is_jit = type(jit) == "table"
package.cpath = "./build/" .. (is_jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local F = require "bench.fixtures"
local nginx = require "paykit.sandbox.nginx"
local core = require "paykit.core"
local moka = require "paykit.providers.moka"
local socket = require "socket"
local PORT = 18797
local n = tonumber(arg[1] or 10000)

local srv = nginx.start("interleave_" .. (is_jit and "jit" or "54"), [[
  server { listen 127.0.0.1:${PORT}; access_log off; keepalive_requests 10000000;
    location / { default_type application/json; return 200 ']] .. F.moka_answer .. [['; } }
]], { PORT = PORT })
local ok, err = pcall(function()
  local whole = require("bench.providers").make("moka", "http://127.0.0.1:" .. PORT)
  local gw = assert(moka.new { dealer_code = "1731", username = "bench-user", password = "bench-password-not-secret",
    base_url = "http://127.0.0.1:1", retry = false })
  local answer = { status = 200, body = F.moka_answer, headers = {} }
  local sent
  gw.http = { request = function(_, req) sent = req; return answer end }
  local p = F.moka_payment
  local function layer() return gw:start_3d(p) end
  assert(layer().status == "redirect", "the canned answer did not map")
  local c = core.wire_client {}
  -- the bare request: the layer's own body and headers, sent as they are
  local req = { method = "POST", url = "http://127.0.0.1:" .. PORT .. F.moka_path, headers = {}, body = sent.body }
  for k, v in pairs(sent.headers or {}) do req.headers[#req.headers + 1] = k .. ": " .. v end
  local function bare() return assert(c:request(req)) end
  local function both() bare(); return layer() end
  local function nap() socket.sleep(0.00003) end
  local function nap_layer() nap(); return layer() end
  local rows = { { "layer", layer }, { "bare", bare }, { "bare + layer", both }, { "whole call", whole },
    { "sleep 30 us", nap }, { "sleep + layer", nap_layer } }
  local res = {}
  for round = 1, 3 do
    for _, t in ipairs(rows) do
      for _ = 1, 300 do t[2]() end
      collectgarbage("collect")
      local c0 = os.clock()
      for _ = 1, n do t[2]() end
      res[t[1]] = res[t[1]] or {}
      res[t[1]][round] = (os.clock() - c0) * 1e6 / n
    end
  end
  local med = {}
  for _, t in ipairs(rows) do
    local r = res[t[1]]
    table.sort(r)
    med[t[1]] = r[2]
    io.write(string.format("%-7s %-14s %6.1f us CPU per call (min %.1f)\n", is_jit and "LuaJIT" or "Lua 5.4", t[1], r[2], r[1]))
  end
  io.write(string.format("the layer after a round trip: %.1f us (alone %.1f); after a sleep: %.1f us\n",
    med["bare + layer"] - med.bare, med.layer, med["sleep + layer"] - med["sleep 30 us"]))
end)
srv:stop()
if not ok then error(err, 0) end
