-- shape.c: core.shape / shape:write against the Lua checks they stand in for.
--   input: byte 1 chooses the field under test (text, multiline text, ip, url, money, card
--   number, expiry month, card holder, token); the rest is its value (a string), put into an
--   otherwise valid call table. The shape accepts exactly when the reference accepts: the IP
--   and URL checks of paykit.kit.checks (the Lua modules themselves), and for the other kinds
--   the rules of paykit.providers.moka_checks written out here with Lua patterns; an accepted
--   value appears in the body as json_encode would write it; a refusal names the key only.
local C = dofile((debug.getinfo(1, "S").source:sub(2):gsub("[^/]*$", "")) .. "common.lua")
local check = C.check
local root = debug.getinfo(1, "S").source:sub(2):gsub("fuzz/targets/[^/]*$", "")
package.path = root .. "lua/?.lua;" .. package.path
local checks = require "paykit.kit.checks"

local PAN = "4111111111111111"
local MAX_SAFE = 9007199254740991
local shape

local function members()
  return {
    { kind = "card", key = "card", clock = 1, names = { "H", "N", "M", "Y", "V" } },
    { name = "T", kind = "text", key = "text", max = 20 },
    { name = "L", kind = "text", key = "lines", max = 20, multiline = true },
    { name = "I", kind = "ip", key = "ip" },
    { name = "U", kind = "url", key = "url" },
    { name = "A", kind = "money", key = "amount", minor_key = "amount_minor", exponent = 2 },
    { name = "K", kind = "token", key = "token", max = 64 },
  }
end

local function utf8_ok(s) return utf8.len(s) ~= nil and not s:find("[\237][\160-\191]") end

local function escaped(s)
  return (s:gsub('[%c"\\]', function(c)
    local e = ({ ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r",
      ["\t"] = "\\t", ["\127"] = "\127" })[c]
    return e or string.format("\\u%04x", c:byte())
  end))
end

local function luhn(d)
  local sum = 0
  for i = #d, 1, -1 do
    local v = d:byte(i) - 48
    if (#d - i) % 2 == 1 then v = v * 2; if v > 9 then v = v - 9 end end
    sum = sum + v
  end
  return sum % 10 == 0
end

local function money_ref(s)
  local int, frac = s:match("^(%d+)%.?(%d*)$")
  if not int or (s:find(".", 1, true) and frac == "") or #frac > 2 then return nil end
  local digits = (int .. frac .. string.rep("0", 2 - #frac)):gsub("^0+(%d)", "%1")
  if #digits > 16 or (tonumber(digits) or 0) > MAX_SAFE or tonumber(digits) == 0 then return nil end
  local m = math.tointeger(tonumber(digits))
  return string.format("%d.%02d", m // 100, m % 100)
end

local FIELDS = {
  function(v, p)
    p.text = v
    return utf8_ok(v) and not v:find("%c") and utf8.len(v) <= 20, '"T":"' .. (utf8_ok(v) and escaped(v) or "") .. '"'
  end,
  function(v, p)
    p.lines = v
    return utf8_ok(v) and not v:gsub("[\t\n\r]", ""):find("%c") and utf8.len(v) <= 20,
      '"L":"' .. (utf8_ok(v) and escaped(v) or "") .. '"'
  end,
  function(v, p) p.ip = v; return checks.is_ip(v), '"I":"' .. escaped(v) .. '"' end,
  function(v, p) p.url = v; return checks.is_http_url(v) and utf8_ok(v), '"U":"' .. (utf8_ok(v) and escaped(v) or "") .. '"' end,
  function(v, p) p.amount = v; local t = money_ref(v); return t ~= nil, '"A":' .. tostring(t) end,
  function(v, p)
    p.card.number = v
    local d = v:gsub("[ %-]", "")
    return #v <= 64 and d:find("^%d+$") ~= nil and #d >= 12 and #d <= 19 and luhn(d), '"N":"' .. d .. '"'
  end,
  function(v, p)
    p.card.exp_month = v
    local m = ({ ["01"] = 1, ["02"] = 2, ["03"] = 3, ["04"] = 4, ["05"] = 5, ["06"] = 6, ["07"] = 7, ["08"] = 8,
      ["09"] = 9 })[v] or (v:find("^%d%d?$") and not v:find("^0") and tonumber(v) <= 12 and tonumber(v))
    return m and true or false, '"M":"' .. string.format("%02d", m or 0) .. '"'
  end,
  function(v, p) p.card.holder = v; return utf8_ok(v) and utf8.len(v) <= 100, '"H":"' .. (utf8_ok(v) and escaped(v) or "") .. '"' end,
  function(v, p) p.token = v; return #v >= 1 and #v <= 64 and not v:find("[%c%s]") and utf8_ok(v), '"K":"' .. escaped(v) .. '"' end,
}

local function clock() return 1796083200 end

return function(core, data)
  if #data < 1 then return end
  shape = shape or core.shape { members = members(), suffix = "}" }
  local which = data:byte(1) % #FIELDS + 1
  local v = data:sub(2)
  local p = { card = { number = PAN, exp_month = "09", exp_year = "2031", cvc = "123" }, ip = "203.0.113.7",
    url = "https://a.example/r", amount = "1.00", token = "tok" }
  local good, written = FIELDS[which](v, p)
  local body, field = shape:write(p, "P", clock)
  if body then
    check(good, "field %d: the shape accepted a value the reference refuses (%s)", which, C.hex(v))
    check(body:sub(1, 2) == "P{" and body:sub(-2) == "}}", "the body is not prefix .. object .. suffix")
    check(body:find(written, 1, true), "field %d: the value is not written as expected (%s)", which, C.hex(v))
  else
    check(not good, "field %d: the shape refused a value the reference accepts (%s)", which, C.hex(v))
    check(({ card = true, text = true, lines = true, ip = true, url = true, amount = true, token = true })[field],
      "a refusal names %q, not a key", tostring(field))
  end
end
