-- The MoCoPay simulator over real HTTP: signature checks, validation, the checkout page, the
-- return redirect, signed notifications and the verifyPayment shape.
local sb = require "spec.support.sandbox"
local core = require "paykit.core"
local sim = require "paykit.sandbox.mocopay"
local mocopay = require "paykit.providers.mocopay"

local base
local KEY, SECRET = sim.credentials.api_key, sim.credentials.api_secret
local INIT, VERIFY = "/mocopay/v1/payment/initPayment", "/mocopay/v1/payment/verifyPayment"
local FORM = { ["Content-Type"] = "application/x-www-form-urlencoded" }

local function sleep(s) os.execute("sleep " .. s) end
local function uniq() return core.random_hex(6) end

-- A signed API call. opts: key, secret, digest, in_param, tamper(query) -> query, path
local function api(method, path, params, opts)
  opts = opts or {}
  local key, secret = opts.key or KEY, opts.secret or SECRET
  local sig = mocopay.signature_value(key, secret, opts.signed_path or path, params, opts.digest or "md5")
  local q = {}
  for k, v in pairs(params) do q[#q + 1] = { k, v } end
  local headers = {}
  if opts.in_param then q[#q + 1] = { "signature", sig } else headers.Signature = "ApiKey " .. sig end
  local query = core.canonical_query(q)
  if opts.tamper then query = opts.tamper(query) end
  if opts.header then headers.Signature = opts.header end
  return sb.request(method, path .. "?" .. query, method == "POST" and "" or nil, headers)
end

local function act(trn, action)
  return sb.post_json("/mocopay/_sandbox/act", { trn = trn, action = action })
end

local function start(pid, extra)
  local name = uniq()
  local params = { pid = pid, referenceId = "ref-" .. name, userId = "user-" .. name,
                   callbackUrl = base .. "/_sink/ret-" .. name .. "?shop=1", notifyUrl = base .. "/_sink/n-" .. name }
  for k, v in pairs(extra or {}) do params[k] = v end
  local res = api("GET", INIT, params)
  assert.equal(200, res.status, res.body)
  local trn = res.json.redirectUrl:match("trn=(%x+)")
  return { name = name, params = params, trn = trn, request_id = res.json.requestId, redirect = res.json.redirectUrl }
end

local function query_of(url) return (core.query_decode(url:match("%?(.*)$") or "")) end

describe("mocopay sandbox", function()
  lazy_setup(function() base = sb.start() end)
  lazy_teardown(function() sb.stop() end)

  describe("request signature", function()
    it("uses the published canonical string", function()
      assert.equal("/v1/payment/initPayment/?mcc=228&mnc=01&pid=12000&userId=123456789",
        sim.canonical("/v1/payment/initPayment/", { mcc = "228", mnc = "01", pid = "12000", userId = "123456789" }))
      assert.equal("WETDyNQLx0+8BJ16vDgiVg==", sim.sign({ api_secret = "this.is.a.secret", digest = "md5" },
        "/v1/payment/initPayment/", { mcc = "228", mnc = "01", pid = "12000", userId = "123456789" }))
    end)

    it("accepts a correct header signature", function()
      local res = api("GET", INIT, { pid = "12000", mcc = "228", mnc = "01" })
      assert.equal(200, res.status, res.body)
      assert.matches("^%x+$", res.json.requestId)
      assert.matches("^" .. base:gsub("%p", "%%%0") .. "/mocopay/checkout%?trn=%x+", res.json.redirectUrl)
    end)

    it("accepts the signature as a parameter, and the path with a trailing slash", function()
      assert.equal(200, api("GET", INIT, { pid = "12000" }, { in_param = true }).status)
      assert.equal(200, api("GET", INIT .. "/", { pid = "12000" }).status)
    end)

    it("accepts the SHA-1 sandbox key", function()
      local c = sim.credentials_sha1
      local res = api("GET", INIT, { pid = "12000" }, { key = c.api_key, secret = c.api_secret, digest = "sha1" })
      assert.equal(200, res.status, res.body)
    end)

    it("refuses an unsigned request", function()
      local res = sb.request("GET", INIT .. "?pid=12000")
      assert.equal(401, res.status)
      assert.equal("Unauthorized", res.json.errorCode)
    end)

    it("refuses a request whose parameter was changed after signing", function()
      local res = api("GET", INIT, { pid = "12000", mcc = "228" }, { tamper = function(q) return q:gsub("mcc=228", "mcc=229") end })
      assert.equal(401, res.status)
      assert.equal("bad signature", res.json.errorMessage)
    end)

    it("refuses an added parameter", function()
      local res = api("GET", INIT, { pid = "12000" }, { tamper = function(q) return q .. "&mcc=228" end })
      assert.equal(401, res.status)
    end)

    it("refuses a signature over another path", function()
      local res = api("GET", INIT, { pid = "12000" }, { signed_path = "/v1/payment/initPayment" })
      assert.equal(401, res.status)
    end)

    it("refuses a wrong secret, an unknown key, the wrong digest and a malformed header", function()
      assert.equal(401, api("GET", INIT, { pid = "1" }, { secret = "guess" }).status)
      local res = api("GET", INIT, { pid = "1" }, { key = "nobody" })
      assert.equal(401, res.status)
      assert.equal("unknown api key", res.json.errorMessage)
      assert.equal(401, api("GET", INIT, { pid = "1" }, { digest = "sha1" }).status)
      assert.equal(401, api("GET", INIT, { pid = "1" }, { header = "Bearer x" }).status)
    end)

    it("never echoes the expected signature", function()
      local res = api("GET", INIT, { pid = "12000" }, { secret = "guess" })
      local right = mocopay.sign(SECRET, INIT, { pid = "12000" })
      assert.is_nil(res.body:find(right, 1, true))
      assert.is_nil(res.body:find(SECRET, 1, true))
    end)
  end)

  describe("initPayment", function()
    it("validates parameters on its own terms", function()
      local cases = { { "mcc", "22" }, { "mnc", "1" }, { "country", "XX" }, { "country", "QM" }, { "country", "hr" },
                      { "lang", "eng" }, { "lang", "EN" }, { "clientIp", "1::2::3" }, { "clientIp", "256.1.1.1" },
                      { "clientIp", "01.2.3.4" }, { "clientIp", "1:2:3:4:5:6:7:8:9" }, { "clientIp", "cafe" },
                      { "callbackUrl", "/back" }, { "callbackUrl", "http://u:p@x.example/" },
                      { "callbackUrl", "http://x.example:70000/" }, { "notifyUrl", "ftp://x/" },
                      { "imageUrl", "img.png" }, { "phone", "abc" }, { "pid", string.rep("p", 65) },
                      { "referenceId", "a\nb" }, { "colour", "red" } }
      for _, c in ipairs(cases) do
        local res = api("GET", INIT, { pid = "12000", [c[1]] = c[2] })
        assert.equal(400, res.status, c[1])
        assert.equal("InvalidParameter", res.json.errorCode)
        assert.equal(c[1], res.json.field)
      end
      local res = api("GET", INIT, { mcc = "228" })
      assert.equal(400, res.status)
      assert.equal("pid", res.json.field)
      for _, ip in ipairs { "192.0.2.1", "::1", "2001:db8::7", "::ffff:192.0.2.1", "1:2:3:4:5:6:7:8" } do
        assert.equal(200, api("GET", INIT, { pid = "12000", clientIp = ip }).status, ip)
      end
      for _, u in ipairs { "https://shop.example/back?x=1", "http://127.0.0.1:8080/n", "http://[::1]:8080/x" } do
        assert.equal(200, api("GET", INIT, { pid = "12000", callbackUrl = u }).status, u)
      end
    end)

    it("knows no UNKNOWN product and fails on ERROR500", function()
      local res = api("GET", INIT, { pid = "UNKNOWN1" })
      assert.equal(400, res.status)
      assert.equal("UnknownProduct", res.json.errorCode)
      assert.equal(500, api("GET", INIT, { pid = "ERROR500" }).status)
    end)
  end)

  describe("checkout page", function()
    it("offers the send-sms, cancel and expire buttons", function()
      local s = start("12000", { imageUrl = "https://cdn.example/p.png" })
      local res = sb.request("GET", s.redirect)
      assert.equal(200, res.status)
      for _, id in ipairs { 'id="send-sms"', 'id="cancel"', 'id="expire"', 'id="short-code"', 'id="product-image"' } do
        assert.truthy(res.body:find(id, 1, true), id)
      end
    end)

    it("redirects to callbackUrl with the documented parameters when the SMS is sent", function()
      local s = start("12000")
      local res = sb.request("POST", "/mocopay/checkout", "trn=" .. s.trn .. "&action=send-sms", FORM)
      assert.equal(302, res.status)
      local loc = res.headers.location
      assert.matches("^" .. (base .. "/_sink/ret-" .. s.name .. "?shop=1&"):gsub("%p", "%%%0"), loc)
      local q = query_of(loc)
      assert.equal(q.sid, q.sessionId)
      assert.matches("^%x+$", q.sessionId)
      assert.equal(s.request_id, q.requestId)
      assert.equal(s.params.referenceId, q.referenceId)
      assert.equal("PaymentComplete", q.status)
      assert.equal("1", q.shop)
    end)

    it("shows the outcome when there is no callbackUrl", function()
      local res = api("GET", INIT, { pid = "12000" })
      local trn = res.json.redirectUrl:match("trn=(%x+)")
      local page = sb.request("POST", "/mocopay/checkout", "trn=" .. trn .. "&action=cancel", FORM)
      assert.equal(200, page.status)
      assert.matches('id="status">PaymentCancelled<', page.body)
    end)

    it("answers 404 for an unknown session", function()
      assert.equal(404, sb.request("GET", "/mocopay/checkout?trn=00").status)
    end)
  end)

  describe("the magic act call", function()
    it("cancels and expires with their statuses, and keeps the first outcome", function()
      local s = start("12000")
      local q = query_of(act(s.trn, "cancel").json.Location)
      assert.equal("PaymentCancelled", q.status)
      q = query_of(act(s.trn, "send-sms").json.Location)
      assert.equal("PaymentCancelled", q.status)
      local e = start("12000")
      assert.equal("PaymentExpired", query_of(act(e.trn, "expire").json.Location).status)
    end)

    it("fails the billing of FAIL products", function()
      local s = start("FAIL-1")
      assert.equal("PaymentFailed", query_of(act(s.trn, "send-sms").json.Location).status)
    end)

    it("refuses an unknown action", function()
      local s = start("12000")
      assert.equal(400, act(s.trn, "steal").status)
    end)
  end)

  describe("verifyPayment for forgery tests", function()
    it("names the purchase (requestId, referenceId) unless echo is off", function()
      local s = start("12000")
      local sid = query_of(act(s.trn, "send-sms").json.Location).sessionId
      local j = api("POST", VERIFY, { sessionId = sid }).json
      assert.equal(s.request_id, j.requestId)
      assert.equal(s.params.referenceId, j.referenceId)
      assert.equal(200, sb.post_json("/mocopay/_sandbox/echo", { on = false }).status)
      j = api("POST", VERIFY, { sessionId = sid }).json
      assert.equal(200, sb.post_json("/mocopay/_sandbox/echo", { on = true }).status)
      assert.is_nil(j.requestId)
      assert.is_nil(j.referenceId)
      assert.equal(sid, j.sessionId)
      assert.equal(400, sb.post_json("/mocopay/_sandbox/echo", { on = "no" }).status)
    end)

    it("answers for another session, or with fields replaced, when told to, until restored", function()
      local a, b = start("12000"), start("12000")
      local sa = query_of(act(a.trn, "send-sms").json.Location).sessionId
      local sbid = query_of(act(b.trn, "cancel").json.Location).sessionId
      assert.equal(200, sb.post_json("/mocopay/_sandbox/verify_answer", { sessionId = sbid, as = sa }).status)
      local j = api("POST", VERIFY, { sessionId = sbid }).json
      assert.equal(sa, j.sessionId)
      assert.equal("Authorized", j.status)
      assert.equal(200, sb.post_json("/mocopay/_sandbox/verify_answer",
        { sessionId = sbid, set = { status = "Expired", requestId = require("cjson").null } }).status)
      j = api("POST", VERIFY, { sessionId = sbid }).json
      assert.equal(sbid, j.sessionId)
      assert.equal("Expired", j.status)
      assert.is_nil(j.requestId)
      assert.equal(200, sb.post_json("/mocopay/_sandbox/verify_answer", { sessionId = sbid }).status)
      j = api("POST", VERIFY, { sessionId = sbid }).json
      assert.equal("Cancelled", j.status)
      assert.equal(b.request_id, j.requestId)
      assert.equal(404, sb.post_json("/mocopay/_sandbox/verify_answer", { sessionId = "nope" }).status)
      assert.equal(400, sb.post_json("/mocopay/_sandbox/verify_answer", { sessionId = sbid, as = "nope" }).status)
      assert.equal(400, sb.post_json("/mocopay/_sandbox/verify_answer", { sessionId = sbid, set = "x" }).status)
      assert.equal(400, sb.post_json("/mocopay/_sandbox/verify_answer", {}).status)
    end)
  end)

  describe("verifyPayment", function()
    it("answers the documented shape for a paid one-time session", function()
      local s = start("12000", { mcc = "219", mnc = "01", phone = "0099923026", lang = "hr" })
      local sid = query_of(act(s.trn, "send-sms").json.Location).sessionId
      local res = api("POST", VERIFY, { sessionId = sid })
      assert.equal(200, res.status, res.body)
      local j = res.json
      local keys = {}
      for k in pairs(j) do keys[#keys + 1] = k end
      table.sort(keys)
      assert.same({ "chargedAmount", "currencyCode", "endUser", "expiresIn", "failedAmount", "lang", "lastChargedAmount",
        "lastFailedAmount", "pid", "recurrent", "referenceId", "requestId", "series", "serviceCode", "sessionId", "status",
        "timeAuthorized", "timeInit",
        "timeLastSuccessfullPayment", "totalChargedAmount", "totalFailedAmount", "transactions", "type" }, keys)
      assert.equal(sid, j.sessionId)
      assert.equal("Authorized", j.status)
      assert.equal("onetime", j.type)
      assert.same({ userId = s.params.userId, phone = "0099923026", mcc = "219", mnc = "01" }, j.endUser)
      assert.equal(199, j.totalChargedAmount)
      assert.equal(1, #j.transactions)
      assert.is_false(j.recurrent)
      assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$", j.timeAuthorized)
      assert.truthy(j.expiresIn > 86000)
      assert.matches('"transactions":%[', res.body)
    end)

    it("finds the session by userId and by transactionId", function()
      local s = start("12000")
      local sid = query_of(act(s.trn, "send-sms").json.Location).sessionId
      local by_user = api("POST", VERIFY, { userId = s.params.userId })
      assert.equal(sid, by_user.json.sessionId)
      local txn = by_user.json.transactions[1]
      assert.equal(sid, api("POST", VERIFY, { transactionId = txn }).json.sessionId)
    end)

    it("wants exactly one lookup parameter, a POST and a known session", function()
      assert.equal(400, api("POST", VERIFY, {}).status)
      assert.equal(400, api("POST", VERIFY, { sessionId = "a", userId = "b" }).status)
      assert.equal(405, api("GET", VERIFY, { sessionId = "a" }).status)
      assert.equal(404, api("POST", VERIFY, { sessionId = "0000" }).status)
    end)

    it("does not show one key's sessions to another", function()
      local s = start("12000")
      local c = sim.credentials_sha1
      local res = api("POST", VERIFY, { userId = s.params.userId }, { key = c.api_key, secret = c.api_secret, digest = "sha1" })
      assert.equal(404, res.status)
    end)

    it("expires a session left past its time limit", function()
      assert.equal(200, sb.request("POST", "/mocopay/_sandbox/ttl?seconds=0.2").status)
      local ok, err = pcall(function()
        local s = start("12000")
        sleep(0.4)
        local q = query_of(act(s.trn, "send-sms").json.Location)
        assert.equal("PaymentExpired", q.status)
        assert.equal("Expired", api("POST", VERIFY, { sessionId = q.sessionId }).json.status)
      end)
      sb.request("POST", "/mocopay/_sandbox/ttl?seconds=" .. sim.TTL)
      assert(ok, err)
    end)
  end)

  describe("subscriptions", function()
    it("charges again on the admin call, and records a failed charge", function()
      local s = start("SUB-WEEKLY")
      local sid = query_of(act(s.trn, "send-sms").json.Location).sessionId
      local res = sb.request("POST", "/mocopay/_sandbox/charge?sessionId=" .. sid)
      assert.equal(200, res.status)
      assert.equal(2, res.json.series)
      assert.equal(20, res.json.totalChargedAmount)
      res = sb.request("POST", "/mocopay/_sandbox/charge?sessionId=" .. sid .. "&result=fail")
      assert.equal(2, res.json.series)
      assert.equal(0, res.json.chargedAmount)
      assert.equal(10, res.json.lastFailedAmount)
      assert.equal(10, res.json.totalFailedAmount)
      assert.equal(3, #res.json.transactions)
      assert.is_true(res.json.recurrent)
      assert.equal("subscription", res.json.type)
    end)

    it("refuses to charge a one-time session", function()
      local s = start("12000")
      local sid = query_of(act(s.trn, "send-sms").json.Location).sessionId
      assert.equal(409, sb.request("POST", "/mocopay/_sandbox/charge?sessionId=" .. sid).status)
    end)
  end)

  describe("notifications", function()
    it("sends signed session and transaction notifications to notifyUrl", function()
      local s = start("12000", { phone = "+385911234567", mcc = "219", mnc = "01" })
      local sid = query_of(act(s.trn, "send-sms").json.Location).sessionId
      local log = sb.sink_log("n-" .. s.name, 2)
      assert.equal(2, #log)
      local session, txn
      for _, e in ipairs(log) do
        assert.equal("GET", e.method)
        local q = core.query_decode(e.query)
        if q.transactionId then txn = q else session = q end
        local path = e.uri:match("^[^?]*")
        local key, sig = q.signature:match("^([^:]+):(.+)$")
        assert.equal(KEY, key)
        assert.equal(mocopay.sign(SECRET, path, q), sig)
        local tampered = {}
        for k, v in pairs(q) do tampered[k] = v end
        tampered.status = "Tampered"
        assert.not_equal(mocopay.sign(SECRET, path, tampered), sig)
      end
      assert.equal(sid, session.sessionId)
      assert.equal("Authorized", session.status)
      assert.equal("onetime", session.sessionType)
      assert.equal("+385911234567", session.phone)
      assert.equal(s.params.referenceId, session.referenceId)
      assert.equal("199", session.chargedAmount)
      assert.equal("Charged", txn.status)
      assert.equal(sid, txn.sessionId)
    end)

    it("keeps the notify URL's own query parameters, signed", function()
      local name = uniq()
      local s = start("12000", { notifyUrl = base .. "/_sink/q-" .. name .. "?shop=7" })
      act(s.trn, "cancel")
      local log = sb.sink_log("q-" .. name, 1)
      local q = core.query_decode(log[1].query)
      assert.equal("7", q.shop)
      assert.equal("Cancelled", q.status)
      assert.equal(mocopay.sign(SECRET, "/_sink/q-" .. name, q), q.signature:match(":(.+)$"))
    end)
  end)
end)
