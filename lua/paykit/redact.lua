--- paykit.redact: keeps card numbers, CVCs, passwords and secrets out of logs, errors
-- and printed requests.
--
-- Keys are judged case-insensitively, ignoring "_", "-", "." and brackets, so
-- CvcNumber, cvc_number, card[cvc] and CVC all count.
-- `redact.REDACTED` is the replacement text, `"[REDACTED]"`.
-- @module paykit.redact
-- @usage
--   local redact = require "paykit.redact"
--   redact.card("4111111111111111")          --> "411111******1111"
--   redact.value("CvcNumber", "123")         --> "[REDACTED]"
--   redact.table{CardNumber = "4111111111111111", Password = "x"}  (deep copy)
--   redact.text('{"CvcNumber":"123"} pan 4111111111111111 cvc=123')
local _M = {}

local REDACTED = "[REDACTED]"
_M.REDACTED = REDACTED

local byte, sub, find, gsub, rep, lower = string.byte, string.sub, string.find, string.gsub, string.rep, string.lower

-- Keys whose whole value is secret.
local SECRET_EXACT = {
  cvc = true, cvv = true, cvv2 = true, cvc2 = true, cvcnumber = true, cvvnumber = true,
  securitycode = true, cardsecuritycode = true, cid = true,
  password = true, passwd = true, pass = true, pwd = true, passphrase = true,
  checkkey = true, secret = true, signature = true, authorization = true,
  proxyauthorization = true, apikey = true, xapikey = true, privatekey = true,
  pin = true, token = true, cookie = true, setcookie = true,
}
-- Substrings that make a key secret.
local SECRET_PARTS = { "password", "secret", "cvc", "cvv", "checkkey", "apikey", "privatekey", "signature" }
-- Keys that hold a card number (masked to first 6 / last 4 rather than removed).
local CARD_KEYS = {
  cardnumber = true, pan = true, cardno = true, ccnumber = true, creditcardnumber = true,
  number = true, accountnumber = true, cardnum = true,
}

local function norm(key)
  return (gsub(lower(tostring(key)), "[%s_%-%.%[%]]", ""))
end

--- How sensitive a key is: "secret", "card" or nil for a key.
-- Secret: cvc/cvv and variants, password, checkkey, secret, signature, authorization,
-- api keys, pin, cookie, and any key ending in "token". Card: card number keys
-- (CardNumber, pan, number, ...).
-- @param key the key (converted with tostring; nil gives nil)
-- @treturn ?string "secret", "card" or nil
function _M.classify(key)
  if key == nil then return nil end
  local k = norm(key)
  if SECRET_EXACT[k] then return "secret" end
  for i = 1, #SECRET_PARTS do
    if find(k, SECRET_PARTS[i], 1, true) then return "secret" end
  end
  -- token-like secrets: access_token, refresh_token, card_token, CardToken, ...
  if sub(k, -5) == "token" then return "secret" end
  if CARD_KEYS[k] or sub(k, -10) == "cardnumber" then return "card" end
  return nil
end

local function luhn_ok(digits)
  local sum, alt = 0, false
  for i = #digits, 1, -1 do
    local d = byte(digits, i) - 48
    if alt then d = d * 2; if d > 9 then d = d - 9 end end
    sum = sum + d
    alt = not alt
  end
  return sum % 10 == 0
end
_M.luhn = luhn_ok

--- Whether a string of digits passes the Luhn check.
-- @function luhn
-- @tparam string digits decimal digits only (no spaces)
-- @treturn boolean

--- Masks a card number: first 6 and last 4 digits kept, the rest "*". Short values are masked whole.
-- Separators (spaces, dashes) stay where they were; an already masked value is returned as is.
-- @tparam string|number number the card number
-- @treturn ?string the masked number, e.g. "411111******1111" (nil for nil)
function _M.card(number)
  if number == nil then return nil end
  local s = tostring(number)
  if find(s, "^[%d%*%s%-]*$") and find(s, "*", 1, true) and #gsub(s, "[^%d]", "") <= 10 then
    return s -- already masked
  end
  local digits = gsub(s, "%D", "")
  local n = #digits
  if n < 12 then return rep("*", #s) end
  -- keep separators where they were; mask digit positions 7 .. n-4
  local seen, out = 0, {}
  for i = 1, #s do
    local c = sub(s, i, i)
    if find(c, "%d") then
      seen = seen + 1
      if seen > 6 and seen <= n - 4 then c = "*" end
    end
    out[#out + 1] = c
  end
  return table.concat(out)
end

local function mask_pan_runs(s)
  -- plain runs of 12..19 digits that pass Luhn
  s = gsub(s, "%d+", function(run)
    local n = #run
    if n >= 12 and n <= 19 and luhn_ok(run) then return _M.card(run) end
    return run
  end)
  -- grouped: 4 4 4 1..7 digits with spaces or dashes
  s = gsub(s, "%d%d%d%d[ %-]%d%d%d%d[ %-]%d%d%d%d[ %-]%d+", function(run)
    local digits = gsub(run, "%D", "")
    if #digits >= 12 and #digits <= 19 and luhn_ok(digits) then return _M.card(run) end
    return run
  end)
  return s
end

-- JSON-style "Key": value pairs: secret values replaced, card values masked.
local function scrub_json_pairs(s)
  local out, pos = {}, 1
  while true do
    local ks, ke, key = find(s, '"([^"\\]*)"%s*:%s*', pos)
    if not ks then break end
    local kind = _M.classify(key)
    out[#out + 1] = sub(s, pos, ke)
    pos = ke + 1
    if kind then
      local vs, ve
      if sub(s, pos, pos) == '"' then
        -- string value: find the closing unescaped quote
        local i = pos + 1
        while i <= #s do
          local c = sub(s, i, i)
          if c == "\\" then i = i + 2
          elseif c == '"' then break
          else i = i + 1 end
        end
        vs, ve = pos, math.min(i, #s)
        local inner = sub(s, vs + 1, ve - 1)
        if kind == "secret" then
          out[#out + 1] = '"' .. REDACTED .. '"'
        else
          out[#out + 1] = '"' .. _M.card(inner) .. '"'
        end
      else
        local a, b = find(s, "^[^,}%]%s]+", pos)
        if a then
          vs, ve = a, b
          local v = sub(s, a, b)
          if v == "null" or v == "true" or v == "false" then
            out[#out + 1] = v
          elseif kind == "secret" then
            out[#out + 1] = '"' .. REDACTED .. '"'
          else
            out[#out + 1] = _M.card(v)
          end
        else
          ve = pos - 1
        end
      end
      pos = ve + 1
    end
  end
  out[#out + 1] = sub(s, pos)
  return table.concat(out)
end

-- form/query-style key=value and Lua-ish key = "value"
local function scrub_form_pairs(s)
  s = gsub(s, "([%w_%.%-%[%]%%]+)=([^&%s\"',;]*)", function(k, v)
    local key = k
    -- percent-encoded brackets: card%5Bcvc%5D
    key = gsub(key, "%%5[BbDd]", "")
    local kind = _M.classify(key)
    if kind == "secret" and v ~= "" then return k .. "=" .. REDACTED end
    if kind == "card" and v ~= "" then return k .. "=" .. _M.card(v) end
    return nil
  end)
  -- header lines
  s = gsub(s, "([Aa]uthorization%s*:%s*)[^\r\n]*", "%1" .. REDACTED)
  return s
end

--- Scrubs free text.
-- JSON `"Key": value` pairs and form `key=value` pairs of sensitive keys,
-- Authorization header lines, and any 12-19 digit run (plain or grouped in fours) that passes Luhn.
-- @param s the text (converted with tostring; nil gives nil)
-- @treturn ?string the scrubbed text
function _M.text(s)
  if s == nil then return nil end
  s = tostring(s)
  s = scrub_json_pairs(s)
  s = scrub_form_pairs(s)
  s = mask_pan_runs(s)
  return s
end

--- Scrubs one value according to its key.
-- A secret key's value becomes "[REDACTED]" (nil, "", booleans and empty tables are kept);
-- a card key's string or number is masked with @{card}; a table is copied with @{table};
-- any other string goes through @{text}.
-- @tparam ?string key the key the value is stored under
-- @param value the value
-- @return the scrubbed value
function _M.value(key, value)
  local kind = _M.classify(key)
  local tv = type(value)
  if kind == "secret" then
    if value == nil or tv == "table" and next(value) == nil then return value end
    if tv == "string" and value == "" then return value end
    if tv == "boolean" then return value end
    return REDACTED
  end
  if tv == "table" then return _M.table(value) end
  if kind == "card" and (tv == "string" or tv == "number") then
    return _M.card(tv == "number" and string.format("%.0f", value) or value)
  end
  if tv == "string" then return _M.text(value) end
  return value
end

local function copy(t, seen)
  if seen[t] then return seen[t] end
  local out = {}
  seen[t] = out
  for k, v in pairs(t) do
    local kind = type(k) == "string" and _M.classify(k) or nil
    if type(v) == "table" and kind ~= "secret" then
      out[k] = copy(v, seen)
    else
      out[k] = _M.value(type(k) == "string" and k or nil, v)
    end
  end
  return out
end

--- Deep copy with every sensitive value scrubbed (cycles kept as cycles).
-- Keys are judged with @{classify}; the value of a secret key is replaced whole, even a table.
-- @tparam table t the table (a non-table is scrubbed as a value without a key)
-- @treturn table the scrubbed copy
function _M.table(t)
  if type(t) ~= "table" then return _M.value(nil, t) end
  return copy(t, {})
end

return _M
