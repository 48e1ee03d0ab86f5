-- The provider kit (paykit.kit): declaring a provider, its options, its instances, its
-- operations and their one commit, the HTTP status vocabulary (over real HTTP, a scripted
-- nginx on 127.0.0.1), the shared signature module, the notification pipeline and its store,
-- the exact JSON reader and the checks.
local kit = require "paykit.kit"
local checks = require "paykit.kit.checks"
local signature = require "paykit.kit.signature"
local notify = require "paykit.kit.notify"
local json = require "paykit.kit.json"
local options = require "paykit.kit.options"
local core = require "paykit.core"
local nginx = require "spec.support.nginx"

local PORT = tonumber(os.getenv("PAYKIT_TEST_KIT_PORT") or "18841")
local BASE = "http://127.0.0.1:" .. PORT

-- A scripted answerer: /status/<n> answers HTTP n with the request's query as its body
-- (JSON when ?json=1); /count tells how many API requests came.
local CONF = [[
  lua_shared_dict kit_stub 1m;
  server {
    listen 127.0.0.1:${PORT};
    location = /count { content_by_lua_block { ngx.print(ngx.shared.kit_stub:get("n") or 0) } }
    location / {
      content_by_lua_block {
        ngx.shared.kit_stub:incr("n", 1, 0)
        local n = tonumber(ngx.var.uri:match("^/status/(%d+)")) or 404
        ngx.status = n
        if ngx.var.arg_body then ngx.header["Content-Type"] = "application/json"; ngx.print(ngx.unescape_uri(ngx.var.arg_body)) end
        ngx.exit(n)
      }
    }
  }
]]

-- A small declared provider.
local function declare()
  local P = kit.provider {
    name = "kitty", title = "Kitty",
    options = {
      api_key = { type = "string", required = true, secret = true },
      base_url = { type = "url", required = true },
      colour = { type = "string", default = "grey" },
      env = { type = "string", default = "test", one_of = { test = true, production = true } },
    },
    init = function(self, o)
      local key = o.api_key
      self.auth = function() return "Key " .. key end
      return self
    end,
    wire = {
      sign = function(self, req) req.headers.Authorization = self.auth(); return true end,
      exact = { amount = true },
      success_from = function(_, a) return type(a) == "table" and a.state == "ok" end,
      message_from = function(_, a) if type(a) == "table" then return a.message, a.code end end,
      authorization_from = function(_, a) return type(a) == "table" and a.id or nil end,
    },
    operations = {
      get_thing = { method = "GET", path = "/status/:code", args = { code = checks.key } },
      make_thing = { method = "POST", path = "/status/:code", args = { code = checks.key },
        fields = { name = true, amount = true },
        body = function(_, t) return json.put(json.put(json.object(), "name", t.name), "amount", json.decimal(t.amount)) end },
    },
  }
  function P.methods:hello(t)
    local ok, err = kit.fields(t, { return_url = true, amount = true }, "hello")
    if not ok then return nil, err end
    return "hi"
  end
  return P
end

describe("paykit.kit: a declared provider", function()
  local P = declare()

  it("refuses an unknown option, naming the closest known one", function()
    local gw, err = P.new { api_key = "k", base_url = BASE, timeout_ms = 5 }
    assert.is_nil(gw)
    assert.equal("config", err.kind)
    assert.equal("timeout_ms", err.field)
    assert.truthy(err.message:find("unknown option timeout_ms; did you mean timeout?", 1, true))
    local _, e2 = P.new { api_key = "k", base_url = BASE, colur = "red" }
    assert.truthy(e2.message:find("did you mean colour?", 1, true))
  end)

  it("refuses a timeout given in milliseconds, a missing or mistyped option, a non-table", function()
    local _, err = P.new { api_key = "k", base_url = BASE, timeout = 5000 }
    assert.same({ "config", "timeout", "invalid" }, { err.kind, err.field, err.code })
    assert.truthy(err.message:find("milliseconds", 1, true))
    _, err = P.new { base_url = BASE }
    assert.same({ "config", "api_key", "required" }, { err.kind, err.field, err.code })
    _, err = P.new { api_key = "k", base_url = "ftp://x" }
    assert.same({ "base_url", "invalid" }, { err.field, err.code })
    _, err = P.new { api_key = "k", base_url = BASE, env = "staging" }
    assert.same({ "env", "invalid" }, { err.field, err.code })
    assert.truthy(err.message:find("must be one of production, test", 1, true))
    _, err = P.new("k")
    assert.same({ "config", "opts" }, { err.kind, err.field })
  end)

  it("gives one instance shape: options and defaults on it, secrets and module functions not", function()
    local gw = assert(P.new { api_key = "sekrit", base_url = BASE .. "/" })
    assert.equal("grey", gw.colour)
    assert.equal(BASE, gw.base_url)
    assert.is_nil(gw.api_key)
    assert.is_nil(gw.new)
    assert.is_nil(gw.methods)
    assert.is_nil(gw._provider)
    assert.equal(P, kit.provider_of(gw))
    local _, err = P.new { api_key = "k", base_url = BASE, duplicate_capacity = 0 }
    assert.same({ "config", "duplicate_capacity" }, { err.kind, err.field })
    assert.is_true(kit.instance_of(P, gw))
    assert.is_false(kit.instance_of(P, P))
    for k, v in pairs(gw) do
      assert.is_nil(tostring(v):find("sekrit", 1, true), k .. " holds the secret")
    end
  end)

  it("says to use a colon when a method is called with a dot", function()
    local gw = assert(P.new { api_key = "k", base_url = BASE })
    local ok, err = pcall(gw.hello, { return_url = "x" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("kitty.hello: call it with a colon, gw:hello", 1, true))
    ok, err = pcall(gw.get_thing, "200")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("gw:get_thing", 1, true))
  end)

  it("takes a proxy that inherits from an instance as self (paykit.journal.wrap's transport proxy)", function()
    local gw = assert(P.new { api_key = "k", base_url = BASE })
    local proxy = setmetatable({ http = gw.http }, { __index = gw })
    assert.equal("hi", proxy.hello(proxy, { return_url = "https://shop.example/" }))
    -- a plain table, or one inheriting from something else, is still a dot call
    local ok, err = pcall(gw.hello, setmetatable({}, { __index = { return_url = "x" } }))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("gw:hello", 1, true))
  end)

  it("refuses an unknown field of a call's table by its name", function()
    local gw = assert(P.new { api_key = "k", base_url = BASE })
    local r, err = gw:hello { reurn_url = "https://shop.example/" }
    assert.is_nil(r)
    assert.same({ "validation", "reurn_url", "unknown_field" }, { err.kind, err.field, err.code })
    assert.truthy(err.message:find("unknown field reurn_url in hello; did you mean return_url?", 1, true))
    assert.equal("hi", gw:hello { return_url = "https://shop.example/" })
  end)
end)

describe("paykit.kit: operations through one commit, and the HTTP vocabulary", function()
  local srv, P, gw
  lazy_setup(function()
    srv = nginx.start("kit_spec", CONF, { PORT = PORT })
    P = declare()
    gw = assert(P.new { api_key = "k", base_url = BASE, retry = { attempts = 2, base_delay = 0, max_delay = 0 } })
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  local function count()
    local res = assert(core.http_client {}:request { method = "GET", url = BASE .. "/count" })
    return tonumber(res.body)
  end

  it("checks a path argument before any request", function()
    local before = count()
    local r, err = gw:get_thing("a/b")
    assert.is_nil(r)
    assert.same({ "validation", "code" }, { err.kind, err.field })
    assert.equal(before, count())
  end)

  it("names the URL of a 404 and says to check base_url", function()
    local _, err = gw:get_thing("404")
    assert.same({ "provider", "not_found", 404 }, { err.kind, err.code, err.status })
    assert.truthy(err.message:find(BASE .. "/status/404", 1, true))
    assert.truthy(err.message:find("check base_url", 1, true))
  end)

  it("makes 401 and 403 config errors about the credentials", function()
    for _, s in ipairs { "401", "403" } do
      local _, err = gw:get_thing(s)
      assert.same({ "config", "invalid_credentials", "credentials" }, { err.kind, err.code, err.field })
    end
  end)

  it("makes a 5xx a server_error, retryable (and retried) only when idempotent", function()
    local before = count()
    local _, err = gw:get_thing("503")
    assert.same({ "provider", "server_error", true }, { err.kind, err.code, err.retryable })
    assert.equal(before + 2, count()) -- a GET: retried once
    before = count()
    _, err = gw:make_thing("500", { name = "x", amount = "1.00" })
    assert.same({ "provider", "server_error", false }, { err.kind, err.code, err.retryable })
    assert.equal(before + 1, count()) -- a POST: sent once
  end)

  it("reads a 2xx answer with exact money and the provider's success_from/message_from", function()
    local body = '{"state":"ok","amount":79.10,"n":3}'
    local gw2 = assert(P.new { api_key = "k", base_url = BASE .. "/status/200?body=" .. core.pct_encode(body) .. "&x=" })
    -- path "/status/200?body=...&x=" + "/status/:code": the stub reads arg_body
    local a = assert(gw2:get_thing("200"))
    assert.equal("79.10", a.amount)
    assert.equal(3, a.n)
    local refused = '{"state":"no","message":"not today","code":"E1"}'
    local gw3 = assert(P.new { api_key = "k", base_url = BASE .. "/status/200?body=" .. core.pct_encode(refused) .. "&x=" })
    local r, err = gw3:get_thing("200")
    assert.is_nil(r)
    assert.same({ "provider", "E1" }, { err.kind, err.code })
    assert.truthy(err.message:find("not today", 1, true))
  end)

  it("refuses unknown fields of an operation's table before any request", function()
    local before = count()
    local r, err = gw:make_thing("200", { name = "x", amout = "1.00" })
    assert.is_nil(r)
    assert.same({ "amout", "unknown_field" }, { err.field, err.code })
    assert.truthy(err.message:find("did you mean amount?", 1, true))
    assert.equal(before, count())
  end)
end)

describe("paykit.kit.signature", function()
  -- RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?")
  local V = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
  local keys = { [0] = "old secret", [1] = "Jefe" }
  local MSG = "what do ya want for nothing?"

  it("signs with the published vector", function()
    assert.equal(V, signature.sign { message = MSG, key = "Jefe" })
  end)

  it("accepts a genuine signature by key id or by trying every key (rotation)", function()
    assert.equal(1, signature.verify { message = MSG, signature = V, keys = keys, key_id = 1 })
    assert.equal(1, signature.verify { message = MSG, signature = V:upper(), keys = keys })
    local old = signature.sign { message = MSG, key = "old secret" }
    assert.equal(0, signature.verify { message = MSG, signature = old, keys = keys })
  end)

  local function code(t)
    local id, err = signature.verify(t)
    assert.is_nil(id)
    assert.equal("signature", err.kind)
    return err.code
  end

  it("gives the five codes: unsigned, malformed, unknown_key, bad_signature, too_old", function()
    assert.equal("unsigned", code { message = MSG, signature = nil, keys = keys })
    assert.equal("unsigned", code { message = MSG, signature = "", keys = keys })
    assert.equal("malformed", code { message = MSG, signature = V:sub(2), keys = keys })
    assert.equal("malformed", code { message = MSG, signature = ("z"):rep(64), keys = keys })
    assert.equal("malformed", code { message = MSG, signature = V, keys = keys, key_id = "x" })
    assert.equal("unknown_key", code { message = MSG, signature = V, keys = keys, key_id = 7 })
    assert.equal("bad_signature", code { message = MSG .. " ", signature = V, keys = keys })
    assert.equal("bad_signature", code { message = MSG, signature = V, keys = keys, key_id = 0 })
    local flipped = (V:sub(1, 63) .. (V:sub(64) == "3" and "4" or "3"))
    assert.equal("bad_signature", code { message = MSG, signature = flipped, keys = keys })
    local now = 1700000000
    local clock = function() return now end
    assert.equal(1, signature.verify { message = MSG, signature = V, keys = keys, timestamp = now - 299, clock = clock })
    assert.equal("too_old", code { message = MSG, signature = V, keys = keys, timestamp = now - 301, clock = clock })
    assert.equal("too_old", code { message = MSG, signature = V, keys = keys, timestamp = now + 301, clock = clock })
    assert.equal("malformed", code { message = MSG, signature = V, keys = keys, timestamp = "soon", clock = clock })
    assert.equal("bad_signature", code { message = MSG, signature = V, keys = { [3] = "other" }, timestamp = "soon" })
  end)

  it("normalises key maps and refuses bad ones as config errors", function()
    local k, newest = signature.keys({ ["2"] = "a", [5] = "b" }, "notice_keys")
    assert.same({ [2] = "a", [5] = "b" }, k)
    assert.equal(5, newest)
    local _, err = signature.keys({ [-1] = "a" }, "notice_keys")
    assert.same({ "config", "notice_keys" }, { err.kind, err.field })
    _, err = signature.keys({}, "notice_keys")
    assert.equal("required", err.code)
  end)
end)

describe("paykit.kit.notify: the memory store", function()
  it("adds a key once and keeps it for its TTL", function()
    local now = 100
    local s = notify.memory { capacity = 2, clock = function() return now end }
    assert.is_true(s:add("a", "paid", 10))
    assert.same({ false, "exists" }, { s:add("a", "failed", 10) })
    assert.equal("paid", s:get("a"))
    now = 111
    assert.is_nil(s:get("a"))
    assert.is_true(s:add("a", "failed", 10))
    assert.equal("failed", s:get("a"))
  end)

  it("forgets the oldest key when full", function()
    local s = notify.memory { capacity = 2 }
    s:add("a", 1); s:add("b", 2); s:add("c", 3)
    assert.is_nil(s:get("a"))
    assert.equal(3, s:get("c"))
  end)

  it("takes a raw string, a request table or decoded parameters as a notification", function()
    assert.same({ method = "POST", body = "a=1" }, notify.request("a=1"))
    assert.same({ body = "x" }, notify.request { body = "x" })
    assert.same({ method = "POST", fields = { a = "1" } }, notify.request { a = "1" })
    local r, err = notify.request(7)
    assert.is_nil(r)
    assert.equal("req", err.field)
  end)
end)

describe("paykit.kit.json", function()
  it("keeps the numbers of money fields as their text, at any depth", function()
    local t = assert(json.decode('{"Data":{"Amount":79.10,"List":[{"Amount":0.1}]},"Count":2}', { exact = { Amount = true } }))
    assert.equal("79.10", t.Data.Amount)
    assert.equal("0.1", t.Data.List[1].Amount)
    assert.equal(2, t.Count)
    assert.equal("1e400", json.decode("[1e400]", { exact = true })[1])
    -- an array that is a money member's value keeps its numbers as text too
    local a = assert(json.decode('{"Amount":[1.5,[2.50]],"N":[1.50]}', { exact = { Amount = true } }))
    assert.equal("2.50", a.Amount[2][1])
    assert.equal(1.5, a.N[1])
  end)

  it("refuses what is not JSON, saying where", function()
    for _, bad in ipairs { '{"a":01}', "[1,]", '{"a":1} x', '"\\ud800"', '"a\nb"', "", "[" .. ("["):rep(100) } do
      local v, err = json.decode(bad)
      assert.is_nil(v, bad)
      assert.is_string(err)
    end
  end)

  it("decodes escapes and null", function()
    local t = assert(json.decode('{"s":"a\\u00e9\\ud83d\\ude00\\n","n":null}'))
    assert.equal("a\195\169\240\159\152\128\n", t.s)
    assert.equal(json.null, t.n)
  end)

  it("writes decimals exactly and formats amounts for their currency", function()
    assert.equal('{"Amount":79.10}', json.encode(json.put(json.object(), "Amount", json.decimal("79.10"))))
    assert.equal("27.50", json.amount("27.5", "USD"))
    assert.equal("3.00", json.amount(3, "USD"))
    assert.is_nil(json.amount("1.999", "USD"))
    assert.is_nil(json.amount(0.1, "USD"))
  end)
end)

describe("paykit.kit.checks", function()
  it("parses IP addresses strictly", function()
    for _, ok in ipairs { "203.0.113.7", "0.0.0.0", "::1", "2001:db8::1", "::ffff:192.0.2.1", "1:2:3:4:5:6:7:8" } do
      assert.is_true(checks.is_ip(ok), ok)
    end
    for _, bad in ipairs { "256.1.1.1", "01.2.3.4", "1.2.3", "1:2:3:4:5:6:7:8:9", "1::2::3", "::g", "[::1]", "fe80::1%eth0", " 1.2.3.4", 7 } do
      assert.is_false(checks.is_ip(bad), tostring(bad))
    end
    assert.equal("client_ip", checks.ip("1.2.3.999", "client_ip").field)
  end)

  it("checks URLs, UUIDs and text", function()
    assert.is_nil(checks.url("https://shop.example/r?x=1", "u"))
    assert.equal("invalid_url", checks.url("https://[zz]/", "u").code)
    assert.equal("invalid_url", checks.url("https://a.example/#f", "u", { no_fragment = true }).code)
    assert.is_nil(checks.uuid("0f8fad5b-d9cb-469f-a165-70867728950e", "id"))
    assert.equal("invalid_uuid", checks.uuid("0f8fad5b", "id").code)
    assert.equal("control_characters", checks.text("a\nb", "name").code)
    assert.equal("too_long", checks.text(("x"):rep(11), "name", 10).code)
    assert.equal("invalid_utf8", checks.text("\255", "name").code)
    assert.equal("blank", checks.text("  ", "name").code)
  end)

  it("checks cards: Luhn, expiry, CVC, never echoing the number", function()
    local now = function() return os.time { year = 2026, month = 6, day = 1, hour = 0 } end
    local c = assert(checks.card({ number = "4111 1111 1111 1111", exp_month = "9", exp_year = "30", cvc = "123" }, "card", { clock = now }))
    assert.same({ number = "4111111111111111", exp_month = "09", exp_year = "2030", cvc = "123" }, c)
    local _, err = checks.card({ number = "4111111111111112", exp_month = "09", exp_year = "2030", cvc = "123" }, "card")
    assert.same({ "card.number", "invalid_luhn" }, { err.field, err.code })
    assert.is_nil(err.message:find("4111", 1, true))
    _, err = checks.card({ number = "4111111111111111", exp_month = "05", exp_year = "2026", cvc = "123" }, "card", { clock = now })
    assert.same({ "card.exp_year", "expired" }, { err.field, err.code })
    _, err = checks.card({ number = "4111111111111111", exp_month = "13", exp_year = "2030", cvc = "123" }, "card")
    assert.equal("card.exp_month", err.field)
    _, err = checks.card({ number = "4111111111111111", exp_month = "12", exp_year = "2030", cvc = "12" }, "card", { clock = now })
    assert.equal("card.cvc", err.field)
    assert.is_truthy(checks.card({ number = "4111111111111111", exp_month = "12", exp_year = "2030" }, "card",
      { clock = now, cvc_optional = true }))
  end)
end)

describe("paykit.kit.options: did you mean", function()
  it("suggests the nearest name, or none when nothing is near", function()
    assert.equal("timeout", options.closest("timeout_ms", { timeout = true, connect_timeout = true }))
    assert.equal("return_url", options.closest("reurn_url", { return_url = true, amount = true }))
    assert.is_nil(options.closest("zzzzzz", { return_url = true, amount = true }))
  end)
end)

describe("paykit.kit.notify: the pipeline of a declared provider", function()
  local KEY = "notice-key"
  local P = kit.provider {
    name = "noted", options = { base_url = { type = "url", default = "http://127.0.0.1:9" } },
    notice = {
      decode = function(_, req) return req.body or (req.fields and req.fields.raw) end,
      verify = function(_, raw, _, expected)
        local msg, sig = raw:match("^(.-)|(%x*)$")
        if not msg then return nil, signature.error("unsigned", "no |") end
        local id, err = signature.verify { message = msg, signature = sig, keys = { [0] = KEY } }
        if not id then return nil, err end
        if expected and msg ~= expected then return nil, signature.error("bad_signature", "not the one expected") end
        return { ref = msg }
      end,
      payment = function(n) return n.ref end,
      result = function(_, n) return kit.result { status = "paid", reference = n.ref, amount = "5", currency = "EUR" } end,
    },
  }
  local function signed(msg) return msg .. "|" .. signature.sign { message = msg, key = KEY } end

  it("verifies, formats the amount, dedupes per payment, hands extra arguments on", function()
    local gw = assert(P.new {})
    local r, reply = gw:notification(signed("order-1"), "order-1")
    assert.same({ "paid", "5.00", false, 200 }, { r.status, r.amount, r.duplicate, reply.status })
    r = assert(gw:notification { fields = { raw = signed("order-1") } })
    assert.is_true(r.duplicate)
    local none, err, rejected = gw:notification(signed("order-2"), "order-3")
    assert.is_nil(none)
    assert.same({ "bad_signature", 400 }, { err.code, rejected.status })
    none, err = gw:notification("order-2|" .. ("0"):rep(64))
    assert.is_nil(none)
    assert.equal("bad_signature", err.code)
    none, err = gw:notification(7)
    assert.is_nil(none)
    assert.equal("req", err.field)
  end)
end)

describe("kit providers and paykit.http's options", function()
  local zippy = require "paykit.providers.zippy"
  local base = { consumer_key = "k", consumer_secret = "s", notice_keys = { [1] = "n" }, base_url = "http://127.0.0.1:9" }
  local function with(extra) local t = {} for k, v in pairs(base) do t[k] = v end for k, v in pairs(extra) do t[k] = v end return t end

  it("takes every transport option of paykit.http (pool, send/read timeouts, ids)", function()
    local gw, err = zippy.new(with { pool_size = 4, keepalive_timeout = 30, send_timeout = 2, read_timeout = 3,
                                     correlation_header = "X-Trace" })
    assert.is_nil(err)
    assert.equal(4, gw.http.pool_size)
  end)

  it("refuses a malformed transport option with the field named, and a near miss with its fix", function()
    local gw, err = zippy.new(with { pool_size = 0 })
    assert.is_nil(gw)
    assert.equal("pool_size", err.field)
    gw, err = zippy.new(with { read_timout = 3 })
    assert.is_nil(gw)
    assert.truthy(tostring(err):find("read_timeout", 1, true))
  end)
end)
