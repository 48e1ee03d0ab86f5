-- The example shop (examples/openresty) on its payment journal, in a real 4-worker nginx against
-- the sandbox: on the shared dict (the default) and on a real redis-server (the --redis
-- option). Races of the reports of one payment, the sweeper's timer, a worker killed while a
-- purchase is in flight, and Redis down.
local sb = require "spec.support.sandbox"
local rs = require "spec.support.redis"
local shops = require "spec.support.shop"
local sandbox_admin = require "paykit.sandbox"
local core = require "paykit.core"
local cjson = require "cjson.safe"

local buyers, count, firsts = shops.buyers, shops.count, shops.firsts
local REDIS_PORT, PW = 16495, "shop-redis-pw"
local DEALER = require("paykit.sandbox.moka").credentials[1].DealerCode

-- Sweeper events that moved the payment to paid.
local function paid_by_sweeper(events)
  local n = 0
  for _, e in ipairs(events or {}) do if e:match("^sweeper: %a+ %-> paid$") then n = n + 1 end end
  return n
end

local function workers_seen(events)
  local seen, n = {}, 0
  for _, e in ipairs(events or {}) do
    local w = e:match(", worker (%d+)$")
    if w and not seen[w] then seen[w] = true; n = n + 1 end
  end
  return n
end

local CARD = { card_number = buyers.CARDS.approve, card_holder = "Ali Yilmaz", exp_month = "12", exp_year = "2030", cvc = "123" }

-- Moka sends no notification of its own (the test delivers them), or again to the shop.
local function moka_notify_url(url)
  assert.equal(200, sb.post_json("/moka/_sandbox/dealer", { DealerCode = DEALER, NotifyUrl = url }).status)
end

-- A Moka purchase the buyer approved on the 3D page without coming back: the order id, the
-- fields Moka posts (return and notification) and the return URL.
local function approved_unreturned(buyer)
  local res = buyer:post("/buy/moka", CARD)
  assert.equal(302, res.status, res.body)
  local code = res.headers.location:match("threeDTrxCode=([%w%-]+)")
  local done = buyer:admin("/moka/_sandbox/3d/complete", { threeDTrxCode = code, action = "approve" })
  return done.RedirectUrl:match("/return/moka/(%d+)"), done.Fields, done.RedirectUrl
end

local function form_post(url, fields)
  return { method = "POST", url = url, body = fields and core.form_encode(fields) or "",
           headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } }
end

local function wait_for(what, seconds, pred)
  local deadline = os.time() + seconds
  repeat
    local v = pred()
    if v then return v end
    os.execute("sleep 0.1")
  until os.time() > deadline
  error("timed out waiting for " .. what)
end

-- The newest order of a shop (ids count up from 1).
local function last_order(buyer)
  local id = 0
  while buyer:order(id + 1) do id = id + 1 end
  return id
end

local STORES = {
  { name = "shared-dict", port = 18895, sweep_port = 18896, url = function() return "" end },
  { name = "Redis", port = 18897, sweep_port = 18898, url = function(db) return "redis://:" .. PW .. "@127.0.0.1:" .. REDIS_PORT .. "/" .. db end },
}

describe("the example shop on its payment journal", function()
  local redis
  lazy_setup(function()
    sb.start()
    redis = rs.start { port = REDIS_PORT, password = PW }
  end)
  lazy_teardown(function()
    if redis then redis:stop() end
    sb.stop()
  end)

  for _, st in ipairs(STORES) do
    describe("on the " .. st.name .. " journal (four workers)", function()
      local shop, buyer
      lazy_setup(function()
        -- the sweeper's timer runs, but leaves payments younger than a minute alone: the
        -- races below are between the requests only
        shop, buyer = shops.start { port = st.port, workers = 4, redis = st.url(0), sweep_every = 1, sweep_older_than = 60 }
      end)
      lazy_teardown(function() shops.stop(st.port, buyer) end)
      before_each(function() moka_notify_url("") end)
      after_each(function() moka_notify_url(shop .. "/notify/moka") end)

      it("answers one notification delivered 50 times at once with one first result and one grant", function()
        local id, fields = approved_unreturned(buyer)
        local reqs = {}
        for i = 1, 50 do reqs[i] = form_post(shop .. "/notify/moka", fields) end
        local answers = buyer.http:batch(reqs, { max_in_flight = 50 })
        for i, a in ipairs(answers) do
          assert.is_nil(a.error, "delivery " .. i)
          assert.equal(200, a.status)
          assert.equal("OK", a.body)
        end
        local o = buyer:order(id)
        assert.equal(50, count(o.events, "notification: paid"))
        assert.equal(49, count(o.events, "notification: paid (duplicate)"))
        assert.equal(1, firsts(o.events), "exactly one result with duplicate = false")
        assert.equal(1, count(o.events, "grant: item delivered"))
        assert.equal(1, o.granted)
        assert.equal(1, o.grant_calls, "the grant hook ran once")
        assert.is_true(workers_seen(o.events) >= 2, "the deliveries reached several workers")
        assert.equal("paid", o.status)
        assert.equal("paid", o.journal.state)
        assert.equal("done", o.journal.grant)
        assert.equal(st.name == "Redis" and "redis" or "shared dict", o.journal.store)
      end)

      it("grants once when returns, notifications and status checks of one payment race", function()
        local id, fields, ret = approved_unreturned(buyer)
        local reqs, kinds = {}, {}
        for i = 1, 30 do
          local k = i % 3
          kinds[i] = k
          if k == 0 then reqs[i] = form_post(ret, fields)
          elseif k == 1 then reqs[i] = form_post(shop .. "/notify/moka", fields)
          else reqs[i] = form_post(shop .. "/order/" .. id .. "/check") end
        end
        local answers = buyer.http:batch(reqs, { max_in_flight = 30 })
        for i, a in ipairs(answers) do
          assert.is_nil(a.error, "request " .. i)
          if kinds[i] == 1 then assert.equal("OK", a.body) else assert.equal(303, a.status, a.body) end
        end
        local o = buyer:order(id)
        assert.equal(10, count(o.events, "return: paid"))
        assert.equal(10, count(o.events, "notification: paid"))
        assert.equal(10, count(o.events, "status: paid"))
        assert.equal(1, firsts(o.events), "one of the 30 reports was the first")
        assert.equal(1, o.granted)
        assert.equal(1, o.grant_calls)
        assert.equal("done", o.journal.grant)
        assert.is_true(workers_seen(o.events) >= 2)
      end)

      if st.name == "Redis" then
        it("refuses a purchase before the network while Redis is down, leaving nothing behind", function()
          local trip = buyer:moka("approve")
          assert.equal("paid", trip.order.status)
          local last = tonumber(trip.id)
          local boot = trip.order.reference:match("^shop%-(%x+)%-")
          local before = assert(sandbox_admin.requests { port = sb.port(), provider = "moka" }).count
          redis:kill()
          local ok, err = pcall(function()
            local res = buyer:request("POST", "/buy/moka", core.form_encode(CARD))
            assert.equal(503, res.status)
            assert.matches("payment journal is unavailable", res.body)
            assert.matches("nothing was charged", res.body)
            assert.matches('id="error%-code">journal_unavailable<', res.body)
            assert.is_nil(res.body:find(CARD.card_number, 1, true))
            res = buyer.http:request { method = "POST", url = shop .. "/buy/moka", body = core.form_encode(CARD),
              headers = { ["Content-Type"] = "application/x-www-form-urlencoded", Accept = "application/json" } }
            assert.equal(503, res.status)
            local j = cjson.decode(res.body)
            assert.equal("journal_unavailable", j.code)
            assert.matches("nothing was sent", j.error)
            assert.equal(before, assert(sandbox_admin.requests { port = sb.port(), provider = "moka" }).count,
              "no request reached Moka")
            assert.is_nil(buyer:order(last + 1), "no order left behind")
            assert.is_nil(buyer:order(last + 2))
          end)
          redis:launch()
          assert(ok, err)
          -- nor any journal key of those two orders; and the shop pays again once Redis is back
          for _, n in ipairs { last + 1, last + 2 } do
            assert.equal("", redis:cli("KEYS", "shop:{moka:shop-" .. boot .. "-" .. n .. "}*"))
          end
          assert.equal("paid", buyer:order(last).journal.state, "what was journaled before survived (AOF)")
          local again = buyer:moka("approve")
          assert.equal("paid", again.order.status)
          assert.equal(1, again.order.granted)
        end)
      end
    end)

    describe("on the " .. st.name .. " journal, the sweeper's timer", function()
      local shop, buyer
      lazy_setup(function()
        shop, buyer = shops.start { port = st.sweep_port, workers = 4, redis = st.url(1), sweep_every = 0.5,
                                    sweep_older_than = 1 }
      end)
      lazy_teardown(function() shops.stop(st.sweep_port, buyer) end)
      before_each(function() moka_notify_url("") end)
      after_each(function() moka_notify_url(shop .. "/notify/moka") end)

      it("resolves a payment stuck in redirect from Moka's status, grants once, and a late return grants nothing", function()
        local id, fields, ret = approved_unreturned(buyer)
        local o = wait_for("the sweeper to resolve order " .. id, 30, function()
          local x = buyer:order(id)
          return x.journal.grant == "done" and x
        end)
        assert.equal("paid", o.journal.state)
        -- nothing but the sweeper asked (no return, no notification): it moved the payment to
        -- paid, from redirect (or from pending, if a sweep asked before the buyer's click), and
        -- granted it (in a later sweep when the store's answer to the move was lost)
        assert.equal(0, firsts(o.events), table.concat(o.events, "\n"))
        assert.is_true(paid_by_sweeper(o.events) <= 1, table.concat(o.events, "\n"))
        assert.equal(1, o.granted)
        assert.equal(1, o.grant_calls)
        assert.equal(303, buyer:post(ret, fields).status)
        o = buyer:order(id)
        assert.equal(1, count(o.events, "return: paid (duplicate)"))
        assert.equal(0, firsts(o.events), "the sweeper, not a report, moved it to paid")
        assert.equal(1, o.granted)
        local sweeps = paid_by_sweeper(o.events)
        os.execute("sleep 1.5") -- more sweeps, by any worker: nothing more happens to it
        o = buyer:order(id)
        assert.equal(sweeps, paid_by_sweeper(o.events))
        assert.equal(1, o.grant_calls)
      end)

      it("finds a purchase whose worker was killed (kill -9) before Moka answered, and asks Moka about it", function()
        local before = last_order(buyer)
        local out = os.tmpname()
        os.execute(string.format("(curl -s -o /dev/null -w '%%{http_code}' -X POST %s/buy/moka --data '%s'; echo) > %s 2>&1 &",
          shop, core.form_encode { card_number = buyers.CARDS.slow, card_holder = "Ali Yilmaz", exp_month = "12",
                                   exp_year = "2030", cvc = "123" }, out))
        local id = wait_for("the slow purchase's order", 10, function()
          local n = last_order(buyer)
          return n > before and n
        end)
        wait_for("the record in sent", 10, function() return buyer:order(id).journal.state == "sent" end)
        -- every worker of the shop, the one waiting on Moka among them (the master starts new ones)
        local master = tonumber(io.open(require("paykit.sandbox.nginx").state_dir() .. "/shop-" .. st.sweep_port
          .. "/nginx.pid"):read("*l"))
        local p = io.popen("pgrep -P " .. master)
        local killed = 0
        for pid in p:read("*a"):gmatch("%d+") do os.execute("kill -9 " .. pid); killed = killed + 1 end
        p:close()
        assert.equal(4, killed)
        local answer = wait_for("curl to end", 15, function()
          local f = io.open(out); local t = f and f:read("*a") or ""; if f then f:close() end
          return t:match("^(%d+)\n") and t
        end)
        os.remove(out)
        assert.is_nil(answer:match("^302"), "the buyer got no payment page: " .. answer)
        -- the sweeper writes the journal's move first and reports it (the order's event) after
        -- its sweep: wait for both
        local o = wait_for("the sweeper to ask Moka about order " .. id, 60, function()
          local x = buyer:order(id)
          return x.journal.state ~= "sent" and count(x.events, "sweeper: sent -> ") > 0 and x
        end)
        -- Moka has the 3D payment, waiting for a buyer who never got its page
        assert.equal("pending", o.journal.state, table.concat(o.events, "\n"))
        assert.equal(1, count(o.events, "sweeper: sent -> pending"), table.concat(o.events, "\n"))
        assert.equal(0, o.granted, "the buyer never approved it: nothing granted")
        assert.equal(0, o.grant_calls)
      end)
    end)
  end
end)
