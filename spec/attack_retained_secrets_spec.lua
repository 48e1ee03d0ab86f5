-- "Card numbers, CVCs and passwords never reach a printed table": after a call is over, nothing
-- reachable from the gateway (its transport included) may still hold the request's card data or
-- credentials. paykit.http once kept each call's attempt table (body and all) for the next call.
local paykit = require "paykit"

-- Every string reachable from v through tables (keys and values), metatables left out.
local function strings(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "string" then out[#out + 1] = v
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in pairs(v) do strings(k, out, seen); strings(x, out, seen) end
  end
  return out
end

describe("a Moka gateway after a purchase", function()
  it("keeps no string holding the card number, the CVC or the password", function()
    local gw = paykit.moka { dealer_code = "1730", username = "retained-user", password = "retained-pass-9431",
      base_url = "http://127.0.0.1:9/moka", retry = false } -- nothing listens on port 9
    local r, err = gw:purchase { reference = "kept-1", amount = "27.50", currency = "TL", client_ip = "127.0.0.1",
      return_url = "https://shop.example/back",
      card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "739" } }
    assert.is_nil(r)
    assert.are.equal("transport", err.kind) -- the request was made, so a body was built
    local all = strings(gw)
    assert.is_true(#all > 10, "the walk reaches the gateway's strings")
    for _, s in ipairs(all) do
      assert.is_nil(s:find("4111111111111111", 1, true), "card number kept: " .. s:sub(1, 80))
      assert.is_nil(s:find('"CvcNumber":"739"', 1, true), "CVC kept")
      assert.is_nil(s:find("retained-pass-9431", 1, true), "password kept in a string")
    end
  end)
end)
