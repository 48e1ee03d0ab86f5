-- Bad input to every public Zippy call: each one is refused with a validation (or, for a
-- notice, a signature) error naming the field, before anything reaches the network. Two
-- counters prove it: the transport's `before` hook and the Zippy sandbox's own count of the
-- requests it received (GET /zippy/_sandbox/requests), which must not move. The cases are
-- data in spec/support/zippy_cases.lua (spec/zippy_nginx_spec.lua runs them inside nginx too).
local sb = require "spec.support.sandbox"
local zs = require "spec.support.zippy"
local cases = require "spec.support.zippy_cases"

describe("zippy bad input", function()
  local z, hooked, base

  local function server_count()
    local res = sb.request("GET", base .. "/_sandbox/requests")
    assert.are.equal(200, res.status)
    return res.json.requests
  end

  lazy_setup(function()
    sb.start()
    base = zs.base()
    hooked = { n = 0 }
    z = zs.client { hooks = { before = function() hooked.n = hooked.n + 1 end } }
  end)
  lazy_teardown(function() sb.stop() end)

  it("counts what reaches the sandbox (a valid call moves both counters)", function()
    local before, hb = server_count(), hooked.n
    assert.is_true(z:ping())
    assert.are.equal(before + 1, server_count())
    assert.are.equal(hb + 1, hooked.n)
  end)

  -- Both counters, per case: the hook's and the sandbox's.
  local function reached()
    return hooked.n * 1000000 + server_count()
  end

  it("refuses every bad argument of the API calls before the network, naming the field", function()
    local n, failures = cases.check(z, cases.API, reached)
    print(("\nzippy bad input (API calls): %d of %d refused before the network"):format(n, #cases.API))
    assert.are.same({}, failures)
    assert.is_true(#cases.API >= 90, #cases.API .. " cases")
  end)

  it("refuses every bad notice on the return and the callback, naming the field", function()
    local n, failures = cases.check(z, cases.NOTICES, reached)
    print(("\nzippy bad input (notices): %d of %d refused"):format(n, #cases.NOTICES))
    assert.are.same({}, failures)
  end)

  it("still accepts the valid inputs the cases are made from", function()
    local zz = zs.client()
    local s, prod = zs.product(zz)
    local r = assert(zz:purchase(cases.with(cases.PURCHASE, { product_id = prod, return_url = sb.url() .. "/_sink/bi-ok",
      notify_url = sb.url() .. "/_sink/bi-cb", reference = zs.id("bi") })))
    assert.are.equal("redirect", r.status)
    assert(zz:create_transaction(cases.with(cases.TX, { product_id = prod, ext_transaction_id = zs.id("bi") })))
    assert(zz:update_seller(s, { name = "Renamed" }))
    assert(zz:list_products { seller_id = s })
    local done = assert(zz:complete(zz:test_notice { ext_transaction_id = r.keep.ext_transaction_id }, r.keep))
    assert.are.equal("paid", done.status)
  end)
end)
