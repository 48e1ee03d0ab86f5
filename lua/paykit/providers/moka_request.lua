--- paykit.providers.moka_request: what Moka is sent, checked and built (no network).
--
-- Every check runs before any network call and names its field ("card.number",
-- "installments", "basket[2].unit_price", ...). `payment(self, p, three_d)` checks the
-- payment parameters (the module description of `paykit.providers.moka`) and builds the
-- DoDirectPayment / DoDirectPaymentThreeD request object; the other functions are the checks
-- and builders the after-sale operations (`paykit.providers.moka_ops`) share. IP addresses go
-- through `paykit.kit.checks` (RFC-strict IPv4/IPv6), URLs through its `is_http_url`.
-- @module paykit.providers.moka_request
-- @usage
--   local request = require "paykit.providers.moka_request"
--   local body, info = request.payment(gw, {amount = "27.50", card = card, client_ip = "203.0.113.7",
--     redirect_url = "https://shop.example/return"}, true)   -- body: a paykit.gateway.object
local errors = require "paykit.errors"
local money = require "paykit.money"
local gateway = require "paykit.gateway"
local checks = require "paykit.kit.checks"
local luhn = require("paykit.redact").luhn

local _M = {}

--- The currencies Moka takes (TRY is written TL).
_M.CURRENCIES = { TL = true, USD = true, EUR = true, GBP = true }

local V = errors.validation
local obj, put, dec = gateway.object, gateway.put, gateway.decimal

local function is_blank(s) return s == nil or s == "" end

local function utf8_len(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end
-- ------------------------------------------------------------------------------------
-- validation helpers (each returns the wire value or nil, err)

local function currency_of(self, c)
  c = c or self.currency
  if type(c) ~= "string" then return nil, V("currency", "invalid", "currency must be TL, USD, EUR or GBP") end
  c = c:upper()
  if c == "TRY" then c = "TL" end
  if not _M.CURRENCIES[c] then
    return nil, V("currency", "unsupported_currency", "Moka takes TL (TRY), USD, EUR or GBP, not " .. c)
  end
  return c
end

local function amount_of(t, key, currency, field, allow_zero)
  local minor, text = money.read(t, key, currency == "TL" and "TRY" or currency, field, not allow_zero)
  if not minor then return nil, text end
  return text, minor
end

-- stored: a card to store, which may (and then must) come without a CVC
local function check_card(self, card, stored)
  local field = "card"
  if type(card) ~= "table" then return nil, V(field, "required", field .. " is required") end
  local number = card.number
  if type(number) == "number" then
    return nil, V(field .. ".number", "invalid", "the card number must be a string of digits")
  end
  if type(number) ~= "string" or number == "" then
    return nil, V(field .. ".number", "required", "the card number is required")
  end
  number = number:gsub("[ %-]", "")
  if not number:match("^%d+$") then
    return nil, V(field .. ".number", "not_digits", "the card number must contain only digits")
  end
  if #number < 12 or #number > 19 then
    return nil, V(field .. ".number", "invalid_length", "the card number must have 12 to 19 digits")
  end
  if not luhn(number) then
    return nil, V(field .. ".number", "invalid_luhn", "the card number fails the Luhn check (mistyped?)")
  end
  local m = tonumber(card.exp_month)
  if not m or m ~= math.floor(m) or m < 1 or m > 12 or not tostring(card.exp_month):match("^%d%d?$") then
    return nil, V(field .. ".exp_month", "invalid", "the expiry month must be 1 to 12")
  end
  local ys = tostring(card.exp_year or "")
  if not (ys:match("^%d%d%d%d$") or ys:match("^%d%d$")) then
    return nil, V(field .. ".exp_year", "invalid", "the expiry year must be YYYY (or YY)")
  end
  local y = tonumber(ys)
  if y < 100 then y = 2000 + y end
  local now = os.date("!*t", self.clock())
  if y < now.year or (y == now.year and m < now.month) then
    return nil, V(field .. ".exp_year", "expired", "the card has expired")
  end
  local out = { number = number, exp_month = string.format("%02d", m), exp_year = string.format("%04d", y) }
  if card.cvc ~= nil or not stored then
    local cvc = card.cvc
    if type(cvc) ~= "string" or not cvc:match("^%d%d%d%d?$") then
      return nil, V(field .. ".cvc", "invalid", "the CVC must be 3 or 4 digits")
    end
    out.cvc = cvc
  end
  if card.holder ~= nil then
    if type(card.holder) ~= "string" or utf8_len(card.holder) > 100 then
      return nil, V(field .. ".holder", "invalid", "the card holder must be a string of at most 100 characters")
    end
    out.holder = card.holder
  end
  return out
end

-- p[key] absent, or a string of at most max characters without control characters
-- (multiline: tab, CR and LF allowed). Returns true | nil, err naming field (default key).
local function check_len(p, key, max, field, multiline)
  local v = p[key]
  field = field or key
  if v == nil then return true end
  if type(v) ~= "string" then return nil, V(field, "invalid", field .. " must be a string") end
  if utf8_len(v) > max then
    return nil, V(field, "too_long", field .. " must be at most " .. max .. " characters")
  end
  if (multiline and v:find("[%z\1-\8\11\12\14-\31\127]")) or (not multiline and v:find("%c")) then
    return nil, V(field, "control_character", field .. " must not contain control characters")
  end
  return true
end

-- Each of keys in t (absent, or a string of at most max characters), fields named prefix .. key.
local function check_texts(t, keys, max, prefix)
  for _, k in ipairs(keys) do
    local ok, err = check_len(t, k, max, prefix .. k)
    if not ok then return nil, err end
  end
  return true
end

-- A yes/no option: absent, a boolean, or 0/1. Returns 0 or 1 | nil, err.
local function flag_of(p, key)
  local v = p[key]
  if v == nil or v == false or v == 0 then return 0 end
  if v == true or v == 1 then return 1 end
  return nil, V(key, "invalid", key .. " must be true or false")
end

-- An identifier Moka gave (DealerPaymentId, DealerCustomerId): a string without control
-- characters or an integer. Returns true | nil, err.
local function check_id(v, field)
  if v == nil then return true end
  if type(v) == "number" and v == math.floor(v) and v >= 0 then return true end
  if type(v) == "string" and #v <= 64 and not v:find("%c") then return true end
  return nil, V(field, "invalid", field .. " must be a string (or an integer id) of at most 64 characters")
end

-- exactly one of p[a] and p[b] given (not blank): returns the name of the one given | nil, err
-- (the first name "ambiguous" when both are given, the second "required" when neither is)
local function one_of(p, a, b, message)
  local has_a, has_b = not is_blank(p[a]), not is_blank(p[b])
  if has_a == has_b then return nil, V(has_a and a or b, has_a and "ambiguous" or "required", message) end
  return has_a and a or b
end

-- exactly one of order_id (VirtualPosOrderId) / reference (OtherTrxCode)
local function one_reference(p)
  local ok, err = one_of(p, "order_id", "reference",
    "give exactly one of order_id (Moka's VirtualPosOrderId) and reference (your OtherTrxCode)")
  if not ok then return nil, err end
  for _, k in ipairs { "order_id", "reference" } do
    ok, err = check_len(p, k, 64)
    if not ok then return nil, err end
  end
  return true
end

local function put_reference(o, p)
  if not is_blank(p.order_id) then put(o, "VirtualPosOrderId", p.order_id) end
  if not is_blank(p.reference) then put(o, "OtherTrxCode", p.reference) end
  return o
end

-- The ClientIP of a call: p.client_ip, else the instance's default; an IPv4 or IPv6 address
-- in its strict text form (dotted quad without leading zeros, RFC 4291 groups), never made up.
local function client_ip(self, p)
  local ip = p.client_ip
  if ip == nil then ip = self.client_ip end
  if ip == nil then
    return nil, V("client_ip", "required", "client_ip (the buyer's IP address) is required")
  end
  local err = checks.ip(ip, "client_ip")
  if err then return nil, err end
  return ip
end

local PERSON = { "first_name", "last_name", "birth_date", "gsm", "email", "address", "card_name",
  "customer_code", "customer_password" }

-- The person fields of CustomerInformation and AddCustomerWithCard, each absent or a short
-- string (gender also 0/1/2 as a number). Returns true | nil, err (field prefix .. name).
local function check_person(c, prefix)
  local ok, err = check_texts(c, PERSON, 100, prefix)
  if not ok then return nil, err end
  local gd = c.gender
  if gd ~= nil and not ((type(gd) == "string" and #gd <= 2 and not gd:find("%c"))
      or (type(gd) == "number" and gd == math.floor(gd) and gd >= 0 and gd <= 9)) then
    return nil, V(prefix .. "gender", "invalid", prefix .. "gender must be a short string or a number")
  end
  return check_id(c.dealer_customer_id, prefix .. "dealer_customer_id")
end

-- The person fields of CustomerInformation and AddCustomerWithCard ("" when absent).
local function put_person(o, c)
  put(o, "FirstName", c.first_name or ""); put(o, "LastName", c.last_name or "")
  put(o, "Gender", c.gender and tostring(c.gender) or ""); put(o, "BirthDate", c.birth_date or "")
  put(o, "GsmNumber", c.gsm or ""); put(o, "Email", c.email or ""); put(o, "Address", c.address or "")
  return o
end

-- The payment request (DoDirectPayment / DoDirectPaymentThreeD): validated, as a JSON object.
--- The payment request (DoDirectPayment / DoDirectPaymentThreeD), checked and built.
-- @tparam table self the instance (its currency, client_ip, software, clock)
-- @tparam table p the payment parameters
-- @tparam boolean three_d whether it is the 3D request (redirect_url required)
-- @treturn table the request object (a `paykit.gateway.object`)
-- @treturn table info `amount`, `currency`, `reference`, `installments`, `pre_auth`
-- @return[2] nil
-- @return[2] a validation error naming the field
function _M.payment(self, p, three_d)
  if type(p) ~= "table" then return nil, V("params", "required", "payment parameters are required") end
  local currency, err = currency_of(self, p.currency)
  if not currency then return nil, err end
  local amount, minor = amount_of(p, "amount", currency, "amount")
  if not amount then return nil, minor end

  local has_card, has_token = p.card ~= nil, not is_blank(p.card_token)
  if has_card == has_token then
    return nil, V(has_card and "card_token" or "card", has_card and "ambiguous" or "required",
      "give either card (number, expiry, CVC) or card_token, not both")
  end
  local card
  if has_card then
    card, err = check_card(self, p.card)
    if not card then return nil, err end
  elseif type(p.card_token) ~= "string" or #p.card_token > 64 or p.card_token:find("[%c%s]") then
    return nil, V("card_token", "invalid", "card_token must be a stored card's CardToken (a string of at most 64 characters)")
  elseif p.tokenize then
    return nil, V("tokenize", "card_token_with_save_card", "a card token cannot be used when the card is to be stored")
  end

  local inst = p.installments or 1
  if type(inst) ~= "number" or inst ~= math.floor(inst) or inst < 0 or inst > 12 then
    return nil, V("installments", "invalid", "installments must be an integer from 0 to 12 (0 or 1 = single payment)")
  end
  if inst > 1 and currency ~= "TL" then
    return nil, V("installments", "foreign_currency", "installments are not possible in " .. currency .. ": only in TL")
  end
  local ip
  ip, err = client_ip(self, p)
  if not ip then return nil, err end
  local ok
  ok, err = check_len(p, "software", 30); if not ok then return nil, err end
  ok, err = check_len(p, "description", 200, nil, true); if not ok then return nil, err end
  ok, err = check_len(p, "sub_merchant", 100); if not ok then return nil, err end
  ok, err = check_len(p, "reference", 64); if not ok then return nil, err end
  local flags = {}
  for _, k in ipairs { "pool", "pre_auth", "tokenize" } do
    flags[k], err = flag_of(p, k)
    if not flags[k] then return nil, err end
  end
  if three_d then
    local u = p.redirect_url
    if not checks.is_http_url(u) then
      return nil, V("redirect_url", u == nil and "required" or "invalid", "redirect_url must be an absolute http(s) URL")
    end
    if p.redirect_type ~= nil and p.redirect_type ~= 0 and p.redirect_type ~= 1 then
      return nil, V("redirect_type", "invalid", "redirect_type must be 0 (page) or 1 (iframe)")
    end
  end
  local iid = p.integrator_id
  if iid ~= nil and (type(iid) ~= "number" or iid ~= math.floor(iid) or iid < 0 or iid > 255) then
    return nil, V("integrator_id", "invalid", "integrator_id must be an integer from 0 to 255 (Moka's tinyint)")
  end
  if p.buyer ~= nil then
    if type(p.buyer) ~= "table" then return nil, V("buyer", "invalid", "buyer must be a table") end
    ok, err = check_texts(p.buyer, { "full_name", "gsm", "email", "address" }, 200, "buyer.")
    if not ok then return nil, err end
  end
  if p.customer ~= nil then
    if type(p.customer) ~= "table" then return nil, V("customer", "invalid", "customer must be a table") end
    ok, err = check_person(p.customer, "customer.")
    if not ok then return nil, err end
  end

  -- basket: total must equal the amount
  local basket
  if p.basket ~= nil then
    if type(p.basket) ~= "table" or #p.basket == 0 then
      return nil, V("basket", "invalid", "basket must be a non-empty list of products")
    end
    basket = {}
    local total = 0
    for i, item in ipairs(p.basket) do
      local f = "basket[" .. i .. "]"
      if type(item) ~= "table" then return nil, V(f, "invalid", f .. " must be a table") end
      if is_blank(item.product_id) and is_blank(item.product_code) then
        return nil, V(f .. ".product_code", "required", "each basket product needs product_id or product_code")
      end
      ok, err = check_id(item.product_id, f .. ".product_id"); if not ok then return nil, err end
      ok, err = check_len(item, "product_code", 100, f .. ".product_code"); if not ok then return nil, err end
      local price, pminor = amount_of(item, "unit_price", currency, f .. ".unit_price")
      if not price then return nil, pminor end
      local q = item.quantity or 1
      if type(q) ~= "number" or q ~= math.floor(q) or q < 1 then
        return nil, V(f .. ".quantity", "invalid", "quantity must be a positive integer")
      end
      total = total + pminor * q
      local b = obj()
      if not is_blank(item.product_id) then put(b, "ProductId", item.product_id) end
      if not is_blank(item.product_code) then put(b, "ProductCode", item.product_code) end
      put(b, "UnitPrice", dec(price)); put(b, "Quantity", q)
      basket[#basket + 1] = b
    end
    if total ~= minor then
      return nil, V("basket", "total_mismatch", "the basket total " .. money.format(total, "TRY") ..
        " does not equal the amount " .. amount)
    end
  end

  local r = obj()
  if card then
    put(r, "CardHolderFullName", card.holder or "")
    put(r, "CardNumber", card.number); put(r, "ExpMonth", card.exp_month); put(r, "ExpYear", card.exp_year)
    put(r, "CvcNumber", card.cvc or "")
    put(r, "CardToken", "")
  else
    put(r, "CardHolderFullName", ""); put(r, "CardNumber", ""); put(r, "ExpMonth", ""); put(r, "ExpYear", "")
    put(r, "CvcNumber", "")
    put(r, "CardToken", p.card_token)
  end
  put(r, "Amount", dec(amount))
  put(r, "Currency", currency)
  put(r, "InstallmentNumber", inst)
  put(r, "ClientIP", ip)
  put(r, "OtherTrxCode", p.reference or "")
  put(r, "SubMerchantName", p.sub_merchant or "")
  put(r, "IsPoolPayment", flags.pool)
  put(r, "IsPreAuth", flags.pre_auth)
  put(r, "IsTokenized", flags.tokenize)
  if p.integrator_id then put(r, "IntegratorId", p.integrator_id) end
  put(r, "Software", p.software or self.software)
  put(r, "Description", p.description or "")
  if three_d then
    put(r, "ReturnHash", 1)
    put(r, "RedirectUrl", p.redirect_url)
    put(r, "RedirectType", p.redirect_type or 0)
  end
  if p.buyer ~= nil then
    local b = p.buyer
    local o = obj()
    put(o, "BuyerFullName", b.full_name); put(o, "BuyerGsmNumber", b.gsm)
    put(o, "BuyerEmail", b.email); put(o, "BuyerAddress", b.address)
    put(r, "BuyerInformation", o)
  end
  if basket then put(r, "BasketProduct", basket) end
  if p.customer ~= nil then
    local c = p.customer
    local o = obj()
    put(o, "DealerCustomerId", c.dealer_customer_id or ""); put(o, "CustomerCode", c.customer_code or "")
    put_person(o, c)
    put(o, "CardName", c.card_name or "")
    put(r, "CustomerInformation", o)
  end
  return r, { amount = amount, currency = currency, reference = p.reference, installments = inst,
    pre_auth = flags.pre_auth == 1 }
end
local function check_bin(bin)
  if type(bin) ~= "string" or not bin:match("^%d%d%d%d%d%d%d?%d?$") then
    return nil, V("bin", "invalid", "bin must be the first 6 to 8 digits of a card, as a string")
  end
  return true
end

-- ------------------------------------------------------------------------------------
-- stored cards (DealerCustomer)

local function customer_ref(p, o)
  local which, err = one_of(p, "dealer_customer_id", "customer_code", "give exactly one of dealer_customer_id and customer_code")
  if not which then return nil, err end
  local ok
  if which == "dealer_customer_id" then ok, err = check_id(p.dealer_customer_id, "dealer_customer_id")
  else ok, err = check_len(p, "customer_code", 100) end
  if not ok then return nil, err end
  if which == "dealer_customer_id" then put(o, "DealerCustomerId", p.dealer_customer_id)
  else put(o, "CustomerCode", p.customer_code) end
  return o
end

local function stored_card(self, p, o)
  local c, err = check_card(self, p.card, true)
  if not c then return nil, err end
  if c.cvc then return nil, V("card.cvc", "not_stored", "a CVC is never stored: leave card.cvc out") end
  put(o, "CardHolderFullName", c.holder or ""); put(o, "CardNumber", c.number)
  put(o, "ExpMonth", c.exp_month); put(o, "ExpYear", c.exp_year)
  local ok
  ok, err = check_len(p, "card_name", 50); if not ok then return nil, err end
  put(o, "CardName", p.card_name or "")
  return o
end

--- Creates a stored-card customer, optionally with a card (AddCustomerWithCard).
-- Not retried once it may have been sent.
-- @tparam table p `customer_code` (required), `customer_password`, `first_name`, `last_name`,
--   `gender`, `birth_date`, `gsm`, `email`, `address`; `card` `{number=, exp_month=,
--   exp_year=, holder=}` (never a CVC) and `card_name`
-- @treturn table Moka's Data block (DealerCustomer, CardList)
-- @return[2] nil


--- The wire currency of a call (TRY is TL): c or the instance's default.
-- (self, c) -> "TL" | nil, err
-- @function currency_of
_M.currency_of = currency_of

--- An amount of t[key] (decimal text or key.."_minor"), exact in currency.
-- (t, key, currency, field, allow_zero) -> text, minor | nil, err
-- @function amount_of
_M.amount_of = amount_of

--- A card (number, expiry, CVC, holder) checked; stored: a card to store (no CVC).
-- (self, card, stored) -> card | nil, err
-- @function check_card
_M.check_card = check_card

--- p[key] absent, or text of at most max characters without control characters.
-- (p, key, max, field, multiline) -> true | nil, err
-- @function check_len
_M.check_len = check_len

--- Each of keys in t checked with check_len, fields named prefix .. key.
-- (t, keys, max, prefix) -> true | nil, err
-- @function check_texts
_M.check_texts = check_texts

--- A yes/no option (absent, a boolean, 0 or 1) as 0 or 1.
-- (p, key) -> 0 | 1 | nil, err
-- @function flag_of
_M.flag_of = flag_of

--- An identifier Moka gave: a string of at most 64 characters or an integer.
-- (v, field) -> true | nil, err
-- @function check_id
_M.check_id = check_id

--- Exactly one of p[a] and p[b]: the name of the one given.
-- (p, a, b, message) -> name | nil, err
-- @function one_of
_M.one_of = one_of

--- Exactly one of order_id (VirtualPosOrderId) and reference (OtherTrxCode).
-- (p) -> true | nil, err
-- @function one_reference
_M.one_reference = one_reference

--- Puts VirtualPosOrderId / OtherTrxCode of p into the request object o.
-- (o, p) -> o
-- @function put_reference
_M.put_reference = put_reference

--- The ClientIP of a call: p.client_ip, else the instance's; never made up.
-- (self, p) -> ip | nil, err
-- @function client_ip
_M.client_ip = client_ip

--- The person fields of CustomerInformation / AddCustomerWithCard checked.
-- (c, prefix) -> true | nil, err
-- @function check_person
_M.check_person = check_person

--- Puts the person fields of c into o ("" when absent).
-- (o, c) -> o
-- @function put_person
_M.put_person = put_person

--- A BIN: the first 6 to 8 digits of a card, as a string.
-- (bin) -> true | nil, err
-- @function check_bin
_M.check_bin = check_bin

--- Puts DealerCustomerId or CustomerCode (exactly one) into o.
-- (p, o) -> o | nil, err
-- @function customer_ref
_M.customer_ref = customer_ref

--- Puts a card to store (never a CVC) and its CardName into o.
-- (self, p, o) -> o | nil, err
-- @function stored_card
_M.stored_card = stored_card

--- Whether s is nil or "".
-- (s) -> boolean
-- @function is_blank
_M.is_blank = is_blank

--- The number of UTF-8 characters of s.
-- (s) -> integer
-- @function utf8_len
_M.utf8_len = utf8_len

return _M
