-- ISSUE9 item 7: a fourth provider, Tinypay, defined entirely under spec/ (the client
-- spec/support/tinypay.lua on the provider kit, its simulator spec/support/tinypay_sim.lua),
-- registered here, and run through the uniform flow end to end over real HTTP: the sandbox
-- (a real nginx on 127.0.0.1) serves it because it is registered; nothing under lua/paykit
-- or csrc names it.
local paykit = require "paykit"
local sandbox = require "paykit.sandbox"
local core = require "paykit.core"
local cjson = require "cjson.safe"
local sim = require "spec.support.tinypay_sim"

local PORT = tonumber(os.getenv("PAYKIT_TEST_TINYPAY_PORT") or "18852")

paykit.register { name = "tinypay", module = "spec.support.tinypay", title = "Tinypay",
  simulator = "spec.support.tinypay_sim", doc = "hosted page, HMAC-signed notices" }

describe("a fourth provider registered from spec/ (Tinypay)", function()
  local base, http, gw

  local function get(url)
    local res = assert(http:request { method = "GET", url = url })
    return res
  end

  -- What the sandbox's sink recorded, waiting for at least `want` requests.
  local function sink(name, want)
    for _ = 1, 100 do
      local list = cjson.decode(get(base .. "/_sink/" .. name .. "/log").body)
      if #list >= want then return list end
      os.execute("sleep 0.05")
    end
    error("the sink " .. name .. " got fewer than " .. want .. " requests")
  end

  -- The buyer: opens the hosted page, chooses, follows the redirect back (not followed by curl).
  local function buyer(r, outcome)
    local page = get(r.redirect_url)
    assert.are.equal(200, page.status)
    assert.truthy(page.body:find("Tinypay: pay " .. r.amount .. " " .. r.currency, 1, true))
    local res = assert(http:request { method = "POST", url = r.redirect_url, body = "outcome=" .. outcome,
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } })
    assert.are.equal(302, res.status)
    local location = res.headers.location or res.headers.Location
    return assert(location:match("%?(.*)$"))
  end

  local function purchase(tag, amount)
    return assert(gw:purchase { amount = amount or "12.50", currency = "EUR", reference = "order-" .. tag,
      return_url = base .. "/_sink/tiny-return-" .. tag .. "?shop=1", notify_url = base .. "/_sink/tiny-notify-" .. tag })
  end

  lazy_setup(function()
    base = sandbox.start { port = PORT }
    http = core.http_client { timeout = 10000 }
    gw = assert(paykit.tinypay { api_key = sim.API_KEY, notice_keys = sim.NOTICE_KEYS, base_url = base .. "/tinypay",
      retry = false })
  end)
  lazy_teardown(function()
    if http then http:close() end
    sandbox.stop { port = PORT }
  end)

  it("is a provider like the others: paykit.PROVIDERS, the sandbox's route and its index page", function()
    local names = table.concat(paykit.PROVIDERS, " ")
    assert.truthy(names:find("tinypay", 1, true))
    assert.truthy(names:find("zippy", 1, true))
    local index = get(base .. "/")
    assert.truthy(index.body:find("Tinypay", 1, true))
    assert.truthy(index.body:find(base .. "/tinypay", 1, true))
    assert.truthy(index.body:find("Zippy", 1, true))
    local _, err = paykit.tinypay { api_key = "k", notice_keys = sim.NOTICE_KEYS, base_url = base, timout = 3 }
    assert.truthy(err.message:find("did you mean timeout?", 1, true))
  end)

  it("pays: purchase, the hosted page, complete, the signed notice once, status", function()
    local r = purchase("paid")
    assert.are.equal("redirect", r.status)
    assert.are.equal("12.50", r.amount)
    local query = buyer(r, "paid")
    assert.truthy(query:find("^shop=1&id="))
    local done = assert(gw:complete(query, r.keep))
    assert.are.same({ "paid", "12.50", "EUR", r.keep.id }, { done.status, done.amount, done.currency, done.provider_reference })
    local notice = sink("tiny-notify-paid", 1)[1]
    local n, reply = gw:notification { method = "POST", body = notice.body, headers = notice.headers }
    assert.are.same({ "paid", "12.50", false }, { n.status, n.amount, n.duplicate })
    assert.are.equal(200, reply.status)
    local again = assert(gw:notification { method = "POST", body = notice.body, headers = notice.headers })
    assert.is_true(again.duplicate)
    local s = assert(gw:status(r.keep.id))
    assert.are.same({ "paid", "12.50" }, { s.status, s.amount })
  end)

  it("fails: a declined payment is a failed result, not an error", function()
    local r = purchase("failed", "0.99")
    local done = assert(gw:complete(buyer(r, "failed"), r.keep))
    assert.are.equal("failed", done.status)
    local notice = sink("tiny-notify-failed", 1)[1]
    assert.are.equal("failed", assert(gw:notification { body = notice.body, headers = notice.headers }).status)
  end)

  it("refuses tampered, unsigned, unknown-key, old and misdirected notices with the kit's codes", function()
    local r = purchase("forged")
    local query = buyer(r, "paid")
    local notice = sink("tiny-notify-forged", 1)[1]
    local function code(body, sig)
      local n, err, reply = gw:notification { body = body, headers = { ["X-Tiny-Signature"] = sig } }
      assert.is_nil(n)
      assert.are.equal(400, reply.status)
      return err.code
    end
    local sig = notice.headers["x-tiny-signature"]
    assert.are.equal("bad_signature", code(notice.body:gsub("12%.50", "1250.00"), sig))
    assert.are.equal("unsigned", code(notice.body, nil))
    assert.are.equal("malformed", code(notice.body, "v1=abc"))
    assert.are.equal("unknown_key", code(notice.body, (sig:gsub(",k=%d+,", ",k=9,"))))
    local old = tostring(os.time() - 3600)
    assert.are.equal("too_old", code(notice.body, "t=" .. old .. ",k=1,v1=" .. sim.sign(old .. "." .. notice.body, 1)))
    -- the previous key still signs (rotation)
    local now = tostring(os.time())
    local n = assert(gw:notification { body = notice.body,
      headers = { ["X-Tiny-Signature"] = "t=" .. now .. ",k=1,v1=" .. sim.sign(now .. "." .. notice.body, 1) } })
    assert.are.equal("paid", n.status)
    local other = purchase("other")
    local _, err = gw:complete(query, other.keep)
    assert.are.equal("signature", err.kind)
    _, err = gw:complete(query:gsub("status=paid", "status=failed"), r.keep)
    assert.are.equal("bad_signature", err.code)
  end)

  it("refuses bad input before the network, naming the field", function()
    local before = cjson.decode(get(base .. "/_sandbox/requests?provider=tinypay").body).count
    for _, c in ipairs {
      { { amount = 12.5, currency = "EUR" }, "amount" },
      { { amount = "1.999", currency = "EUR" }, "amount" },
      { { amount = "1.00", currency = "JPY" }, "currency" },
      { { amount = "1.00", currency = "EUR", reference = "a\nb", return_url = base .. "/", notify_url = base .. "/" }, "reference" },
      { { amount = "1.00", currency = "EUR", reference = "o", reurn_url = base .. "/" }, "reurn_url" },
    } do
      local r, err = gw:purchase(c[1])
      assert.is_nil(r)
      assert.are.equal(c[2], err.field)
    end
    assert.are.equal(before, cjson.decode(get(base .. "/_sandbox/requests?provider=tinypay").body).count)
  end)

  it("speaks the kit's HTTP vocabulary: wrong credentials are config, an unknown payment not_found", function()
    local bad = assert(paykit.tinypay { api_key = "wrong", notice_keys = sim.NOTICE_KEYS, base_url = base .. "/tinypay" })
    local _, err = bad:status("tp_00")
    assert.are.same({ "config", "invalid_credentials" }, { err.kind, err.code })
    _, err = gw:status("tp_nope")
    assert.are.same({ "provider", "not_found" }, { err.kind, err.code })
    assert.truthy(err.message:find(base .. "/tinypay/payments/tp_nope", 1, true))
  end)
end)
