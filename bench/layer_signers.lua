-- The request side of MoCoPay verifyPayment and Zippy create transaction, stage by stage:
-- validation, body, signature / OAuth header, and the whole layer (bench/layer_providers.lua's
-- canned answer, no socket). CPU microseconds per call (os.clock), or instructions per call:
--   lua5.4 bench/layer_signers.lua [N] [stage|all]
--   lua5.4 bench/layer_signers.lua callgrind [N] [stage|all]   (runs itself under valgrind
--       --tool=callgrind twice, with 0 and N calls, and prints the difference / N)
-- Stages: zippy.body (the checks and the body's JSON text as create_transaction makes them;
-- before request.transaction_json existed: transaction_body's table only), zippy.json (the
-- kit's JSON writer over that table, the path a transaction off the common case takes),
-- zippy.oauth (the Authorization header), zippy.request (all three and the reference
-- claim: what is done before paykit.http), zippy.whole; mocopay.key (verify_key), mocopay.sign
-- (the Signature header), mocopay.request (key, URL, signature), mocopay.whole.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
local is_jit = type(jit) == "table"
local RT = is_jit and "luajit" or "lua5.4"
package.cpath = "./build/" .. RT .. "/?.so;" .. package.cpath

if arg[1] == "callgrind" then
  local n, which = tonumber(arg[2] or 2000), arg[3] or "all"
  local exe = is_jit and "luajit" or "lua5.4"
  local function total(count, stage)
    local out = os.tmpname()
    local cmd = string.format("valgrind --tool=callgrind --callgrind-out-file=%s %s bench/layer_signers.lua %d %s 2>&1",
      out, exe, count, stage)
    local p = assert(io.popen(cmd))
    local text = p:read("*a")
    p:close()
    os.remove(out)
    local ir = text:match("Collected : (%d+)")
    return assert(tonumber(ir), "no callgrind total in: " .. text)
  end
  local stages = { "zippy.body", "zippy.json", "zippy.oauth", "zippy.request", "zippy.whole",
    "mocopay.key", "mocopay.sign", "mocopay.request", "mocopay.whole" }
  for _, s in ipairs(stages) do
    if which == "all" or which == s or s:find("^" .. which:gsub("%.", "%%.") .. "%.") then
      local base, full = total(0, s), total(n, s)
      io.write(string.format("%-16s %-8s %9.0f instructions per call\n", s, RT, (full - base) / n))
      io.flush()
    end
  end
  return
end

local n, which = tonumber(arg[1] or 20000), arg[2] or "all"
local F = require "bench.fixtures"
local json = require "paykit.kit.json"
local wire = require "paykit.kit.wire"

local canned = F.canned

local calls, order = {}, {}
local function stage(name, fn) calls[name] = fn; order[#order + 1] = name end

do
  local mocopay = require "paykit.providers.mocopay"
  local request = require "paykit.providers.mocopay_request"
  local mwire = require "paykit.providers.mocopay_wire"
  local c = assert(mocopay.new { api_key = "bench-key", api_secret = "bench-secret-not-secret",
    base_url = "http://127.0.0.1:1", amount_unit = "major", retry = false })
  c.http.wire = canned(F.mocopay_answer)
  local s = F.mocopay_session
  stage("mocopay.key", function() return request.verify_key(s) end)
  stage("mocopay.sign", function()
    local req = { method = "POST", path = c.verify_path, query = { { "sessionId", s } }, headers = {} }
    return mwire.sign(c, req)
  end)
  -- what verify_payment and the kit's commit do before paykit.http: the key checked and signed
  -- (one C call once c.signer exists), the query list, the URL, the Signature header
  stage("mocopay.request", function()
    local chosen, value, header = "sessionId", s, nil
    if c.signer then header = c.signer:verify(c.verify_signed_path, chosen, s, c.header_prefix) end
    if not header then chosen, value = request.verify_key(s) end
    local req = { method = "POST", path = c.verify_path, query = { { chosen, value } }, body = "",
      headers = { Accept = "application/json", Signature = header } }
    req.url = wire.url(c, req)
    return mwire.sign(c, req)
  end)
  stage("mocopay.whole", function()
    local r = c:verify_payment(s)
    return r ~= nil and r.status == "paid" and r.amount == "27.50"
  end)
end
do
  local zippy = require "paykit.providers.zippy"
  local request = require "paykit.providers.zippy_request"
  local z = assert(zippy.new { consumer_key = "bench-consumer", consumer_secret = "bench-consumer-secret",
    base_url = "http://127.0.0.1:1", notice_keys = { [0] = "bench-notice-key" }, retry = false })
  z.http.wire = canned(F.zippy_answer)
  local t = F.zippy_transaction
  local url = z.base_url .. F.zippy_path
  local body0 = assert(z:transaction_body(t))
  -- the checks and the JSON text as create_transaction makes them: one C call when the
  -- transaction is the common case (request.transaction_json), else transaction_body + the
  -- kit's JSON writer (what every call did before)
  local fast = request.transaction_json
  local function body_text(tx)
    if fast then
      local text = fast(z.defaults, tx, z.good_urls)
      if text then return text, tx end
    end
    local body = z:transaction_body(tx)
    if fast then request.remember_urls(z.good_urls, body) end
    return json.encode(body), body
  end
  stage("zippy.body", function() if fast then return body_text(t) end return z:transaction_body(t) end)
  stage("zippy.json", function() return json.encode(body0) end)
  stage("zippy.oauth", function() return z.sign("POST", url) end)
  stage("zippy.request", function()
    local text, body = body_text(t)
    request.claim_reference(z.references, body)
    return text, z.sign("POST", url)
  end)
  stage("zippy.whole", function()
    local r = z:create_transaction(t)
    return type(r) == "table" and r.token == F.zippy_token
  end)
end

for _, name in ipairs(order) do
  if which == "all" or which == name or name:find("^" .. which:gsub("%.", "%%.") .. "%.") then
    local fn = calls[name]
    for _ = 1, 200 do assert(fn(), name .. ": the stage answered nothing") end
    collectgarbage("collect")
    local c0 = os.clock()
    for _ = 1, n do fn() end
    local us = (os.clock() - c0) * 1e6 / math.max(n, 1)
    io.write(string.format("%-16s %-8s %7d calls %8.2f us CPU per call\n", name, RT, n, us))
  end
end
