-- The Moka fixes of issue 6 (ISSUE8) inside nginx: a real nginx runs paykit.moka in its
-- content phase (so through the cosocket transport) against the sandbox and the scripted
-- local server; the spec drives it over HTTP with the call to make and checks the answer.
local cjson = require "cjson"
local paykit = require "paykit"
local moka = require "paykit.providers.moka"
local core = require "paykit.core"
local nginx = require "spec.support.nginx"
local sb = require "spec.support.sandbox"
local stub = require "spec.support.moka_stub"

local PORT = tonumber(os.getenv("PAYKIT_TEST_MOKA_NGINX_PORT") or "18833")

-- POST /call {base_url, opts, method, args} -> {cosocket, r = {...} | nil, err = {...} | nil}
local CONF = [[
  server {
    listen 127.0.0.1:${PORT};
    location = /call {
      content_by_lua_block {
        local cjson = require "cjson"
        local paykit = require "paykit"
        local http = require "paykit.http"
        ngx.req.read_body()
        local q = cjson.decode(ngx.req.get_body_data())
        local opts = { dealer_code = "1730", username = "sandbox", password = "sandbox-pass",
                       base_url = q.base_url, retry = false }
        if type(q.opts) == "table" then for k, v in pairs(q.opts) do opts[k] = v end end
        local g = assert(paykit.moka(opts))
        local args = q.args or {}
        local r, err = g[q.method](g, args[1], args[2], args[3])
        local out = { cosocket = http.in_cosocket_phase() and true or false }
        if type(r) == "table" then
          out.r = { status = r.status, reference = r.reference, code = r.code, provider_reference = r.provider_reference }
        end
        if err then out.err = { kind = err.kind, code = err.code, field = err.field } end
        ngx.header.content_type = "application/json"
        ngx.print(cjson.encode(out))
      }
    }
  }
]]

local srv, client, base
local function call(base_url, method, args, opts)
  client = client or core.http_client { timeout = 20000 }
  local res = assert(client:request { method = "POST", url = "http://127.0.0.1:" .. PORT .. "/call",
    headers = { ["Content-Type"] = "application/json" },
    body = cjson.encode { base_url = base_url, method = method, args = args, opts = opts or cjson.null } })
  assert.equal(200, res.status, res.body)
  local out = cjson.decode(res.body)
  assert.is_true(out.cosocket)
  return out
end

local function card() return { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" } end
local function granted(out) return out.r ~= nil and (out.r.status == "paid" or out.r.status == "authorized") end

describe("moka inside nginx (cosocket)", function()
  local g
  lazy_setup(function()
    base = sb.start()
    stub.start()
    srv = nginx.start("moka_nginx", CONF, { PORT = PORT })
    g = assert(paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass",
      base_url = base .. "/moka", client_ip = "203.0.113.7", retry = false })
  end)
  lazy_teardown(function()
    if client then client:close() end
    if srv then srv:stop() end
    stub.stop(); sb.stop()
  end)

  local function started()
    local reference = "NGX-" .. os.time() .. "-" .. math.random(1e6)
    local r = assert(g:purchase { amount = "27.50", card = card(), reference = reference, return_url = "https://shop.example/r" })
    return reference, r.keep, r.redirect_url:match("threeDTrxCode=([%w%-]+)")
  end

  it("refuses A's signed return that names another order, with or without confirm", function()
    local a_ref, a_keep, trx = started()
    local b_ref = started()
    local fields = sb.post_json("/moka/_sandbox/3d/complete", { threeDTrxCode = trx, action = "approve" }).json.Fields
    fields.OtherTrxCode = b_ref
    for _, opts in ipairs { {}, { confirm = true } } do
      local out = call(base .. "/moka", "complete", { fields, a_keep, opts })
      assert.is_nil(out.r); assert.equal("signature", out.err.kind); assert.equal("reference_mismatch", out.err.code)
    end
    fields.OtherTrxCode = a_ref
    local out = call(base .. "/moka", "complete", { fields, a_keep, { confirm = true } })
    assert.equal("paid", out.r.status); assert.equal(a_ref, out.r.reference)
  end)

  it("lets Moka's status, not a known CodeForHash, decide with confirm", function()
    local ref, keep = started()
    local forged = { hashValue = moka.hash_3d(keep.code_for_hash, true), resultCode = "", trxCode = "ORDER-FAKE", OtherTrxCode = ref }
    local out = call(base .. "/moka", "complete", { forged, keep, { confirm = true } })
    assert.equal("pending", out.r.status); assert.equal("moka.unconfirmed", out.r.code)
  end)

  it("never reads a malformed direct-payment answer as paid", function()
    local p = { amount = "27.50", card = card(), reference = "STUB-1", client_ip = "203.0.113.7" }
    for _, data in ipairs {
      '{"IsSuccessful":"false","ResultCode":"","VirtualPosOrderId":"ORDER-1"}',
      '{"ResultCode":"","VirtualPosOrderId":"ORDER-1"}',
      '{"IsSuccessful":null,"VirtualPosOrderId":"ORDER-1"}',
      '{"IsSuccessful":true,"ResultCode":""}',
      'null',
    } do
      stub.answer("/PaymentDealer/DoDirectPayment", stub.envelope(data))
      local out = call(stub.url(), "pay", { p })
      assert.is_false(granted(out), data)
      assert.equal("moka.invalid_response", out.err.code, data)
    end
    stub.answer("/PaymentDealer/DoDirectPayment", stub.envelope('{"IsSuccessful":true,"ResultCode":"","VirtualPosOrderId":"ORDER-1"}'))
    assert.equal("paid", call(stub.url(), "pay", { p }).r.status)
  end)

  it("refuses a status answer about another order", function()
    stub.answer("/PaymentDealer/GetDealerPaymentTrxDetailList", stub.envelope(
      '{"PaymentDetail":{"OtherTrxCode":"ANOTHER","PaymentStatus":2},"PaymentTrxDetailList":[]}'))
    local out = call(stub.url(), "status", { "STUB-1" })
    assert.is_nil(out.r); assert.equal("moka.answer_mismatch", out.err.code)
  end)

  it("refuses a bad client_ip, or none on capture, before the network", function()
    local before = stub.count()
    for _, ip in ipairs { "999.999.999.999", "cafe", "..." } do
      local out = call(stub.url(), "pay", { { amount = "27.50", card = card(), client_ip = ip } })
      assert.equal("validation", out.err.kind); assert.equal("client_ip", out.err.field)
    end
    local out = call(stub.url(), "capture", { { order_id = "ORDER-1" } })
    assert.equal("client_ip", out.err.field)
    out = call(stub.url(), "void", { { order_id = "ORDER-1", client_ip = "203.0.113.7", reason = 9 } })
    assert.equal("reason", out.err.field)
    assert.equal(before, stub.count())
  end)
end)
