-- codec money: money_parse / money_format.
--   input: byte 1 chooses the exponent (0..15) and whether negatives are allowed; the rest is
--   the decimal text. A parsed amount is an integer within 2^53-1 whose format parses back to
--   it and has exactly `exponent` decimals; a text that is already canonical formats to
--   itself; bytes 2..9 as an integer within 2^53-1 format and parse back to themselves.
local C = dofile((debug.getinfo(1, "S").source:sub(2):gsub("[^/]*$", "")) .. "common.lua")
local check, failure = C.check, C.failure
local MAX = 9007199254740991
local CODES = { empty = true, sign = true, exponent_notation = true, invalid = true,
                too_many_decimals = true, overflow = true }

local function decimals(f)
  local d = f:match("%.(%d+)$")
  return d and #d or 0
end

local function round_trip(core, m, exp)
  local f = core.money_format(m, exp)
  check(f:find("^%-?%d+%.?%d*$"), "money_format gave %q", f)
  check(decimals(f) == exp, "money_format(%d, %d) = %q has the wrong number of decimals", m, exp, f)
  local back = core.money_parse(f, exp, true)
  check(back == m, "money_parse(money_format(%d, %d)) = %s", m, exp, tostring(back))
  return f
end

return function(core, data)
  if #data < 1 then return end
  local b = data:byte(1)
  local exp, neg = b % 16, (b & 16) ~= 0
  local s = data:sub(2)
  local m, msg, code = core.money_parse(s, exp, neg)
  if m then
    check(math.type(m) == "integer", "money_parse gave a non-integer")
    check(m >= -MAX and m <= MAX, "money_parse gave %d beyond 2^53-1", m)
    check(neg or m >= 0, "a negative amount without allow_negative")
    local f = round_trip(core, m, exp)
    -- canonical input (no leading zeros, exactly exp decimals, no "-0") formats to itself
    local canon = "^%-?" .. "(%d+)" .. (exp > 0 and ("%." .. string.rep("%d", exp)) or "") .. "$"
    local int = s:match(canon)
    if int and (int == "0" or int:sub(1, 1) ~= "0") and m ~= 0 then check(f == s, "%q formats to %q", s, f) end
  else
    failure(s, m, msg, code, CODES)
  end
  if #data >= 9 then
    local v = string.unpack("<i8", data, 2) % (2 * MAX + 1) - MAX
    round_trip(core, v, exp)
  end
end
