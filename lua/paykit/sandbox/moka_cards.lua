-- The Moka simulator's card services: GetBankCardInformation, DoCalcPaymentTable and the
-- stored cards of /DealerCustomer/*. The contract is documented at the top of paykit/sandbox/moka.lua.
local core = require "paykit.core"
local C = require "paykit.sandbox.moka_common"
local P = require "paykit.sandbox.moka_pay"

local K = {}

local raise, str = C.raise, C.str

---------------------------------------------------------------------------- BINs and installments

function K.bank_card(_, r)
  local prefix = "PaymentDealer.GetBankCardInformation"
  local bin = str(r.BinNumber)
  if not bin or not bin:match("^%d+$") or #bin < 6 then raise(prefix .. ".InvalidRequest") end
  local b, g = C.bin_info(bin)
  if not b then raise(prefix .. ".BinNumberNotFound") end
  return { BankName = g.bank, BankCode = g.code, BinNumber = bin:sub(1, 6), CardType = b.CardType,
    CreditType = b.CreditType, ProductCategory = b.ProductCategory, GroupName = g.name }
end

-- Half-up rounding of minor * bp / 10000 in exact integer steps (minor < 2^53 / 10000 checked by caller).
local function commission(minor, bp)
  return math.floor((minor * bp + 5000) / 10000)
end

function K.calc_table(ctx, r)
  local prefix = "PaymentDealer.DoCalcPaymentTable"
  local amount = C.amount(r.OrderAmount)
  if not amount or amount <= 0 or amount > 9e11 then raise(prefix .. ".InvalidRequest", "OrderAmount") end
  local currency = str(r.Currency) or "TL"
  if currency ~= "TL" and currency ~= "USD" and currency ~= "EUR" and currency ~= "GBP" then
    raise(prefix .. ".InvalidCurrencyCode")
  end
  if currency ~= "TL" and not ctx.dealer.foreign_currency then raise(prefix .. ".ForeignCurrencyNotAvailableForThisDealer") end
  local included = C.flag(r.IsIncludedCommissionAmount, prefix .. ".InvalidRequest") == 1
  C.flag(r.IsThreeD, prefix .. ".InvalidRequest")
  local groups = {}
  local bin = str(r.BinNumber)
  if bin then
    if not bin:match("^%d+$") or #bin < 6 then raise(prefix .. ".InvalidRequest", "BinNumber") end
    local _, g = C.bin_info(bin)
    if not g then raise(prefix .. ".BinNumberNotFound") end
    groups[1] = g
  else
    for _, g in ipairs(C.groups) do if g.name ~= "Sandbox" then groups[#groups + 1] = g end end
  end
  local out = {}
  for _, g in ipairs(groups) do
    local rows = {}
    local max = currency == "TL" and g.max or 1
    for n = 1, max do
      local bp = g.rate + (n - 1) * g.step
      local fee = commission(amount, bp)
      local total = included and amount + fee or amount
      local per = math.floor(total / n)
      rows[#rows + 1] = { InstallmentNumber = n, DealerCommissionRate = "@num:" .. core.money_format(bp, 2),
        DealerCommissionAmount = C.money(fee), Amount = C.money(total), PerInstallmentAmount = C.money(per),
        FirstInstallmentAmount = C.money(total - per * (n - 1)) }
    end
    out[#out + 1] = { BankInfoName = g.name, BankName = g.bank, BankCode = g.code, PaymentInstallmentInfoList = rows }
  end
  return { Currency = currency, OrderAmount = C.money(amount), BankPaymentInstallmentInfoList = out }
end

---------------------------------------------------------------------------- stored cards

local function customer_out(c)
  local n = 0
  for _, card in ipairs(c.cards) do if not card.removed then n = n + 1 end end
  return { DealerCustomerId = c.DealerCustomerId, CustomerCode = c.CustomerCode, FirstName = c.FirstName,
    LastName = c.LastName, Gender = c.Gender, BirthDate = c.BirthDate, GsmNumber = c.GsmNumber,
    Email = c.Email, Address = c.Address, CardListCount = n }
end

local function card_out(s)
  return { CardToken = s.token, CardHolderFullName = s.holder, CardNumberFirstSix = s.number:sub(1, 6),
    CardNumberLastFour = s.number:sub(-4), ExpMonth = s.month, ExpYear = s.year, CardName = s.name,
    CardType = C.card_type(s.number) }
end

local function permitted(ctx, op)
  if not ctx.dealer.tokenization then raise("DealerCustomer." .. op .. ".TokenizationNotAvailableForDealer") end
end

-- The string field r[field], which op requires (InvalidRequest naming it when it is missing).
local function required(r, op, field)
  local v = str(r[field])
  if not v then raise("DealerCustomer." .. op .. ".InvalidRequest", field) end
  return v
end

local function read_card(r, op)
  for _, f in ipairs({ "CardHolderFullName", "CardName" }) do
    if type(r[f]) == "table" then raise("DealerCustomer." .. op .. ".InvalidRequest", f) end
  end
  local card = C.card(r.CardNumber, r.ExpMonth, r.ExpYear, nil, r.CardHolderFullName, false)
  if not card then raise("DealerCustomer.CheckCardInfo.InvalidCardInfo") end
  return card
end

local function find_customer(ctx, r, op)
  local id, code = str(r.DealerCustomerId), str(r.CustomerCode)
  if not id and not code then raise("DealerCustomer." .. op .. ".InvalidRequest", "DealerCustomerId or CustomerCode") end
  local c = P.customer(ctx.st, ctx.dealer.DealerCode, id, (not id) and code or nil)
  if not c then raise("DealerCustomer." .. op .. ".CustomerNotFound") end
  return c
end

function K.add_customer_with_card(ctx, r)
  local op = "AddCustomerWithCard"
  permitted(ctx, op)
  local code = required(r, op, "CustomerCode")
  for _, k in ipairs({ "CustomerCode", "FirstName", "LastName", "Email" }) do
    if type(r[k]) == "table" then raise("DealerCustomer." .. op .. ".InvalidRequest", k) end
  end
  if P.customer(ctx.st, ctx.dealer.DealerCode, nil, code) then raise("DealerCustomer." .. op .. ".CustomerCodeAlreadyExists") end
  local card = str(r.CardNumber) and read_card(r, op) or nil
  local c = P.new_customer(ctx.st, ctx.dealer.DealerCode, r)
  local stored = card and P.store_card(ctx.st, ctx.dealer.DealerCode, c, card, str(r.CardName))
  return { DealerCustomer = customer_out(c), Card = stored and card_out(stored) or C.null }
end

function K.add_card(ctx, r)
  local op = "AddCard"
  permitted(ctx, op)
  local c = find_customer(ctx, r, op)
  local card = read_card(r, op)
  local stored = P.store_card(ctx.st, ctx.dealer.DealerCode, c, card, str(r.CardName))
  return { DealerCustomer = customer_out(c), Card = card_out(stored) }
end

function K.card_list(ctx, r)
  local op = "GetCardList"
  permitted(ctx, op)
  local c = find_customer(ctx, r, op)
  local list = {}
  for _, s in ipairs(c.cards) do if not s.removed then list[#list + 1] = card_out(s) end end
  return { DealerCustomer = customer_out(c), CardListCount = #list, CardList = #list > 0 and list or C.EMPTY_ARRAY }
end

function K.remove_card(ctx, r)
  local op = "RemoveCard"
  permitted(ctx, op)
  local token = required(r, op, "CardToken")
  local s = P.card_token(ctx.st, ctx.dealer.DealerCode, token)
  if not s then raise("DealerCustomer." .. op .. ".CardTokenNotFound") end
  s.removed = true
  return true
end

return K
