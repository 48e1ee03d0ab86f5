-- The provider layer alone: MoCoPay verifyPayment and Zippy create transaction with the
-- transport replaced by the canned answer (no socket), CPU microseconds per call.
--   lua5.4 bench/layer_providers.lua [N] [mocopay|zippy|all]
--   valgrind --tool=callgrind lua5.4 bench/layer_providers.lua 2000 zippy   (instructions)
-- The instance's paykit.http transport is real (retries, correlation id, headers); only its
-- wire client is a table answering the canned bytes of bench/fixtures.lua.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local is_jit = type(jit) == "table"
package.cpath = "./build/" .. (is_jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local n, which = tonumber(arg[1] or 20000), arg[2] or "all"
local F = require "bench.fixtures"

local canned = F.canned

local calls = {}
do
  local c = assert(require("paykit.providers.mocopay").new { api_key = "bench-key",
    api_secret = "bench-secret-not-secret", base_url = "http://127.0.0.1:1", amount_unit = "major", retry = false })
  c.http.wire = canned(F.mocopay_answer)
  calls.mocopay = function()
    local r = c:verify_payment(F.mocopay_session)
    return r ~= nil and r.status == "paid" and r.amount == "27.50"
  end
end
do
  local z = assert(require("paykit.providers.zippy").new { consumer_key = "bench-consumer",
    consumer_secret = "bench-consumer-secret", base_url = "http://127.0.0.1:1", notice_keys = { [0] = "bench-notice-key" },
    retry = false })
  z.http.wire = canned(F.zippy_answer)
  local t = F.zippy_transaction
  calls.zippy = function()
    local r = z:create_transaction(t)
    return type(r) == "table" and r.token == F.zippy_token
  end
end

for _, name in ipairs { "mocopay", "zippy" } do
  if which == "all" or which == name then
    local fn = calls[name]
    for _ = 1, 200 do assert(fn(), name .. ": the call did not map the canned answer") end
    collectgarbage("collect")
    local c0 = os.clock()
    for _ = 1, n do fn() end
    local us = (os.clock() - c0) * 1e6 / n
    io.write(string.format("%-8s %-12s %6d calls  %7.2f us CPU per call\n", name,
      is_jit and "LuaJIT" or _VERSION, n, us))
  end
end
