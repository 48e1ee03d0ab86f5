-- The compiled request shapes of Moka's payments (paykit.core.shape, used by
-- moka_request.payment_body) against the Lua reference (moka_request.payment + moka_wire.body
-- + the kit's JSON writer): over many generated inputs, valid and invalid, the shape accepts
-- only what the reference accepts, writes byte-identical bodies and the same info, and
-- payment_body gives exactly the reference's error (code, field, message) for everything else.
local moka = require "paykit.providers.moka"
local R = require "paykit.providers.moka_request"
local wire = require "paykit.providers.moka_wire"
local json = require "paykit.kit.json"
local core = require "paykit.core"
local prng = require "spec.support.prng"

local NOW = 1796083200 -- 2026-12-01 UTC
local PAN = "4111111111111111"

local function gateway(over)
  local o = { dealer_code = "1731", username = "spec-user", password = "spec-password", base_url = "http://127.0.0.1:1",
    clock = function() return NOW end }
  for k, v in pairs(over or {}) do o[k] = v end
  return assert(moka.new(o))
end

local PATHS = { [true] = "/PaymentDealer/DoDirectPaymentThreeD", [false] = "/PaymentDealer/DoDirectPayment" }

-- the reference: body text and info, or nil and the error
local function reference(gw, p, three_d)
  local req, info = R.payment(gw, p, three_d)
  if not req then return nil, info end
  local ok, text = pcall(json.encode, wire.body(gw, PATHS[three_d], req))
  if not ok then return nil, "unencodable" end
  return text, info
end

local function same_error(a, b)
  return type(a) == "table" and type(b) == "table" and a.kind == b.kind and a.code == b.code and a.field == b.field
    and a.message == b.message
end

-- pools of values per field (nil is among the choices: the field left out)
local LONG = string.rep("x", 100)
local POOLS = {
  amount = { "27.50", "27.5", "0.00", "0.01", "0", "27", "27.500", "+1", "-1", "1e3", ".5", "5.", "007.50",
    "90071992547409.91", "90071992547409.92", "99999999999999999999", 27.5, 27, "", "abc", "1,00", " 1", false },
  amount_minor = { 2750, 0, -1, 2750.0, 2750.5, 2 ^ 53, 2 ^ 53 - 1, "2750", 1 / 0, 0 / 0, 1 },
  currency = { "TL", "TRY", "USD", "EUR", "GBP", "usd", "try", "JPY", 5, false, true, "" },
  card_token = { "", "tok-1", string.rep("t", 64), string.rep("t", 65), "a b", "a\nb", 5, "\255x", "ç" },
  client_ip = { "127.0.0.1", "203.0.113.7", "2001:db8::1", "::1", "::", "1.2.3.04", "256.1.1.1", "1.2.3",
    "::ffff:1.2.3.4", "1::2::3", "fe80::1%eth0", "[::1]", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", ":1::2", "1:::2", "12345::1", "0.0.0.0", 5, false, "" },
  reference = { "", "ref", string.rep("r", 64), string.rep("r", 65), "a\nb", "a\127b", 5, false, "çğü", '"q\\' },
  description = { "", "d", "multi\nline\ttab\r", "ctl\1", string.rep("d", 200), string.rep("é", 200),
    string.rep("é", 201), "\192\128", '"quote\\back/slash"', "\127", "\226\130", "\240\159\146\179" },
  sub_merchant = { "sm", string.rep("s", 101), string.rep("ş", 100), "\t" },
  software = { "sw", string.rep("s", 31), "", string.rep("s", 30), "a\1" },
  installments = { 0, 1, 2, 12, 13, -1, 1.5, 3.0, "3", false, true, 0 / 0, 1 / 0 },
  pool = { true, false, 0, 1, 2, "1", 1.0, 0 / 0, -0.0 },
  pre_auth = { true, false, 0, 1, 2, "1", 1.0 },
  tokenize = { true, false, 0, 1, 2, "true" },
  redirect_url = { "https://shop.example/return?o=1", "http://a", "HTTPS://A.B:443/x", "https://a..b", "https://-a",
    "https://a:0", "https://a:65536", "https://a:08080/x", "https://[::1]:8443/", "https://[zz]/", "ftp://a",
    "https://u@a", "https://a b", "https://a/#frag", "//a", "https://", "https://a:", "https://_a", 5,
    "https://a/" .. string.rep("x", 2038), "https://a/" .. string.rep("x", 2039), "https://a.b/\"x\"",
    "https://[::1]x/", "https://a/?x=ç", "https://a.-b", "http://1.2.3.4:80", "hTTp://x.y", "https://a.b#", "https://a/\127",
    -- the scheme, authority and rest as shape.c's classes read them
    "HtTpS://a", "httpx://a", "http1://a", "h://a", "httq://a", "https+://a", "1http://a", "http:/a", "http:a",
    "https://a?q", "https://a?u@b", "https://a/p@q", "https://a#x@y", "https://a@", "https://a\tb", "https://a/\0",
    "https://a/x y", "https://a:1", "https://a:65535", "https://a:99999", "https://a:1x", "https://a::1", "https://.a",
    "https://a.", "https://a-", "https://a.b.", "https://[::1]", "https://[::1", "https://[]", "https://[1.2.3.4]",
    "https://[::ffff:1.2.3.4]:1/", "https://a:80?x", "https://A-1.B2.c3:8080/#", "https://a\255", "https://\255" },
  redirect_type = { 0, 1, 2, 1.0, false, "1", -1 },
  -- the card's members
  number = { PAN, "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111112", "41111111111", "411111111111",
    "4111111111111111111111", 4111111111111111, "", "4111a11111111111", " ", "5555555555554444", "  4111111111111111 ",
    "0000000000000", string.rep("4", 19) },
  exp_month = { "12", "1", "01", "00", "13", 12, 12.0, 5.5, "1 ", "9", "09", "10", 0, "012" },
  exp_year = { "2030", "30", "0030", 2030, 30, "2020", "20", "203", "abcd", 2030.0, "2026", "26", 26, 2026, "2025", 5 },
  cvc = { "000", "0000", "00", "12a", 123, "12345" },
  holder = { "Ali", LONG, LONG .. "x", string.rep("ç", 100), string.rep("ç", 101), "a\0b", "tab\there", "\255bad", 5, "" },
}
local CARD_KEYS = { "number", "exp_month", "exp_year", "cvc", "holder" }
local EXTRA = { { "reurn_url", "https://x" }, { "integrator_id", 5 }, { "buyer", { full_name = "B" } },
  { "basket", { { product_code = "P", unit_price = "27.50" } } }, { "customer", { first_name = "C" } },
  { "three_d", true }, { 1, "array" } }

local function pick(rnd, list) return list[rnd(#list)] end

local function generate(rnd, token)
  local p = { amount = "27.50", client_ip = "203.0.113.7", reference = "ORD-1", redirect_url = "https://shop.example/r" }
  if token then p.card_token = "tok-abc" else
    p.card = { holder = "Ali Yilmaz", number = PAN, exp_month = "09", exp_year = "2031", cvc = "123" }
  end
  for k, pool in pairs(POOLS) do
    local r = rnd(100)
    local is_card = false
    for _, ck in ipairs(CARD_KEYS) do if ck == k then is_card = true end end
    if is_card then
      if p.card and r <= 15 then p.card[k] = pick(rnd, pool) elseif p.card and r <= 18 then p.card[k] = nil end
    elseif r <= 12 then p[k] = pick(rnd, pool)
    elseif r <= 15 then p[k] = nil end
  end
  local r = rnd(100)
  if r <= 4 then local e = pick(rnd, EXTRA); p[e[1]] = e[2]
  elseif r <= 6 then p.card = { number = PAN, exp_month = "09", exp_year = "2031", cvc = "123" }; p.card_token = "tok"
  elseif r <= 8 and p.card then p.card.extra = "ignored"
  elseif r <= 9 then setmetatable(p, { __index = { software = "meta" } })
  elseif r <= 10 and p.card then p.card = "not a table" end
  return p
end

local function check_one(gw, p, three_d, stats)
  local ref, rinfo = reference(gw, p, three_d)
  local body, info, currency = R.payment_body(gw, p, three_d, PATHS[three_d])
  if body ~= nil then
    -- what start_3d and pay read beside the body: the same as the reference's info
    assert(info == rinfo.amount and currency == rinfo.currency, "amount or currency differs")
    assert(rinfo.reference == p.reference, "reference differs")
    assert(rinfo.pre_auth == (p.pre_auth == true or p.pre_auth == 1), "pre_auth differs")
  end
  if type(body) == "string" then
    stats.fast = stats.fast + 1
    assert(ref, "the shape accepted an input the reference refuses")
    assert(body == ref, "the shape wrote other bytes than the reference:\n" .. body .. "\n" .. ref)
  elseif body == nil then
    stats.refused = stats.refused + 1
    assert(ref == nil, "payment_body refused an input the reference accepts")
    if rinfo ~= "unencodable" then assert(same_error(info, rinfo), "a different error: " .. tostring(info) .. " / " .. tostring(rinfo)) end
  else
    stats.slow = stats.slow + 1
    assert(ref, "payment_body's Lua way accepted what the reference refuses")
    local ok, text = pcall(json.encode, wire.body(gw, PATHS[three_d], body))
    assert(ok and text == ref, "the Lua way wrote other bytes")
  end
end

describe("moka's compiled payment shapes", function()
  it("write the reference's bytes for the usual requests, 3D and direct, card and stored card", function()
    local gw = gateway()
    local card = { holder = "Ali Yilmaz", number = PAN, exp_month = "09", exp_year = "2031", cvc = "123" }
    local cases = {
      { amount = "27.50", card = card, client_ip = "203.0.113.7", redirect_url = "https://shop.example/r" },
      { amount = "27.5", currency = "USD", card = card, client_ip = "2001:db8::1", reference = "R-1",
        description = "two\nlines", pre_auth = true, redirect_url = "https://shop.example/r", redirect_type = 1 },
      { amount_minor = 2750, card = { number = "4111 1111 1111 1111", exp_month = 9, exp_year = 31, cvc = "0000" },
        client_ip = "127.0.0.1", installments = 6, pool = 1, tokenize = true, redirect_url = "http://[::1]:8080/x?y" },
      { amount = "0.01", card_token = "tok-123", client_ip = "203.0.113.7", sub_merchant = "Şube", software = "shop/1",
        redirect_url = "https://shop.example/r" },
      { amount = "1000000.00", currency = "TRY", card_token = "tok-123", client_ip = "203.0.113.7", card = nil, tokenize = false },
    }
    for _, p in ipairs(cases) do
      for _, three_d in ipairs(p.redirect_url and { true, false } or { false }) do
        local body = R.payment_body(gw, p, three_d, PATHS[three_d])
        assert.equal("string", type(body))
        assert.equal(reference(gw, p, three_d), body)
      end
    end
  end)

  it("agree with the reference on generated inputs (acceptance, bytes, info, the error)", function()
    local seed = tonumber(os.getenv("PAYKIT_SHAPE_SEED") or "") or 20261202
    local rnd = prng(seed)
    local gws = { gateway(), gateway { client_ip = "198.51.100.1", currency = "USD", software = "soft" },
      gateway { currency = "usd" } }
    local stats = { fast = 0, slow = 0, refused = 0 }
    for i = 1, 6000 do
      local gw = gws[i % #gws + 1]
      local p = generate(rnd, i % 3 == 0)
      local ok, err = pcall(check_one, gw, p, i % 2 == 0, stats)
      if not ok then error("case " .. i .. " (seed " .. seed .. "): " .. tostring(err), 0) end
    end
    if os.getenv("PAYKIT_SHAPE_STATS") then print(stats.fast, stats.slow, stats.refused) end
    -- every way was taken many times
    assert.is_true(stats.fast > 300, "fast " .. stats.fast)
    assert.is_true(stats.refused > 1000, "refused " .. stats.refused)
    assert.is_true(stats.slow > 50, "slow " .. stats.slow)
  end)

  it("agree with the reference on generated texts (plain runs of every length around 8-byte words)", function()
    -- shape.c scans texts 8 bytes at a time and copies plain runs whole: texts made of plain
    -- runs of 0-19 bytes and one-byte pieces that need a look (escapes, controls, DEL, UTF-8,
    -- invalid bytes), in the text members, the card holder, the URL's path and the amount
    local rnd = prng(20261203)
    local PLAIN = "abcXYZ019 -_./:~!#$%&'()*+,;<=>?@[]^`{|}"
    local SPECIAL = { '"', "\\", "\n", "\t", "\r", "\1", "\31", "\127", "\0", "é", "€", "\240\159\146\179", "\255",
      "\226\130", "\192\128", "\237\160\128", "/" }
    local function text(max_pieces)
      local t = {}
      for _ = 1, rnd(max_pieces) do
        local n = rnd(20) - 1
        local run = {}
        for j = 1, n do local k = rnd(#PLAIN); run[j] = PLAIN:sub(k, k) end
        t[#t + 1] = table.concat(run)
        if rnd(3) == 1 then t[#t + 1] = SPECIAL[rnd(#SPECIAL)] end
      end
      return table.concat(t)
    end
    local gw = gateway()
    local stats = { fast = 0, slow = 0, refused = 0 }
    for i = 1, 3000 do
      local p = { amount = "27.50", client_ip = "203.0.113.7", reference = "ORD-1", redirect_url = "https://shop.example/r",
        card = { holder = "Ali Yilmaz", number = PAN, exp_month = "09", exp_year = "2031", cvc = "123" } }
      local which = i % 6
      if which == 0 then p.description = text(8)
      elseif which == 1 then p.reference = text(4)
      elseif which == 2 then p.sub_merchant = text(6)
      elseif which == 3 then p.card.holder = text(6)
      elseif which == 4 then p.redirect_url = "https://shop.example/" .. text(5)
      else p.software = text(2); p.description = text(3) end
      local ok, err = pcall(check_one, gw, p, i % 2 == 0, stats)
      if not ok then error("text case " .. i .. ": " .. tostring(err), 0) end
    end
    assert.is_true(stats.fast > 1000, "fast " .. stats.fast)
    assert.is_true(stats.refused > 300, "refused " .. stats.refused)
  end)

  it("agree with the reference on card numbers with and without separators, amounts and currencies", function()
    -- the card number is copied whole when it has no space or dash; an amount or currency given
    -- in its written form is handed back as that value
    local gws = { gateway(), gateway { currency = "TRY" }, gateway { currency = "USD" } }
    local numbers = { PAN, "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111 ", " 4111111111111111",
      "41111111-11111111", "5555555555554444", "555555555555444", "5555 5555 5555 4444 " }
    local amounts = { "27.50", "27.5", "27", "0.01", "1000000.00", "1000000", "007.50", "0.10", "10.00" }
    local currencies = { "TL", "TRY", "USD", "EUR", "GBP", false }
    local stats = { fast = 0, slow = 0, refused = 0 }
    local i = 0
    for _, number in ipairs(numbers) do
      for _, amount in ipairs(amounts) do
        for _, currency in ipairs(currencies) do
          i = i + 1
          local p = { amount = amount, currency = currency or nil, client_ip = "203.0.113.7",
            redirect_url = "https://shop.example/r",
            card = { holder = "Ali Yilmaz", number = number, exp_month = "09", exp_year = "2031", cvc = "123" } }
          local gw = gws[i % #gws + 1]
          -- (three_d in a local: Lua 5.4.4 compiles PATHS[i % 2 == 0] wrongly)
          local three_d = i % 2 == 0
          local ok, err = pcall(check_one, gw, p, three_d, stats)
          if not ok then error("case " .. i .. ": " .. tostring(err), 0) end
          local body, amount_out, currency_out = R.payment_body(gw, p, three_d, PATHS[three_d])
          if type(body) == "string" then
            local _, info = R.payment(gw, p, three_d)
            assert.equal(info.amount, amount_out)
            assert.equal(info.currency, currency_out)
          end
        end
      end
    end
    assert.is_true(stats.fast > 200, "fast " .. stats.fast)
  end)

  it("send the same request through the transport as the Lua way (body and headers)", function()
    local gw = gateway()
    local seen = {}
    gw.http = { request = function(_, req) seen[#seen + 1] = req; return nil, "stop" end }
    local p = { amount = "27.50", card = { number = PAN, exp_month = "09", exp_year = "2031", cvc = "123" },
      client_ip = "203.0.113.7", redirect_url = "https://shop.example/r" }
    gw:start_3d(p)
    local req = assert(R.payment(gw, p, true))
    wire.call(gw, "start_3d", PATHS[true], req, false)
    assert.equal(2, #seen)
    assert.equal(seen[2].body, seen[1].body)
    assert.same(seen[2].headers, seen[1].headers)
    assert.equal(seen[2].url, seen[1].url)
    assert.equal(seen[2].idempotent, seen[1].idempotent)
  end)

  it("hand the transport the request table kit.wire.send makes for a body already written", function()
    local kwire = require "paykit.kit.wire"
    local gw = gateway()
    local seen = {}
    gw.http = { request = function(_, req) seen[#seen + 1] = req; return nil, "stop" end }
    for _, idempotent in ipairs { false, true, 1 } do
      for _, path in ipairs { PATHS[true], PATHS[false], PATHS[true] } do
        kwire.send_json_text(gw, "start_3d", path, '{"a":1}', idempotent)
        kwire.send(gw, "start_3d", { method = "POST", path = path, body = '{"a":1}', idempotent = idempotent and true or false,
          headers = { ["Content-Type"] = "application/json", Accept = "application/json" }, own_headers = true })
        assert.same(seen[#seen], seen[#seen - 1])
        assert.are_not.equal(seen[#seen].headers, seen[#seen - 1].headers) -- each call its own
      end
    end
  end)

  it("give paykit.http the shared JSON headers, which no call changes", function()
    local kwire = require "paykit.kit.wire"
    local gw = gateway { retry = false, connect_timeout = 0.5, timeout = 0.5 }
    local p = { amount = "27.50", card = { number = PAN, exp_month = "09", exp_year = "2031", cvc = "123" },
      client_ip = "203.0.113.7", redirect_url = "https://shop.example/r" }
    local seen = 0
    local send = gw.http.request
    assert.equal(require("paykit.http").request, send)
    for _ = 1, 3 do
      local r, err = gw:start_3d(p)
      assert.is_nil(r)
      assert.equal("transport", err.kind)
      seen = seen + 1
    end
    assert.equal(3, seen)
    assert.same({ ["Content-Type"] = "application/json", Accept = "application/json" }, kwire.JSON_HEADERS)
    -- with a transport of another kind, a fresh table each call (it may add to it)
    local tables = {}
    gw.http = { request = function(_, req) tables[#tables + 1] = req.headers; req.headers.X = "y"; return nil, "stop" end }
    gw:start_3d(p); gw:start_3d(p)
    assert.are_not.equal(tables[1], tables[2])
    assert.are_not.equal(kwire.JSON_HEADERS, tables[1])
    assert.same({ ["Content-Type"] = "application/json", Accept = "application/json" }, kwire.JSON_HEADERS)
  end)

  it("leave the body to a writer set with kit.json.set_encoder", function()
    local gw = gateway()
    local seen, wrote = {}, 0
    gw.http = { request = function(_, req) seen[#seen + 1] = req; return nil, "stop" end }
    local p = { amount = "27.50", card = { number = PAN, exp_month = "09", exp_year = "2031", cvc = "123" },
      client_ip = "203.0.113.7", redirect_url = "https://shop.example/r" }
    gw:start_3d(p)
    local lua_writer = require("paykit.gateway").json
    json.set_encoder(function(v) wrote = wrote + 1; return lua_writer(v) end)
    local ok, err = pcall(gw.start_3d, gw, p)
    json.set_encoder(nil)
    assert(ok, err)
    assert.equal(1, wrote)
    assert.equal(2, #seen)
    assert.equal(seen[1].body, seen[2].body)
    assert.is_true(json.default_writer())
  end)

  it("name only a field when they refuse, never a card number or CVC, and print no secret", function()
    local gw = gateway()
    local prefix = gw._body_prefix(PATHS[true])
    for _, card in ipairs {
      { number = "4111111111111112", exp_month = "09", exp_year = "2031", cvc = "987" },
      { number = PAN, exp_month = "13", exp_year = "2031", cvc = "987" },
      { number = PAN, exp_month = "09", exp_year = "2001", cvc = "987" },
      { number = PAN, exp_month = "09", exp_year = "2031", cvc = "98x" },
    } do
      local body, field = R.SHAPES.card3d:write({ amount = "1.00", card = card, client_ip = "203.0.113.7",
        redirect_url = "https://a.b/" }, prefix, gw.clock, gw.currency, gw.client_ip, gw.software)
      assert.is_nil(body)
      assert.equal("card", field)
    end
    local body, field = R.SHAPES.card3d:write({ amount = "1.00", card = { number = PAN, exp_month = "09",
      exp_year = "2031", cvc = "123" }, client_ip = "999.1.1.1", redirect_url = "https://a.b/" }, prefix, gw.clock, gw.currency, gw.client_ip, gw.software)
    assert.is_nil(body)
    assert.equal("client_ip", field)
    for _, s in pairs(R.SHAPES) do
      local text = tostring(s)
      assert.matches("^paykit%.shape %(%d+ members%)$", text)
    end
  end)

  it("call the clock once, and only for a card that passed every other check", function()
    local calls = 0
    local gw = gateway { clock = function() calls = calls + 1; return NOW end }
    local p = { amount = "27.50", card = { number = PAN, exp_month = "09", exp_year = "2031", cvc = "123" },
      client_ip = "203.0.113.7", redirect_url = "https://shop.example/r" }
    assert.equal("string", type(R.payment_body(gw, p, true, PATHS[true])))
    assert.equal(1, calls)
    p.card.number = "4111111111111112"
    assert.is_nil(R.payment_body(gw, p, true, PATHS[true]))
    assert.equal(1, calls)
  end)

  it("refuse a spec they cannot compile, and a shape is closed once", function()
    assert.has_error(function() core.shape { members = {} } end)
    assert.has_error(function() core.shape { members = { { name = "A", kind = "nope", key = "a" } } } end)
    local s = core.shape { members = { { name = "A", kind = "text", key = "a", max = 5 } } }
    assert.equal('{"A":"abc"}', s:write({ a = "abc" }, ""))
    s:close(); s:close()
    assert.has_error(function() s:write({ a = "abc" }, "") end)
  end)
end)
