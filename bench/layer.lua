-- The provider layer of a Moka 3D start alone: gw:start_3d with the transport replaced by the
-- canned answer (no socket, no paykit.http), so what is measured is validation, the body, the
-- JSON writer and reader and the result mapping.
--   lua5.4 bench/layer.lua [N]          CPU µs per call (os.clock over N calls, default 20000)
--   lua5.4 bench/layer.lua N quiet      the same loop without output (for callgrind / perf stat:
--                                       run it with N and with 0, the difference over N is the
--                                       instructions per call)
--   luajit bench/layer.lua N jitv       the loop with jit.v on (trace aborts on the hot path)
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local is_jit = type(jit) == "table"
package.cpath = "./build/" .. (is_jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local n, mode = tonumber(arg[1] or 20000), arg[2]
local F = require "bench.fixtures"
local moka = require "paykit.providers.moka"

local gw = assert(moka.new { dealer_code = "1731", username = "bench-user", password = "bench-password-not-secret",
  base_url = "http://127.0.0.1:1", retry = false })
local answer = { status = 200, body = F.moka_answer, headers = {} }
local seen_body
gw.http = { request = function(_, req) seen_body = req.body; return answer end }

local p = F.moka_payment
local function call()
  local r = gw:start_3d(p)
  return r ~= nil and r.status == "redirect" and r.redirect_url == F.moka_url
end
assert(call(), "the canned answer did not map to the expected redirect")
if mode == "body" then print(seen_body) return end
if mode == "jitv" and is_jit then require("jit.v").on() end
if mode == "jitdump" and is_jit then require("jit.dump").on("tbimrsx") end

collectgarbage("collect")
local c0 = os.clock()
for _ = 1, n do call() end
local dt = os.clock() - c0
if mode ~= "quiet" and n > 0 then
  io.write(string.format("%s: moka start_3d provider layer, %d calls: %.2f us CPU per call\n",
    is_jit and "LuaJIT" or _VERSION, n, dt * 1e6 / n))
end
