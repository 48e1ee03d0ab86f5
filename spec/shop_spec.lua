-- The example shop (examples/openresty) in a real nginx, paying through the sandbox, driven
-- over HTTP by a scripted buyer (core client, redirects followed by hand; the sandbox's
-- `_sandbox` calls stand in for the clicks on the providers' pages).
local sb = require "spec.support.sandbox"
local shops = require "spec.support.shop"
local core = require "paykit.core"
local cjson = require "cjson.safe"

local server, buyers, count, firsts = shops.server, shops.buyers, shops.count, shops.firsts
local PORT, MULTI_PORT = 18850, 18851

-- Seconds since the epoch, from the same clock as the background curl's `date +%s.%N`.
local function wall_clock()
  local p = assert(io.popen("date +%s.%N"))
  local t = tonumber(p:read("*l"))
  p:close()
  return t
end

describe("the example shop (one worker)", function()
  local shop, buyer
  lazy_setup(function() sb.start(); shop, buyer = shops.start { port = PORT, workers = 1 } end)
  lazy_teardown(function() shops.stop(PORT, buyer); sb.stop() end)

  it("lists the products with stable buy buttons and a pre-filled test card", function()
    local res = buyer:get("/")
    assert.equal(200, res.status)
    for _, id in ipairs { "buy-moka", "buy-mocopay", "buy-zippy-card", "buy-zippy-operator",
                          "card-number", "card-holder", "exp-month", "exp-year", "cvc" } do
      assert.truthy(res.body:find('id="' .. id .. '"', 1, true), id)
    end
  end)

  describe("with Moka", function()
    it("takes an approved 3D payment, grants once, and a repeated notification grants nothing", function()
      local trip = buyer:moka("approve")
      assert.equal(302, trip.buy_status)
      assert.equal(303, trip.return_status)
      assert.equal("paid", trip.order.status)
      assert.equal(1, trip.order.granted)
      local o = buyer:wait_event(trip.id, "notification")
      assert.equal(1, count(o.events, "notification"))
      local dups = count(o.events, "notification: paid (duplicate)")
      local again = trip.replay()
      assert.equal(200, again.status)
      assert.equal("OK", again.body) -- exactly what gw:notification said to answer
      o = buyer:order(trip.id)
      assert.equal(dups + 1, count(o.events, "notification: paid (duplicate)"))
      assert.equal(1, o.granted)
      o = buyer:check(trip.id)
      assert.equal(1, count(o.events, "status: paid (duplicate)"))
      assert.equal("paid", o.status)
      assert.equal(1, firsts(o.events), "one report of the payment was the first")
      assert.equal(1, o.granted)
      assert.equal(1, o.grant_calls)
      assert.equal("paid", o.journal.state)
      assert.equal("done", o.journal.grant)
      assert.equal("moka:" .. o.reference, o.journal.token)
      local page = buyer:get("/order/" .. trip.id).body
      assert.matches('id="order%-status">paid<', page)
      assert.matches('id="granted">1<', page)
    end)

    it("records a bank decline as failed and grants nothing", function()
      local trip = buyer:moka("approve", { card = buyers.CARDS.decline })
      assert.equal("failed", trip.order.status)
      assert.equal(0, trip.order.granted)
      local o = buyer:check(trip.id)
      assert.equal("failed", o.status)
      assert.equal(0, o.granted)
    end)

    it("records the buyer's decline on the 3D page as failed", function()
      local trip = buyer:moka("decline")
      assert.equal("failed", trip.order.status)
      assert.equal(0, buyer:wait_event(trip.id, "notification").granted)
    end)

    it("refuses a forged return without changing the order", function()
      local trip = buyer:moka("decline")
      local forged = {}
      for k, v in pairs(trip.fields) do forged[k] = v end
      forged.hashValue = core.digest("sha256", "forged", "hex")
      local res = buyer:post("/return/moka/" .. trip.id, forged)
      assert.equal(400, res.status)
      assert.matches("could not be verified", res.body)
      local o = buyer:order(trip.id)
      assert.equal("failed", o.status)
      assert.equal(0, o.granted)
    end)

    it("shows an error page without the card when the provider fails or the card is invalid", function()
      local res = buyer:post("/buy/moka", { card_number = "4000000000300006", card_holder = "Ali Yilmaz",
        exp_month = "12", exp_year = "2030", cvc = "123" })
      assert.equal(502, res.status)
      assert.matches("could not be started", res.body)
      assert.is_nil(res.body:find("4000000000300006", 1, true))
      res = buyer:post("/buy/moka", { card_number = "4111111111111112", card_holder = "Ali Yilmaz",
        exp_month = "12", exp_year = "2030", cvc = "987" })
      assert.equal(400, res.status)
      assert.matches("card%.number", res.body)
      assert.is_nil(res.body:find("4111111111111112", 1, true))
      assert.is_nil(res.body:find("987", 1, true))
    end)
  end)

  describe("with MoCoPay", function()
    it("takes a payment, grants once, and a repeated notification grants nothing", function()
      local trip = buyer:mocopay("send-sms")
      assert.equal(302, trip.buy_status)
      assert.equal("paid", trip.order.status)
      assert.equal(1, trip.order.granted)
      -- the session notice and the transaction notice: one payment, so one of them is a repeat
      local function notices(want)
        local o
        for _ = 1, 100 do
          o = buyer:order(trip.id)
          if count(o.events, "notification") >= want then return o end
          os.execute("sleep 0.05")
        end
        return o
      end
      local o = notices(2)
      assert.equal(1, firsts(o.events))
      local again = trip.replay()
      assert.equal(200, again.status)
      o = notices(3)
      assert.equal(1, firsts(o.events), "the repeat is a duplicate")
      o = buyer:check(trip.id)
      assert.equal(1, count(o.events, "status: paid (duplicate)"))
      assert.equal(1, firsts(o.events))
      assert.equal(1, o.granted)
      assert.equal(1, o.grant_calls)
    end)

    it("records a cancelled payment as failed", function()
      local trip = buyer:mocopay("cancel")
      assert.equal("failed", trip.order.status)
      assert.equal(0, trip.order.granted)
    end)
  end)

  describe("with Zippy", function()
    it("takes a card payment, grants once, and a repeated notification grants nothing", function()
      local trip = buyer:zippy("CARD", "success")
      assert.equal("paid", trip.order.status)
      assert.equal(1, trip.order.granted)
      local o = buyer:wait_event(trip.id, "notification")
      local dups = count(o.events, "notification: paid (duplicate)")
      local again = trip.replay()
      assert.equal(200, again.status)
      assert.equal("OK", again.body)
      o = buyer:order(trip.id)
      assert.equal(dups + 1, count(o.events, "notification: paid (duplicate)"))
      assert.equal(1, firsts(o.events))
      assert.equal(1, o.granted)
      assert.equal("paid", o.journal.state)
    end)

    it("takes a carrier-billing payment", function()
      local trip = buyer:zippy("OPERATOR", "success")
      assert.equal("paid", trip.order.status)
      assert.equal(1, trip.order.granted)
    end)

    it("records a declined card and a failed carrier billing as failed", function()
      local card = buyer:zippy("CARD", "CC_ERROR")
      assert.equal("failed", card.order.status)
      assert.equal(0, card.order.granted)
      local phone = buyer:zippy("OPERATOR", "DIR_BILL_ERROR")
      assert.equal("failed", phone.order.status)
      assert.equal(0, phone.order.granted)
    end)
  end)

  it("answers other buyers while a Moka call is slow (one worker)", function()
    local out = os.tmpname()
    -- The slow purchase runs in the background (curl), the 20 others from here.
    os.execute(string.format("(curl -s -o /dev/null -w '%%{http_code}' -X POST %s/buy/moka"
      .. " --data 'card_number=%s&card_holder=Ali+Yilmaz&exp_month=12&exp_year=2030&cvc=123';"
      .. " echo; date +%%s.%%N) > %s 2>&1 &", shop, buyers.CARDS.slow, out))
    os.execute("sleep 0.3") -- the slow purchase is now waiting on the sandbox
    local reqs = {}
    for i = 1, 20 do reqs[i] = { method = "GET", url = shop .. (i % 2 == 0 and "/" or "/order/1.json") } end
    local answers = buyer.http:batch(reqs, { max_in_flight = 20 })
    local others_done = wall_clock()
    for i = 1, 20 do assert.equal(200, answers[i].status) end
    local slow_status, slow_done
    for _ = 1, 200 do
      local f = io.open(out)
      local text = f and f:read("*a") or ""
      if f then f:close() end
      slow_status, slow_done = text:match("^(%d+)\n([%d%.]+)")
      if slow_done then break end
      os.execute("sleep 0.05")
    end
    os.remove(out)
    assert.equal("302", slow_status)
    assert.is_true(others_done < tonumber(slow_done), "the 20 requests finished before the slow purchase")
  end)

  it("never writes a card number or CVC to its log", function()
    local log = server.error_log { port = PORT }
    for _, card in pairs(buyers.CARDS) do assert.is_nil(log:find(card, 1, true)) end
    assert.is_nil(log:find("4000000000300006", 1, true))
    assert.is_nil(log:find("4111111111111112", 1, true))
    assert.is_nil(log:find("cvc=123", 1, true))
  end)
end)

describe("the example shop (four workers)", function()
  local sandbox, shop, buyer
  lazy_setup(function() sandbox = sb.start(); shop, buyer = shops.start { port = MULTI_PORT, workers = 4 } end)
  lazy_teardown(function() shops.stop(MULTI_PORT, buyer); sb.stop() end)

  local function batch_ok(reqs)
    local answers = buyer.http:batch(reqs, { max_in_flight = 40 })
    for i, a in ipairs(answers) do assert.is_nil(a.error, "request " .. i .. ": " .. tostring(a.error)) end
    return answers
  end

  it("does not pay an open MoCoPay order from an unsigned notice naming another order's paid session (issue 3b)", function()
    local a = buyer:mocopay("send-sms")
    assert.equal("paid", a.order.status)
    assert.equal(1, a.order.granted)
    -- order B: started, never finished (its checkout page stays open)
    assert.equal(302, buyer:post("/buy/mocopay", "").status)
    local b_id = tonumber(a.id)
    while buyer:order(b_id + 1) do b_id = b_id + 1 end
    local b = buyer:order(b_id)
    assert.equal("mocopay", b.provider)
    assert.equal("pending", b.status)
    -- unsigned notices with A's session and B's reference, at all four workers at once
    local forged = {}
    for i = 1, 16 do
      local q = core.canonical_query { { "sessionId", a.session_id }, { "referenceId", b.reference },
        { "status", "Authorized" }, { "sessionType", "onetime" }, { "series", tostring(i % 4 + 1) },
        { "chargedAmount", "199" }, { "currencyCode", "EUR" } }
      forged[i] = { method = "GET", url = shop .. "/notify/mocopay?" .. q }
    end
    batch_ok(forged)
    -- and a forged return of A's session to B's return URL
    local ret = core.canonical_query { { "sid", a.session_id }, { "sessionId", a.session_id },
      { "requestId", core.random_hex(16) }, { "referenceId", b.reference }, { "status", "PaymentComplete" } }
    assert.equal(400, buyer:get("/return/mocopay/" .. b_id .. "?" .. ret).status)
    local o = buyer:check(b_id)
    assert.equal("pending", o.status)
    assert.equal(0, o.granted)
    for _, e in ipairs(o.events) do assert.is_nil(e:find("paid", 1, true), e) end
    o = buyer:order(a.id)
    assert.equal("paid", o.status)
    assert.equal(1, o.granted)
  end)

  it("gets 40 concurrent Moka purchases right, and repeated notifications grant nothing twice", function()
    local n = 40
    local reqs = {}
    for i = 1, n do
      reqs[i] = { method = "POST", url = shop .. "/buy/moka",
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
        body = core.form_encode { card_number = buyers.CARDS.approve, card_holder = "Ali Yilmaz",
                                  exp_month = "12", exp_year = "2030", cvc = "123" } }
    end
    local bought = batch_ok(reqs)
    -- the buyers' clicks: odd ones approve, even ones decline
    local clicks = {}
    for i = 1, n do
      assert.equal(302, bought[i].status)
      local code = bought[i].headers.location:match("threeDTrxCode=([%w%-]+)")
      clicks[i] = { method = "POST", url = sandbox .. "/moka/_sandbox/3d/complete", headers = { ["Content-Type"] = "application/json" },
        body = cjson.encode { threeDTrxCode = code, action = i % 2 == 1 and "approve" or "decline" } }
    end
    local done = batch_ok(clicks)
    local returns, kinds, ids = {}, {}, {}
    for i = 1, n do
      local d = cjson.decode(done[i].body)
      ids[i] = d.RedirectUrl:match("/return/moka/(%d+)")
      local body = core.form_encode(d.Fields)
      -- the return, and the same notification twice more, all at once
      for k, path in ipairs { d.RedirectUrl, shop .. "/notify/moka", shop .. "/notify/moka" } do
        returns[#returns + 1] = { method = "POST", url = path, body = body,
          headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } }
        kinds[#returns] = k
      end
    end
    local answers = batch_ok(returns)
    for i = 1, #returns do
      if kinds[i] == 1 then assert.equal(303, answers[i].status) else assert.equal("OK", answers[i].body) end
    end
    for i = 1, n do
      local o = buyer:wait_event(ids[i], "notification", 5)
      if i % 2 == 1 then
        assert.equal("paid", o.status)
        assert.equal(1, o.granted)
      else
        assert.equal("failed", o.status)
        assert.equal(0, o.granted)
      end
      assert.is_true(count(o.events, "notification") >= 2)
    end
  end)
end)
