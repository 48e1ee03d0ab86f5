-- "Bad input gets a clear error that names the field, before any network call; no partial
-- state" through a journaled gateway: the provider's own checks run before the journal writes
-- anything (the record is written right before the first request leaves), so a bad card
-- costs no round trip to the store and leaves no record; the reference stays free.
local paykit = require "paykit"
local journal = require "paykit.journal"
local store = require "paykit.store"

local function counting_store()
  local s, writes = store.memory(), { n = 0 }
  for _, m in ipairs { "add", "set", "transition", "index_add", "lock" } do
    local f = s[m]
    s[m] = function(self, ...) writes.n = writes.n + 1; return f(self, ...) end
  end
  return s, writes
end

describe("a journaled purchase with bad input", function()
  it("is refused naming the field with nothing written to the store", function()
    local s, writes = counting_store()
    local sent = 0
    local gw = paykit.moka { dealer_code = "1730", username = "u", password = "p", base_url = "http://127.0.0.1:9/moka", retry = false,
      hooks = { before = function() sent = sent + 1 end } }
    local jg = journal.new { store = s }:wrap(gw)
    local r, err = jg:purchase { reference = "bad-1", amount = "27.50", currency = "TL", client_ip = "127.0.0.1",
      return_url = "https://shop.example/back",
      card = { holder = "Ali Yilmaz", number = "4111111111111112", exp_month = "12", exp_year = "2031", cvc = "123" } }
    assert.is_nil(r)
    assert.are.equal("card.number", err.field)
    assert.are.equal(0, sent)
    assert.are.equal(0, writes.n, "no record, no index entry")
  end)

  it("is refused naming the field, sends nothing, and leaves the reference free", function()
    local sent = 0
    local gw = paykit.moka { dealer_code = "1730", username = "u", password = "p", base_url = "http://127.0.0.1:9/moka", retry = false,
      hooks = { before = function() sent = sent + 1 end } }
    local j = journal.new {}
    local jg = j:wrap(gw)
    local p = { reference = "bad-2", amount = "27.50", currency = "TL", client_ip = "127.0.0.1",
      return_url = "https://shop.example/back",
      card = { holder = "Ali Yilmaz", number = "4111111111111112", exp_month = "12", exp_year = "2031", cvc = "123" } }
    local r, err = jg:purchase(p)
    assert.is_nil(r)
    assert.are.equal("card.number", err.field)
    assert.are.equal(0, sent)
    assert.is_nil(j:get("moka", "bad-2"), "no record for input refused before sending")
    p.card.number = "4111111111111111"
    local _, err2 = jg:purchase(p) -- the corrected purchase takes the reference (nothing listens on port 9)
    assert.are.equal("transport", err2.kind)
    assert.are.equal(1, sent)
    assert.are.equal("refused", j:get("moka", "bad-2").state, "the connection never made: written, then refused")
  end)

  -- a provider of the spec's own: it checks its input, then sends (and, a careless one, tries
  -- once more when its transport refuses); the journal must stop both requests of a repeat
  local errors = require "paykit.errors"
  local function fake(sent)
    return { provider = "fake", http = { request = function() sent.n = sent.n + 1; return { status = 200 } end },
      purchase = function(self, p)
        if p.amount == "bad" then return nil, errors.validation("amount", "invalid", "amount must be a decimal") end
        local res, err = self.http:request {}
        if not res then res, err = self.http:request {} end
        if not res then return nil, err end
        return { status = "redirect", reference = p.reference, keep = { reference = p.reference } }
      end }
  end

  it("answers a reference found taken at send time as before: replayed, reused, in progress; nothing leaves", function()
    local sent = { n = 0 }
    local s, writes = counting_store()
    local j = journal.new { store = s }
    local jg = j:wrap(fake(sent))
    local r = assert(jg:purchase { reference = "rep-1", amount = "5.00", currency = "TRY" })
    assert.are.equal("redirect", r.status)
    assert.is_false(r.journal.replayed)
    assert.are.equal(1, sent.n)
    local again = assert(jg:purchase { reference = "rep-1", amount = "5.00", currency = "TRY" })
    assert.is_true(again.journal.replayed)
    assert.are.equal("redirect", again.journal.state)
    local _, reused = jg:purchase { reference = "rep-1", amount = "6.00", currency = "TRY" }
    assert.are.equal("reference_reused", reused.code)
    assert.are.equal("reference", reused.field)
    assert.are.equal(1, sent.n, "a repeat never sends, not even on the provider's second try")
    -- bad input with a taken reference: the field's error, and the record as it was
    local before = writes.n
    local _, bad = jg:purchase { reference = "rep-1", amount = "bad", currency = "TRY" }
    assert.are.equal("amount", bad.field)
    assert.are.equal(before, writes.n)
    assert.are.equal("redirect", j:get("fake", "rep-1").state)
    -- a record still in created (another caller about to send): in_progress, retryable
    assert(j:create { provider = "fake", reference = "rep-2", amount = "5.00", currency = "TRY" })
    local _, busy = jg:purchase { reference = "rep-2", amount = "5.00", currency = "TRY" }
    assert.are.equal("in_progress", busy.code)
    assert.is_true(busy.retryable)
    assert.are.equal("created", j:get("fake", "rep-2").state, "the other caller's record is left alone")
    assert.are.equal(1, sent.n)
  end)

  it("writes the record before the call when the provider has no transport to watch", function()
    local j = journal.new {}
    local seen
    local gw = { provider = "bare", purchase = function(_, p)
      seen = j:get("bare", p.reference)
      return { status = "pending", reference = p.reference }
    end }
    local r = assert(j:wrap(gw):purchase { reference = "bare-1", amount = "1.00", currency = "TRY" })
    assert.are.equal("sent", seen and seen.state, "marked sent before the call (it may send)")
    assert.are.equal("pending", r.journal.state)
    assert.are.equal("pending", j:get("bare", "bare-1").state)
  end)
end)
