-- The Moka simulator of the local sandbox, over real HTTP (core curl client) against the
-- sandbox nginx. Run: bash spec/run spec/sandbox_moka_spec.lua
local cjson = require "cjson"
local core = require "paykit.core"
local redact = require "paykit.redact"
local sb = require "spec.support.sandbox"

local base, log_start

local DEALER = { code = "1730", user = "sandbox", pass = "sandbox-pass" }
local RESTRICTED = { code = "1731", user = "restricted", pass = "restricted-pass" }

local function sha256(s) return core.digest("sha256", s, "hex") end
local function check_key(d) return sha256(d.code .. "MK" .. d.user .. "PD" .. d.pass) end

-- JSON with exact numbers: "#27.50" strings become the bare number 27.50.
local function encode(t)
  return (cjson.encode(t):gsub('"#([%-%d%.eE]+)"', "%1"))
end

local function sleep(s) os.execute("sleep " .. s) end

local JSON = { ["Content-Type"] = "application/json" }
local FORM = { ["Content-Type"] = "application/x-www-form-urlencoded" }

-- The JSON text of a Moka call to path: the credential block and the payload block.
local function request_body(path, payload, opts)
  opts = opts or {}
  local d = opts.dealer or DEALER
  local auth = { DealerCode = d.code, Username = d.user, Password = d.pass, CheckKey = opts.check_key or check_key(d) }
  if path:find("^/DealerCustomer/") then
    return encode{ DealerCustomerAuthentication = auth, DealerCustomerRequest = payload }
  elseif path == "/PaymentDealer/GetBankCardInformation" then
    return encode{ PaymentDealerAuthentication = auth, BankCardInformationRequest = payload }
  end
  return encode{ PaymentDealerAuthentication = auth, PaymentDealerRequest = payload }
end

-- Calls a Moka endpoint; returns the decoded answer, the raw response.
local function moka(path, payload, opts)
  opts = opts or {}
  local res = sb.request("POST", "/moka" .. path, opts.raw or request_body(path, payload, opts), JSON)
  assert.are.equal(200, res.status)
  assert(res.json, "the answer is not JSON: " .. res.body)
  return res.json, res
end

local function admin(path, t)
  local res = sb.post_json(path, t)
  return res.status, res.json
end

-- The Luhn check digit completing partial (found with paykit.redact's check, not the sandbox's).
local function luhn_digit(partial)
  for d = 0, 9 do
    if redact.luhn(partial .. d) then return tostring(d) end
  end
end

local function card_request(over)
  local r = { CardHolderFullName = "Ali Yilmaz", CardNumber = "4111111111111111", ExpMonth = "09",
    ExpYear = tostring(tonumber(os.date("!%Y")) + 2), CvcNumber = "123", Amount = "#27.50", Currency = "TL",
    InstallmentNumber = 1, ClientIP = "127.0.0.1", OtherTrxCode = "T-" .. core.random_hex(6),
    IsPoolPayment = 0, IsPreAuth = 0, IsTokenized = 0, Software = "paykit-spec", ReturnHash = 1,
    RedirectUrl = "http://127.0.0.1:9/shop/return?MyTrxId=abc" }
  for k, v in pairs(over or {}) do
    if v == "<nil>" then r[k] = nil else r[k] = v end
  end
  return r
end

local function start_3d(over, opts)
  local ans = moka("/PaymentDealer/DoDirectPaymentThreeD", card_request(over), opts)
  assert.are.equal("Success", ans.ResultCode)
  return ans.Data, ans
end

local function complete(code, action, bank_code)
  return admin("/moka/_sandbox/3d/complete", { threeDTrxCode = code, action = action, code = bank_code })
end

local function three_d_code(url) return url:match("threeDTrxCode=([%w%-]+)") end

local function pay(over, opts)
  local r = card_request(over)
  r.ReturnHash, r.RedirectUrl = nil, nil
  return moka("/PaymentDealer/DoDirectPayment", r, opts), r
end

local function detail(ref, opts)
  return moka("/PaymentDealer/GetDealerPaymentTrxDetailList", ref, opts)
end

local function wait_for(fn, seconds)
  local deadline = os.time() + (seconds or 5)
  repeat
    local v = fn()
    if v then return v end
    sleep(0.05)
  until os.time() > deadline
  return fn()
end

local function outbox_for(url_part)
  local list = {}
  for _, a in ipairs(sb.request("GET", "/_sandbox/outbox").json) do
    if a.provider == "moka" and a.url:find(url_part, 1, true) then list[#list + 1] = a end
  end
  return list
end

local sink_log = sb.sink_log

describe("Moka sandbox", function()
  lazy_setup(function()
    base = sb.start()
    log_start = #sb.error_log()
  end)
  lazy_teardown(function() sb.stop() end)
  before_each(function() assert.are.equal(200, sb.request("POST", "/_sandbox/reset", "").status) end)

  describe("contract", function()
    it("publishes the dealers and test cards for the client", function()
      local moka_sandbox = require "paykit.sandbox.moka"
      assert.are.equal("1730", moka_sandbox.credentials[1].DealerCode)
      assert.are.equal("sandbox-pass", moka_sandbox.credentials[1].Password)
      assert.are.equal("1731", moka_sandbox.credentials[2].DealerCode)
      assert.are.equal("4000000000100505", moka_sandbox.cards.decline)
      assert.are.same({ "4111111111111111", "5555666677778884" }, moka_sandbox.cards.approve)
    end)
  end)

  describe("CheckKey", function()
    it("computes Moka's published vector", function()
      assert.are.equal("ff4a6ee22aeafe87f7930f84b5ce2ad9655bfc6b5e430644a88c5b75a09fdee1",
        check_key{ code = "123456", user = "ZXCVBNVBN", pass = "abcdef" })
    end)

    it("is accepted when right", function()
      local ans = moka("/PaymentDealer/GetBankCardInformation", { BinNumber = "411111" })
      assert.are.equal("Success", ans.ResultCode)
      assert.are.equal("", ans.ResultMessage)
      assert.are.equal(cjson.null, ans.Exception)
    end)

    it("is refused when one hex digit is changed", function()
      local key = check_key(DEALER)
      local bad = (key:sub(1, 1) == "0" and "1" or "0") .. key:sub(2)
      local ans = moka("/PaymentDealer/GetBankCardInformation", { BinNumber = "411111" }, { check_key = bad })
      assert.are.equal("PaymentDealer.CheckPaymentDealerAuthentication.InvalidRequest", ans.ResultCode)
      assert.are.equal(cjson.null, ans.Data)
    end)

    it("is refused when the password is wrong even if the key matches it", function()
      local d = { code = "1730", user = "sandbox", pass = "wrong" }
      local ans = moka("/PaymentDealer/DoDirectPayment", card_request(), { dealer = d })
      assert.are.equal("PaymentDealer.CheckPaymentDealerAuthentication.InvalidRequest", ans.ResultCode)
    end)

    it("names an unknown dealer InvalidAccount", function()
      local ans = moka("/PaymentDealer/DoDirectPaymentThreeD", card_request(),
        { dealer = { code = "999", user = "x", pass = "y" } })
      assert.are.equal("PaymentDealer.CheckPaymentDealerAuthentication.InvalidAccount", ans.ResultCode)
    end)

    it("guards the stored-card calls with their own prefix", function()
      local ans = moka("/DealerCustomer/GetCardList", { CustomerCode = "x" }, { check_key = check_key(RESTRICTED) })
      assert.are.equal("DealerCustomer.CheckDealerCustomerAuthentication.InvalidRequest", ans.ResultCode)
    end)

    it("answers InvalidRequest to malformed JSON", function()
      local ans = moka("/PaymentDealer/DoDirectPaymentThreeD", nil, { raw = '{"PaymentDealerAuthentication": {' })
      assert.are.equal("PaymentDealer.CheckPaymentDealerAuthentication.InvalidRequest", ans.ResultCode)
      assert.are.equal(cjson.null, ans.Data)
    end)

    it("answers the operation's InvalidRequest when the payload block is missing", function()
      local ans = moka("/PaymentDealer/DoDirectPaymentThreeD", nil,
        { raw = request_body("/PaymentDealer/DoDirectPaymentThreeD", nil) })
      assert.are.equal("PaymentDealer.DoDirectPayment3dRequest.InvalidRequest", ans.ResultCode)
    end)
  end)

  describe("payment validation", function()
    local P3 = "PaymentDealer.DoDirectPayment3dRequest."
    local troy = "979204000000000"; troy = troy .. luhn_digit(troy)
    local cases = {
      { "RedirectUrlRequired", { RedirectUrl = "" } },
      { "InvalidCurrencyCode", { Currency = "TRY" } },
      { "InvalidInstallmentNumber", { InstallmentNumber = 13 } },
      { "InvalidInstallmentNumber", { InstallmentNumber = "two" } },
      { "InstallmentNotAvailableForForeignCurrencyTransaction", { Currency = "USD", InstallmentNumber = 3 } },
      { "ForeignCurrencyNotAvailableForThisDealer", { Currency = "EUR" }, RESTRICTED },
      { "AuthorizationForbiddenForThisDealer", { IsPreAuth = 1 }, RESTRICTED },
      { "PoolPaymentNotAvailableForDealer", { IsPoolPayment = 1 }, RESTRICTED },
      { "TokenizationNotAvailableForDealer", { IsTokenized = 1 }, RESTRICTED },
      { "CardTokenCannotUseWithSaveCard", { CardNumber = "", CardToken = "0b5b8e8e-3bfc-4a47-9a3a-2b1c7c9c0d11", IsTokenized = 1 } },
      { "CardTokenNotFound", { CardNumber = "", CardToken = "0b5b8e8e-3bfc-4a47-9a3a-2b1c7c9c0d11" } },
      { "OnlyCardTokenOrCardNumber", { CardToken = "0b5b8e8e-3bfc-4a47-9a3a-2b1c7c9c0d11" } },
      { "ThisInstallmentNumberNotAvailableForVirtualPos", { CardNumber = troy, InstallmentNumber = 10 } },
      { "BasketAmountIsNotEqualPaymentAmount", { BasketProduct = { { ProductCode = "A", UnitPrice = "#27.49", Quantity = 1 } } } },
      { "InvalidUnitPrice", { BasketProduct = { { ProductCode = "A", UnitPrice = "#0", Quantity = 1 } } } },
      { "InvalidUnitPrice", { BasketProduct = { { ProductCode = "A", UnitPrice = "#1.005", Quantity = 1 } } } },
      { "InvalidQuantityValue", { BasketProduct = { { ProductCode = "A", UnitPrice = "#27.50", Quantity = 0 } } } },
      { "MustBeOneOfDealerProductIdOrProductCode", { BasketProduct = { { UnitPrice = "#27.50", Quantity = 1 } } } },
      { "InvalidRequest", { Amount = "#27.505" } },
      { "InvalidRequest", { Amount = "#1e3" } },
      { "InvalidRequest", { Amount = "<nil>" } },
      { "InvalidRequest", { Amount = "#-1.00" } },
      { "InvalidRequest", { Software = string.rep("s", 31) } },
      { "InvalidRequest", { Description = string.rep("d", 201) } },
    }
    for _, c in ipairs(cases) do
      local over = c[2]
      local what = {}
      for k, v in pairs(over) do what[#what + 1] = k .. "=" .. (type(v) == "table" and "[...]" or tostring(v):sub(1, 12)) end
      table.sort(what)
      it("answers " .. c[1] .. " for " .. table.concat(what, ", ") .. (c[3] and " (restricted dealer)" or ""), function()
        local ans = moka("/PaymentDealer/DoDirectPaymentThreeD", card_request(over), { dealer = c[3] })
        assert.are.equal(P3 .. c[1], ans.ResultCode)
        assert.are.equal(cjson.null, ans.Data)
      end)
    end

    for _, c in ipairs({
      { "a number failing Luhn", { CardNumber = "4111111111111112" } },
      { "an expired card", { ExpYear = "2020" } },
      { "month 13", { ExpMonth = "13" } },
      { "a missing CVC", { CvcNumber = "" } },
    }) do
      it("answers CheckCardInfo.InvalidCardInfo for " .. c[1], function()
        local ans = moka("/PaymentDealer/DoDirectPaymentThreeD", card_request(c[2]))
        assert.are.equal("PaymentDealer.CheckCardInfo.InvalidCardInfo", ans.ResultCode)
      end)
    end

    it("uses the DoDirectPayment prefix for non-3D payments", function()
      local ans = pay{ Currency = "XYZ" }
      assert.are.equal("PaymentDealer.DoDirectPayment.InvalidCurrencyCode", ans.ResultCode)
      ans = pay({ IsPreAuth = 1 }, { dealer = RESTRICTED })
      assert.are.equal("PaymentDealer.DoDirectPayment.AuthorizationForbiddenForThisDealer", ans.ResultCode)
    end)

    it("adds basket prices exactly (0.10 + 0.20 = 0.30)", function()
      local ans = pay{ Amount = "#0.30", BasketProduct = {
        { ProductCode = "A", UnitPrice = "#0.10", Quantity = 1 }, { ProductId = 7, UnitPrice = "#0.10", Quantity = 2 } } }
      assert.are.equal("Success", ans.ResultCode)
      assert.is_true(ans.Data.IsSuccessful)
    end)

    it("accepts installments 2..12 in TL and a foreign currency for the full dealer", function()
      assert.are.equal("Success", (pay{ InstallmentNumber = 12 }).ResultCode)
      assert.are.equal("Success", (pay{ Currency = "GBP", InstallmentNumber = 0 }).ResultCode)
      assert.are.equal("Success", (pay({ Currency = "" }, { dealer = RESTRICTED })).ResultCode)
    end)
  end)

  describe("amounts", function()
    for _, c in ipairs({
      { "keeps the request's amount exact to the kurus", "#79.10", "79.10" },
      { "keeps the largest exact amount exact", "#90071992547409.91", "90071992547409.91" },
      { "accepts the amount as a decimal string too", "5.05", "5.05" },
    }) do
      it(c[1], function()
        local ans, req = pay{ Amount = c[2] }
        assert.is_true(ans.Data.IsSuccessful)
        local _, res = detail{ OtherTrxCode = req.OtherTrxCode }
        assert.truthy(res.body:find('"Amount":' .. c[3], 1, true))
      end)
    end
  end)

  describe("3D hash", function()
    it("matches the published vectors", function()
      local cfh = "9FDFBDFC-42C5-417E-AA93-E4D9D5312AAC"
      assert.are.equal("cdb7869505bdaaac2f4c891fc9ed889885fd7a0c880127ab5d508883efa3ee83", sha256(cfh:upper() .. "T"))
      assert.are.equal("acc929d261fdbf9c41de3db1ae854b1ee1e46344fad0292fd4bbbc43d094c2a3", sha256(cfh:upper() .. "F"))
    end)
  end)

  describe("3D flow through the magic endpoint", function()
    it("answers Url and CodeForHash with ReturnHash 1, and a bare Url without it", function()
      local data = start_3d()
      assert.truthy(data.Url:find("^" .. base:gsub("%p", "%%%0") .. "/moka/PaymentDealerThreeDProcess%?threeDTrxCode="))
      assert.truthy(data.CodeForHash:match("^%x+%-%x+%-%x+%-%x+%-%x+$"))
      assert.are.equal(data.CodeForHash:upper(), data.CodeForHash)
      local _, ans = start_3d{ ReturnHash = "<nil>" }
      assert.are.equal("string", type(ans.Data))
      assert.truthy(ans.Data:find("threeDTrxCode=", 1, true))
    end)

    it("approves with the success hash and records the payment as paid", function()
      local data = start_3d{ OtherTrxCode = "shop-1" }
      local status, ans = complete(three_d_code(data.Url), "approve")
      assert.are.equal(200, status)
      assert.are.equal("http://127.0.0.1:9/shop/return?MyTrxId=abc", ans.RedirectUrl)
      local f = ans.Fields
      assert.are.equal(sha256(data.CodeForHash:upper() .. "T"), f.hashValue)
      assert.are.equal("", f.resultCode)
      assert.are.equal("", f.resultMessage)
      assert.are.equal("shop-1", f.OtherTrxCode)
      assert.truthy(f.trxCode:match("^ORDER%-%w+$"))
      local d = detail{ OtherTrxCode = "shop-1" }.Data
      assert.are.equal(2, d.PaymentDetail.PaymentStatus)
      assert.are.equal(1, d.PaymentDetail.TrxStatus)
      assert.is_true(d.PaymentDetail.IsThreeD)
      assert.are.equal(f.trxCode, d.PaymentTrxDetailList[1].VirtualPosOrderId)
    end)

    it("declines with the failure hash and code 001", function()
      local data = start_3d{ OtherTrxCode = "shop-2" }
      local _, ans = complete(three_d_code(data.Url), "decline")
      assert.are.equal(sha256(data.CodeForHash:upper() .. "F"), ans.Fields.hashValue)
      assert.are.equal("001", ans.Fields.resultCode)
      assert.are.equal("Cardholder Confirmation Failed", ans.Fields.resultMessage)
      local d = detail{ OtherTrxCode = "shop-2" }.Data
      assert.are.equal(0, d.PaymentDetail.PaymentStatus)
      assert.are.equal(2, d.PaymentDetail.TrxStatus)
    end)

    it("fails with a chosen bank error", function()
      local data = start_3d()
      local _, ans = complete(three_d_code(data.Url), "error", "017")
      assert.are.equal("017", ans.Fields.resultCode)
      assert.are.equal("System failure", ans.Fields.resultMessage)
      assert.are.equal(sha256(data.CodeForHash:upper() .. "F"), ans.Fields.hashValue)
    end)

    it("makes a decline card fail even when the buyer approves", function()
      local data = start_3d{ CardNumber = "4000000000100505" }
      local _, ans = complete(three_d_code(data.Url), "approve")
      assert.are.equal("005", ans.Fields.resultCode)
      assert.are.equal(sha256(data.CodeForHash:upper() .. "F"), ans.Fields.hashValue)
    end)

    it("refuses a second completion and unknown codes", function()
      local data = start_3d()
      local code = three_d_code(data.Url)
      assert.are.equal(200, (complete(code, "approve")))
      assert.are.equal(409, (complete(code, "approve")))
      assert.are.equal(404, (complete("no-such-code", "approve")))
      local again = start_3d()
      assert.are.equal(400, (complete(three_d_code(again.Url), "error", "099")))
    end)
  end)

  describe("3D page", function()
    local function inputs(html)
      local t = {}
      for name, value in html:gmatch('<input type="hidden" name="([^"]*)" value="([^"]*)">') do t[name] = value end
      return t
    end

    it("shows the masked card, the amount and the buttons", function()
      local data = start_3d{ Amount = "#1234.05" }
      local res = sb.request("GET", data.Url)
      assert.are.equal(200, res.status)
      assert.truthy(res.body:find("411111******1111", 1, true))
      assert.is_nil(res.body:find("4111111111111111", 1, true))
      assert.truthy(res.body:find("1234.05 TL", 1, true))
      for _, id in ipairs({ 'id="approve"', 'id="decline"', 'id="bank-error"', 'id="fail"' }) do
        assert.truthy(res.body:find(id, 1, true), id)
      end
      assert.truthy(res.body:find('<option value="030">', 1, true))
    end)

    it("sends the browser back with a self-posting form after Approve", function()
      local data = start_3d()
      local code = three_d_code(data.Url)
      local res = sb.request("POST", "/moka/PaymentDealerThreeDProcess",
        core.form_encode{ threeDTrxCode = code, action = "approve", code = "000" }, FORM)
      assert.are.equal(200, res.status)
      assert.truthy(res.body:find('action="http://127.0.0.1:9/shop/return?MyTrxId=abc"', 1, true))
      local f = inputs(res.body)
      assert.are.equal(sha256(data.CodeForHash:upper() .. "T"), f.hashValue)
      assert.are.equal("", f.resultCode)
      assert.truthy(f.trxCode:match("^ORDER%-"))
      local again = sb.request("GET", data.Url)
      assert.are.equal(409, again.status)
      local post_again = sb.request("POST", "/moka/PaymentDealerThreeDProcess",
        core.form_encode{ threeDTrxCode = code, action = "approve" }, FORM)
      assert.are.equal(409, post_again.status)
    end)

    it("fails with the selected bank error", function()
      local data = start_3d()
      local res = sb.request("POST", "/moka/PaymentDealerThreeDProcess",
        core.form_encode{ threeDTrxCode = three_d_code(data.Url), action = "error", code = "021" }, FORM)
      local f = inputs(res.body)
      assert.are.equal("021", f.resultCode)
      assert.are.equal("Time out", f.resultMessage)
      assert.are.equal(sha256(data.CodeForHash:upper() .. "F"), f.hashValue)
    end)

    it("answers 404 for an unknown page", function()
      local res = sb.request("GET", "/moka/PaymentDealerThreeDProcess?threeDTrxCode=nope")
      assert.are.equal(404, res.status)
    end)
  end)

  describe("notifications", function()
    it("posts the result once to a merchant answering OK", function()
      local sink = "/_sink/moka-ok"
      assert.are.equal(200, (admin("/moka/_sandbox/dealer", { DealerCode = "1730", NotifyUrl = base .. sink })))
      local data = start_3d{ OtherTrxCode = "n-1" }
      local _, ans = complete(three_d_code(data.Url), "approve")
      local log = sink_log("moka-ok", 1)
      assert.are.equal(1, #log)
      assert.are.equal("POST", log[1].method)
      local form = core.form_decode(log[1].body)
      assert.are.same(ans.Fields, form)
      sleep(0.5)
      local attempts = outbox_for(sink)
      assert.are.equal(1, #attempts)
      assert.is_true(attempts[1].accepted)
    end)

    it("tries exactly 3 times when the merchant does not answer OK", function()
      local sink = "/_sink/moka-fail?reply=FAIL"
      admin("/moka/_sandbox/dealer", { DealerCode = "1730", NotifyUrl = base .. sink })
      local data = start_3d()
      complete(three_d_code(data.Url), "decline")
      wait_for(function() return #outbox_for("moka-fail") >= 3 end)
      sleep(0.6)
      local attempts = outbox_for("moka-fail")
      assert.are.equal(3, #attempts)
      for i, a in ipairs(attempts) do
        assert.are.equal(i, a.attempt)
        assert.is_false(a.accepted)
        assert.are.equal("FAIL", a.reply)
      end
      assert.are.equal(3, #sink_log("moka-fail"))
    end)

    it("sends nothing once the URL is cleared", function()
      admin("/moka/_sandbox/dealer", { DealerCode = "1730", NotifyUrl = base .. "/_sink/moka-clear" })
      admin("/moka/_sandbox/dealer", { DealerCode = "1730", NotifyUrl = "" })
      local data = start_3d()
      complete(three_d_code(data.Url), "approve")
      sleep(0.3)
      assert.are.equal(0, #outbox_for("moka-clear"))
    end)
  end)

  describe("test cards", function()
    it("declines 4000000000100505 with bank code 005 at the inner level", function()
      local ans = pay{ CardNumber = "4000000000100505" }
      assert.are.equal("Success", ans.ResultCode)
      assert.is_false(ans.Data.IsSuccessful)
      assert.are.equal("005", ans.Data.ResultCode)
      assert.are.equal("Transaction Not Open to Card Holder", ans.Data.ResultMessage)
    end)

    it("declines with any code built from the pattern", function()
      local partial = "40000000001" .. "030" .. "0"
      local ans = pay{ CardNumber = partial .. luhn_digit(partial) }
      assert.is_false(ans.Data.IsSuccessful)
      assert.are.equal("030", ans.Data.ResultCode)
    end)

    it("approves 5555666677778884 and any other Luhn-valid card", function()
      assert.is_true((pay{ CardNumber = "5555666677778884" }).Data.IsSuccessful)
      local ans = pay{ CardNumber = "4242424242424242" }
      assert.is_true(ans.Data.IsSuccessful)
      assert.are.equal("", ans.Data.ResultCode)
      assert.truthy(ans.Data.VirtualPosOrderId:match("^ORDER%-"))
    end)

    it("times out a 1 s client on the slow card", function()
      local r = card_request{ CardNumber = "4000000000200008" }
      r.ReturnHash, r.RedirectUrl = nil, nil
      local res, _, code = sb.http():request{ method = "POST", url = base .. "/moka/PaymentDealer/DoDirectPayment",
        body = request_body("/PaymentDealer/DoDirectPayment", r), headers = JSON, timeout = 1000 }
      assert.is_nil(res)
      assert.are.equal("timeout", code)
    end)

    it("answers the slow card when the client waits", function()
      local ans = pay{ CardNumber = "4000000000200008" }
      assert.is_true(ans.Data.IsSuccessful)
    end)

    it("answers HTTP 500 for 4000000000300006", function()
      local path = "/PaymentDealer/DoDirectPaymentThreeD"
      local res = sb.request("POST", "/moka" .. path, request_body(path, card_request{ CardNumber = "4000000000300006" }), JSON)
      assert.are.equal(500, res.status)
    end)
  end)

  describe("capture", function()
    it("closes a pre-authorisation for a smaller amount", function()
      local ans, req = pay{ IsPreAuth = 1, Amount = "#27.50" }
      assert.are.equal(1, detail{ OtherTrxCode = req.OtherTrxCode }.Data.PaymentDetail.PaymentStatus)
      local cap = moka("/PaymentDealer/DoCapture", { VirtualPosOrderId = ans.Data.VirtualPosOrderId, Amount = "#20.25" })
      assert.are.equal("Success", cap.ResultCode)
      assert.is_true(cap.Data.IsSuccessful)
      local d, res = detail{ OtherTrxCode = req.OtherTrxCode }
      assert.are.equal(2, d.Data.PaymentDetail.PaymentStatus)
      assert.truthy(res.body:find('"Amount":20.25', 1, true))
      assert.are.equal("PaymentDealer.DoCapture.PaymentIsNotPreAuth",
        moka("/PaymentDealer/DoCapture", { OtherTrxCode = req.OtherTrxCode, Amount = "#1.00" }).ResultCode)
    end)

    it("refuses more than the authorised amount, both references and unknown payments", function()
      local _, req = pay{ IsPreAuth = 1, Amount = "#10.00" }
      assert.are.equal("PaymentDealer.DoCapture.InvalidAmount",
        moka("/PaymentDealer/DoCapture", { OtherTrxCode = req.OtherTrxCode, Amount = "#10.01" }).ResultCode)
      assert.are.equal("PaymentDealer.DoCapture.InvalidRequest",
        moka("/PaymentDealer/DoCapture", { OtherTrxCode = req.OtherTrxCode, VirtualPosOrderId = "ORDER-X" }).ResultCode)
      assert.are.equal("PaymentDealer.DoCapture.PaymentNotFound",
        moka("/PaymentDealer/DoCapture", { OtherTrxCode = "nope" }).ResultCode)
    end)
  end)

  describe("void", function()
    it("cancels a payment the same day, once", function()
      local _, req = pay()
      local v = moka("/PaymentDealer/DoVoid", { OtherTrxCode = req.OtherTrxCode, ClientIP = "127.0.0.1", VoidRefundReason = 2 })
      assert.are.equal("Success", v.ResultCode)
      assert.are.equal(3, detail{ OtherTrxCode = req.OtherTrxCode }.Data.PaymentDetail.PaymentStatus)
      assert.are.equal("PaymentDealer.DoVoid.PaymentAlreadyCancelled",
        moka("/PaymentDealer/DoVoid", { OtherTrxCode = req.OtherTrxCode }).ResultCode)
    end)

    it("refuses a VoidRefundReason or ClientIP that is not of its type", function()
      local _, req = pay()
      for _, bad in ipairs { { VoidRefundReason = "two" }, { VoidRefundReason = 2.5 }, { VoidRefundReason = {} },
                             { ClientIP = {} }, { ClientIP = true } } do
        bad.OtherTrxCode = req.OtherTrxCode
        assert.are.equal("PaymentDealer.DoVoid.InvalidRequest", moka("/PaymentDealer/DoVoid", bad).ResultCode, encode(bad))
      end
      assert.are.equal(2, detail{ OtherTrxCode = req.OtherTrxCode }.Data.PaymentDetail.PaymentStatus)
    end)

    it("refuses a payment aged by a day", function()
      local _, req = pay()
      local status, aged = admin("/moka/_sandbox/age", { OtherTrxCode = req.OtherTrxCode, Days = 1 })
      assert.are.equal(200, status)
      assert.are.equal(1, aged.AgedDays)
      assert.are.equal("PaymentDealer.DoVoid.VoidOnlyAllowedSameDay",
        moka("/PaymentDealer/DoVoid", { OtherTrxCode = req.OtherTrxCode }).ResultCode)
      assert.is_false(detail{ OtherTrxCode = req.OtherTrxCode }.Data.PaymentDetail.CanBeCanceled)
    end)

    it("refuses a declined payment and another dealer's payment", function()
      local _, req = pay{ CardNumber = "4000000000100505" }
      assert.are.equal("PaymentDealer.DoVoid.PaymentCannotBeVoided",
        moka("/PaymentDealer/DoVoid", { OtherTrxCode = req.OtherTrxCode }).ResultCode)
      local _, mine = pay()
      assert.are.equal("PaymentDealer.DoVoid.PaymentNotFound",
        moka("/PaymentDealer/DoVoid", { OtherTrxCode = mine.OtherTrxCode }, { dealer = RESTRICTED }).ResultCode)
    end)
  end)

  describe("refund", function()
    it("refunds partly, then the remaining amount", function()
      local _, req = pay{ Amount = "#27.50" }
      local r1 = moka("/PaymentDealer/DoCreateRefundRequest", { OtherTrxCode = req.OtherTrxCode, Amount = "#10.00" })
      assert.are.equal("Success", r1.ResultCode)
      assert.are.equal("number", type(r1.Data.RefundRequestId))
      local d, res = detail{ OtherTrxCode = req.OtherTrxCode }
      assert.are.equal(2, d.Data.PaymentDetail.PaymentStatus)
      assert.truthy(res.body:find('"RefAmount":10.00', 1, true))
      local r2 = moka("/PaymentDealer/DoCreateRefundRequest", { OtherTrxCode = req.OtherTrxCode, Amount = "#0" })
      assert.are.equal("Success", r2.ResultCode)
      assert.are_not.equal(r1.Data.RefundRequestId, r2.Data.RefundRequestId)
      d, res = detail{ OtherTrxCode = req.OtherTrxCode }
      assert.are.equal(4, d.Data.PaymentDetail.PaymentStatus)
      assert.truthy(res.body:find('"RefAmount":27.50', 1, true))
      assert.are.equal("PaymentDealer.DoCreateRefundRequest.PaymentAlreadyRefunded",
        moka("/PaymentDealer/DoCreateRefundRequest", { OtherTrxCode = req.OtherTrxCode }).ResultCode)
    end)

    it("refunds everything when Amount is absent", function()
      local ans = pay{ Amount = "#3.00" }
      moka("/PaymentDealer/DoCreateRefundRequest", { VirtualPosOrderId = ans.Data.VirtualPosOrderId })
      local d = detail{ VirtualPosOrderId = ans.Data.VirtualPosOrderId }
      assert.are.equal(4, d.Data.PaymentDetail.PaymentStatus)
    end)

    it("refuses more than remains, bad amounts and pre-authorisations", function()
      local _, req = pay{ Amount = "#5.00" }
      assert.are.equal("PaymentDealer.DoCreateRefundRequest.RefundAmountExceedsRemainingAmount",
        moka("/PaymentDealer/DoCreateRefundRequest", { OtherTrxCode = req.OtherTrxCode, Amount = "#5.01" }).ResultCode)
      assert.are.equal("PaymentDealer.DoCreateRefundRequest.InvalidAmount",
        moka("/PaymentDealer/DoCreateRefundRequest", { OtherTrxCode = req.OtherTrxCode, Amount = "#1.001" }).ResultCode)
      local _, pre = pay{ IsPreAuth = 1 }
      assert.are.equal("PaymentDealer.DoCreateRefundRequest.PaymentCannotBeRefunded",
        moka("/PaymentDealer/DoCreateRefundRequest", { OtherTrxCode = pre.OtherTrxCode }).ResultCode)
    end)
  end)

  describe("pool payments", function()
    it("approves and undoes the approval", function()
      local ans, req = pay{ IsPoolPayment = 1 }
      local a = moka("/PaymentDealer/DoApprovePoolPayment", { VirtualPosOrderId = ans.Data.VirtualPosOrderId })
      assert.are.equal("Success", a.ResultCode)
      assert.is_true(detail{ OtherTrxCode = req.OtherTrxCode }.Data.PaymentDetail.IsPoolPaymentApproved)
      assert.are.equal("PaymentDealer.DoApprovePoolPayment.PoolPaymentAlreadyApproved",
        moka("/PaymentDealer/DoApprovePoolPayment", { OtherTrxCode = req.OtherTrxCode }).ResultCode)
      assert.are.equal("Success", moka("/PaymentDealer/UndoApprovePoolPayment", { OtherTrxCode = req.OtherTrxCode }).ResultCode)
      assert.are.equal("PaymentDealer.UndoApprovePoolPayment.PoolPaymentNotApproved",
        moka("/PaymentDealer/UndoApprovePoolPayment", { OtherTrxCode = req.OtherTrxCode }).ResultCode)
    end)

    it("refuses a payment outside the pool and a missing reference", function()
      local _, req = pay()
      assert.are.equal("PaymentDealer.DoApprovePoolPayment.PaymentIsNotPoolPayment",
        moka("/PaymentDealer/DoApprovePoolPayment", { OtherTrxCode = req.OtherTrxCode }).ResultCode)
      assert.are.equal("PaymentDealer.DoApprovePoolPayment.InvalidRequest",
        moka("/PaymentDealer/DoApprovePoolPayment", {}).ResultCode)
    end)
  end)

  describe("payment query", function()
    it("finds a payment by PaymentId with masked card and transaction list", function()
      local _, req = pay{ CardNumber = "5555666677778884", InstallmentNumber = 3 }
      local first = detail{ OtherTrxCode = req.OtherTrxCode }.Data.PaymentDetail
      local d = detail{ PaymentId = first.DealerPaymentId }.Data
      assert.are.equal(req.OtherTrxCode, d.PaymentDetail.OtherTrxCode)
      assert.are.equal("555566", d.PaymentDetail.CardNumberFirstSix)
      assert.are.equal("8884", d.PaymentDetail.CardNumberLastFour)
      assert.are.equal(3, d.PaymentDetail.InstallmentNumber)
      assert.are.equal("TL", d.PaymentDetail.CurrencyCode)
      assert.are.equal(1, #d.PaymentTrxDetailList)
      assert.are.equal(1, d.PaymentTrxDetailList[1].TrxType)
    end)

    it("answers PaymentNotFound and InvalidRequest", function()
      assert.are.equal("PaymentDealer.GetDealerPaymentTrxDetailList.PaymentNotFound", detail{ OtherTrxCode = "none" }.ResultCode)
      assert.are.equal("PaymentDealer.GetDealerPaymentTrxDetailList.InvalidRequest", detail{}.ResultCode)
    end)
  end)

  describe("BIN information", function()
    for bin, want in pairs({ ["411111"] = "VISA", ["555566"] = "MASTER", ["526911"] = "MASTER",
                             ["979204"] = "TROY", ["374245"] = "AMEX" }) do
      it("knows " .. bin .. " as " .. want, function()
        local ans = moka("/PaymentDealer/GetBankCardInformation", { BinNumber = bin .. "12" })
        assert.are.equal("Success", ans.ResultCode)
        assert.are.equal(want, ans.Data.CardType)
        assert.are.equal(bin, ans.Data.BinNumber)
        assert.truthy(ans.Data.BankName ~= "")
      end)
    end

    it("answers BinNumberNotFound and InvalidRequest", function()
      assert.are.equal("PaymentDealer.GetBankCardInformation.BinNumberNotFound",
        moka("/PaymentDealer/GetBankCardInformation", { BinNumber = "123456" }).ResultCode)
      assert.are.equal("PaymentDealer.GetBankCardInformation.InvalidRequest",
        moka("/PaymentDealer/GetBankCardInformation", { BinNumber = "41" }).ResultCode)
    end)
  end)

  describe("installment table", function()
    it("gives exact amounts with the commission added", function()
      local ans, res = moka("/PaymentDealer/DoCalcPaymentTable", { BinNumber = "411111", Currency = "TL",
        OrderAmount = "#100.00", IsThreeD = 1, IsIncludedCommissionAmount = 1 })
      assert.are.equal("Success", ans.ResultCode)
      local banks = ans.Data.BankPaymentInstallmentInfoList
      assert.are.equal(1, #banks)
      assert.are.equal("Axess", banks[1].BankInfoName)
      local rows = banks[1].PaymentInstallmentInfoList
      assert.are.equal(12, #rows)
      assert.are.equal(3, rows[3].InstallmentNumber)
      -- 3 installments: 3.49 % of 100.00 = 3.49; 103.49 = 34.51 + 2 x 34.49
      assert.truthy(res.body:find('"DealerCommissionRate":3.49', 1, true))
      assert.truthy(res.body:find('"Amount":103.49', 1, true))
      assert.truthy(res.body:find('"PerInstallmentAmount":34.49', 1, true))
      assert.truthy(res.body:find('"FirstInstallmentAmount":34.51', 1, true))
    end)

    it("rounds the commission half up to the kurus and keeps the order amount when not included", function()
      local _, res = moka("/PaymentDealer/DoCalcPaymentTable", { BinNumber = "411111", OrderAmount = "#33.33",
        IsIncludedCommissionAmount = 0 })
      -- 1.79 % of 33.33 = 0.596607 -> 0.60
      assert.truthy(res.body:find('"DealerCommissionAmount":0.60', 1, true))
      assert.truthy(res.body:find('"Amount":33.33', 1, true))
    end)

    it("lists every bank without a BIN, one row in a foreign currency, 9 rows for TROY", function()
      local all = moka("/PaymentDealer/DoCalcPaymentTable", { OrderAmount = "#50.00" })
      assert.are.equal(5, #all.Data.BankPaymentInstallmentInfoList)
      local usd = moka("/PaymentDealer/DoCalcPaymentTable", { BinNumber = "555566", Currency = "USD", OrderAmount = "#50.00" })
      assert.are.equal(1, #usd.Data.BankPaymentInstallmentInfoList[1].PaymentInstallmentInfoList)
      local troy = moka("/PaymentDealer/DoCalcPaymentTable", { BinNumber = "979204", OrderAmount = "#50.00" })
      assert.are.equal(9, #troy.Data.BankPaymentInstallmentInfoList[1].PaymentInstallmentInfoList)
    end)

    it("answers its error codes", function()
      assert.are.equal("PaymentDealer.DoCalcPaymentTable.InvalidRequest",
        moka("/PaymentDealer/DoCalcPaymentTable", { OrderAmount = "#1.234" }).ResultCode)
      assert.are.equal("PaymentDealer.DoCalcPaymentTable.InvalidCurrencyCode",
        moka("/PaymentDealer/DoCalcPaymentTable", { OrderAmount = "#1.00", Currency = "TRY" }).ResultCode)
      assert.are.equal("PaymentDealer.DoCalcPaymentTable.BinNumberNotFound",
        moka("/PaymentDealer/DoCalcPaymentTable", { OrderAmount = "#1.00", BinNumber = "123456" }).ResultCode)
      assert.are.equal("PaymentDealer.DoCalcPaymentTable.ForeignCurrencyNotAvailableForThisDealer",
        moka("/PaymentDealer/DoCalcPaymentTable", { OrderAmount = "#1.00", Currency = "EUR" }, { dealer = RESTRICTED }).ResultCode)
    end)
  end)

  describe("stored cards", function()
    local function add_customer(code, number)
      return moka("/DealerCustomer/AddCustomerWithCard", { CustomerCode = code, FirstName = "Ali", LastName = "Yilmaz",
        CardHolderFullName = "Ali Yilmaz", CardNumber = number or "4111111111111111", ExpMonth = "09",
        ExpYear = tostring(tonumber(os.date("!%Y")) + 3), CardName = "my card" })
    end
    local GUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

    it("stores, lists, pays with and removes a card", function()
      local ans = add_customer("cust-1")
      assert.are.equal("Success", ans.ResultCode)
      local token = ans.Data.Card.CardToken
      assert.truthy(token:match(GUID))
      assert.are.equal("411111", ans.Data.Card.CardNumberFirstSix)
      local added = moka("/DealerCustomer/AddCard", { DealerCustomerId = ans.Data.DealerCustomer.DealerCustomerId,
        CardHolderFullName = "Ali Yilmaz", CardNumber = "5555666677778884", ExpMonth = "01", ExpYear = tostring(tonumber(os.date("!%Y")) + 1), CardName = "b" })
      assert.are.equal("Success", added.ResultCode)
      local list = moka("/DealerCustomer/GetCardList", { CustomerCode = "cust-1" })
      assert.are.equal(2, list.Data.CardListCount)
      assert.are.equal(2, #list.Data.CardList)
      assert.is_nil(cjson.encode(list.Data):find("4111111111111111", 1, true))

      local paid, req = pay{ CardNumber = "", ExpMonth = "", ExpYear = "", CvcNumber = "", CardToken = token }
      assert.is_true(paid.Data.IsSuccessful)
      assert.are.equal("1111", detail{ OtherTrxCode = req.OtherTrxCode }.Data.PaymentDetail.CardNumberLastFour)

      assert.are.equal("Success", moka("/DealerCustomer/RemoveCard", { CardToken = token }).ResultCode)
      assert.are.equal(1, moka("/DealerCustomer/GetCardList", { CustomerCode = "cust-1" }).Data.CardListCount)
      assert.are.equal("PaymentDealer.DoDirectPayment.CardTokenNotFound",
        (pay{ CardNumber = "", CardToken = token }).ResultCode)
      assert.are.equal("DealerCustomer.RemoveCard.CardTokenNotFound",
        moka("/DealerCustomer/RemoveCard", { CardToken = token }).ResultCode)
    end)

    it("answers an empty CardList as a JSON array", function()
      local ans = add_customer("cust-e")
      moka("/DealerCustomer/RemoveCard", { CardToken = ans.Data.Card.CardToken })
      local _, res = moka("/DealerCustomer/GetCardList", { CustomerCode = "cust-e" })
      assert.truthy(res.body:find('"CardList":[]', 1, true))
    end)

    it("stores the card of a tokenized payment under the customer", function()
      local ans = pay{ IsTokenized = 1, CustomerInformation = { CustomerCode = "cust-t", FirstName = "Ayse" } }
      assert.is_true(ans.Data.IsSuccessful)
      assert.truthy(ans.Data.CardToken:match(GUID))
      local list = moka("/DealerCustomer/GetCardList", { CustomerCode = "cust-t" })
      assert.are.equal(ans.Data.CardToken, list.Data.CardList[1].CardToken)
    end)

    it("answers its error codes", function()
      add_customer("cust-2")
      assert.are.equal("DealerCustomer.AddCustomerWithCard.CustomerCodeAlreadyExists", add_customer("cust-2").ResultCode)
      assert.are.equal("DealerCustomer.CheckCardInfo.InvalidCardInfo", add_customer("cust-3", "4111111111111112").ResultCode)
      assert.are.equal("DealerCustomer.GetCardList.CustomerNotFound",
        moka("/DealerCustomer/GetCardList", { CustomerCode = "nobody" }).ResultCode)
      assert.are.equal("DealerCustomer.AddCard.InvalidRequest", moka("/DealerCustomer/AddCard", {}).ResultCode)
      assert.are.equal("DealerCustomer.GetCardList.TokenizationNotAvailableForDealer",
        moka("/DealerCustomer/GetCardList", { CustomerCode = "cust-2" }, { dealer = RESTRICTED }).ResultCode)
    end)
  end)

  describe("hygiene", function()
    it("answers 404 to unknown paths and 405 to GET on the API", function()
      assert.are.equal(404, sb.request("POST", "/moka/PaymentDealer/Nope", "{}", JSON).status)
      assert.are.equal(405, sb.request("GET", "/moka/PaymentDealer/DoVoid").status)
    end)

    it("writes no card number into the error log", function()
      pay{ CardNumber = "4111111111111111" }
      local log = sb.error_log():sub(log_start + 1)
      assert.is_nil(log:find("4111111111111111", 1, true))
      assert.is_nil(log:find("sandbox%-pass"))
      assert.is_nil(log:find("moka sandbox: ", 1, true)) -- no unexpected (EX) failures during the run
    end)
  end)
end)
