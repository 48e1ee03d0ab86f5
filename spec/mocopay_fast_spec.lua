-- MoCoPay's request signature in C (core.mocopay_signer): the published vector, the same
-- signatures as the Lua scheme over generated inputs, the fallbacks, verifyPayment's wire
-- bytes and errors, and no secret in what the signer shows.
local core = require "paykit.core"
local paykit = require "paykit"
local mocopay = require "paykit.providers.mocopay"
local signing = require "paykit.providers.mocopay_sign"
local request = require "paykit.providers.mocopay_request"

local VECTOR_PARAMS = { mcc = "228", mnc = "01", pid = "12000", userId = "123456789" }
local SECRET = "this.is.a.secret"

local json = require "paykit.kit.json"

-- A client whose wire keeps every request and answers for the session (or user) asked about.
local function client(extra)
  local sent = {}
  local opts = { api_key = "app-1", api_secret = SECRET, base_url = "http://127.0.0.1:9/moco", retry = false }
  for k, v in pairs(extra or {}) do opts[k] = v end
  local gw = assert(paykit.mocopay(opts))
  gw.http.wire = { request = function(a, b)
    local req = type(b) == "table" and b or a
    sent[#sent + 1] = req
    local q = req.url:match("%?(.*)$")
    local map = core.query_decode(q)
    local v = map.sessionId or map.userId or map.transactionId
    return { status = 200, headers = { ["Content-Type"] = "application/json" },
      body = json.encode { sessionId = map.sessionId or "s-x", status = "PaymentComplete", currencyCode = "TRY",
        totalChargedAmount = json.decimal("199"), transactions = { v }, endUser = { userId = map.userId or "u-x" } } }
  end }
  return gw, sent
end

-- generated parameter lists: names and values of every kind of byte, repeats, `signature`
local function lists()
  local out, words = {}, { "a", "b", "B", "pid", "mcc", "userId", "signature", "x y", "k&=v", "\195\169", "", "z~" }
  for i = 1, 60 do
    local l = {}
    for j = 1, (i % 7) + 1 do
      local n = words[(i * 3 + j) % #words + 1]
      local v = words[(i + j * 5) % #words + 1] .. ((i + j) % 4 == 0 and tostring(i) or "")
      l[#l + 1] = { n, v }
    end
    out[#out + 1] = l
  end
  out[#out + 1] = {}
  return out
end

describe("mocopay's request signer in C", function()
  it("gives the published vector, and another signature for any tampered part", function()
    local s = core.mocopay_signer("md5", SECRET)
    local list = signing.to_pairs(VECTOR_PARAMS)
    assert.are.equal("WETDyNQLx0+8BJ16vDgiVg==", s:sign("/v1/payment/initPayment/", list))
    assert.are.equal("ApiKey app-1:WETDyNQLx0+8BJ16vDgiVg==", s:sign("/v1/payment/initPayment/", list, "ApiKey app-1:"))
    assert.are_not.equal("WETDyNQLx0+8BJ16vDgiVg==", s:sign("/v1/payment/initPayment", list))
    assert.are_not.equal("WETDyNQLx0+8BJ16vDgiVg==", core.mocopay_signer("md5", "this.is.a.secreT"):sign("/v1/payment/initPayment/", list))
    local tampered = signing.to_pairs { mcc = "228", mnc = "01", pid = "12001", userId = "123456789" }
    assert.are_not.equal("WETDyNQLx0+8BJ16vDgiVg==", s:sign("/v1/payment/initPayment/", tampered))
    assert.are.equal(mocopay.sign(SECRET, "/v1/payment/initPayment/", VECTOR_PARAMS, "sha1"),
      core.mocopay_signer("sha1", SECRET):sign("/v1/payment/initPayment/", list))
  end)

  it("signs as the Lua scheme over generated lists, md5 and sha1", function()
    local n = 0
    for _, digest in ipairs { "md5", "sha1" } do
      local s = core.mocopay_signer(digest, "sec ret/" .. digest)
      for _, l in ipairs(lists()) do
        for _, path in ipairs { "/v1/payment/verifyPayment", "/p?x", "" } do
          assert.are.equal(mocopay.sign("sec ret/" .. digest, path, l, digest), s:sign(path, l))
          n = n + 1
        end
      end
    end
    assert.are.equal(2 * 61 * 3, n)
  end)

  it("verify signs one pair as sign does, and refuses what verifyPayment's checks refuse", function()
    local s = core.mocopay_signer("md5", SECRET)
    for _, v in ipairs { "s-1", "sess with space", "a&b=c", "\195\169t\195\169", ("x"):rep(255), "~" } do
      for _, name in ipairs { "sessionId", "userId", "transactionId" } do
        assert.are.equal(s:sign("/v", { { name, v } }, "p:"), s:verify("/v", name, v, "p:"))
        assert.are.equal(name, (request.verify_key { [name] = v }))
      end
    end
    for _, v in ipairs { "", ("x"):rep(256), "a\nb", "a\0b", "tab\t", "del\127", 12, true } do
      assert.is_nil(s:verify("/v", "sessionId", v))
      assert.is_nil(request.verify_key(v))
    end
    assert.is_nil(s:verify("/v", "signature", "x"))
  end)

  it("leaves a map, a non-string value and a long list to the general way", function()
    local s = core.mocopay_signer("md5", SECRET)
    assert.is_nil(s:sign("/p", VECTOR_PARAMS))
    assert.is_nil(s:sign("/p", { { "pid", 12000 } }))
    assert.is_nil(s:sign("/p", { "pid" }))
    local long = {}
    for i = 1, 33 do long[i] = { "k" .. i, "v" } end
    assert.is_nil(s:sign("/p", long))
    -- and the instance's signer then signs the general way, the same bytes
    local sign = signing.signer(SECRET)
    assert.are.equal(mocopay.sign(SECRET, "/p", VECTOR_PARAMS), sign("/p", VECTOR_PARAMS))
    assert.are.equal(mocopay.sign(SECRET, "/p", long), sign("/p", long))
    assert.are.equal("x:" .. mocopay.sign(SECRET, "/p", { { "pid", 12000 } }), sign("/p", { { "pid", 12000 } }, "x:"))
  end)

  it("shows no secret, and refuses to sign once closed", function()
    local s = core.mocopay_signer("sha1", "pfkkdhi9sl3r4s00")
    assert.are.equal("paykit.mocopay_signer (sha1)", tostring(s))
    assert.are.equal("paykit.mocopay_signer", getmetatable(s))
    s:close()
    s:close()
    assert.has_error(function() s:sign("/p", {}) end)
    assert.has_error(function() s:verify("/p", "sessionId", "x") end)
    local gw = client()
    for _, v in pairs(gw) do assert.is_nil(tostring(v):find(SECRET, 1, true)) end
  end)
end)

describe("mocopay verifyPayment with the key checked and signed in one C call", function()
  local IDS = { "s-1", "sess with space", "a&b=c+d", "\195\169t\195\169", ("x"):rep(255), "semi;colon", "50%" }

  it("sends the URL and the Signature header of the published scheme, for every kind of key", function()
    for _, extra in ipairs { {}, { digest = "sha1" }, { base_url = "http://127.0.0.1:9/" }, { paths = { verify = "/v2/verify" } } } do
      local gw, sent = client(extra)
      local base_path = gw.base_path
      for _, id in ipairs(IDS) do
        for _, by in ipairs { id, { sessionId = id }, { session_id = id }, { userId = id }, { transactionId = id } } do
          local r, err = gw:verify_payment(by)
          assert.is_table(r, tostring(err and err.message))
          local req = sent[#sent]
          local name = type(by) == "string" and "sessionId" or (by.sessionId or by.session_id) and "sessionId"
            or by.userId and "userId" or "transactionId"
          assert.are.equal(gw.base_url:gsub("/$", "") .. gw.verify_path .. "?" .. name .. "=" .. core.pct_encode(id), req.url)
          assert.are.equal("ApiKey app-1:" .. mocopay.sign(SECRET, base_path .. gw.verify_path, { [name] = id }, extra.digest),
            req.headers.Signature)
          assert.are.equal("", req.body)
          assert.are.equal("POST", req.method)
        end
      end
    end
  end)

  it("signs the general way with the signature in a parameter or encoded values", function()
    for _, extra in ipairs { { signature_in = "param" }, { encode_values = true }, { signature_in = "param", encode_values = true } } do
      local gw, sent = client(extra)
      for _, id in ipairs(IDS) do
        assert.is_table(gw:verify_payment(id))
        local req = sent[#sent]
        local sig = "app-1:" .. mocopay.sign(SECRET, gw.base_path .. gw.verify_path, { sessionId = id }, nil, extra.encode_values)
        if extra.signature_in == "param" then
          assert.is_nil(req.headers.Signature)
          assert.truthy(req.url:find("signature=" .. core.pct_encode(sig), 1, true))
        else
          assert.are.equal("ApiKey " .. sig, req.headers.Signature)
        end
      end
    end
  end)

  it("refuses a bad key by name before any request, as before", function()
    local gw, sent = client()
    for _, case in ipairs {
      { "", "sessionId", "invalid" }, { ("x"):rep(256), "sessionId", "invalid" }, { "a\nb", "sessionId", "invalid" },
      { {}, "sessionId", "required" }, { { userId = "a\0" }, "userId", "invalid" }, { 5, "sessionId", "required" },
      { { sessionId = "a", userId = "b" }, "userId", "exclusive" }, { { sessionid = "a" }, "sessionid", "unknown_field" },
    } do
      local r, err = gw:verify_payment(case[1])
      assert.is_nil(r)
      assert.are.equal(case[2], err.field)
      assert.are.equal(case[3], err.code)
    end
    assert.are.equal(0, #sent)
  end)
end)
