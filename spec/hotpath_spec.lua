-- The provider call's fast path (ISSUE11): with no logger and no hooks, paykit.http builds no
-- log line and redacts nothing; with a logger (and hooks) it gives exactly the lines (and hook
-- contexts) it gave before the fast path existed, and no secret reaches any of them. The
-- expected lines below were recorded from the code before the change (commit 618e2f7), with
-- the elapsed times written as "Ns". Real HTTP to a counting local server (spec/support/moka_stub).
-- The Username member shows "[REDACTED]" since the kit takes the secret options' values out of
-- every line (spec/kit_secret_log_spec.lua): the recording had it in clear.
local paykit = require "paykit"
local http = require "paykit.http"
local redact = require "paykit.redact"
local stub = require "spec.support.moka_stub"

local ANSWER = '{"Data":{"Url":"https://3d.example/acs?id=1","CodeForHash":"0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"},'
  .. '"ResultCode":"Success","ResultMessage":"","Exception":null}'
local PASSWORD, PAN, CVC, CFH = "pass-Secret-77", "4111111111111111", "987", "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"

-- luacheck: push no max line length (the recorded lines, whole)
local EXPECTED_LINES = {
  "debug paykit moka.start_3d request POST http://127.0.0.1:18823/PaymentDealer/DoDirectPaymentThreeD {\"PaymentDealerAuthentication\":{\"DealerCode\":\"1731\",\"Username\":\"[REDACTED]\",\"Password\":\"[REDACTED]\",\"CheckKey\":\"[REDACTED]\"},\"PaymentDealerRequest\":{\"CardHolderFullName\":\"Ali Yilmaz\",\"CardNumber\":\"411111******1111\",\"ExpMonth\":\"12\",\"ExpYear\":\"2031\",\"CvcNumber\":\"[REDACTED]\",\"CardToken\":\"[REDACTED]\",\"Amount\":27.50,\"Currency\":\"TL\",\"InstallmentNumber\":1,\"ClientIP\":\"203.0.113.7\",\"OtherTrxCode\":\"ORD-1\",\"SubMerchantName\":\"\",\"IsPoolPayment\":0,\"IsPreAuth\":0,\"IsTokenized\":0,\"Software\":\"paykit\",\"Description\":\"\",\"ReturnHash\":1,\"RedirectUrl\":\"https://shop.example/return?o=1\",\"RedirectType\":0}}",
  "info paykit moka.start_3d POST http://127.0.0.1:18823/PaymentDealer/DoDirectPaymentThreeD attempt=1 status=200 elapsed=Ns",
  "debug paykit moka.start_3d response 200 {\"Data\":{\"Url\":\"https://3d.example/acs?id=1\",\"CodeForHash\":\"[REDACTED]\"},\"ResultCode\":\"Success\",\"ResultMessage\":\"\",\"Exception\":null}",
  "info moka.start_3d ok",
  "debug paykit moka.start_3d request POST http://127.0.0.1:1/PaymentDealer/DoDirectPaymentThreeD {\"PaymentDealerAuthentication\":{\"DealerCode\":\"1731\",\"Username\":\"[REDACTED]\",\"Password\":\"[REDACTED]\",\"CheckKey\":\"[REDACTED]\"},\"PaymentDealerRequest\":{\"CardHolderFullName\":\"Ali Yilmaz\",\"CardNumber\":\"411111******1111\",\"ExpMonth\":\"12\",\"ExpYear\":\"2031\",\"CvcNumber\":\"[REDACTED]\",\"CardToken\":\"[REDACTED]\",\"Amount\":27.50,\"Currency\":\"TL\",\"InstallmentNumber\":1,\"ClientIP\":\"203.0.113.7\",\"OtherTrxCode\":\"ORD-1\",\"SubMerchantName\":\"\",\"IsPoolPayment\":0,\"IsPreAuth\":0,\"IsTokenized\":0,\"Software\":\"paykit\",\"Description\":\"\",\"ReturnHash\":1,\"RedirectUrl\":\"https://shop.example/return?o=1\",\"RedirectType\":0}}",
  "error paykit moka.start_3d POST http://127.0.0.1:1/PaymentDealer/DoDirectPaymentThreeD attempt=1 error=connect sent=false elapsed=Ns",
  "error moka.start_3d failed: paykit transport error [connect]: moka.start_3d: POST http://127.0.0.1:1/PaymentDealer/DoDirectPaymentThreeD failed (connect): Failed to connect to 127.0.0.1 port 1 after N ms: Couldn't connect to server; the request never reached the provider"
}

local EXPECTED_HOOKS = {
  "before attempt=1 method=POST op=moka.start_3d url=http://127.0.0.1:18823/PaymentDealer/DoDirectPaymentThreeD",
  "after attempt=1 method=POST op=moka.start_3d status=200 url=http://127.0.0.1:18823/PaymentDealer/DoDirectPaymentThreeD"
}
-- luacheck: pop

-- elapsed times (paykit's and libcurl's own "after N ms") vary with the machine's load
local function norm(l) return (l:gsub("elapsed=[%d.]+s", "elapsed=Ns"):gsub(" after %d+ ms: ", " after N ms: ")) end

local function payment()
  return { amount = "27.50", reference = "ORD-1", client_ip = "203.0.113.7", redirect_url = "https://shop.example/return?o=1",
    card = { holder = "Ali Yilmaz", number = PAN, exp_month = "12", exp_year = "2031", cvc = CVC } }
end

local function gateway(base, lines, ctxs)
  -- libcurl: the lines were recorded on it (a refused connection's message is the client's own)
  local o = { dealer_code = "1731", username = "user-secret-name", password = PASSWORD, base_url = base, retry = false,
              transport = "curl" }
  if lines then o.logger = function(level, line) lines[#lines + 1] = level .. " " .. norm(line) end end
  if ctxs then
    o.hooks = {
      before = function(c)
        local t = {}
        for k, v in pairs(c) do t[#t + 1] = k .. "=" .. tostring(v) end
        table.sort(t)
        ctxs[#ctxs + 1] = "before " .. table.concat(t, " ")
      end,
      after = function(c)
        local t = {}
        for k, v in pairs(c) do if k ~= "elapsed" and k ~= "err" then t[#t + 1] = k .. "=" .. tostring(v) end end
        table.sort(t)
        ctxs[#ctxs + 1] = "after " .. table.concat(t, " ")
      end,
    }
  end
  return assert(paykit.moka(o))
end

describe("the provider call's fast path", function()
  local base
  local real_text = redact.text
  local redactions = 0
  lazy_setup(function()
    base = stub.start()
    stub.answer("/PaymentDealer/DoDirectPaymentThreeD", ANSWER)
  end)
  lazy_teardown(function() redact.text = real_text; stub.stop() end)
  before_each(function()
    redactions = 0
    redact.text = function(...) redactions = redactions + 1; return real_text(...) end
  end)
  after_each(function() redact.text = real_text end)

  it("redacts nothing and builds no log line without a logger or hooks", function()
    local g = gateway(base)
    assert.equal(http.NOOP_LOGGER, g.http.log)
    local before = stub.count()
    local r = assert(g:start_3d(payment()))
    assert.equal("redirect", r.status)
    assert.equal(before + 1, stub.count())
    assert.equal(0, redactions)
  end)

  it("gives a logger and hooks exactly the lines and contexts of before, with no secret in them", function()
    local lines, ctxs = {}, {}
    local g = gateway(base, lines, ctxs)
    local r = assert(http.with({ correlation_id = "corr-1" }, g.start_3d, g, payment()))
    assert.equal("redirect", r.status)
    -- the refused connection: the error message and the error line name the (redacted) URL
    local g2 = gateway("http://127.0.0.1:1", lines)
    local r2, err = http.with({ correlation_id = "corr-2" }, g2.start_3d, g2, payment())
    assert.is_nil(r2)
    assert.equal("connect", err.code)
    assert.matches("POST http://127.0.0.1:1/PaymentDealer/DoDirectPaymentThreeD failed (connect)", err.message, 1, true)
    assert.is_true(redactions > 0)
    assert.same(EXPECTED_LINES, lines)
    assert.same(EXPECTED_HOOKS, ctxs)
    for _, l in ipairs(lines) do
      for _, secret in ipairs { PASSWORD, PAN, '"' .. CVC .. '"', CFH } do
        assert.is_nil(l:find(secret, 1, true), "a secret reached a log line: " .. l:sub(1, 80))
      end
    end
  end)

  it("redacts the URL for an error message even without a logger", function()
    local g = gateway("http://127.0.0.1:1")
    local r, err = g:start_3d(payment())
    assert.is_nil(r)
    assert.equal("connect", err.code)
    assert.is_true(redactions > 0)
  end)
end)
