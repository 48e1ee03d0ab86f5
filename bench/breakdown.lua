-- Where a provider call's client time goes, in this process, over the transport paykit.http
-- picks by default (PAYKIT_TRANSPORT=curl: libcurl):
--   <lua> bench/breakdown.lua BASE_URL [N] [SCENARIO]   (bench/run profile runs it)
-- SCENARIO: moka (Moka 3D start, the default), mocopay (MoCoPay verifyPayment), zippy (Zippy
-- create transaction), against a server answering as bench/bench.lua's nginx does. Prints
-- bench/split.lua's split: the whole call as shipped, and its exclusive parts, by layer and by
-- function, adding up to it.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local is_jit = type(jit) == "table"
package.cpath = "./build/" .. (is_jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local base, n, scenario = arg[1], tonumber(arg[2] or 3000), arg[3] or "moka"
local names = { moka = "Moka 3D start", mocopay = "MoCoPay verifyPayment", zippy = "Zippy create transaction" }
assert(base and names[scenario], "usage: <lua> bench/breakdown.lua BASE_URL [N] [moka|mocopay|zippy]")

local title = string.format("%s, %s, PAYKIT_TRANSPORT=%s", names[scenario], base, os.getenv("PAYKIT_TRANSPORT") or "(unset: auto)")
io.write(require("bench.split").run {
  title = title, n = n,
  make = function() return require("bench.providers").make(scenario, base) end,
})
