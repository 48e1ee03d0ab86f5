-- An attack on the journal's MoCoPay binding (README "MoCoPay": an answer that names no
-- purchase is "pending" until a signed notification): a paid session that only an unsigned,
-- unbound return named must never pay another order, through the journal's status call or
-- its sweeper. Over real HTTP against the sandbox with verifyPayment's echo off.
local core = require "paykit.core"
local sb = require "spec.support.sandbox"
local atk = require "spec.support.journal_attack"

local ref = atk.ref

describe("the journal under attack", function()
  local sandbox = atk.sandbox()
  lazy_setup(sandbox.start)
  lazy_teardown(sandbox.stop)

  describe("MoCoPay when verifyPayment does not name the purchase (echo off, UNCONFIRMED)", function()
    before_each(function()
      sb.request("POST", "/_sandbox/reset")
      assert.are.equal(200, sb.post_json("/mocopay/_sandbox/echo", { on = false }).status)
    end)
    after_each(function() sb.post_json("/mocopay/_sandbox/echo", { on = true }) end)

    -- The buyer starts two purchases of one product, pays the second (cheap to him: it is one
    -- payment) and writes the first one's return with the paid session. The return is not
    -- signed; the answer names no purchase; nothing binds that session to the first order.
    local function pay_once_claim_twice(jg)
      local function buy(reference)
        return assert(jg:purchase { pid = "12000", reference = reference, client_ip = "127.0.0.1",
          return_url = "https://shop.example/back", notify_url = "http://127.0.0.1:9/n" })
      end
      local a, b = ref("mA"), ref("mB")
      local pa, pb = buy(a), buy(b)
      local back = sb.post_json("/mocopay/_sandbox/act", { trn = pb.redirect_url:match("trn=(%w+)"), action = "send-sms" }).json
      local qb = back.Location:match("%?(.*)$")
      local forged = qb:gsub("requestId=[^&]+", "requestId=" .. pa.keep.request_id):gsub("referenceId=[^&]+", "referenceId=" .. a)
      local d = jg:complete(forged)
      if d then assert.are_not.equal("paid", d.status) end
      return a, b
    end

    it("does not pay an order through its status call with a session only an unbound return named", function()
      local jg, j, grants = atk.journaled(atk.mocopay(sandbox.base))
      local a = pay_once_claim_twice(jg)
      local s = jg:status(a)
      if s then assert.are_not.equal("paid", s.status) end
      assert.are_not.equal("paid", j:get("mocopay", a).state)
      assert.are.same({}, grants, "nothing granted for an order nobody paid")
    end)

    it("does not pay that order through the sweeper either", function()
      local jg, j, grants = atk.journaled(atk.mocopay(sandbox.base))
      local a = pay_once_claim_twice(jg)
      assert(jg:sweep { older_than = 0 })
      assert.are_not.equal("paid", j:get("mocopay", a).state)
      assert.are.same({}, grants, "nothing granted for an order nobody paid")
    end)
  end)
  it("with the echo on (the sandbox's default): a status by the buyer's userId never pays his other order", function()
    sb.request("POST", "/_sandbox/reset")
    local jg, j, grants = atk.journaled(atk.mocopay(sandbox.base))
    local user = "buyer-" .. core.random_hex(4)
    local function buy(reference)
      return assert(jg:purchase { pid = "12000", reference = reference, user_id = user, client_ip = "127.0.0.1",
        return_url = "https://shop.example/back", notify_url = "http://127.0.0.1:9/n" })
    end
    local a, b = ref("uA"), ref("uB")
    buy(a)                 -- left open
    local pb = buy(b)      -- paid
    assert.are.equal(200, sb.post_json("/mocopay/_sandbox/act", { trn = pb.redirect_url:match("trn=(%w+)"), action = "send-sms" }).status)
    local s = jg:status(a) -- the record knows the buyer only: verifyPayment by userId answers his latest session, B's
    if s then assert.are_not.equal("paid", s.status) end
    assert.are_not.equal("paid", j:get("mocopay", a).state)
    assert(jg:sweep { older_than = 0 })
    assert.are_not.equal("paid", j:get("mocopay", a).state)
    for _, g in ipairs(grants) do assert.are_not.equal(a, g, "order A never granted") end
  end)
end)
