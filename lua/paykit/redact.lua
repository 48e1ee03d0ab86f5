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

local byte, sub, find, gsub, gmatch, rep, lower = string.byte, string.sub, string.find, string.gsub, string.gmatch, string.rep, string.lower

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
-- CodeForHash (Moka 3D) is all it takes to forge a paid 3D result: a secret like a password.
local SECRET_PARTS = { "password", "secret", "cvc", "cvv", "checkkey", "apikey", "privatekey", "signature",
                       "codeforhash" }
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

-- a digit doubled by the Luhn rule, its digits summed: DOUBLED[d] for d = 0..9
local DOUBLED = { [0] = 0, 2, 4, 6, 8, 1, 3, 5, 7, 9 }
local function luhn_ok(digits)
  -- from the right: the last digit as it is, the one before it doubled, two at a time
  -- a byte that is not a digit: not a card number (the public luhn may be given any text)
  local sum, i = 0, #digits
  while i >= 2 do
    local doubled, plain = byte(digits, i - 1, i)
    local d = DOUBLED[doubled - 48]
    plain = plain - 48
    if not d or plain < 0 or plain > 9 then return false end
    sum = sum + plain + d
    i = i - 2
  end
  if i == 1 then
    local first = byte(digits, 1) - 48
    if first < 0 or first > 9 then return false end
    sum = sum + first
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

-- Every pass below is linear in the length of the text: each scans forward with
-- string.find from a position that only grows, and no pattern can fail after consuming an
-- unbounded run (such a pattern, tried at every start, made the old passes quadratic:
-- ~20 s for a 40 KB word).

local concat = table.concat
local DIGIT_LO, DIGIT_HI, DASH, SPACE = 48, 57, 45, 32

-- Card numbers without a key: runs of 12..19 digits, plain or grouped by single spaces or
-- dashes, that pass Luhn. A grouped run is judged by windows of consecutive groups holding
-- 12..19 digits (at most 19 groups each), so the work stays linear.
local function mask_groups(run)
  local groups, ng = {}, 0
  for g in gmatch(run, "%d+") do ng = ng + 1; groups[ng] = g end
  local seps = {}
  for sp in gmatch(run, "[^%d]") do seps[#seps + 1] = sp end
  local out, i, changed = {}, 1, false
  while i <= ng do
    local total, j, hit = 0, i, nil
    while j <= ng and total + #groups[j] <= 19 do
      total = total + #groups[j]
      if total >= 12 and luhn_ok(concat(groups, "", i, j)) then hit = j end
      j = j + 1
    end
    if hit then
      local parts = {}
      for k = i, hit do parts[#parts + 1] = groups[k]; if k < hit then parts[#parts + 1] = seps[k] end end
      out[#out + 1] = _M.card(concat(parts))
      changed = true
      i = hit + 1
    else
      out[#out + 1] = groups[i]
      i = i + 1
    end
    if i <= ng then out[#out + 1] = seps[i - 1] end
  end
  return changed and concat(out) or nil
end

local function mask_pan_runs(s)
  local out, n, pos, last = {}, 0, 1, 1
  while true do
    local a, b = find(s, "%d+", pos)
    if not a then break end
    local grouped = false
    -- extend over "<sep><digits>" groups (a single space or dash between digit runs)
    while true do
      local c = byte(s, b + 1)
      if c ~= SPACE and c ~= DASH then break end
      local d = byte(s, b + 2)
      if not d or d < DIGIT_LO or d > DIGIT_HI then break end
      local _, e = find(s, "^%d+", b + 2)
      b = e
      grouped = true
    end
    local run = sub(s, a, b)
    local masked
    if not grouped then
      local nd = #run
      if nd >= 12 and nd <= 19 and luhn_ok(run) then masked = _M.card(run) end
    else
      masked = mask_groups(run)
    end
    if masked then
      n = n + 1; out[n] = sub(s, last, a - 1)
      n = n + 1; out[n] = masked
      last = b + 1
    end
    pos = b + 1
  end
  if last == 1 then return s end
  n = n + 1; out[n] = sub(s, last)
  return concat(out, "", 1, n)
end

-- The end of a JSON string value whose opening quote is at q: the index of its closing quote
-- (or #s when it has none). `esc` is true for a value inside another JSON string (\"...\"),
-- which ends at the next \".
local function string_end(s, q, esc)
  if esc then
    local _, e = find(s, '\\"', q + 1, true)
    return e or #s
  end
  local i = q + 1
  while true do
    local c = find(s, '[\\"]', i)
    if not c then return #s end
    if byte(s, c) == 34 then return c end
    i = c + 2
  end
end

-- JSON-style "Key": value pairs (also one level escaped, \"Key\":\"value\", as when a body is
-- logged inside a JSON string): secret values replaced, card values masked.
local function scrub_json_pairs(s)
  local out, n, pos, last = {}, 0, 1, 1
  while true do
    local q = find(s, '"', pos, true)
    if not q then break end
    -- the key runs to the next quote or backslash; then an optional \, the quote and a colon
    local _, ke, key, bs = find(s, '^([^"\\]*)(\\?)"%s*:%s*', q + 1)
    if not ke then
      pos = q + 1
    else
      local kind = _M.classify(key)
      pos = ke + 1
      if kind then
        local esc = bs ~= ""
        local c = byte(s, pos)
        local vs, ve, inner
        if c == 34 and not esc then
          vs = pos; ve = string_end(s, pos, false); inner = sub(s, vs + 1, ve - 1)
        elseif esc and c == 92 and byte(s, pos + 1) == 34 then
          vs = pos; ve = string_end(s, pos + 1, true); inner = sub(s, vs + 2, ve - 2)
        else
          local a, b = find(s, "^[^,}%]%s\\]+", pos)
          if a then
            local v = sub(s, a, b)
            if v ~= "null" and v ~= "true" and v ~= "false" then vs, ve, inner = a, b, v end
          end
        end
        if vs then
          -- a string keeps its quotes (\" when escaped); a bare secret becomes a string
          local quoted = c == 34 or c == 92
          local quote = quoted and (esc and '\\"' or '"') or ((esc or kind == "card") and "" or '"')
          local v = kind == "secret" and REDACTED or _M.card(inner)
          n = n + 1; out[n] = sub(s, last, vs - 1)
          n = n + 1; out[n] = quote .. v .. quote
          last = ve + 1
          pos = ve + 1
        end
      end
    end
  end
  if last == 1 then return s end
  n = n + 1; out[n] = sub(s, last)
  return concat(out, "", 1, n)
end

-- form/query key=value, header-like "Key: value" lines and Lua-ish key = value: each run of
-- key characters is looked at once.
local KEYCHARS = "[%w_%.%-%[%]%%]+"
local function scrub_form_pairs(s)
  local out, n, pos, last = {}, 0, 1, 1
  while true do
    local a, b = find(s, KEYCHARS, pos)
    if not a then break end
    pos = b + 1
    local c = byte(s, b + 1)
    if c == 61 then -- key=value
      pos = b + 2
      local k = sub(s, a, b)
      local kind = _M.classify((gsub(k, "%%5[BbDd]", "")))
      if kind then
        local vs, ve = b + 2
        local vq = byte(s, vs)
        if vq == 34 or vq == 39 then                     -- key="value" (OAuth parameters, ...)
          local e = find(s, vq == 34 and '"' or "'", vs + 1, true)
          vs, ve = vs + 1, e and e - 1 or #s
        else
          local _, e = find(s, "^[^&%s\"',;]*", vs)
          ve = e
        end
        if ve >= vs then
          n = n + 1; out[n] = sub(s, last, vs - 1)
          n = n + 1; out[n] = kind == "secret" and REDACTED or _M.card(sub(s, vs, ve))
          last = ve + 1
          pos = ve + 1
        end
      end
    elseif c == 58 or c == SPACE or c == 9 then -- Key: value (a header line), key = value
      local _, se, sep = find(s, "^[ \t]*([:=])[ \t]*", b + 1)
      if se then
        local kind = _M.classify(sub(s, a, b))
        if kind then
          local ve
          local vs = se + 1
          if sep == ":" and kind == "secret" then
            local _, e = find(s, "^[^\r\n]*", se + 1)     -- a header: the rest of the line
            ve = e
          else
            local vq = byte(s, se + 1)
            if vq == 34 or vq == 39 then                     -- key = "value"
              local e = find(s, vq == 34 and '"' or "'", se + 2, true)
              vs, ve = se + 2, e and e - 1 or #s
            else
              local _, e = find(s, "^[^&%s\"',;]*", se + 1)
              ve = e
            end
          end
          if ve >= vs then
            n = n + 1; out[n] = sub(s, last, vs - 1)
            n = n + 1; out[n] = kind == "secret" and REDACTED or _M.card(sub(s, vs, ve))
            last = ve + 1
          end
          pos = ve + 1
        else
          pos = se + 1
        end
      end
    end
  end
  if last == 1 then return s end
  n = n + 1; out[n] = sub(s, last)
  return concat(out, "", 1, n)
end

-- A URL's user information ("//user:password@host", "//token@host", also as JSON writes it,
-- "\/\/user:password@host") is a credential: all of it, between "//" and "@" with no "/",
-- "?", "#" or space between, becomes REDACTED. Each byte is looked at a bounded number of
-- times (the class stops at the next "/").
local function scrub_userinfo(s)
  if not find(s, "@", 1, true) then return s end
  if find(s, "//", 1, true) then s = gsub(s, "//[^/?#@%s]+@", "//" .. REDACTED .. "@") end
  -- the same in JSON text whose writer escapes "/" (lua-cjson: "https:\/\/user:pw@host")
  if find(s, "\\/\\/", 1, true) then s = gsub(s, "\\/\\/[^/?#@%s\\]+@", "\\/\\/" .. REDACTED .. "@") end
  return s
end

--- Scrubs free text, in time linear in its length.
-- A URL's user information (`//user:password@`), JSON `"Key": value` pairs (also escaped once, `\"Key\":\"value\"`), form `key=value`
-- pairs, `Key: value` header lines and `key = value` of sensitive keys, and any 12-19 digit
-- run (plain or grouped by spaces or dashes) that passes Luhn.
-- @param s the text (converted with tostring; nil gives nil)
-- @treturn ?string the scrubbed text
function _M.text(s)
  if s == nil then return nil end
  s = tostring(s)
  s = scrub_userinfo(s)
  s = scrub_json_pairs(s)
  s = scrub_form_pairs(s)
  s = mask_pan_runs(s)
  return s
end

--- The most bytes of a text @{line} keeps (8192), before its "...[N bytes cut]" marker.
_M.MAX_LINE = 8192

-- The index where a cut at `i` may end: never inside a run of digits, spaces and dashes
-- (a card number cut short could pass for no card number at all).
local function cut_point(s, i)
  while i > 0 do
    local c = byte(s, i)
    if not (c >= DIGIT_LO and c <= DIGIT_HI or c == SPACE or c == DASH) then break end
    i = i - 1
  end
  return i
end

--- A log line or body excerpt: the text scrubbed with @{text} and cut to at most `max` bytes
-- (default @{MAX_LINE}), followed by "...[N bytes cut]" when it was longer.
-- Only the first `max` bytes are scrubbed, so the cost is bounded by `max` whatever the
-- length of `s`; the cut never ends inside a digit run.
-- @param s the text (converted with tostring; nil gives nil)
-- @tparam[opt] number max the most bytes kept
-- @treturn ?string the scrubbed, bounded text
function _M.line(s, max)
  if s == nil then return nil end
  s = tostring(s)
  max = max or _M.MAX_LINE
  local len = #s
  if len <= max then
    local r = _M.text(s)
    if #r <= max then return r end
    return sub(r, 1, cut_point(r, max)) .. "...[" .. (#r - cut_point(r, max)) .. " bytes cut]"
  end
  local head = sub(s, 1, cut_point(s, max))
  local r = _M.text(head)
  if #r > max then r = sub(r, 1, cut_point(r, max)) end
  return r .. "...[" .. (len - #head) .. " bytes cut]"
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

local function dump(v, depth, seen, out)
  local tv = type(v)
  if tv == "string" then out[#out + 1] = string.format("%q", v)
  elseif tv ~= "table" then out[#out + 1] = tostring(v)
  elseif seen[v] then out[#out + 1] = "<cycle>"
  elseif depth > 6 then out[#out + 1] = "{...}"
  else
    seen[v] = true
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b)
      local ta, tb = type(a), type(b)
      if ta ~= tb then return ta < tb end
      if ta == "number" or ta == "string" then return a < b end
      return tostring(a) < tostring(b)
    end)
    out[#out + 1] = "{"
    for j, k in ipairs(keys) do
      if j > 1 then out[#out + 1] = ", " end
      if type(k) == "string" and find(k, "^[%a_][%w_]*$") then out[#out + 1] = k
      else out[#out + 1] = "["; dump(k, depth + 1, seen, out); out[#out + 1] = "]" end
      out[#out + 1] = " = "
      dump(v[k], depth + 1, seen, out)
    end
    out[#out + 1] = "}"
    seen[v] = nil
  end
end

--- A printable rendering of a value with every sensitive value scrubbed: @{table}, then
-- written as a Lua-like table constructor with sorted keys, cut with @{line}.
-- paykit's results and their `keep` print through this (`tostring(result)`).
-- @param v the value (a table is copied with @{table} first)
-- @tparam[opt] number max the most bytes (default @{MAX_LINE})
-- @treturn string e.g. `{card = {cvc = "[REDACTED]", number = "411111******1111"}}`
function _M.dump(v, max)
  local out = {}
  dump(type(v) == "table" and _M.table(v) or _M.value(nil, v), 1, {}, out)
  return _M.line(concat(out), max)
end

return _M
