-- Zippy create_transaction's answer read without kit.wire.answer (a 2xx JSON answer decoded
-- directly): the same transaction or the same error as kit.wire.commit gives for that answer,
-- over many statuses and bodies; a reference reused for another price is still refused.
local paykit = require "paykit"
local kwire = require "paykit.kit.wire"

local same = require "spec.support.same"

local TX = {
  product_id = "0f8fad5b-d9cb-469f-a165-70867728950e", price = "27.50", currency = "EUR", pay_method = "CARD",
  carrier = "c", region = "286", ext_transaction_id = "ref-1",
  success_url = "https://shop.example/ok", error_url = "https://shop.example/error",
  callback_success_url = "https://shop.example/cb/ok", callback_error_url = "https://shop.example/cb/error",
}

local function client(status, body)
  local z = assert(paykit.zippy { consumer_key = "ck", consumer_secret = "cs", base_url = "http://127.0.0.1:9/zippy",
    notice_keys = { [0] = "nk" }, retry = false })
  local sent, last = 0, nil
  z.http.wire = { request = function(a, b)
    sent = sent + 1
    last = (type(b) == "table" and b or a).body
    return { status = status, headers = { ["Content-Type"] = "application/json" }, body = body }
  end }
  return z, function() return sent, last end
end

describe("zippy create_transaction's answer", function()
  it("is what kit.wire.commit reads of it, for every status and body", function()
    local bodies = { '{"uuid":"u-1","status":"CREATED","token":"tok-1","price":"27.50"}', '{"price":27.50,"n":1.5}',
      "[1,2]", '"text"', "null", "12", "", "{", '{"a":1,"a":2}', "Server Error",
      '{"error":{"name":"InvalidArgumentError","message":"{\\"price\\":\\"bad\\"}"}}',
      '{"error":{"name":"X","message":"m"}}', '{"error":"plain"}', " {} " }
    local n = 0
    for _, status in ipairs { 200, 201, 204, 299, 300, 400, 401, 404, 409, 500, 503 } do
      for _, body in ipairs(bodies) do
        local z, count = client(status, body)
        local r1, e1 = z:create_transaction(TX)
        assert.are.equal(1, count())
        local z2 = client(status, body)
        local _, text = count() -- the body create_transaction sent
        assert.is_string(text)
        local r2, e2 = kwire.commit(z2, "create_transaction", { method = "POST", path = "/transactions", body = text,
          headers = { ["Content-Type"] = "application/json", Accept = "application/json" }, idempotent = false,
          own_headers = true })
        local label = status .. " " .. body
        if r2 ~= nil then
          assert.truthy(same(r2, r1), label)
          assert.is_nil(e1, label)
        else
          assert.is_nil(r1, label)
          assert.are.equal(e2.kind, e1.kind, label)
          assert.are.equal(e2.code, e1.code, label)
          assert.are.equal(e2.message, e1.message, label)
          assert.are.equal(e2.status, e1.status, label)
          assert.are.equal(e2.field, e1.field, label)
          assert.are.equal(e2.provider_code, e1.provider_code, label)
        end
        n = n + 1
      end
    end
    assert.are.equal(11 * #bodies, n)
  end)

  it("refuses a reference sent again with another price, and takes it again with the same", function()
    local z, count = client(200, '{"uuid":"u-1","status":"CREATED","token":"tok-1"}')
    assert.is_table(z:create_transaction(TX))
    assert.is_table(z:create_transaction(TX))
    local other = {}
    for k, v in pairs(TX) do other[k] = v end
    other.price = "28.00"
    local r, err = z:create_transaction(other)
    assert.is_nil(r)
    assert.are.equal("reused", err.code)
    assert.are.equal("ext_transaction_id", err.field)
    assert.are.equal(2, count())
  end)
end)
