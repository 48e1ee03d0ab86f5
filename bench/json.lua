-- JSON microbenchmark: paykit.core's C writer/reader next to lua-cjson and the Lua writer the
-- providers use today (paykit.gateway.json), on the bodies and answers of the provider bench.
--   lua5.4 bench/json.lua [N]      luajit bench/json.lua [N]     (bench/run json runs both)
-- Prints CPU microseconds per operation (os.clock over N operations, after a warm-up), and
-- checks first that the C writer gives the very bytes gateway.json gives for the Moka body.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local is_jit = type(jit) == "table"
package.cpath = "./build/" .. (is_jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local N = tonumber(arg[1] or 20000)
local core = require "paykit.core"
local cjson = require("cjson.safe").new()
local gateway = require "paykit.gateway"
local moka = require "paykit.providers.moka"
local F = require "bench.fixtures"

-- The one-line changes the integrator makes in gateway.lua, done here from outside: the
-- ordered objects and decimals carry the markers the C writer reads.
local Obj, Dec = getmetatable(gateway.object()), getmetatable(gateway.decimal("1"))
Obj.__json_keys, Obj.__json_values = "_k", "_v"
Dec.__json_number = 1

local gw = assert(moka.new { dealer_code = "1731", username = "bench-user", password = "bench-password-not-secret",
  base_url = "http://127.0.0.1:1" })
local req = assert(moka._payment_request(gw, F.moka_payment, true))
local function moka_body()
  return gateway.put(gateway.put(gateway.object(), "PaymentDealerAuthentication", gw._auth()), "PaymentDealerRequest", req)
end
local body = moka_body()
local lua_text, c_text = gateway.json(body), assert(core.json_encode(body))
assert(lua_text == c_text, "the C writer differs from gateway.json on the Moka body:\n" .. lua_text .. "\n" .. c_text)

-- The Moka body as the plain tables cjson can write (order lost, the amount a float: cjson is
-- here only as the speed reference).
local function plain(v)
  local mt = getmetatable(v)
  if mt == Obj then
    local t = {}
    for i, k in ipairs(v._k) do t[k] = plain(v._v[i]) end
    return t
  elseif mt == Dec then
    return tonumber(v[1])
  end
  return v
end
local moka_plain = plain(body)
local zippy = {}
for k, v in pairs(F.zippy_transaction) do zippy[k] = v end

local function bench(name, fn)
  for _ = 1, 200 do fn() end
  collectgarbage("collect")
  local c0 = os.clock()
  for _ = 1, N do fn() end
  local us = (os.clock() - c0) * 1e6 / N
  io.write(string.format("  %-58s %8.2f us\n", name, us))
  return us
end

io.write(string.format("JSON, %s, %d operations each (CPU us per operation); Moka body %d bytes, answer %d bytes\n",
  is_jit and "LuaJIT" or _VERSION, N, #c_text, #F.mocopay_answer))
io.write("encode the Moka 3D body (ordered objects, amount 27.50):\n")
local a = bench("gateway.json (Lua writer, today)", function() return gateway.json(body) end)
local b = bench("core.json_encode (C writer)", function() return core.json_encode(body) end)
bench("cjson.encode (same members as plain tables, amount a float)", function() return cjson.encode(moka_plain) end)
io.write(string.format("  C writer vs Lua writer: %.1fx faster\n", a / b))
io.write("build and encode the Moka body (what Moka:call does per call):\n")
a = bench("build + gateway.json", function() return gateway.json(moka_body()) end)
b = bench("build + core.json_encode", function() return core.json_encode(moka_body()) end)
io.write(string.format("  %.1fx faster\n", a / b))
io.write("encode the Zippy transaction (a plain table; Zippy uses cjson today):\n")
bench("cjson.encode", function() return cjson.encode(zippy) end)
bench("core.json_encode (keys sorted)", function() return core.json_encode(zippy) end)
io.write("decode the MoCoPay verifyPayment answer (6 amounts):\n")
local amounts = { "chargedAmount", "failedAmount", "lastChargedAmount", "lastFailedAmount", "totalChargedAmount",
  "totalFailedAmount" }
local text_set = {}
for _, k in ipairs(amounts) do text_set[k] = true end
local answer = F.mocopay_answer
bench("cjson.decode", function() return cjson.decode(answer) end)
bench("cjson.decode + the 6 amounts read from the text (today)", function()
  local j = cjson.decode(answer)
  for _, k in ipairs(amounts) do
    if j[k] ~= nil then answer:match('"' .. k .. '"%s*:%s*(%-?%d[%d%.eE+%-]*)') end
  end
  return j
end)
bench("core.json_decode", function() return core.json_decode(answer) end)
bench("core.json_decode{text = the 6 amounts} (exact, one pass)", function() return core.json_decode(answer, { text = text_set }) end)
io.write("decode the Moka answer:\n")
bench("cjson.decode", function() return cjson.decode(F.moka_answer) end)
bench("core.json_decode", function() return core.json_decode(F.moka_answer) end)
