-- Zippy's request side in C (core.zippy_transaction, core.oauth_signer): the same bytes on the
-- wire as the Lua path, over many generated inputs; the same errors; the worked example and
-- tampered inputs through the C signer; no secret in what the signer shows.
local core = require "paykit.core"
local paykit = require "paykit"
local json = require "paykit.kit.json"
local oauth = require "paykit.providers.zippy_oauth"
local request = require "paykit.providers.zippy_request"

local KEYS = { [0] = "zippy-notice-secret-0" }
local SECRET = "kd94hf93k423kf44"

-- A client whose wire is a table keeping every request it is given and answering `answer`.
local function client(extra, answer)
  local sent = {}
  local opts = { consumer_key = "dpf43f3p2l4k3l03", consumer_secret = SECRET, base_url = "http://127.0.0.1:9/zippy",
    notice_keys = KEYS, retry = false, clock = function() return 1700000000 end, nonce = function() return "n-1" end }
  for k, v in pairs(extra or {}) do opts[k] = v end
  local z = assert(paykit.zippy(opts))
  z.http.wire = { request = function(a, b)
    local req = type(b) == "table" and b or a
    local headers = {}
    for k, v in pairs(req.headers or {}) do -- in pairs order; the correlation id is random per request
      headers[#headers + 1] = k .. ": " .. (k == "X-Correlation-Id" and "(id)" or v)
    end
    sent[#sent + 1] = (req.method or "?") .. " " .. req.url .. "\n" .. table.concat(headers, "\n") .. "\n\n" .. tostring(req.body)
    return { status = 200, headers = { ["Content-Type"] = "application/json" },
      body = answer or '{"uuid":"u-1","status":"CREATED","token":"tok-1"}' }
  end }
  return z, sent
end

-- The Lua path only: a set of good URLs that never keeps one.
local function lua_only(z)
  z.good_urls = setmetatable({}, { __newindex = function() end })
  return z
end

-- Generated transactions: the common case and its neighbours (what the C path refuses).
local function generated()
  local out = {}
  local base = {
    product_id = "0f8fad5b-d9cb-469f-a165-70867728950e", price = "0.89", currency = "EUR", pay_method = "OPERATOR",
    carrier = "TMOBILE", region = 300, ext_transaction_id = "order-1",
    success_url = "https://shop.example/success", error_url = "https://shop.example/error",
    callback_success_url = "https://shop.example/cb/success", callback_error_url = "https://shop.example/cb/error",
  }
  local variants = {
    price = { "0.89", "1.00", "0.01", "12345.67", "9999999999999.99", "1.5", "01.50", "0.00", "-1.00", "1e2", "27",
      " 1.00", "1.001", 27.5 },
    price_minor = { 2750, 1, 0, -5, 1.5, "27" },
    currency = { "EUR", "USD", "GBP", "eur", "TRY", "JPY", "XXX", 5 },
    pay_method = { "CARD", "OPERATOR", "card", "SMS" },
    carrier = { "TMOBILE", "a", "with space", " ", "quote\"back\\slash", "caf\195\169", "tab\tx", ("x"):rep(255), ("x"):rep(256), "" },
    region = { 300, 0, 999, 7, "286", "028", "28", "2860", "abc", 1000, -1, 30.5, 286.0 },
    ext_transaction_id = { "order-1", "o \"1\"", "o~1/2&3=4", "\195\188ber", "o\0001", ("r"):rep(255), ("r"):rep(256) },
    product_id = { "0F8FAD5B-D9CB-469F-A165-70867728950E", "0f8fad5b-d9cb-469f-a165-70867728950", "not-a-uuid", 12 },
    success_url = { "https://shop.example/success?x=1", "https://shop.example/s#frag", "http://[::1]:8080/ok",
      "https://shop.example/q\"uote", "ftp://shop.example/x", "https://shop.example/\195\169", "nope" },
    error_url = { "https://shop.example/e?a=b&c=d", "https://shop.example/e#f" },
    callback_success_url = { "https://cb.example/ok#f", "https://cb.example/a\\b" },
    callback_error_url = { "http://127.0.0.1:8/cb" },
    product_image_url = { "https://img.example/p.png", "https://img.example/p.png#x", "bad url" },
    colour = { "red" },
  }
  out[#out + 1] = base
  for k, vs in pairs(variants) do
    for _, v in ipairs(vs) do
      local t = {}
      for a, b in pairs(base) do t[a] = b end
      t[k] = v
      if k == "price_minor" then t.price = nil end
      out[#out + 1] = t
    end
  end
  -- without the URLs: the instance's defaults fill them
  local bare = {}
  for a, b in pairs(base) do if not a:find("_url$") then bare[a] = b end end
  out[#out + 1] = bare
  return out
end

local DEFAULTS = { success_url = "https://shop.example/d/ok", error_url = "https://shop.example/d/err",
  callback_success_url = "https://shop.example/d/cb", callback_error_url = "https://shop.example/d/cberr" }

describe("zippy's transaction body in one C call", function()
  it("writes the bytes the Lua checks and the kit's JSON writer write, or leaves the transaction to them", function()
    local good, fast, slow = { [0] = 0 }, 0, 0
    for round = 1, 2 do -- the first round teaches the set of good URLs
      for _, t in ipairs(generated()) do
        local body, err = request.transaction_body(DEFAULTS, t)
        local text = request.transaction_json(DEFAULTS, t, good)
        if text then
          assert.is_table(body, "the C path took a transaction the Lua checks refuse: " .. tostring(err and err.message))
          assert.are.equal(json.encode(body), text)
          fast = fast + 1
        else
          slow = slow + 1
          if body and round == 1 then request.remember_urls(good, body) end
        end
      end
    end
    assert.is_true(fast >= 30, "the C path took " .. fast .. " transactions")
    assert.is_true(slow >= 30, "the Lua path took " .. slow .. " transactions")
  end)

  it("sends the same bytes as the Lua path over many generated transactions, errors alike", function()
    local zc, sent_c = client(DEFAULTS)
    local zl, sent_l = client(DEFAULTS)
    lua_only(zl)
    local n = 0
    for _ = 1, 2 do
      for i, t in ipairs(generated()) do
        t.ext_transaction_id = type(t.ext_transaction_id) == "string" and (t.ext_transaction_id .. "-" .. i) or t.ext_transaction_id
        local rc, ec = zc:create_transaction(t)
        local rl, el = zl:create_transaction(t)
        assert.are.same(rl, rc)
        if el then
          assert.is_table(ec)
          assert.are.equal(el.code, ec.code)
          assert.are.equal(el.field, ec.field)
          assert.are.equal(el.message, ec.message)
        end
        n = n + 1
      end
    end
    assert.are.equal(#sent_l, #sent_c)
    assert.is_true(#sent_c >= 40, #sent_c .. " transactions sent")
    for i = 1, #sent_l do assert.are.equal(sent_l[i], sent_c[i]) end
    assert.is_true(n > 100)
  end)

  it("purchase sends the same bytes through either path", function()
    local zc, sent_c = client(DEFAULTS, '{"uuid":"u-1","status":"CREATED","token":"tok-1","price":"0.89"}')
    local zl, sent_l = client(DEFAULTS, '{"uuid":"u-1","status":"CREATED","token":"tok-1","price":"0.89"}')
    lua_only(zl)
    for i = 1, 5 do
      local p = { product_id = "0f8fad5b-d9cb-469f-a165-70867728950e", amount = "0.89", currency = "EUR",
        pay_method = "CARD", carrier = "TMOBILE", region = "286", ext_transaction_id = "p-" .. i }
      local rc = assert(zc:purchase(p))
      local rl = assert(zl:purchase(p))
      assert.are.equal(rl.redirect_url, rc.redirect_url)
      assert.are.same(rl.keep, rc.keep)
    end
    assert.are.equal(5, #sent_c)
    for i = 1, 5 do assert.are.equal(sent_l[i], sent_c[i]) end
  end)

  it("refuses a bad field by name before any request, the common case's neighbours included", function()
    local z, sent = client(DEFAULTS)
    local t = { product_id = "0f8fad5b-d9cb-469f-a165-70867728950e", price = "0.89", currency = "EUR", pay_method = "CARD",
      carrier = "TMOBILE", region = "286", ext_transaction_id = "b-1" }
    assert(z:create_transaction(t)) -- the URLs are now known good
    for field, bad in pairs { price = "0.00", region = "28", carrier = "tab\tx", pay_method = "SMS", currency = "XXX",
      product_id = "nope", success_url = "https://shop.example/s#f" } do
      local c = {}
      for k, v in pairs(t) do c[k] = v end
      c[field] = bad
      local r, err = z:create_transaction(c)
      assert.is_nil(r)
      assert.are.equal(field, err.field)
    end
    assert.are.equal(1, #sent)
  end)
end)

describe("zippy's OAuth header in one C call", function()
  local function signer(c)
    return oauth.signer(c or { consumer_key = "dpf43f3p2l4k3l03", consumer_secret = SECRET, token = "notimplemented", realm = "Zippy" })
  end

  it("gives the worked example's header", function()
    assert.truthy(signer()("GET", "http://127.0.0.1:2605/sellers", "abc", 1700000000):find(
      'oauth_signature="467mnp5J8iEZ%2F5XGoc2Qz1jqA6s%3D"', 1, true))
  end)

  it("makes the header authorization makes for generated credentials, methods, URLs, nonces and times", function()
    local n = 0
    for i = 1, 40 do
      local c = { consumer_key = "ck" .. ("&= /+"):rep(i % 3) .. i, consumer_secret = ("s%" .. i):rep(i), -- up to 160-byte keys
        token = i % 2 == 0 and "notimplemented" or ("t " .. i), token_secret = i % 3 == 0 and ("ts/" .. i) or nil,
        realm = i % 4 ~= 0 and "Zippy" or nil }
      local sign = signer(c)
      for _, method in ipairs { "GET", "post", "Patch" } do
        for _, url in ipairs { "http://127.0.0.1:2605/sellers", "HTTPS://Shop.Example:443/a/B%20c", "http://h:1/" .. ("p"):rep(i * 10) } do
          local nonce, ts = ("n/" .. i .. "+%"):rep(i % 5 + 1), tostring(1700000000 + i)
          local want = oauth.authorization { method = method, url = url, consumer_key = c.consumer_key,
            consumer_secret = c.consumer_secret, token = c.token, token_secret = c.token_secret, realm = c.realm,
            nonce = nonce, timestamp = ts }
          assert.are.equal(want, sign(method, url, nonce, ts))
          n = n + 1
        end
      end
    end
    assert.are.equal(360, n)
  end)

  it("without a nonce or a time draws 32 random hex digits and takes the clock, and signs them", function()
    local sign = signer()
    local before = os.time()
    local h = sign("POST", "http://127.0.0.1:2605/transactions")
    local after = os.time()
    local nonce = h:match('oauth_nonce="(%x+)"')
    local ts = tonumber(h:match('oauth_timestamp="(%d+)"'))
    assert.are.equal(32, #nonce)
    assert.is_true(ts >= before and ts <= after)
    assert.are.equal(oauth.authorization { method = "POST", url = "http://127.0.0.1:2605/transactions",
      consumer_key = "dpf43f3p2l4k3l03", consumer_secret = SECRET, token = "notimplemented", realm = "Zippy",
      nonce = nonce, timestamp = tostring(ts) }, h)
    assert.are_not.equal(nonce, sign("POST", "http://127.0.0.1:2605/transactions"):match('oauth_nonce="(%x+)"'))
  end)

  it("gives another signature for any tampered input", function()
    local sig = function(h) return h:match('oauth_signature="([^"]+)"') end
    local base = sig(signer()("GET", "http://127.0.0.1:2605/sellers", "abc", 1700000000))
    assert.are.equal("467mnp5J8iEZ%2F5XGoc2Qz1jqA6s%3D", base)
    local other = { consumer_key = "dpf43f3p2l4k3l03", consumer_secret = "kd94hf93k423kf45", token = "notimplemented", realm = "Zippy" }
    for _, h in ipairs {
      signer()("POST", "http://127.0.0.1:2605/sellers", "abc", 1700000000),
      signer()("GET", "http://127.0.0.1:2605/seller", "abc", 1700000000),
      signer()("GET", "http://127.0.0.1:2606/sellers", "abc", 1700000000),
      signer()("GET", "http://127.0.0.1:2605/sellers", "abd", 1700000000),
      signer()("GET", "http://127.0.0.1:2605/sellers", "abc", 1700000001),
      signer(other)("GET", "http://127.0.0.1:2605/sellers", "abc", 1700000000),
      signer({ consumer_key = "dpf43f3p2l4k3l04", consumer_secret = SECRET, token = "notimplemented", realm = "Zippy" })(
        "GET", "http://127.0.0.1:2605/sellers", "abc", 1700000000),
      signer({ consumer_key = "dpf43f3p2l4k3l03", consumer_secret = SECRET, token = "implemented", realm = "Zippy" })(
        "GET", "http://127.0.0.1:2605/sellers", "abc", 1700000000),
    } do
      assert.are_not.equal(base, sig(h))
    end
  end)

  it("shows no key, and refuses to sign once closed", function()
    local key = "pfkkdhi9sl3r4s00-secret&token-secret"
    local s = core.oauth_signer(key, 'OAuth oauth_nonce="', '", t="', '", s="', "n%3D", "%26t%3D", "%26v")
    assert.are.equal("paykit.oauth_signer", tostring(s))
    assert.is_nil(tostring(s):find("pfkk", 1, true))
    assert.are.equal("paykit.oauth_signer", getmetatable(s))
    local h = s:header("GET", "http%3A%2F%2Fh%2F", "abc", "1")
    assert.is_nil(h:find("pfkk", 1, true))
    assert.are.equal(h, s:header("get", "http%3A%2F%2Fh%2F", "abc", "1"))
    s:close()
    s:close()
    assert.has_error(function() s:header("GET", "http%3A%2F%2Fh%2F", "abc", "1") end)
  end)
end)
