--- paykit.money: exact amounts. An amount is a decimal string ("27.50"); an amount in minor
-- units is given apart, as an integer (`amount_minor = 2750`). A Lua number is never read
-- as an amount: `amount = 27` could mean 27.00 or 0.27, so it is refused.
--
-- Currencies are ISO 4217 codes (plus Moka's "TL"), matched case-insensitively.
-- @module paykit.money
-- @usage
--   local money = require "paykit.money"
--   local minor, dec = money.parse("27.5", "TRY")   --> 2750, "27.50"
--   money.parse(27, "TRY")                           --> nil, validation error (field "amount")
--   money.parse_minor(2750, "TRY")                   --> 2750, "27.50"
--   money.read({amount_minor = 2750}, "amount", "TRY") --> 2750, "27.50"
--   money.format(2750, "USD")                        --> "27.50"
local errors = require "paykit.errors"

local _M = {}

-- ISO 4217 minor-unit exponents (plus Moka's "TL" for the Turkish lira).
local EXPONENTS = {
  TRY = 2, TL = 2, USD = 2, EUR = 2, GBP = 2, CHF = 2, CAD = 2, AUD = 2, NZD = 2,
  SEK = 2, NOK = 2, DKK = 2, PLN = 2, CZK = 2, HUF = 2, RON = 2, BGN = 2, RUB = 2,
  UAH = 2, AZN = 2, GEL = 2, AED = 2, SAR = 2, QAR = 2, ILS = 2, EGP = 2, INR = 2,
  CNY = 2, HKD = 2, SGD = 2, MXN = 2, BRL = 2, ZAR = 2, MAD = 2, KZT = 2,
  COP = 2, IDR = 2, MYR = 2, PHP = 2, THB = 2,
  JPY = 0, KRW = 0, CLP = 0, ISK = 0, VND = 0, XOF = 0, XAF = 0, UGX = 0, PYG = 0,
  KWD = 3, BHD = 3, OMR = 3, JOD = 3, TND = 3, LYD = 3, IQD = 3,
}

local MAX_SAFE = 9007199254740991

local core_mod
local function core()
  if not core_mod then core_mod = require "paykit.core" end
  return core_mod
end

local function norm_currency(currency)
  if type(currency) ~= "string" then return nil end
  return currency:upper()
end

--- The number of decimals (minor-unit exponent) of a currency.
-- @tparam string currency e.g. "TRY", "usd", "JPY"
-- @treturn ?number 2 for TRY/TL, USD, EUR, ...; 0 for JPY, KRW, ...; 3 for KWD, BHD, ...;
--   nil for an unknown currency or a non-string
function _M.exponent(currency)
  local e = EXPONENTS[currency]
  if e then return e end
  local c = norm_currency(currency)
  return c and EXPONENTS[c] or nil
end

local MESSAGES = {
  empty = "is empty",
  sign = "must not be negative or carry a sign",
  exponent_notation = "must be a plain decimal, not exponent notation",
  too_many_decimals = "has more decimals than the currency allows",
  invalid = "is not a decimal amount like \"27.50\"",
  overflow = "is too large",
}

local function is_integral(n)
  return n == n and n ~= math.huge and n ~= -math.huge and n == math.floor(n)
end

--- Checks a decimal amount and gives it in minor units and as a canonical decimal string.
-- @tparam string amount a decimal string ("27.5", "27.50"; no sign, no exponent, at most the
--   currency's decimals). A Lua number is refused (code `number`): give minor units with
--   @{parse_minor} (`amount_minor`) instead
-- @tparam string currency the currency code
-- @tparam[opt="amount"] string field the field name the validation error names
-- @treturn number the amount in minor units (an integer, at most 2^53-1)
-- @treturn string the decimal string with exactly the currency's decimals ("27.50")
-- @return[2] nil
-- @return[2] a validation error: field "currency" code "unsupported_currency", or `field` with
--   code `required`, `number`, `invalid`, `overflow`, `empty`, `sign`, `exponent_notation` or
--   `too_many_decimals`
function _M.parse(amount, currency, field)
  field = field or "amount"
  local exp = _M.exponent(currency)
  if not exp then
    return nil, errors.validation("currency", "unsupported_currency",
      "currency " .. tostring(currency) .. " is not known")
  end
  local t = type(amount)
  if t == "number" then
    return nil, errors.validation(field, "number",
      field .. " must be a decimal string like \"27.50\", not a Lua number (" .. field ..
      " = 27 could mean 27.00 or 0.27); give minor units as " .. field .. "_minor = 2750")
  elseif t ~= "string" then
    return nil, errors.validation(field, amount == nil and "required" or "invalid",
      field .. " must be a decimal string like \"27.50\" (or minor units as " .. field .. "_minor)")
  end
  local m, msg, code = core().money_parse(amount, exp)
  if not m then
    code = code or "invalid"
    return nil, errors.validation(field, code,
      field .. " " .. (MESSAGES[code] or tostring(msg)) .. " (" .. tostring(currency):upper() ..
      " has " .. exp .. " decimals)")
  end
  return m, core().money_format(m, exp)
end

--- Checks an amount in minor units (an integer) and gives it with its decimal string.
-- money.parse_minor(minor, currency[, field[, positive]]) -> minor, decimal_string | nil, err
-- The same on Lua 5.4 and LuaJIT: an integer (on 5.4 a float with an integral value counts),
-- 0 .. 2^53-1 (1 .. 2^53-1 when `positive`).
-- @tparam number minor the amount in minor units, e.g. 2750 for 27.50 TRY
-- @tparam string currency the currency code
-- @tparam[opt="amount_minor"] string field the field name the validation error names
-- @tparam[opt] boolean positive refuse 0 (code `not_positive`)
-- @treturn number the amount in minor units (an integer on Lua 5.4)
-- @treturn string the decimal string ("27.50")
-- @return[2] nil
-- @return[2] a validation error: field "currency" code "unsupported_currency", or `field` with
--   code `required`, `not_integer`, `sign`, `not_positive` or `overflow`
function _M.parse_minor(minor, currency, field, positive)
  field = field or "amount_minor"
  local exp = _M.exponent(currency)
  if not exp then
    return nil, errors.validation("currency", "unsupported_currency",
      "currency " .. tostring(currency) .. " is not known")
  end
  if type(minor) ~= "number" or not is_integral(minor) then
    return nil, errors.validation(field, minor == nil and "required" or "not_integer",
      field .. " must be an integer count of minor units (2750 for 27.50)" ..
      (type(minor) == "string" and "; a decimal string goes in the decimal field" or ""))
  end
  if minor < 0 then return nil, errors.validation(field, "sign", field .. " must not be negative") end
  if minor == 0 and positive then
    return nil, errors.validation(field, "not_positive", field .. " must be greater than zero")
  end
  if minor > MAX_SAFE then
    return nil, errors.validation(field, "overflow", field .. " is too large (at most 2^53-1)")
  end
  if math.tointeger then minor = math.tointeger(minor) end
  return minor, core().money_format(minor, exp)
end

-- key -> key .. "_minor" (made once per key)
local MINOR_KEY = setmetatable({}, { __index = function(m, key)
  local k = key .. "_minor"
  m[key] = k
  return k
end })

--- Reads an amount from a parameter table, given exactly one way: a decimal string in
-- `t[key]`, or an integer of minor units in the field named key followed by `_minor`.
-- money.read(t, key, currency[, field[, positive]]) -> minor, decimal_string | nil, err
-- @tparam table t the parameters, e.g. `{amount = "27.50"}` or `{amount_minor = 2750}`
-- @tparam string key the decimal field's name, e.g. "amount"
-- @tparam string currency the currency code
-- @tparam[opt=key] string field the name errors give the decimal field (the minor field is
--   `field .. "_minor"`), e.g. "basket[1].unit_price"
-- @tparam[opt] boolean positive refuse a zero amount (code `not_positive`), in either field
-- @return as @{parse} / @{parse_minor}; both fields given: code `conflict`; neither: `required`
function _M.read(t, key, currency, field, positive)
  field = field or key
  local dec, minor = t[key], t[MINOR_KEY[key]]
  if minor ~= nil then
    if dec ~= nil then
      return nil, errors.validation(field, "conflict",
        "give " .. field .. " (a decimal string) or " .. field .. "_minor (minor units), not both")
    end
    return _M.parse_minor(minor, currency, field .. "_minor", positive)
  end
  local m, d = _M.parse(dec, currency, field)
  if m == 0 and positive then
    return nil, errors.validation(field, "not_positive", field .. " must be greater than zero")
  end
  return m, d
end

--- Minor units as a decimal string.
-- @tparam number minor an integer number of minor units (at most 2^53-1 in magnitude)
-- @tparam string currency the currency code
-- @treturn string e.g. `money.format(2750, "USD") == "27.50"`
-- @raise for an unknown currency, or (from `paykit.core.money_format`) a minor that is not an integer
function _M.format(minor, currency)
  local exp = _M.exponent(currency)
  if not exp then error("money.format: unknown currency " .. tostring(currency), 2) end
  return core().money_format(minor, exp)
end

return _M
