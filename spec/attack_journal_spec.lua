-- Attacks on the payment journal's promises (README "Running on many workers and servers"):
-- one charge per reference whatever way the amount is written, and no order paid by a
-- session that was never bound to it. Over real HTTP against the sandbox, memory store.
local paykit = require "paykit"
local core = require "paykit.core"
local cjson = require "cjson"
local journal = require "paykit.journal"
local sb = require "spec.support.sandbox"
local atk = require "spec.support.journal_attack"

local ref = atk.ref
local sandbox
local function counting_moka() return atk.moka(sandbox.base) end

local function moka_payment(reference, money)
  local p = { reference = reference, currency = "TL", client_ip = "127.0.0.1", return_url = "https://shop.example/back",
    card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" } }
  for k, v in pairs(money) do p[k] = v end
  return p
end

describe("the journal under attack", function()
  sandbox = atk.sandbox()
  lazy_setup(sandbox.start)
  lazy_teardown(sandbox.stop)

  describe("one payment per reference, whatever way its amount is written", function()
    it("refuses the same reference for another amount given in minor units (reference_reused), sending nothing", function()
      local gw, count = counting_moka()
      local j = journal.new {}
      local jg = j:wrap(gw)
      local reference = ref("minor")
      local r = assert(jg:purchase(moka_payment(reference, { amount_minor = 2750 })))
      assert.are.equal("redirect", r.status)
      assert.are.equal("27.50", j:get("moka", reference).amount, "the record names the amount it was started for")
      for _, other in ipairs { { amount_minor = 100 }, { amount = "1.00" }, { amount_minor = 275000 } } do
        local again, err = jg:purchase(moka_payment(reference, other))
        assert.is_nil(again, "a purchase for another amount must not be answered with the 27.50 payment")
        assert.are.equal("reference_reused", err.code)
      end
      assert.are.equal(1, count.n)
      -- the same amount, in either form, is the same payment: answered from the journal
      for _, same in ipairs { { amount_minor = 2750 }, { amount = "27.50" }, { amount = "27.5" } } do
        local again = assert(jg:purchase(moka_payment(reference, same)))
        assert.is_true(again.journal.replayed)
        assert.are.equal(r.redirect_url, again.redirect_url)
      end
      assert.are.equal(1, count.n)
    end)

    it("takes TL and TRY for one currency when it compares a repeated purchase", function()
      local gw, count = counting_moka()
      local jg = journal.new {}:wrap(gw)
      local reference = ref("cur")
      assert(jg:purchase(moka_payment(reference, { amount = "27.50" })))
      local again = assert(jg:purchase(moka_payment(reference, { amount = "27.50", currency = "TRY" })))
      assert.is_true(again.journal.replayed)
      local _, err = jg:purchase(moka_payment(reference, { amount = "27.50", currency = "USD" }))
      assert.are.equal("reference_reused", err.code)
      assert.are.equal(1, count.n)
    end)
  end)
  describe("a pre-authorisation (money held, not taken)", function()
    -- The buyer approves the 3D page of a pre-authorisation; Moka posts the result back.
    local function authorised(jg, reference)
      local r = assert(jg:purchase(moka_payment(reference, { amount = "27.50", pre_auth = true })))
      assert.are.equal("redirect", r.status)
      local res = sb.post_json("/moka/_sandbox/3d/complete",
        { threeDTrxCode = r.redirect_url:match("threeDTrxCode=([%w%-]+)"), action = "approve" })
      assert.are.equal(200, res.status, res.body)
      return res.json.Fields
    end

    it("is authorized, not paid, and grants nothing when its notification comes first", function()
      local jg, _, grants = atk.journaled(counting_moka())
      local reference = ref("pre")
      local fields = authorised(jg, reference)
      local n = assert(jg:notification { method = "POST", body = core.form_encode(fields) })
      assert.are.equal("authorized", n.status, "the notification of a pre-authorisation")
      assert.are.equal("authorized", jg:record_of(reference).state)
      local c = assert(jg:complete(fields))
      assert.are.equal("authorized", c.status, "the return agrees")
      assert.are.equal("authorized", jg:record_of(reference).state)
      assert.are.same({}, grants, "nothing granted for money only held: " .. cjson.encode(grants))
    end)
  end)
  it("grants once when the sweeper races the notification and the return of one payment", function()
    for _ = 1, 3 do
      local jg, _, grants = atk.journaled(counting_moka(), true)
      local reference = ref("race")
      local r = assert(jg:purchase(moka_payment(reference, { amount = "27.50" })))
      local res = sb.post_json("/moka/_sandbox/3d/complete",
        { threeDTrxCode = r.redirect_url:match("threeDTrxCode=([%w%-]+)"), action = "approve" })
      local body = core.form_encode(res.json.Fields)
      local results, errs = paykit.batch {
        function() return jg:sweep { older_than = 0 } end,
        function() return jg:notification { method = "POST", body = body } end,
        function() return jg:complete(res.json.Fields) end,
        function() return jg:notification { method = "POST", body = body } end,
      }
      local firsts = 0
      for i = 2, 4 do
        assert.is_table(results[i], tostring(errs[i]))
        assert.are.equal("paid", results[i].status)
        if results[i].duplicate == false then firsts = firsts + 1 end
      end
      assert.is_table(results[1], tostring(errs[1]))
      assert.is_true(firsts <= 1, "at most one caller is told it was first (the sweeper may have been)")
      assert.are.same({ "moka:" .. reference }, grants)
      assert.are.equal("paid", jg:record_of(reference).state)
    end
  end)
end)
