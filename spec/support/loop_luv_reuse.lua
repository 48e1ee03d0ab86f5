-- For spec/loop_adapters_spec.lua, in a process of its own (a crash must not take busted down):
-- paykit.loop.luv used, then luv and the adapter unloaded the way busted unloads what a spec
-- file required (package.loaded restored) and the garbage collected, then both required and
-- used again. Prints one line per round; exits 0 when both rounds got their answers.
--   PAYKIT_SANDBOX_URL=http://127.0.0.1:18790 lua5.4 spec/support/loop_luv_reuse.lua
local root = arg[0]:match("^(.*)/spec/support/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/" .. (rawget(_G, "jit") and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local paykit = require "paykit"
local base = assert(os.getenv("PAYKIT_SANDBOX_URL"))
local gw = assert(paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass", base_url = base .. "/moka" })

local N = 20
local function round(n)
  local uv = require "luv"
  local lp = paykit.loop.new()
  local driver = require("paykit.loop.luv").attach(lp)
  local answers = 0
  for i = 1, N do
    lp:start(function() return gw:status("reuse-" .. n .. "-" .. i) end,
      function(_, err) -- the provider's own answer: the round trip happened
        if type(err) == "table" and err.code == "moka.payment_not_found" then answers = answers + 1 end
      end)
  end
  uv.run()
  driver:close()
  uv.run()
  lp:close()
  print(("round %d: %d of %d answers"):format(n, answers, N))
  io.stdout:flush()
end

round(1)
-- what busted does between two spec files: the modules a file required are unloaded
package.loaded.luv = nil
package.loaded["paykit.loop.luv"] = nil
collectgarbage()
collectgarbage()
round(2)
