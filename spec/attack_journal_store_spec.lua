-- "When the store cannot be written the call answers a journal_unavailable error and no
-- request leaves" (README "Running on many workers and servers"). spec/journal_spec.lua
-- attacks it with a Redis that is not there at all; a store also fails half-way (Redis
-- restarting between two commands, a full memory): the record is written and its mark `sent`
-- is not, or the index is not. A memory store whose chosen method fails from the chosen call
-- on: a journaled purchase must answer journal_unavailable, and no request may leave (the
-- transport's before hook counts every attempt; nothing listens on the port anyway).
local paykit = require "paykit"
local store = require "paykit.store"
local journal = require "paykit.journal"

local CARD = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" }

-- a memory store whose method `name` answers nil, "down" from its `from`-th call on
local function failing(name, from)
  local s = store.memory()
  local real, n = s[name], 0
  assert(type(real) == "function", name)
  s[name] = function(self, ...)
    n = n + 1
    if n >= from then return nil, "down" end
    return real(self, ...)
  end
  return s
end

local function purchase(s)
  local attempts = { n = 0 }
  local gw = assert(paykit.moka { dealer_code = "1730", username = "u", password = "p",
    base_url = "http://127.0.0.1:9/moka", retry = false,
    hooks = { before = function() attempts.n = attempts.n + 1 end } })
  local jg = journal.new { store = s }:wrap(gw)
  local r, err = jg:purchase { reference = "store-fail", amount = "27.50", currency = "TL", client_ip = "127.0.0.1",
    return_url = "https://shop.example/back", card = CARD }
  return r, err, attempts.n
end

describe("a journaled purchase on a store that fails half-way", function()
  for _, case in ipairs {
    { "add", 1, "the record cannot be written" },
    { "index_add", 1, "the index cannot be written" },
    { "transition", 1, "the record is written, its mark sent is not" },
  } do
    it("answers journal_unavailable and sends nothing when " .. case[3], function()
      local r, err, attempts = purchase(failing(case[1], case[2]))
      assert.is_nil(r)
      assert.is_table(err)
      assert.are.equal("journal_unavailable", err.code, tostring(err))
      assert.are.equal(0, attempts, "no request may leave")
    end)
  end

  it("sends the purchase when the store works (the control)", function()
    local _, err, attempts = purchase(store.memory())
    assert.are.equal(1, attempts)
    assert.are.equal("transport", err.kind, tostring(err))
  end)
end)
