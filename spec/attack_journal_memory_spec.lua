-- The journal on a memory store (README's example, and journal.new's default): "one charge
-- per reference". The memory store is bounded (capacity, the oldest dropped first); a journal
-- record dropped to make room is a payment forgotten, and the same reference is then charged
-- again. Attacked with a small capacity, more payments than it holds, and the first one
-- repeated. Over real HTTP against the sandbox.
local paykit = require "paykit"
local core = require "paykit.core"
local journal = require "paykit.journal"
local store = require "paykit.store"
local sb = require "spec.support.sandbox"

describe("the journal on a full memory store", function()
  local base
  lazy_setup(function() base = sb.start() end)
  lazy_teardown(function() sb.stop() end)

  local function payment(reference)
    return { reference = reference, amount = "27.50", currency = "TL", client_ip = "127.0.0.1",
      return_url = "https://shop.example/back",
      card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" } }
  end

  it("never charges a reference twice: past its capacity it refuses new payments instead of forgetting old ones", function()
    local sent = 0
    local gw = paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass",
      base_url = base .. "/moka", hooks = { before = function() sent = sent + 1 end } }
    local jg = journal.new { store = store.memory { capacity = 4 } }:wrap(gw)
    local refs, refused = {}, 0
    for i = 1, 8 do
      refs[i] = "cap-" .. i .. "-" .. core.random_hex(4)
      local r, err = jg:purchase(payment(refs[i]))
      if not r then
        assert.are.equal("journal_unavailable", err.code, tostring(err))
        refused = refused + 1
      end
    end
    assert.is_true(refused > 0, "a store that cannot hold another record refuses it")
    local before = sent
    local again, err = jg:purchase(payment(refs[1]))
    assert.are.equal(before, sent, "the first payment was not sent again")
    if again then assert.is_true(again.journal.replayed) else assert.are.equal("journal_unavailable", err.code) end
  end)

  it("is what journal.new makes by default", function()
    local j = journal.new {}
    assert.is_false(j.store.evict)
  end)
end)
