-- The MoCoPay client end to end against the sandbox over real HTTP: purchase, the buyer's
-- return, notifications (captured by the sandbox's sink), status; one-time and subscription.
local sb = require "spec.support.sandbox"
local core = require "paykit.core"
local paykit = require "paykit"
local mocopay = require "paykit.providers.mocopay"
local sim = require "paykit.sandbox.mocopay"

local base

local function uniq() return core.random_hex(6) end

-- The buyer acts on the checkout page; returns the callback URL's query string.
local function buyer(result, action)
  local trn = result.redirect_url:match("trn=(%x+)")
  local res = sb.post_json("/mocopay/_sandbox/act", { trn = trn, action = action })
  assert.equal(200, res.status, res.body)
  return res.json.Location:match("%?(.*)$")
end

local function as_request(entry)
  return { method = entry.method, path = entry.uri:match("^[^?]*"), query = entry.query, headers = entry.headers }
end

local function gateway(opts)
  local o = { api_key = sim.credentials.api_key, api_secret = sim.credentials.api_secret, base_url = base .. "/mocopay" }
  for k, v in pairs(opts or {}) do o[k] = v end
  return paykit.mocopay(o)
end

describe("mocopay flow against the sandbox", function()
  lazy_setup(function() base = sb.start() end)
  lazy_teardown(function() sb.stop() end)

  it("takes a one-time payment: redirect, return, notifications, status", function()
    local n = uniq()
    local gw = gateway { callback_url = base .. "/_sink/ret-" .. n, notify_url = base .. "/_sink/n-" .. n }
    local r = assert(gw:purchase { pid = "12000", reference = "order-" .. n, user_id = "u-" .. n, client_ip = "2001:db8::7",
      mcc = "219", mnc = "01", country = "HR", lang = "hr", phone = "+385911234567", image_url = "https://cdn.example/p.png" })
    assert.equal("redirect", r.status)
    assert.equal("GET", r.method)
    assert.equal("order-" .. n, r.reference)
    assert.same({ request_id = r.provider_reference, reference_id = "order-" .. n, pid = "12000" }, r.keep)
    local page = sb.request("GET", r.redirect_url)
    assert.truthy(page.body:find('id="send-sms"', 1, true))

    local done = assert(gw:complete(buyer(r, "send-sms"), r.keep))
    assert.equal("paid", done.status)
    assert.equal("Authorized", done.code)
    assert.equal("PaymentComplete", done.callback_status)
    assert.equal("order-" .. n, done.reference)
    -- the sandbox's 199 is minor units (amount_unit "minor", UNCONFIRMED): money.format'ed
    -- (ISSUE9: was "199", 100 times the money)
    assert.equal("1.99", done.amount)
    assert.equal("EUR", done.currency)
    local p = done.payment
    assert.equal("onetime", p.type)
    assert.equal(1, p.series)
    assert.is_false(p.recurrent)
    assert.same({ user_id = "u-" .. n, phone = "+385911234567", mcc = "219", mnc = "01" }, p.end_user)
    assert.equal("hr", p.lang)
    assert.equal("199", p.total_charged_amount)
    assert.equal("0", p.total_failed_amount)
    assert.equal(1, #p.transactions)
    assert.matches("^%d+%-%d+%-%d+ ", p.time_authorized)
    assert.truthy(p.expires_in > 0)

    local log = sb.sink_log("n-" .. n, 2)
    assert.equal(2, #log)
    for i, e in ipairs(log) do
      local res, reply = gw:notification(as_request(e))
      assert.truthy(res, reply and reply.body)
      assert.equal("paid", res.status)
      assert.equal("order-" .. n, res.reference)
      -- the session notice and the transaction notice are one payment: the second is a repeat
      assert.equal(i == 2, res.duplicate)
      assert.is_true(res.notification.signed)
      assert.equal(done.provider_reference, res.provider_reference)
      assert.same({ status = 200, body = "OK", content_type = "text/plain" }, reply)
      local again = assert(gw:notification(as_request(e)))
      assert.is_true(again.duplicate)
      assert.equal("paid", again.status)
    end
    -- a keep lookup that raises leaves no claim behind
    local fresh = gateway()
    assert.has_error(function() fresh:notification(as_request(log[1]), { keep = function() error("db down") end }) end)
    assert.is_false(assert(fresh:notification(as_request(log[1]), { keep = function() return r.keep end })).duplicate)
    -- another instance has not seen it
    local other = gateway { notification_reply = "ACK" }
    local res, reply = other:notification(as_request(log[1]))
    assert.is_false(res.duplicate)
    assert.equal("ACK", reply.body)

    local st = assert(gw:status(done.provider_reference))
    assert.equal("paid", st.status)
    local bound = assert(gw:status(done.provider_reference, r.keep)) -- and it is this purchase's
    assert.equal("paid", bound.status)
    assert.is_true(bound.bound)
    assert.equal("order-" .. n, bound.reference)
    -- the keep bound to the session: only that session is taken for the purchase from now on
    assert.same({ request_id = r.keep.request_id, reference_id = r.keep.reference_id, pid = "12000",
                  session_id = done.provider_reference }, done.keep)
    assert.equal("paid", assert(gw:status(done.provider_reference, done.keep)).status)
    local second = assert(gw:purchase { pid = "12000", return_url = base .. "/_sink/ret-" .. n })
    local other_sid = core.query_decode(buyer(second, "send-sms")).sessionId
    local ok, err = gw:status(other_sid, done.keep)
    assert.is_nil(ok)
    assert.equal("session_mismatch", err.code)
    assert.equal(done.provider_reference, assert(gw:status { userId = "u-" .. n }).provider_reference)
    assert.equal(done.provider_reference, assert(gw:status { transaction_id = p.transactions[1] }).provider_reference)
  end)

  it("takes a subscription and follows its recurring charges", function()
    local n = uniq()
    local gw = gateway { notify_url = base .. "/_sink/s-" .. n }
    local r = assert(gw:purchase { pid = "SUB-WEEKLY", return_url = base .. "/_sink/sret-" .. n })
    assert.matches("^%x+$", r.keep.reference_id) -- generated when the shop gives none
    local done = assert(gw:complete(buyer(r, "send-sms"), r.keep))
    assert.equal("paid", done.status)
    assert.equal("subscription", done.payment.type)
    assert.is_true(done.payment.recurrent)
    local sid = done.provider_reference
    sb.sink_log("s-" .. n, 2)

    assert.equal(200, sb.request("POST", "/mocopay/_sandbox/charge?sessionId=" .. sid).status)
    assert.equal(200, sb.request("POST", "/mocopay/_sandbox/charge?sessionId=" .. sid .. "&result=fail").status)
    local log = sb.sink_log("s-" .. n, 6)
    assert.equal(6, #log)
    local types = {}
    for _, e in ipairs(log) do
      local res = assert(gw:notification(as_request(e)))
      assert.equal(sid, res.provider_reference)
      local t = res.notification.session_type or "transaction:" .. res.notification.status
      types[t] = (types[t] or 0) + 1
    end
    assert.same({ subscription = 3, ["transaction:Charged"] = 2, ["transaction:Failed"] = 1 }, types)

    local st = assert(gw:status(sid))
    assert.equal("paid", st.status)
    assert.equal(2, st.payment.series)
    assert.equal("20", st.payment.total_charged_amount)
    assert.equal("10", st.payment.last_charged_amount)
    assert.equal("0", st.payment.charged_amount)
    assert.equal("10", st.payment.failed_amount)
    assert.equal("10", st.payment.last_failed_amount)
    assert.equal("10", st.payment.total_failed_amount)
    assert.equal(3, #st.payment.transactions)
    assert.truthy(st.payment.expires_in > 6 * 86400)
    assert.matches("^%d+%-%d+%-%d+ ", st.payment.time_last_successful_payment)
    assert.matches("^%d+%-%d+%-%d+ ", st.payment.time_init)
    assert.equal("PS-SANDBOX-SUB", st.payment.service_code)
  end)

  it("without requestId / referenceId in verifyPayment's answer, waits for the signed notification", function()
    assert.equal(200, sb.post_json("/mocopay/_sandbox/echo", { on = false }).status)
    local n = uniq()
    local gw = gateway { callback_url = base .. "/_sink/ret-" .. n, notify_url = base .. "/_sink/ne-" .. n }
    local r = assert(gw:purchase { pid = "12000", reference = "order-" .. n })
    local done = gw:complete(buyer(r, "send-sms"), r.keep)
    local st = gw:status(done and done.session_id or "x", r.keep)
    local log = sb.sink_log("ne-" .. n, 2)
    local signed = assert(gw:notification(as_request(log[1]), { keep = function(ref) return ref == r.reference and r.keep or nil end }))
    local unsigned = as_request(log[1])
    unsigned.query = unsigned.query:gsub("&signature=[^&]*", "")
    local hint = assert(gateway():notification(unsigned))
    assert.equal(200, sb.post_json("/mocopay/_sandbox/echo", { on = true }).status)
    assert.equal("pending", done.status) -- the return alone cannot say which purchase the session is
    assert.is_false(done.bound)
    assert.equal("pending", st.status)
    assert.equal("paid", signed.status) -- the signed notification binds session and reference
    assert.equal("order-" .. n, signed.reference)
    assert.is_true(signed.bound)
    assert.equal("paid", hint.status) -- an unsigned one says the session is paid, for no order
    assert.is_nil(hint.reference)
    assert.is_false(hint.bound)
  end)

  it("reports a cancelled, an expired and a failed payment as failed", function()
    local gw = gateway { callback_url = base .. "/_sink/ret-x" }
    for _, c in ipairs { { "12000", "cancel", "Cancelled" }, { "12000", "expire", "Expired" }, { "FAIL-9", "send-sms", "Failed" } } do
      local r = assert(gw:purchase { pid = c[1] })
      local done = assert(gw:complete(buyer(r, c[2]), r.keep))
      assert.equal("failed", done.status)
      local st = assert(gw:status(done.provider_reference))
      assert.equal("failed", st.status)
      assert.equal(c[3], st.code)
    end
  end)

  it("does not take a paid session of another product for this purchase", function()
    local gw = gateway { callback_url = base .. "/_sink/ret-x" }
    local cheap = assert(gw:purchase { pid = "CHEAP-1" })
    local paid = core.query_decode(buyer(cheap, "send-sms"))
    local dear = assert(gw:purchase { pid = "DEAR-1" })
    local ours = core.query_decode(buyer(dear, "cancel"))
    local forged = { sid = paid.sessionId, sessionId = paid.sessionId, requestId = ours.requestId,
                     referenceId = ours.referenceId, status = "PaymentComplete" }
    local ok, err = gw:complete(forged, dear.keep)
    assert.is_nil(ok)
    assert.equal("signature", err.kind)
    assert.equal("request_mismatch", err.code) -- the answer names the cheap purchase
    -- and where the answer names no purchase, the product still tells them apart
    assert.equal(200, sb.post_json("/mocopay/_sandbox/verify_answer",
      { sessionId = paid.sessionId, set = { requestId = require("cjson").null, referenceId = require("cjson").null } }).status)
    ok, err = gw:complete(forged, dear.keep)
    assert.is_nil(ok)
    assert.equal("product_mismatch", err.code)
    sb.post_json("/mocopay/_sandbox/verify_answer", { sessionId = paid.sessionId })
  end)

  it("does not believe a forged return's status", function()
    local gw = gateway { callback_url = base .. "/_sink/ret-x" }
    local r = assert(gw:purchase { pid = "12000" })
    local q = buyer(r, "cancel"):gsub("PaymentCancelled", "PaymentComplete")
    local done = assert(gw:complete(q, r.keep))
    assert.equal("failed", done.status)
    assert.equal("Cancelled", done.code)
  end)

  it("refuses a tampered notification and confirms an unsigned one", function()
    local n = uniq()
    local gw = gateway { notify_url = base .. "/_sink/t-" .. n, callback_url = base .. "/_sink/ret-x" }
    local r = assert(gw:purchase { pid = "12000" })
    buyer(r, "cancel")
    local e = sb.sink_log("t-" .. n, 1)[1]
    local req = as_request(e)
    req.query = e.query:gsub("status=Cancelled", "status=Authorized")
    local ok, err, reply = gw:notification(req)
    assert.is_nil(ok)
    assert.equal("bad_signature", err.code)
    assert.equal(401, reply.status)
    -- without any signature it is only a hint: verifyPayment says what happened
    req.query = req.query:gsub("&?signature=[^&]*", "")
    local res = assert(gw:notification(req))
    assert.is_false(res.notification.signed)
    assert.equal("failed", res.status)
    assert.equal("Cancelled", res.code)
  end)

  it("works with SHA-1, the signature as a parameter and percent-encoded signing", function()
    local c = sim.credentials_sha1
    for _, opts in ipairs { { signature_in = "param" }, { encode_values = true }, { signature_in = "param", encode_values = true } } do
      opts.api_key, opts.api_secret, opts.digest = c.api_key, c.api_secret, "sha1"
      opts.callback_url = base .. "/_sink/ret-x"
      local gw = gateway(opts)
      local r = assert(gw:purchase { pid = "12000", reference = "order 7/" .. uniq(), user_id = "a+b@c" })
      local done = assert(gw:complete(buyer(r, "send-sms"), r.keep))
      assert.equal("paid", done.status)
    end
  end)

  it("turns provider refusals into the kit's errors", function()
    local ok, err = gateway({ api_secret = "wrong" }):purchase { pid = "12000" }
    -- ISSUE9: wrong credentials are a config error everywhere (was provider / unauthorized),
    -- and a 400 is the kit's bad_request (was rejected)
    assert.is_nil(ok)
    assert.equal("config", err.kind)
    assert.equal("invalid_credentials", err.code)
    assert.equal("credentials", err.field)
    assert.equal(401, err.status)
    ok, err = gateway():purchase { pid = "UNKNOWN-2" }
    assert.is_nil(ok)
    assert.equal("bad_request", err.code)
    assert.equal("UnknownProduct", err.provider_code)
    -- initPayment may have opened a session before the server failed: not retryable
    ok, err = gateway({ retry = false }):purchase { pid = "ERROR500" }
    assert.is_nil(ok)
    assert.equal("server_error", err.code)
    assert.is_false(err.retryable)
    ok, err = gateway():status("0000")
    assert.is_nil(ok)
    assert.equal("not_found", err.code)
  end)

  it("never writes the api secret or a signature to the logger", function()
    local lines = {}
    local logger = function(level, line) lines[#lines + 1] = level .. " " .. line end
    local n = uniq()
    local secret = sim.credentials.api_secret
    local sigs = {}
    for _, mode in ipairs { "header", "param" } do
      local gw = gateway { logger = logger, signature_in = mode, notify_url = base .. "/_sink/l-" .. n,
                           callback_url = base .. "/_sink/ret-x" }
      local params = { pid = "12000", referenceId = "log-" .. mode .. n, callbackUrl = base .. "/_sink/ret-x",
                       notifyUrl = base .. "/_sink/l-" .. n }
      sigs[#sigs + 1] = mocopay.sign(secret, "/mocopay/v1/payment/initPayment", params)
      local r = assert(gw:purchase { pid = "12000", reference = "log-" .. mode .. n })
      local q = buyer(r, "send-sms")
      local done = assert(gw:complete(q, r.keep))
      sigs[#sigs + 1] = mocopay.sign(secret, "/mocopay/v1/payment/verifyPayment", { sessionId = done.provider_reference })
      for _, e in ipairs(sb.sink_log("l-" .. n, mode == "header" and 2 or 4)) do
        sigs[#sigs + 1] = e.query:match("signature=sandbox%-app%%3A([^&]+)")
        local req = as_request(e)
        gw:notification(req)
        req.query = e.query:gsub("status=", "status=X") -- a refused one logs too
        gw:notification(req)
      end
    end
    assert.truthy(#lines > 10)
    local all = table.concat(lines, "\n")
    assert.truthy(all:find("signature=[REDACTED]", 1, true), "param-mode requests are logged, redacted")
    assert.is_nil(all:find(secret, 1, true))
    for _, sig in ipairs(sigs) do
      assert.is_nil(all:find(sig, 1, true), sig)
      assert.is_nil(all:find(core.pct_encode(sig), 1, true), sig)
      local decoded = core.pct_decode(sig)
      if decoded then assert.is_nil(all:find(decoded, 1, true), sig) end
    end
    assert.is_nil(all:find("signature=[^%[]"))
    assert.is_nil(all:find("ApiKey", 1, true))
  end)
end)
