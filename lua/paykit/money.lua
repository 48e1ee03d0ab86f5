--- paykit.money: exact amounts. An amount is a decimal string ("27.50") or an integer
-- number of minor units (2750); never a float on the way to the wire.
--
-- Currencies are ISO 4217 codes (plus Moka's "TL"), matched case-insensitively.
-- @module paykit.money
-- @usage
--   local money = require "paykit.money"
--   local minor, dec = money.parse("27.5", "TRY")   --> 2750, "27.50"
--   money.parse(2750, "TRY")                         --> 2750, "27.50"
--   money.parse(27.5, "TRY")                         --> nil, validation error (field "amount")
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

--- Checks an amount and gives it in minor units and as a canonical decimal string.
-- money.parse(amount, currency[, field]) -> minor, decimal_string | nil, err
-- @tparam string|number amount a decimal string ("27.5", "27.50"; no sign, no exponent, at
--   most the currency's decimals) or an integer number of minor units (2750); a
--   non-integral number is refused
-- @tparam string currency the currency code
-- @tparam[opt="amount"] string field the field name the validation error names
-- @treturn number the amount in minor units (an integer, at most 2^53-1)
-- @treturn string the decimal string with exactly the currency's decimals ("27.50")
-- @return[2] nil
-- @return[2] a validation error: field "currency" code "unsupported_currency", or `field` with
--   code `required`, `invalid`, `not_integer_minor_units`, `sign`, `overflow`, `empty`,
--   `exponent_notation` or `too_many_decimals`
function _M.parse(amount, currency, field)
  field = field or "amount"
  local exp = _M.exponent(currency)
  if not exp then
    return nil, errors.validation("currency", "unsupported_currency",
      "currency " .. tostring(currency) .. " is not known")
  end
  local minor
  local t = type(amount)
  if t == "number" then
    if amount ~= amount or amount == math.huge or amount == -math.huge or amount ~= math.floor(amount) then
      return nil, errors.validation(field, "not_integer_minor_units",
        field .. " as a number must be an integer count of minor units (pass a decimal string like \"27.50\" instead)")
    end
    if amount < 0 then
      return nil, errors.validation(field, "sign", field .. " must not be negative")
    end
    if amount > MAX_SAFE then
      return nil, errors.validation(field, "overflow", field .. " is too large")
    end
    minor = math.tointeger and math.tointeger(amount) or amount
  elseif t == "string" then
    local m, msg, code = core().money_parse(amount, exp)
    if not m then
      code = code or "invalid"
      return nil, errors.validation(field, code,
        field .. " " .. (MESSAGES[code] or tostring(msg)) .. " (" .. tostring(currency):upper() ..
        " has " .. exp .. " decimals)")
    end
    minor = m
  else
    return nil, errors.validation(field, amount == nil and "required" or "invalid",
      field .. " must be a decimal string like \"27.50\" or an integer of minor units")
  end
  return minor, core().money_format(minor, exp)
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
