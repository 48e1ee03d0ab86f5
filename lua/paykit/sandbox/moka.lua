-- The Moka simulator of the local sandbox (runs inside the sandbox nginx, LuaJIT).
-- Wire contract: ../shared/specs/moka-3d-secure.txt and moka-notes.md. Everything below is the
-- sandbox's own contract, also exported as M.credentials, M.cards, M.bank_errors, M.bins.
--
-- BASE URL   http://127.0.0.1:PORT/moka   (every API call: POST, JSON body, path as Moka's)
--
-- DEALERS (CheckKey = lower hex sha256(DealerCode.."MK"..Username.."PD"..Password))
--   "1730" / "sandbox"    / "sandbox-pass"     all features: foreign currency, pool, pre-auth, tokenization
--   "1731" / "restricted" / "restricted-pass"  none of them (triggers the dealer-permission codes)
--   unknown DealerCode -> PaymentDealer.CheckPaymentDealerAuthentication.InvalidAccount
--   bad CheckKey, wrong Username/Password, missing auth block or unparsable JSON
--                      -> PaymentDealer.CheckPaymentDealerAuthentication.InvalidRequest
--   (/DealerCustomer/* answers DealerCustomer.CheckDealerCustomerAuthentication.InvalidAccount|InvalidRequest)
--
-- TEST CARDS (expiry this month up to 30 years ahead, any 3-4 digit CVC)
--   4111111111111111, 5555666677778884  approve (3D page: buyer approves, declines or picks a bank error)
--   "40000000001"..CCC.."0"..luhn digit  decline with bank code CCC (000..030), e.g. 4000000000100505 -> 005
--       direct: outer Success + Data.IsSuccessful=false, Data.ResultCode=CCC; 3D: "approve" fails with CCC
--   4000000000200008                    slow: DoDirectPayment / DoDirectPaymentThreeD answer after 3 s
--   4000000000300006                    HTTP 500 with an HTML body (nothing recorded)
--   any other Luhn-valid card approves; non-Luhn, bad/expired ExpMonth/ExpYear (MM, YYYY or YY), bad CVC
--       -> PaymentDealer.CheckCardInfo.InvalidCardInfo
--
-- PAYMENTS   DoDirectPaymentThreeD (3D) and DoDirectPayment (non-3D) share their checks; error codes are
--   PaymentDealer.DoDirectPayment3dRequest.<X> for 3D and PaymentDealer.DoDirectPayment.<X> for non-3D, X one of:
--   InvalidRequest (PaymentDealerRequest missing, Amount missing/<=0/not a 2-decimal number, Software > 30 or
--   Description > 200 chars), RedirectUrlRequired (3D only), InvalidCurrencyCode (only ""/TL/USD/EUR/GBP; "TRY"
--   is refused), InvalidInstallmentNumber (not 0..12), InstallmentNotAvailableForForeignCurrencyTransaction,
--   ForeignCurrencyNotAvailableForThisDealer, AuthorizationForbiddenForThisDealer (IsPreAuth=1),
--   PoolPaymentNotAvailableForDealer (IsPoolPayment=1), TokenizationNotAvailableForDealer (IsTokenized=1 or a
--   CardToken), CardTokenCannotUseWithSaveCard, CardTokenNotFound, OnlyCardTokenOrCardNumber,
--   ThisInstallmentNumberNotAvailableForVirtualPos (TROY BINs allow at most 9, AMEX at most 6),
--   BasketProduct[] {ProductId|ProductCode, UnitPrice, Quantity}: MustBeOneOfDealerProductIdOrProductCode,
--   InvalidUnitPrice, InvalidQuantityValue, BasketAmountIsNotEqualPaymentAmount (sum UnitPrice*Quantity ~= Amount).
--   Order of the checks: auth; payload block; card token vs number (OnlyCardTokenOrCardNumber,
--   CardTokenCannotUseWithSaveCard, TokenizationNotAvailableForDealer, CardTokenNotFound); card (InvalidCardInfo);
--   Amount, Software, Description (InvalidRequest); RedirectUrl; currency and its permission; installments;
--   pre-auth and pool permissions; installments per BIN; basket. The test-card behaviours (slow, 500) apply
--   only to requests that pass every check. Amounts are read exactly from the JSON text (a bare number or a
--   decimal string); replies write amounts as bare numbers with 2 decimals (27.50).
--   OtherTrxCode is not required to be unique: look-ups by OtherTrxCode find the newest payment.
--   3D: Data = {Url, CodeForHash} with ReturnHash 1, else Data = Url (a string).
--     Url = BASE/PaymentDealerThreeDProcess?threeDTrxCode=<guid>; the page has buttons id="approve",
--     id="decline", <select id="bank-error" name="code"> (000..030) and id="fail"; it POSTs back to the same
--     path and the browser is sent to RedirectUrl with a self-submitting POST form:
--     hashValue, resultCode, resultMessage, trxCode (= VirtualPosOrderId "ORDER-..."), OtherTrxCode;
--     hashValue = lower hex sha256(upper(CodeForHash).."T") on success, .."F" on failure; resultCode ""
--     on success. "decline" = resultCode 001 (Cardholder Confirmation Failed). A used page -> HTML error (409).
--     The same fields go form-encoded (POST) to the dealer's NotifyUrl: accepted when the reply body is
--     exactly "OK", else retried, 3 attempts in all (0.2 s apart); attempts are listed at GET /_sandbox/outbox.
--   Non-3D: Data = {IsSuccessful, ResultCode ("" or CCC), ResultMessage, VirtualPosOrderId} (+ CardToken when
--     IsTokenized=1 stored the card).
--   PaymentStatus 0 waiting/failed, 1 pre-authorised, 2 paid, 3 cancelled, 4 fully refunded;
--   TrxStatus 0 pending, 1 success, 2 failed. TrxType 1 sale, 2 pre-auth, 3 capture, 4 void, 5 refund,
--   6 pool approve, 7 pool undo.
--
-- AFTER-SALE (PaymentDealerRequest{VirtualPosOrderId | OtherTrxCode, ...}; both or neither -> InvalidRequest).
--   Success Data = {IsSuccessful=true, ResultCode="", ResultMessage="", VirtualPosOrderId} unless said otherwise.
--   DoCapture {Amount (0/absent = all)}: PaymentDealer.DoCapture.InvalidRequest | PaymentNotFound |
--     PaymentIsNotPreAuth | InvalidAmount (bad or above the authorised amount). Closes the pre-auth: status 2.
--   DoVoid {ClientIP, VoidRefundReason (an integer)}: PaymentDealer.DoVoid.InvalidRequest (also for a
--     VoidRefundReason that is not an integer or a ClientIP that is not a string) | PaymentNotFound | PaymentAlreadyCancelled |
--     PaymentCannotBeVoided (not paid/pre-authorised, or refunded) | VoidOnlyAllowedSameDay. -> status 3.
--   DoCreateRefundRequest {Amount (0/absent = the remaining amount)} -> Data {IsSuccessful=true, ResultCode="",
--     ResultMessage="", RefundRequestId} (the refund
--     completes at once here): PaymentDealer.DoCreateRefundRequest.InvalidRequest | PaymentNotFound |
--     PaymentCannotBeRefunded (not paid) | PaymentAlreadyRefunded | InvalidAmount |
--     RefundAmountExceedsRemainingAmount. Status 4 once fully refunded.
--   DoApprovePoolPayment / UndoApprovePoolPayment: PaymentDealer.<Op>.InvalidRequest | PaymentNotFound |
--     PaymentIsNotPoolPayment | PaymentIsNotPaid | PoolPaymentAlreadyApproved (approve) |
--     PoolPaymentNotApproved (undo).
--   GetDealerPaymentTrxDetailList {PaymentId | OtherTrxCode | VirtualPosOrderId} -> Data {PaymentDetail,
--     PaymentTrxDetailList}: PaymentDealer.GetDealerPaymentTrxDetailList.InvalidRequest | PaymentNotFound.
--
-- CARDS   GetBankCardInformation BankCardInformationRequest{BinNumber (6+ digits)} ->
--   Data {BankName, BankCode, BinNumber, CardType, CreditType, ProductCategory, GroupName};
--   PaymentDealer.GetBankCardInformation.InvalidRequest | BinNumberNotFound. BINs: M.bins below.
--   DoCalcPaymentTable {BinNumber (optional: all banks), Currency, OrderAmount, IsThreeD,
--   IsIncludedCommissionAmount} -> Data {BankPaymentInstallmentInfoList [{BankInfoName, BankCode,
--   PaymentInstallmentInfoList [{InstallmentNumber, DealerCommissionRate, DealerCommissionAmount, Amount,
--   PerInstallmentAmount, FirstInstallmentAmount}]}]}. Commission = OrderAmount * rate, half-up to the kurus;
--   Amount = OrderAmount + commission when IsIncludedCommissionAmount=1, else OrderAmount; installments are
--   floor(Amount/n), the first one takes the remainder. Foreign currency: only InstallmentNumber 1.
--   Codes: PaymentDealer.DoCalcPaymentTable.InvalidRequest | InvalidCurrencyCode | BinNumberNotFound |
--   ForeignCurrencyNotAvailableForThisDealer.
--
-- STORED CARDS  /DealerCustomer/* with DealerCustomerAuthentication + DealerCustomerRequest
--   (restricted dealer -> DealerCustomer.<Op>.TokenizationNotAvailableForDealer):
--   AddCustomerWithCard {CustomerCode, FirstName, LastName, ..., CardHolderFullName, CardNumber, ExpMonth,
--     ExpYear, CardName} -> Data {DealerCustomer {DealerCustomerId, CustomerCode, ...}, Card} (the card
--     fields are optional: without CardNumber, Card is null)
--     (DealerCustomer.AddCustomerWithCard.CustomerCodeAlreadyExists)
--   AddCard {DealerCustomerId | CustomerCode, card fields} -> Data {DealerCustomer, Card}
--   GetCardList {DealerCustomerId | CustomerCode} -> Data {DealerCustomer, CardListCount, CardList}
--   RemoveCard {CardToken} -> Data true
--   Card = {CardToken (GUID), CardHolderFullName, CardNumberFirstSix, CardNumberLastFour, ExpMonth, ExpYear,
--     CardName, CardType}. Codes: DealerCustomer.<Op>.InvalidRequest | CustomerNotFound | CardTokenNotFound,
--     DealerCustomer.CheckCardInfo.InvalidCardInfo. A CardToken pays via PaymentDealerRequest.CardToken
--     (no CardNumber/expiry/CVC). IsTokenized=1 on a payment stores the card (on success) under
--     CustomerInformation.DealerCustomerId or .CustomerCode (created if new).
--
-- SANDBOX ADMIN (not Moka's; JSON in, JSON out)
--   POST /moka/_sandbox/dealer {"DealerCode":"1730","NotifyUrl":"http://127.0.0.1:P/..."} ("" clears)
--   POST /moka/_sandbox/3d/complete {"threeDTrxCode":..., "action":"approve"|"decline"|"error", "code":"005"}
--     -> {"RedirectUrl":..., "Fields":{hashValue, resultCode, resultMessage, trxCode, OtherTrxCode}}
--     (sends the notification like the page does; unknown code -> 404, used -> 409, {"error":...})
--   POST /moka/_sandbox/age {"VirtualPosOrderId"|"OtherTrxCode":..., "Days":1} moves a payment's date back
--   POST /_sandbox/reset clears everything (payments, customers, NotifyUrls).
-- Any unexpected failure answers ResultCode "EX" with a generic ResultMessage (details go to the error log).

local core = require "paykit.core"
local C = require "paykit.sandbox.moka_common"
local P = require "paykit.sandbox.moka_pay"
local K = require "paykit.sandbox.moka_cards"

local M = {}

M.credentials = { C.dealers["1730"], C.dealers["1731"] }

M.cards = {
  approve = { "4111111111111111", "5555666677778884" },
  decline = "4000000000100505",   -- pattern: "40000000001" .. CCC .. "0" .. Luhn digit; this one is 005
  slow = "4000000000200008",      -- answers after 3 s
  server_error = "4000000000300006", -- HTTP 500
  slow_seconds = 3,
}

M.bank_errors = C.bank_errors
M.bins = C.bins

-- path -> { handler, payload block name, credential kind }
local PD, DC = "PaymentDealer", "DealerCustomer"
local ROUTES = {
  ["/PaymentDealer/DoDirectPaymentThreeD"] = { P.three_d, "PaymentDealerRequest", PD, "PaymentDealer.DoDirectPayment3dRequest" },
  ["/PaymentDealer/DoDirectPayment"] = { P.direct, "PaymentDealerRequest", PD, "PaymentDealer.DoDirectPayment" },
  ["/PaymentDealer/DoCapture"] = { P.capture, "PaymentDealerRequest", PD, "PaymentDealer.DoCapture" },
  ["/PaymentDealer/DoVoid"] = { P.void, "PaymentDealerRequest", PD, "PaymentDealer.DoVoid" },
  ["/PaymentDealer/DoCreateRefundRequest"] = { P.refund, "PaymentDealerRequest", PD, "PaymentDealer.DoCreateRefundRequest" },
  ["/PaymentDealer/DoApprovePoolPayment"] = { P.pool_approve, "PaymentDealerRequest", PD, "PaymentDealer.DoApprovePoolPayment" },
  ["/PaymentDealer/UndoApprovePoolPayment"] = { P.pool_undo, "PaymentDealerRequest", PD, "PaymentDealer.UndoApprovePoolPayment" },
  ["/PaymentDealer/GetDealerPaymentTrxDetailList"] = { P.query, "PaymentDealerRequest", PD,
    "PaymentDealer.GetDealerPaymentTrxDetailList" },
  ["/PaymentDealer/GetBankCardInformation"] = { K.bank_card, "BankCardInformationRequest", PD,
    "PaymentDealer.GetBankCardInformation" },
  ["/PaymentDealer/DoCalcPaymentTable"] = { K.calc_table, "PaymentDealerRequest", PD, "PaymentDealer.DoCalcPaymentTable" },
  ["/DealerCustomer/AddCustomerWithCard"] = { K.add_customer_with_card, "DealerCustomerRequest", DC,
    "DealerCustomer.AddCustomerWithCard" },
  ["/DealerCustomer/AddCard"] = { K.add_card, "DealerCustomerRequest", DC, "DealerCustomer.AddCard" },
  ["/DealerCustomer/GetCardList"] = { K.card_list, "DealerCustomerRequest", DC, "DealerCustomer.GetCardList" },
  ["/DealerCustomer/RemoveCard"] = { K.remove_card, "DealerCustomerRequest", DC, "DealerCustomer.RemoveCard" },
}

local AUTH = {
  [PD] = { block = "PaymentDealerAuthentication", prefix = "PaymentDealer.CheckPaymentDealerAuthentication" },
  [DC] = { block = "DealerCustomerAuthentication", prefix = "DealerCustomer.CheckDealerCustomerAuthentication" },
}

-- The dealer named by the credential block, or a raised Moka error.
local function authenticate(block, prefix)
  if type(block) ~= "table" then C.raise(prefix .. ".InvalidRequest") end
  local dealer = C.dealers[C.str(block.DealerCode) or ""]
  if not dealer then C.raise(prefix .. ".InvalidAccount") end
  local expect = C.sha256_hex(dealer.DealerCode .. "MK" .. dealer.Username .. "PD" .. dealer.Password)
  local key = (C.str(block.CheckKey) or ""):lower()
  local ok = core.consteq(key, expect)
  ok = core.consteq(C.str(block.Username) or "", dealer.Username) and ok
  ok = core.consteq(C.str(block.Password) or "", dealer.Password) and ok
  if not ok then C.raise(prefix .. ".InvalidRequest") end
  return dealer
end

local function api(util, route)
  local handler, payload, kind, prefix = route[1], route[2], route[3], route[4]
  local auth = AUTH[kind]
  local ran, result = pcall(function()
    local doc = util.json_decode_exact(util.body())
    if type(doc) ~= "table" then C.raise(auth.prefix .. ".InvalidRequest", "the body is not a JSON object") end
    local ctx = { util = util, st = C.state(util) }
    ctx.dealer = authenticate(doc[auth.block], auth.prefix)
    local req = doc[payload]
    if type(req) ~= "table" then C.raise(prefix .. ".InvalidRequest", payload .. " is missing") end
    return handler(ctx, req)
  end)
  if ran then
    if C.is_special(result) then return util.send(result.status, result.body, result.content_type) end
    return util.send(200, C.envelope(result), "application/json; charset=utf-8")
  end
  if C.is_raise(result) then
    return util.send(200, C.envelope(nil, result.code, result.message), "application/json; charset=utf-8")
  end
  ngx.log(ngx.ERR, "moka sandbox: ", tostring(result))
  return util.send(200, C.envelope(nil, "EX", "sandbox: unexpected error"), "application/json; charset=utf-8")
end

---------------------------------------------------------------------------- 3D page

local function notify(util, st, p, fields)
  local url = st.notify[p.dealer]
  if not url or url == "" then return end
  util.notify{ url = url, method = "POST", provider = "moka", attempts = 3,
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
    body = core.form_encode(fields),
    accept = function(status, body) return status == 200 and body == "OK" end }
end

local function threed_page(util)
  local st = C.state(util)
  if ngx.req.get_method() == "POST" then
    local form = util.form() or {}
    local session = st.threed[form.threeDTrxCode or ""]
    if not session then return util.page("3D Secure", "<p>Unknown 3D transaction.</p>", 404) end
    local url, fields, p = P.complete(st, session, form.action, form.code)
    if not url then return util.page("3D Secure", "<p>" .. util.escape_html(p) .. "</p>", fields) end
    notify(util, st, p, fields)
    return util.autopost(url, fields, "Returning to the shop")
  end
  local code = util.query().threeDTrxCode or ""
  local session = st.threed[code]
  if not session then return util.page("3D Secure", "<p>Unknown 3D transaction.</p>", 404) end
  if session.used then return util.page("3D Secure", "<p>This 3D page has already been used.</p>", 409) end
  local p = session.payment
  local options = {}
  for i = 0, 30 do
    local c = string.format("%03d", i)
    options[#options + 1] = string.format('<option value="%s">%s %s</option>', c, c, util.escape_html(C.bank_errors[c]))
  end
  return util.page("Moka 3D Secure (sandbox)", table.concat({
    "<table>",
    "<tr><th>Card</th><td id=\"card\">", util.escape_html(p.first6 .. "******" .. p.last4), "</td></tr>",
    "<tr><th>Amount</th><td id=\"amount\">", util.escape_html(core.money_format(p.amount, 2) .. " " .. p.currency), "</td></tr>",
    "<tr><th>Order</th><td>", util.escape_html(p.other), "</td></tr></table>",
    '<form id="threed" method="post" action="', util.escape_html(util.base_url() .. "/moka/PaymentDealerThreeDProcess"), '">',
    '<input type="hidden" name="threeDTrxCode" value="', util.escape_html(code), '">',
    '<button type="submit" id="approve" name="action" value="approve">Approve</button>',
    '<button type="submit" id="decline" name="action" value="decline">Decline</button>',
    '<label>Bank error <select id="bank-error" name="code">', table.concat(options), "</select></label>",
    '<button type="submit" id="fail" name="action" value="error">Fail with selected error</button>',
    "</form>" }))
end

---------------------------------------------------------------------------- sandbox admin

local function admin(util, what)
  if ngx.req.get_method() ~= "POST" then return util.json(405, { error = "POST only" }) end
  local st = C.state(util)
  local body = util.json_decode_exact(util.body())
  if type(body) ~= "table" then return util.json(400, { error = "the body must be a JSON object" }) end
  if what == "dealer" then
    local dealer = C.dealers[C.str(body.DealerCode) or ""]
    if not dealer then return util.json(404, { error = "unknown DealerCode" }) end
    local url = body.NotifyUrl
    if type(url) ~= "string" then return util.json(400, { error = "NotifyUrl must be a string" }) end
    st.notify[dealer.DealerCode] = url ~= "" and url or nil
    return util.json(200, { DealerCode = dealer.DealerCode, NotifyUrl = url })
  elseif what == "3d/complete" then
    local session = st.threed[C.str(body.threeDTrxCode) or ""]
    if not session then return util.json(404, { error = "unknown threeDTrxCode" }) end
    local url, fields, p = P.complete(st, session, body.action, C.str(body.code))
    if not url then return util.json(fields, { error = p }) end
    notify(util, st, p, fields)
    local map = {}
    for _, kv in ipairs(fields) do map[kv[1]] = kv[2] end
    return util.json(200, { RedirectUrl = url, Fields = map })
  elseif what == "age" then
    local ok, res = pcall(P.age, { st = st }, body)
    if ok then return util.json(200, res) end
    if C.is_raise(res) then return util.json(res.code:match("NotFound$") and 404 or 400, { error = res.code }) end
    error(res, 0)
  end
  return util.json(404, { error = "unknown sandbox call" })
end

function M.handle(util)
  local path = util.subpath("moka")
  if path == "/PaymentDealerThreeDProcess" then return threed_page(util) end
  local what = path:match("^/_sandbox/(.+)$")
  if what then return admin(util, what) end
  local route = ROUTES[path]
  if not route then return util.send(404, "Not Found\n") end
  if ngx.req.get_method() ~= "POST" then return util.send(405, "Method Not Allowed\n") end
  return api(util, route)
end

return M
