-- The Moka simulator's payments: DoDirectPaymentThreeD, DoDirectPayment, the 3D completion,
-- capture, void, refund, pool approval and the payment query.
-- The contract is documented at the top of paykit/sandbox/moka.lua.
local core = require "paykit.core"
local C = require "paykit.sandbox.moka_common"

local P = {}

local raise, str, int = C.raise, C.str, C.int

local CURRENCIES = { TL = true, USD = true, EUR = true, GBP = true }
local TRX = { sale = 1, preauth = 2, capture = 3, void = 4, refund = 5, pool_approve = 6, pool_undo = 7 }
P.TRX = TRX

local function date_of(t) return os.date("!%Y-%m-%dT%H:%M:%S", t) end

local function new_order_id() return "ORDER-" .. core.random_hex(8):upper() end

local function add_trx(st, p, kind, status, amount, code, message)
  local trx = { id = C.next(st, "next_trx"), type = kind, status = status, amount = amount,
    code = code or "", message = message or "", time = ngx.time() }
  p.trxs[#p.trxs + 1] = trx
  return trx
end

---------------------------------------------------------------------------- stored cards

-- The customer of a dealer by DealerCustomerId or CustomerCode (nil when unknown).
function P.customer(st, dealer, id, code)
  local book = st.customers[dealer]
  if not book then book = { by_id = {}, by_code = {} }; st.customers[dealer] = book end
  if id then return book.by_id[tostring(id)], book end
  if code then return book.by_code[code], book end
  return nil, book
end

function P.new_customer(st, dealer, info)
  local _, book = P.customer(st, dealer)
  local c = { DealerCustomerId = C.next(st, "next_customer"), cards = {} }
  for _, k in ipairs({ "CustomerCode", "FirstName", "LastName", "Gender", "BirthDate", "GsmNumber", "Email", "Address" }) do
    c[k] = str(info[k]) or ""
  end
  if c.CustomerCode == "" then c.CustomerCode = "SBX-" .. c.DealerCustomerId end
  book.by_id[tostring(c.DealerCustomerId)] = c
  book.by_code[c.CustomerCode] = c
  return c
end

function P.store_card(st, dealer, customer, card, name)
  local token = core.uuid4()
  local stored = { token = token, dealer = dealer, customer = customer, number = card.number,
    month = card.month, year = card.year, holder = card.holder, name = name or "" }
  st.cards[token] = stored
  customer.cards[#customer.cards + 1] = stored
  return stored
end

function P.card_token(st, dealer, token)
  local c = token and st.cards[token:lower()]
  if not c or c.removed or c.dealer ~= dealer then return nil end
  return c
end

---------------------------------------------------------------------------- payment requests

-- Validates a DoDirectPayment(ThreeD) request; returns the new payment (not yet processed).
local function new_payment(ctx, r, prefix, three_d)
  local st, dealer = ctx.st, ctx.dealer
  local code = dealer.DealerCode

  for _, f in ipairs({ "CardHolderFullName", "CardNumber", "CardToken", "OtherTrxCode", "Software",
                       "Description", "RedirectUrl", "Currency", "ClientIP" }) do
    local v = r[f]
    if type(v) == "table" then raise(prefix .. ".InvalidRequest", f .. " must be a string") end
  end
  local tokenize = C.flag(r.IsTokenized, prefix .. ".InvalidRequest")
  local token, number = str(r.CardToken), str(r.CardNumber)
  local card, stored
  if token and number then raise(prefix .. ".OnlyCardTokenOrCardNumber") end
  if token and tokenize == 1 then raise(prefix .. ".CardTokenCannotUseWithSaveCard") end
  if (token or tokenize == 1) and not dealer.tokenization then raise(prefix .. ".TokenizationNotAvailableForDealer") end
  if token then
    stored = P.card_token(st, code, token)
    if not stored then raise(prefix .. ".CardTokenNotFound") end
    card = { number = stored.number, month = stored.month, year = stored.year,
             holder = str(r.CardHolderFullName) or stored.holder }
  else
    card = C.card(r.CardNumber, r.ExpMonth, r.ExpYear, r.CvcNumber, r.CardHolderFullName, true)
    if not card then raise("PaymentDealer.CheckCardInfo.InvalidCardInfo") end
  end

  local amount = C.amount(r.Amount)
  if not amount or amount <= 0 then raise(prefix .. ".InvalidRequest", "Amount") end
  if #(str(r.Software) or "") > 30 then raise(prefix .. ".InvalidRequest", "Software") end
  if #(str(r.Description) or "") > 200 then raise(prefix .. ".InvalidRequest", "Description") end

  local redirect = str(r.RedirectUrl)
  if three_d and not redirect then raise(prefix .. ".RedirectUrlRequired") end

  local currency = str(r.Currency) or "TL"
  if not CURRENCIES[currency] then raise(prefix .. ".InvalidCurrencyCode") end
  local foreign = currency ~= "TL"
  if foreign and not dealer.foreign_currency then raise(prefix .. ".ForeignCurrencyNotAvailableForThisDealer") end
  local inst = int(r.InstallmentNumber)
  if inst == false or (inst and (inst < 0 or inst > 12)) then raise(prefix .. ".InvalidInstallmentNumber") end
  inst = (inst == nil or inst == 0) and 1 or inst
  if foreign and inst > 1 then raise(prefix .. ".InstallmentNotAvailableForForeignCurrencyTransaction") end

  local preauth = C.flag(r.IsPreAuth, prefix .. ".InvalidRequest")
  local pool = C.flag(r.IsPoolPayment, prefix .. ".InvalidRequest")
  if preauth == 1 and not dealer.preauth then raise(prefix .. ".AuthorizationForbiddenForThisDealer") end
  if pool == 1 and not dealer.pool then raise(prefix .. ".PoolPaymentNotAvailableForDealer") end
  local _, group = C.bin_info(card.number)
  if group and inst > group.max then raise(prefix .. ".ThisInstallmentNumberNotAvailableForVirtualPos") end

  local basket = r.BasketProduct
  if basket ~= nil and basket ~= C.null then
    if type(basket) ~= "table" then raise(prefix .. ".InvalidRequest", "BasketProduct") end
    if basket[1] == nil and next(basket) ~= nil then basket = { basket } end
    if #basket > 0 then
      local total = 0
      for _, item in ipairs(basket) do
        if type(item) ~= "table" then raise(prefix .. ".InvalidRequest", "BasketProduct") end
        local pid = int(item.ProductId)
        if not ((pid and pid > 0) or str(item.ProductCode)) then raise(prefix .. ".MustBeOneOfDealerProductIdOrProductCode") end
        local price = C.amount(item.UnitPrice)
        if not price or price <= 0 then raise(prefix .. ".InvalidUnitPrice") end
        local qty = int(item.Quantity)
        if not qty or qty < 1 then raise(prefix .. ".InvalidQuantityValue") end
        total = total + price * qty
      end
      if total ~= amount then raise(prefix .. ".BasketAmountIsNotEqualPaymentAmount") end
    end
  end

  local behaviour, bank_code = C.behaviour(card.number)
  return {
    dealer = code, other = str(r.OtherTrxCode) or "", order = new_order_id(), amount = amount, authorised = amount,
    refunded = 0, currency = currency, installments = inst, status = 0, three_d = three_d,
    preauth = preauth == 1, pool = pool == 1, pool_approved = false, aged = 0, created = ngx.time(),
    first6 = card.number:sub(1, 6), last4 = card.number:sub(-4), holder = card.holder,
    description = str(r.Description) or "", trxs = {}, redirect = redirect,
    behaviour = behaviour, bank_code = bank_code,
    tokenize = tokenize == 1 and { card = card, info = type(r.CustomerInformation) == "table" and r.CustomerInformation or {} } or nil,
    card_token = stored and stored.token or nil,
  }
end

local function record(st, p)
  p.id = C.next(st, "next_id")
  st.payments[p.id] = p
  st.list[#st.list + 1] = p
end

-- Settles a payment: success, or failure with a bank code. Stores the card when asked to.
function P.settle(st, p, ok, bank_code)
  local trx = p.trxs[1]
  if ok then
    p.status = p.preauth and 1 or 2
    trx.status = 1
    if p.tokenize then
      local info = p.tokenize.info
      local cust = P.customer(st, p.dealer, str(info.DealerCustomerId), str(info.CustomerCode))
      if not cust then cust = P.new_customer(st, p.dealer, info) end
      p.card_token = P.store_card(st, p.dealer, cust, p.tokenize.card, str(info.CardName)).token
    end
  else
    p.status = 0
    trx.status = 2
    trx.code, trx.message = bank_code, C.bank_errors[bank_code] or ""
  end
  p.tokenize = nil
end

-- A validated payment, recorded with its pending sale (or pre-auth) transaction; or, for the
-- slow and 500 test cards, nil and the special reply (the 500 card records nothing).
local function open_payment(ctx, r, prefix, three_d)
  local p = new_payment(ctx, r, prefix, three_d)
  if p.behaviour == "slow" then ngx.sleep(3) end
  if p.behaviour == "error500" then
    return nil, C.special(500, "<html><body><h1>500 - Internal server error.</h1></body></html>", "text/html")
  end
  record(ctx.st, p)
  add_trx(ctx.st, p, p.preauth and TRX.preauth or TRX.sale, 0, p.amount)
  return p
end

function P.three_d(ctx, r)
  local p, special = open_payment(ctx, r, "PaymentDealer.DoDirectPayment3dRequest", true)
  if not p then return special end
  local code = core.uuid4()
  local session = { code = code, hash_code = core.uuid4():upper(), payment = p, used = false }
  ctx.st.threed[code] = session
  local url = ctx.util.base_url() .. "/moka/PaymentDealerThreeDProcess?threeDTrxCode=" .. code
  if int(r.ReturnHash) == 1 then return { Url = url, CodeForHash = session.hash_code } end
  return url
end

function P.direct(ctx, r)
  local p, special = open_payment(ctx, r, "PaymentDealer.DoDirectPayment", false)
  if not p then return special end
  local ok = p.behaviour ~= "decline"
  P.settle(ctx.st, p, ok, p.bank_code)
  local data = { IsSuccessful = ok, ResultCode = ok and "" or p.bank_code,
    ResultMessage = ok and "" or C.bank_errors[p.bank_code], VirtualPosOrderId = p.order }
  if ok and p.card_token then data.CardToken = p.card_token end
  return data
end

-- Completes a 3D session: action "approve" | "decline" | "error" (with a bank code).
-- Returns the RedirectUrl and the form fields as pairs, or nil, http status, message.
function P.complete(st, session, action, code)
  if session.used then return nil, 409, "this 3D page has already been used" end
  local p = session.payment
  local ok, bank_code
  if action == "approve" then
    ok = p.behaviour ~= "decline"; bank_code = p.bank_code
  elseif action == "decline" then
    ok, bank_code = false, "001"
  elseif action == "error" then
    if not C.bank_errors[code or ""] then return nil, 400, "code must be a bank error code 000..030" end
    ok, bank_code = false, code
  else
    return nil, 400, "action must be approve, decline or error"
  end
  session.used = true
  P.settle(st, p, ok, bank_code)
  local hash = C.sha256_hex(session.hash_code:upper() .. (ok and "T" or "F"))
  return p.redirect, {
    { "hashValue", hash },
    { "resultCode", ok and "" or bank_code },
    { "resultMessage", ok and "" or C.bank_errors[bank_code] },
    { "trxCode", p.order },
    { "OtherTrxCode", p.other },
  }, p
end

---------------------------------------------------------------------------- after-sale

-- The dealer's payment named by exactly one of VirtualPosOrderId / OtherTrxCode (or PaymentId when allowed).
local function find(ctx, r, prefix, allow_id)
  local order, other = str(r.VirtualPosOrderId), str(r.OtherTrxCode)
  local id = allow_id and str(r.PaymentId) or nil
  local given = (order and 1 or 0) + (other and 1 or 0) + (id and 1 or 0)
  if given ~= 1 then raise(prefix .. ".InvalidRequest", "give exactly one payment reference") end
  local list = ctx.st.list
  for i = #list, 1, -1 do
    local p = list[i]
    if (not ctx.dealer or p.dealer == ctx.dealer.DealerCode) and ((order and p.order == order) or (other and p.other == other)
        or (id and tostring(p.id) == id)) then
      return p
    end
  end
  raise(prefix .. ".PaymentNotFound")
end

local function done(p) return { IsSuccessful = true, ResultCode = "", ResultMessage = "", VirtualPosOrderId = p.order } end

function P.capture(ctx, r)
  local prefix = "PaymentDealer.DoCapture"
  local p = find(ctx, r, prefix)
  if p.status ~= 1 then raise(prefix .. ".PaymentIsNotPreAuth") end
  local amount = C.amount(r.Amount)
  if amount == false then raise(prefix .. ".InvalidAmount") end
  if amount == nil or amount == 0 then amount = p.authorised end
  if amount < 0 or amount > p.authorised then raise(prefix .. ".InvalidAmount") end
  add_trx(ctx.st, p, TRX.capture, 1, amount)
  p.amount = amount
  p.status = 2
  return done(p)
end

function P.void(ctx, r)
  local prefix = "PaymentDealer.DoVoid"
  if int(r.VoidRefundReason) == false then raise(prefix .. ".InvalidRequest", "VoidRefundReason") end
  if r.ClientIP ~= nil and r.ClientIP ~= C.null and type(r.ClientIP) ~= "string" then
    raise(prefix .. ".InvalidRequest", "ClientIP")
  end
  local p = find(ctx, r, prefix)
  if p.status == 3 then raise(prefix .. ".PaymentAlreadyCancelled") end
  if (p.status ~= 1 and p.status ~= 2) or p.refunded > 0 then raise(prefix .. ".PaymentCannotBeVoided") end
  if p.aged > 0 then raise(prefix .. ".VoidOnlyAllowedSameDay") end
  add_trx(ctx.st, p, TRX.void, 1, p.amount)
  p.status = 3
  return done(p)
end

function P.refund(ctx, r)
  local prefix = "PaymentDealer.DoCreateRefundRequest"
  local p = find(ctx, r, prefix)
  if p.status == 4 then raise(prefix .. ".PaymentAlreadyRefunded") end
  if p.status ~= 2 then raise(prefix .. ".PaymentCannotBeRefunded") end
  local amount = C.amount(r.Amount)
  if amount == false then raise(prefix .. ".InvalidAmount") end
  local remaining = p.amount - p.refunded
  if amount == nil or amount == 0 then amount = remaining end
  if amount < 0 then raise(prefix .. ".InvalidAmount") end
  if amount > remaining then raise(prefix .. ".RefundAmountExceedsRemainingAmount") end
  local trx = add_trx(ctx.st, p, TRX.refund, 1, amount)
  trx.refund_id = C.next(ctx.st, "next_refund")
  p.refunded = p.refunded + amount
  if p.refunded == p.amount then p.status = 4 end
  return { IsSuccessful = true, ResultCode = "", ResultMessage = "", RefundRequestId = trx.refund_id }
end

local function pool(ctx, r, prefix, approve)
  local p = find(ctx, r, prefix)
  if not p.pool then raise(prefix .. ".PaymentIsNotPoolPayment") end
  if p.status ~= 2 then raise(prefix .. ".PaymentIsNotPaid") end
  if approve and p.pool_approved then raise(prefix .. ".PoolPaymentAlreadyApproved") end
  if not approve and not p.pool_approved then raise(prefix .. ".PoolPaymentNotApproved") end
  p.pool_approved = approve
  add_trx(ctx.st, p, approve and TRX.pool_approve or TRX.pool_undo, 1, p.amount)
  return done(p)
end
function P.pool_approve(ctx, r) return pool(ctx, r, "PaymentDealer.DoApprovePoolPayment", true) end
function P.pool_undo(ctx, r) return pool(ctx, r, "PaymentDealer.UndoApprovePoolPayment", false) end

---------------------------------------------------------------------------- query

function P.detail(p)
  local sale = p.trxs[1]
  local trxs = {}
  for _, t in ipairs(p.trxs) do
    trxs[#trxs + 1] = { DealerPaymentTrxId = t.id, DealerPaymentId = p.id, TrxCode = p.order .. "-" .. t.id,
      TrxDate = date_of(t.time - p.aged * 86400), Amount = C.money(t.amount), TrxType = t.type, TrxStatus = t.status,
      VirtualPosOrderId = p.order, ResultCode = t.code, ResultMessage = t.message, RefundRequestId = t.refund_id }
  end
  return {
    PaymentDetail = {
      DealerPaymentId = p.id, OtherTrxCode = p.other, VirtualPosOrderId = p.order,
      CardHolderFullName = p.holder, CardNumberFirstSix = p.first6, CardNumberLastFour = p.last4,
      PaymentDate = date_of(p.created - p.aged * 86400), Amount = C.money(p.amount),
      AuthAmount = C.money(p.authorised), RefAmount = C.money(p.refunded), CurrencyCode = p.currency,
      InstallmentNumber = p.installments, IsThreeD = p.three_d, Description = p.description,
      PaymentStatus = p.status, TrxStatus = sale.status, IsPreAuth = p.preauth, IsPoolPayment = p.pool,
      IsPoolPaymentApproved = p.pool_approved,
      CanBeCanceled = (p.status == 1 or p.status == 2) and p.refunded == 0 and p.aged == 0,
      CanBeRefunded = p.status == 2 and p.refunded < p.amount,
      CardToken = p.card_token,
    },
    PaymentTrxDetailList = trxs,
  }
end

function P.query(ctx, r)
  return P.detail(find(ctx, r, "PaymentDealer.GetDealerPaymentTrxDetailList", true))
end

-- Admin: moves a payment's date back by `days` (void is then refused).
function P.age(ctx, r)
  local p = find(ctx, r, "Sandbox.Age", true)
  local days = int(r.Days) or 1
  if not days or days < 0 then raise("Sandbox.Age.InvalidRequest") end
  p.aged = p.aged + days
  return { DealerPaymentId = p.id, VirtualPosOrderId = p.order, AgedDays = p.aged }
end

return P
