-- For spec/loop_spec.lua, under strace: a slow-card payment in flight (nothing ready for 3 s),
-- then 200 loop:step(0) between two marker file opens; the spec checks that every poll-like
-- system call between the markers had a zero timeout.
local root = arg[0]:match("^(.*)/spec/support/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/" .. (rawget(_G, "jit") and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local paykit = require "paykit"
local core = require "paykit.core"
local base = assert(os.getenv("PAYKIT_SANDBOX_URL"))
local gw = assert(paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass", base_url = base .. "/moka" })
local lp = paykit.loop.new()
local h = lp:start(function()
  return gw:purchase { three_d = false, reference = "step0-" .. core.random_hex(4), amount = "1.00", currency = "TL",
    client_ip = "127.0.0.1", card = { holder = "A B", number = "4000000000200008", exp_month = "12", exp_year = "2030", cvc = "123" } }
end)
for _ = 1, 20 do lp:step(0.01) end -- connected and sent: now only the answer is awaited
local function mark(name) local f = io.open("/nonexistent/" .. name) if f then f:close() end end
mark("paykit-step0-begin")
for _ = 1, 200 do lp:step(0) end
mark("paykit-step0-end")
print(("step0: 200 steps, done=%s"):format(tostring(h:done())))
h:cancel()
