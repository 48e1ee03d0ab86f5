--- paykit.providers.moka_checks: the checks of what Moka is sent (no network, nothing built).
--
-- Each check names its field ("card.number", "installments", "basket[2].unit_price", ...)
-- and runs before any network call; `paykit.providers.moka_request` builds the request
-- objects from what they return, and `paykit.providers.moka_ops` uses them for the
-- after-sale calls. IP addresses go through `paykit.kit.checks` (RFC-strict IPv4/IPv6).
-- `PAYMENT_FIELDS` is the set of fields the payment calls take: `fields(p, what)` refuses any
-- other by its name (a typo such as `reurn_url` is not ignored).
-- @module paykit.providers.moka_checks
-- @usage
--   local C = require "paykit.providers.moka_checks"
--   local card, err = C.check_card(gw, {number = "4111111111111111", exp_month = "12",
--     exp_year = "2030", cvc = "000"})
local errors = require "paykit.errors"
local money = require "paykit.money"
local checks = require "paykit.kit.checks"
local kit_fields = require("paykit.kit").fields
local core = require "paykit.core"
-- one C pass each (a Lua pattern costs a match per byte on Lua 5.4)
local unknown_key, digits_luhn, text_plain = core.json_unknown_key, core.digits_luhn, core.text_plain

local _M = {}

--- The currencies Moka takes (TRY is written TL).
_M.CURRENCIES = { TL = true, USD = true, EUR = true, GBP = true }

local V = errors.validation

local function is_blank(s) return s == nil or s == "" end

local find, format = string.find, string.format

local function utf8_len(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

-- "01" .. "12": a checked month as Moka writes it
local MONTHS = {}
for m = 1, 12 do MONTHS[m] = format("%02d", m) end
-- an expiry month's text ("1".."12", "01".."09") -> its number (a number given is looked up
-- by its tostring: 12 is "12"; 12.0 is "12.0" on Lua 5.4, refused there as before)
local MONTH_OF = {}
for m = 1, 12 do MONTH_OF[tostring(m)], MONTH_OF[format("%02d", m)] = m, m end

-- The UTC year and month of a clock reading, kept for the last reading (the clock moves once a
-- second; os.date makes a table each call).
local last_t, last_year, last_month
local function year_month(t)
  if t ~= last_t then
    local d = os.date("!*t", t)
    last_t, last_year, last_month = t, d.year, d.month
  end
  return last_year, last_month
end
-- ------------------------------------------------------------------------------------
-- validation helpers (each returns the wire value or nil, err)

-- a wire currency as given (the usual spellings): no upper() per call
local WIRE_CURRENCY = { TL = "TL", TRY = "TL", USD = "USD", EUR = "EUR", GBP = "GBP" }

local function currency_of(self, c)
  c = c or self.currency
  local w = WIRE_CURRENCY[c]
  if w then return w end
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
local function card_fields(self, card, stored)
  local field = "card"
  if type(card) ~= "table" then return nil, V(field, "required", field .. " is required") end
  local number = card.number
  if type(number) == "number" then
    return nil, V(field .. ".number", "invalid", "the card number must be a string of digits")
  end
  if type(number) ~= "string" or number == "" then
    return nil, V(field .. ".number", "required", "the card number is required")
  end
  local digits, luhn_ok = digits_luhn(number)
  if not digits and find(number, "[ %-]") then
    number = number:gsub("[ %-]", "")
    digits, luhn_ok = digits_luhn(number)
  end
  if not digits then
    return nil, V(field .. ".number", "not_digits", "the card number must contain only digits")
  end
  if #number < 12 or #number > 19 then
    return nil, V(field .. ".number", "invalid_length", "the card number must have 12 to 19 digits")
  end
  if not luhn_ok then
    return nil, V(field .. ".number", "invalid_luhn", "the card number fails the Luhn check (mistyped?)")
  end
  local em = card.exp_month
  local m = MONTH_OF[em]
  if not m and type(em) == "number" then m = MONTH_OF[tostring(em)] end
  if not m then
    return nil, V(field .. ".exp_month", "invalid", "the expiry month must be 1 to 12")
  end
  local ys = card.exp_year
  if type(ys) ~= "string" then ys = tostring(ys or "") end
  if (#ys ~= 4 and #ys ~= 2) or not digits_luhn(ys) then
    return nil, V(field .. ".exp_year", "invalid", "the expiry year must be YYYY (or YY)")
  end
  local y = tonumber(ys)
  if y < 100 then y = 2000 + y end
  local year, month = year_month(self.clock())
  if y < year or (y == year and m < month) then
    return nil, V(field .. ".exp_year", "expired", "the card has expired")
  end
  local cvc, holder = card.cvc, card.holder
  if cvc ~= nil or not stored then
    if type(cvc) ~= "string" or (#cvc ~= 3 and #cvc ~= 4) or not digits_luhn(cvc) then
      return nil, V(field .. ".cvc", "invalid", "the CVC must be 3 or 4 digits")
    end
  end
  if holder ~= nil then
    if type(holder) ~= "string" or (#holder > 100 and utf8_len(holder) > 100) then
      return nil, V(field .. ".holder", "invalid", "the card holder must be a string of at most 100 characters")
    end
  end
  return number, MONTHS[m], #ys == 4 and ys or format("%04d", y), cvc, holder
end

-- The same as a table {number=, exp_month=, exp_year=, cvc=, holder=} (cvc and holder when given).
local function check_card(self, card, stored)
  local number, exp_month, exp_year, cvc, holder = card_fields(self, card, stored)
  if not number then return nil, exp_month end
  return { number = number, exp_month = exp_month, exp_year = exp_year, cvc = cvc, holder = holder }
end

-- p[key] absent, or a string of at most max characters without control characters
-- (multiline: tab, CR and LF allowed). Returns true | nil, err naming field (default key).
local function check_len(p, key, max, field, multiline)
  local v = p[key]
  field = field or key
  if v == nil then return true end
  if type(v) ~= "string" then return nil, V(field, "invalid", field .. " must be a string") end
  if #v > max and utf8_len(v) > max then -- (never more characters than bytes)
    return nil, V(field, "too_long", field .. " must be at most " .. max .. " characters")
  end
  if not text_plain(v, multiline) then
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


local function check_bin(bin)
  if type(bin) ~= "string" or not bin:match("^%d%d%d%d%d%d%d?%d?$") then
    return nil, V("bin", "invalid", "bin must be the first 6 to 8 digits of a card, as a string")
  end
  return true
end

--- The fields of a payment call's table (`start_3d`, `pay`; `purchase` takes also `three_d`
-- and `return_url`): the payment parameters of `paykit.providers.moka`.
_M.PAYMENT_FIELDS = {}
for _, k in ipairs { "amount", "amount_minor", "currency", "card", "card_token", "client_ip", "reference",
  "redirect_url", "redirect_type", "installments", "pre_auth", "pool", "tokenize", "description",
  "sub_merchant", "software", "integrator_id", "basket", "buyer", "customer" } do
  _M.PAYMENT_FIELDS[k] = true
end

--- Refuses a field of a payment call's table that is not in `PAYMENT_FIELDS` (or `extra`),
-- naming it and the closest known one ("unknown field reurn_url in purchase; did you mean
-- return_url?").
-- @tparam table p the call's table
-- @tparam string what the call's name ("start_3d")
-- @tparam[opt] table extra more allowed names (a set)
-- @return nil or a validation error (`unknown_field`, the field named)
function _M.fields(p, what, extra)
  local allowed = _M.PAYMENT_FIELDS
  if extra then
    allowed = {}
    for k in pairs(_M.PAYMENT_FIELDS) do allowed[k] = true end
    for k in pairs(extra) do allowed[k] = true end
  end
  -- one pass in C; the kit's message (with its "did you mean") only for a table that has one
  if unknown_key(p, allowed) == nil then return nil end
  local _, err = kit_fields(p, allowed, what)
  return err
end

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

--- The same checks, the card's wire values as values (no table): number, exp_month, exp_year,
-- cvc, holder (cvc and holder nil when not given).
-- (self, card, stored) -> number, exp_month, exp_year, cvc, holder | nil, err
-- @function card_fields
_M.card_fields = card_fields

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

--- The ClientIP of a call: p.client_ip, else the instance's; never made up.
-- (self, p) -> ip | nil, err
-- @function client_ip
_M.client_ip = client_ip

--- The person fields of CustomerInformation / AddCustomerWithCard checked.
-- (c, prefix) -> true | nil, err
-- @function check_person
_M.check_person = check_person

--- A BIN: the first 6 to 8 digits of a card, as a string.
-- (bin) -> true | nil, err
-- @function check_bin
_M.check_bin = check_bin

--- Whether s is nil or "".
-- (s) -> boolean
-- @function is_blank
_M.is_blank = is_blank

--- The number of UTF-8 characters of s.
-- (s) -> integer
-- @function utf8_len
_M.utf8_len = utf8_len

return _M
