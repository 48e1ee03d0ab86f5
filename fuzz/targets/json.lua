-- core json: json_decode / json_encode / json_number (csrc/json.c).
-- The first byte chooses what is fuzzed: even -> the reader on the rest, odd -> the writer on
-- the rest as a string value.
--   reader: the default and numbers="text" readings succeed or fail together (same message,
--   "json: <what> at byte N" within the input); a reading without floats encodes, decodes back
--   to the same value, and encodes to the same text again; text kept from a number is a valid
--   core.json_number; a text that is one string without escapes reads as a byte model says
--   (string_model below).
--   writer: a string encodes iff it is valid UTF-8 (the reader agrees), decodes back to itself;
--   with invalid_utf8 = "replace" it always encodes to valid JSON.
local C = dofile((debug.getinfo(1, "S").source:sub(2):gsub("[^/]*$", "")) .. "common.lua")
local check = C.check

local function message_ok(msg, input)
  check(type(msg) == "string" and not msg:find("[^\32-\126]"), "a failure message outside printable ASCII")
  local at = tonumber(msg:match("^json: .+ at byte (%d+)$"))
  check(msg:find("^json: ") and at and at >= 1 and at <= #input + 1, "a failure message without its place: %q", msg)
end

local function has_float(v)
  if type(v) == "number" then return v ~= math.floor(v) or math.abs(v) > 9007199254740991 or math.type(v) == "float" end
  if type(v) == "table" then
    for k, x in pairs(v) do if has_float(k) or has_float(x) then return true end end
  end
  return false
end

local same = C.same

-- b is a read with numbers = "text" of what a is the default read of: every number of a is,
-- at the same place in b, a literal that core.json_number accepts and that reads as that number.
local function numbers_kept(core, a, b)
  if type(a) == "number" then
    check(type(b) == "string" and pcall(core.json_number, b), "a number not kept as a JSON number literal")
    check(core.json_decode(b) == a or a ~= a, "a kept literal reads as another number")
  elseif type(a) == "table" then
    check(type(b) == "table", "numbers=text changes the shape")
    for k, v in pairs(a) do numbers_kept(core, v, b[k]) end
  else
    check(a == b, "numbers=text changes a value that is not a number")
  end
end

-- The reader's string scan (16 bytes at a time, then 8, then byte by byte: json.c) against a
-- byte model, for a text that is one string without escapes (whitespace around it): it reads
-- iff its bytes hold no control byte and are valid UTF-8 (Lua 5.4's strict utf8.len), and
-- then as those very bytes.
local function string_model(a, x)
  local body = x:match('^[ \t\n\r]*"([^"\\]*)"[ \t\n\r]*$')
  if body == nil then return end
  local plain = not body:find("[%z\1-\31]") and utf8.len(body) ~= nil
  check((a ~= nil) == plain, "a string without escapes read otherwise than its bytes say")
  if plain then check(a == body, "a string without escapes not read as its bytes") end
end

return function(core, data)
  if #data == 0 then return end
  local mode, x = data:byte(1), data:sub(2)
  if mode % 2 == 0 then
    local a, ea = core.json_decode(x)
    local b, eb = core.json_decode(x, { numbers = "text" })
    check((a == nil) == (b == nil), "numbers=text changes whether the text parses")
    if a == nil then
      message_ok(ea, x)
      check(ea == eb, "numbers=text changes the failure")
      string_model(a, x)
      return
    end
    numbers_kept(core, a, b)
    string_model(a, x)
    if not has_float(a) then
      local t, et = core.json_encode(a)
      check(t, "a decoded value does not encode: %s", tostring(et))
      local back = core.json_decode(t)
      check(same(a, back), "decode(encode(v)) ~= v")
      check(core.json_encode(back) == t, "encode is not stable")
    end
    if type(b) == "string" and type(a) == "number" then
      check(core.json_encode(core.json_number(b)) == b, "a kept number literal is not written as is")
    end
  else
    local t, et = core.json_encode(x)
    local valid = utf8.len(x) ~= nil and not x:find("\237[\160-\191]")
    check((t ~= nil) == valid, "json_encode's UTF-8 verdict differs from utf8.len")
    if t then
      check(core.json_decode(t) == x, "decode(encode(s)) ~= s")
    else
      check(et:find("^json: [\32-\126]+ at %$$"), "a writer failure without its place: %q", et)
    end
    local r = core.json_encode(x, { invalid_utf8 = "replace" })
    check(r and type(core.json_decode(r)) == "string", "a replaced string is not valid JSON")
    local ok, lit = pcall(core.json_number, x)
    if ok then check(core.json_encode(lit) == x, "json_number text not written as is") end
  end
end
