-- The answer side's fast reading (core.json_pick through paykit.kit.json.pick) against the
-- general decoder (core.json_decode as paykit.kit.json.decode uses it): recorded and generated
-- answers of Moka, MoCoPay and Zippy must read the same, value for value; malformed, oversized
-- and deeply nested texts must fail the same way; and a result's lazily decoded `raw` must be
-- exactly what the general decoder gives.
local core = require "paykit.core"
local json = require "paykit.kit.json"
local kwire = require "paykit.kit.wire"
local mwire = require "paykit.providers.moka_wire"
local pwire = require "paykit.providers.mocopay_wire"
local F = dofile("bench/fixtures.lua")

local OBJ, ARR = core.json_object_mark, core.json_array_mark

local same = require "spec.support.same"

local function is_seq(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do if t[i] == nil then return false end end
  return true
end
local function is_obj(t)
  for k in pairs(t) do if type(k) ~= "string" then return false end end
  return true
end

-- Every path of `paths` read from the decoded tree must equal what pick gave there.
local function agree(text, paths, exact)
  local map = json.map(paths, exact)
  local got = table.pack(json.pick(text, map))
  local tree, derr = json.decode(text, { exact = exact })
  if tree == nil then
    -- the same failure, word for word
    assert.is_nil(got[1])
    local _, raw_err, raw_code = core.json_decode(text, json.read_opts(exact))
    assert.equal(raw_err, got[2])
    assert.equal(derr, got[2])
    assert.equal("invalid_json", got[3])
    assert.equal("invalid_json", raw_code)
    return false
  end
  local kinds = { string = "string", number = "number", boolean = "boolean" }
  local kind = got[1]
  if type(tree) == "table" then
    assert.truthy(kind == "object" or kind == "array", text)
  elseif tree == core.json_null then
    assert.equal("null", kind)
  else
    assert.equal(kinds[type(tree)], kind)
  end
  -- which paths have a longer one below them
  local interior = {}
  for _, p in ipairs(paths) do
    if type(p) == "table" then
      for i = 1, #p - 1 do interior[table.concat(p, "\0", 1, i)] = true end
    end
  end
  for i, p in ipairs(paths) do
    local names = type(p) == "table" and p or { p }
    local v = kind == "object" and tree or nil -- paths start at the top-level object
    for _, n in ipairs(names) do
      if type(v) == "table" then v = v[n] else v = nil end
    end
    local g = got[i + 1]
    if interior[table.concat(names, "\0")] and type(v) == "table" then
      assert.truthy(g == OBJ or g == ARR, "a container mark at " .. table.concat(names, "."))
      if g == ARR then assert.truthy(is_seq(v)) else assert.truthy(is_obj(v)) end
    else
      assert.truthy(same(v, g), "path " .. table.concat(names, ".") .. " of " .. text)
    end
  end
  return true
end

local MOKA_PATHS = { "ResultCode", "ResultMessage", "Exception", "Data", { "Data", "Url" }, { "Data", "CodeForHash" },
  { "Data", "VirtualPosOrderId" }, { "Data", "IsSuccessful" }, { "Data", "Amount" }, { "Data", "PaymentDetail" } }
local MOCOPAY_PATHS = { "sessionId", "series", "chargedAmount", "totalChargedAmount", "transactions", "endUser",
  { "endUser", "userId" }, { "endUser", "phone" }, "status", "expiresIn" }
local ZIPPY_PATHS = { "uuid", "status", "token", "price", "currency", "ext_transaction_id", "error", { "error", "code" } }

local MOKA_ANSWERS = {
  F.moka_answer,
  '{"Data":null,"ResultCode":"PaymentDealer.CheckPaymentDealerAuthentication.InvalidAccount","ResultMessage":"","Exception":null}',
  '{"Data":{"IsSuccessful":true,"ResultCode":"","ResultMessage":"","VirtualPosOrderId":"ORDER-17131QQFG04026575",'
    .. '"Amount":27.50},"ResultCode":"Success","ResultMessage":"","Exception":null}',
  '{"Data":{"IsSuccessful":false,"ResultCode":"000","ResultMessage":"Genel Hata","VirtualPosOrderId":""},'
    .. '"ResultCode":"Success","ResultMessage":"","Exception":null}',
  '{"Data":{"PaymentDetail":{"Amount":1000.00,"CurrencyCode":"TL","PaymentStatus":2,"DealerPaymentId":27405},'
    .. '"PaymentTrxDetailList":[{"Amount":1000.00,"TrxStatus":1}]},"ResultCode":"Success"}',
  '{"Data":{"Url":"a"},"Data":{"CodeForHash":"b"},"ResultCode":"Success"}', -- repeated: the last one wins
  '{"Data":"https://x","ResultCode":"Success"}',
  '{"Data":[{"Url":"a"}],"ResultCode":"Success"}',
  '{"ResultCode":" Success ","Data":{"Url":"\\u0041\\ud83d\\ude00","CodeForHash":"x\\/y"}}',
  '[{"ResultCode":"Success"}]', '"Success"', "null", "3", "true",
}
local MOCOPAY_ANSWERS = {
  F.mocopay_answer,
  '{"sessionId":"s-1","series":"7","chargedAmount":"1.99","totalChargedAmount":1e2,"transactions":{"a":1},"endUser":[1],"status":null}',
  '{"sessionId":"s-1","transactions":[{"id":"t-1","amount":1.50},{"id":"t-2"}],"endUser":{"userId":null,"phone":42},"expiresIn":3600}',
  '{"sessionId":"s","sessionId":"t","endUser":{"userId":"a"},"endUser":"gone"}',
  '{"sessionId":null,"requestId":null,"endUser":null,"chargedAmount":null,"series":null,"transactions":null,"status":null}',
  '{"sessionId":"s","endUser":{"userId":null,"mcc":null},"expiresIn":"12","series":"x","failedAmount":7}',
  '{"totalChargedAmount":-0,"chargedAmount":123456789012345678901234567890,"series":9007199254740993}',
}
local ZIPPY_ANSWERS = {
  F.zippy_answer,
  '{"error":{"code":"VALIDATION","message":"price: invalid"},"status":"ERROR"}',
  '{"uuid":"u","status":"PAID","price":27.5,"currency":"EUR","token":""}',
}

describe("paykit.kit.json.pick against the general decoder", function()
  it("reads Moka's recorded answers as json_decode does, path for path", function()
    for _, a in ipairs(MOKA_ANSWERS) do assert.is_true(agree(a, MOKA_PATHS, mwire.EXACT)) end
  end)

  it("reads MoCoPay's recorded answers as json_decode does, path for path", function()
    for _, a in ipairs(MOCOPAY_ANSWERS) do assert.is_true(agree(a, MOCOPAY_PATHS, pwire.exact)) end
    for _, a in ipairs(MOCOPAY_ANSWERS) do assert.is_true(agree(a, MOCOPAY_PATHS, true)) end
  end)

  it("reads Zippy's recorded answers as json_decode does, path for path", function()
    for _, a in ipairs(ZIPPY_ANSWERS) do assert.is_true(agree(a, ZIPPY_PATHS, nil)) end
  end)

  it("fails on malformed, oversized and deeply nested answers exactly as json_decode does", function()
    local bad = {
      "", " ", "{", '{"ResultCode":"Success"', '{"ResultCode":"Success",}', '{"a":1} x', "{'a':1}",
      '{"a":01}', '{"a":1.}', '{"a":"\1"}', '{"a":"\\x"}', '{"a":"\\ud800"}', '{"a":"\255"}', "\239\187\191{}",
      '{"Data":{"Url":"a",}}', '{"Data":[1,2,]}', '{"a":NaN}', "[" .. string.rep("[", 70) .. string.rep("]", 71),
      '{"Data":' .. string.rep('{"Data":', 64) .. "1" .. string.rep("}", 65),
      '{"ResultCode":"Success","Data":{"Url":"' .. string.rep("x", 5000) .. '"', -- longer than the scratch on the C stack
    }
    for _, t in ipairs(bad) do assert.is_false(agree(t, MOKA_PATHS, mwire.EXACT)) end
    -- a big valid answer (scratch space from the heap) still reads the same
    local big = '{"ResultCode":"Success","Data":{"Url":"' .. string.rep("u", 70000) .. '","CodeForHash":"c"},"Pad":"'
      .. string.rep("p", 70000) .. '"}'
    assert.is_true(agree(big, MOKA_PATHS, mwire.EXACT))
  end)

  it("reads generated answers as json_decode does (seeded random trees and their mutations)", function()
    local seed = 12345
    local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n + 1 end
    local NAMES = { "Data", "Url", "CodeForHash", "ResultCode", "Amount", "sessionId", "endUser", "userId", "x" }
    local function gen(depth)
      local r = rnd(depth > 4 and 6 or 9)
      if r == 1 then return '"' .. NAMES[rnd(#NAMES)] .. '"' end
      if r == 2 then return tostring(rnd(1000) - 500) end
      if r == 3 then return rnd(100) .. "." .. rnd(100) end
      if r == 4 then return ({ "true", "false", "null" })[rnd(3)] end
      if r == 5 then return '"\\u00e9\\n"' end
      if r == 6 then return "1e3" end
      if r <= 8 then
        local parts = {}
        for i = 1, rnd(4) - 1 do parts[i] = '"' .. NAMES[rnd(#NAMES)] .. '":' .. gen(depth + 1) end
        return "{" .. table.concat(parts, ",") .. "}"
      end
      local parts = {}
      for i = 1, rnd(3) - 1 do parts[i] = gen(depth + 1) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local paths = { "Data", { "Data", "Url" }, { "Data", "Amount" }, { "Data", "Data" }, { "Data", "Data", "x" },
      "ResultCode", "Amount", "endUser", { "endUser", "userId" }, "x" }
    local good, bad = 0, 0
    for _ = 1, 400 do
      local t = "{" .. '"Data":' .. gen(1) .. ',"' .. NAMES[rnd(#NAMES)] .. '":' .. gen(1) .. "}"
      if agree(t, paths, { Amount = true, x = true }) then good = good + 1 else bad = bad + 1 end
      -- a mutation: one byte changed or cut
      local i = rnd(#t)
      local m = rnd(2) == 1 and (t:sub(1, i - 1) .. string.char(rnd(128) - 1) .. t:sub(i + 1)) or t:sub(1, i)
      if agree(m, paths, { Amount = true }) then good = good + 1 else bad = bad + 1 end
    end
    assert.truthy(good > 400 and bad > 100, good .. " good, " .. bad .. " bad")
  end)

  it("maps MoCoPay's picked values to the same payment_info as the decoded answer", function()
    for _, a in ipairs(MOCOPAY_ANSWERS) do
      local tree = assert(json.decode(a, { exact = pwire.exact }))
      local picked = table.pack(json.pick(a, pwire.PAYMENT_MAP))
      assert.truthy(same(pwire.payment_info(tree), pwire.payment_info_of(table.unpack(picked, 2, picked.n))), a)
    end
  end)

  it("refuses a map that is not one, and bad paths", function()
    assert.has_error(function() core.json_pick("{}", {}) end)
    assert.has_error(function() core.json_map({}) end)
    assert.has_error(function() core.json_map({ "a", "a" }) end)
    assert.has_error(function() core.json_map({ { "a", 1 } }) end)
    assert.has_error(function() core.json_map({ "a" }, { numbers = "float" }) end)
  end)
end)

describe("a result's lazily decoded raw", function()
  local moka = require "paykit.providers.moka"
  local function gw_with(body, status)
    local gw = assert(moka.new { dealer_code = "1731", username = "u-not-secret", password = "p-not-secret",
      base_url = "http://127.0.0.1:1", retry = false })
    gw.http = { request = function() return { status = status or 200, body = body, headers = {} } end }
    return gw
  end

  it("is exactly what the general decoder gives, and is not listed or printed before it is read", function()
    local gw = gw_with(F.moka_answer)
    local r = assert(gw:start_3d(F.moka_payment))
    assert.equal(F.moka_url, r.redirect_url)
    assert.equal("0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9", r.keep.code_for_hash)
    for k in pairs(r) do assert.not_equal("raw", k) end
    local printed = tostring(r)
    assert.falsy(printed:find("0A1B2C3D", 1, true), printed)
    assert.falsy(printed:find("Success", 1, true), printed) -- neither raw nor its text
    local want = kwire.read_opts(gw)
    assert.truthy(same(core.json_decode(F.moka_answer, want), r.raw))
    assert.truthy(same(json.decode(F.moka_answer, { exact = mwire.EXACT }), r.raw))
    assert.equal(r.raw, r.raw) -- decoded once
    local listed = false
    for k in pairs(r) do if k == "raw" then listed = true end end
    assert.is_true(listed)
    assert.falsy(tostring(r):find("0A1B2C3D", 1, true)) -- redact.dump scrubs CodeForHash in raw
  end)

  it("gives the same errors as the general reading for answers the fast reading does not take", function()
    local errors = require "paykit.errors"
    local cases = {
      { '{"Data":null,"ResultCode":"PaymentDealer.CheckPaymentDealerAuthentication.InvalidAccount","ResultMessage":"x"}', 200 },
      { '{"Data":null,"ResultCode":"PaymentDealer.DoDirectPayment3dRequest.InvalidRequest","ResultMessage":"","Exception":null}', 200 },
      { "not json", 200 }, { "", 200 }, { "[1]", 200 }, { '"Success"', 200 }, { '{"ResultCode":7}', 200 },
      { '{"ResultCode":"Success"}', 201 }, { "Server Error", 500 }, { '{"ResultCode":"Success"}', 404 },
      { '{"ResultCode":"Failure","ResultMessage":"bad"}', 400 }, { '{"ResultCode":"Success"}', 401 },
    }
    for _, c in ipairs(cases) do
      local r, err = gw_with(c[1], c[2]):start_3d(F.moka_payment)
      assert.is_nil(r)
      -- the general reading (kit.wire.commit, then moka_wire.open) of the same answer
      local d, want = mwire.call(gw_with(c[1], c[2]), "start_3d", "/PaymentDealer/DoDirectPaymentThreeD",
        require("paykit.gateway").object(), false)
      assert.is_nil(d)
      assert.truthy(errors.is(want))
      for _, k in ipairs { "kind", "code", "message", "status", "retryable", "provider_code", "provider_message", "field" } do
        assert.equal(want[k], err[k], k .. " for " .. c[1])
      end
    end
    -- good envelopes without what start_3d needs: its own error, as before
    for _, a in ipairs { '{"ResultCode":"Success","Data":{"Url":"a"}}', '{"ResultCode":"Success","Data":null}',
                          '{"ResultCode":"Success","Data":"https://x"}', '{"ResultCode":"Success","Data":[{"Url":"a","CodeForHash":"b"}]}' } do
      local r, err = gw_with(a):start_3d(F.moka_payment)
      assert.is_nil(r)
      assert.equal("moka.invalid_response", err.code)
      assert.equal("Moka's 3D answer lacks Data.Url or Data.CodeForHash", err.message)
    end
  end)
end)
