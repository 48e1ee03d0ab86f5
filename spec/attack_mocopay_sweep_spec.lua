-- The sweeper and a MoCoPay payment whose process died after sending initPayment, before the
-- answer (and its keep) was written: the record knows the buyer (user_id) and nothing that
-- names the purchase. verifyPayment by userId answers the buyer's newest session, which may
-- be another, paid order's: it must never pay this one. Over real HTTP against the sandbox.
local core = require "paykit.core"
local sb = require "spec.support.sandbox"
local atk = require "spec.support.journal_attack"

describe("the sweeper on a MoCoPay record without its keep", function()
  local sandbox = atk.sandbox()
  lazy_setup(sandbox.start)
  lazy_teardown(sandbox.stop)

  it("never pays it with the buyer's other paid session", function()
    local jg, j, grants = atk.journaled(atk.mocopay(sandbox.base))
    local user = "buyer-" .. core.random_hex(4)
    -- order A: its process wrote the record, marked it sent, and died before the answer
    local a = "lost-" .. core.random_hex(4)
    assert(j:create { provider = "mocopay", reference = a, user_id = user })
    assert(j:move("mocopay", a, "sent"))
    -- order B of the same buyer: started and paid
    local pb = assert(jg:purchase { pid = "12000", reference = "paid-" .. core.random_hex(4), user_id = user,
      client_ip = "127.0.0.1", return_url = "https://shop.example/back", notify_url = "http://127.0.0.1:9/n" })
    assert.are.equal(200, sb.post_json("/mocopay/_sandbox/act", { trn = pb.redirect_url:match("trn=(%w+)"), action = "send-sms" }).status)
    local s = jg:status(a)
    if s then assert.are_not.equal("paid", s.status) end
    assert(jg:sweep { older_than = 0 })
    assert.are_not.equal("paid", j:get("mocopay", a).state)
    for _, g in ipairs(grants) do assert.are_not.equal(a, g, "order A never granted") end
  end)
end)
