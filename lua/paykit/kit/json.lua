--- paykit.kit.json: the one JSON reader and the one writer of provider bodies; exact money.
--
-- Reading: `json.decode(text[, opts])` parses JSON (in C: `paykit.core.json_decode`) and keeps the number literals of
-- money fields as their text, so an amount never passes through a float ("27.50" stays
-- "27.50"; 0.1 + 0.2 never happens). `opts.exact` chooses which numbers stay text: a set of
-- member names (`{Amount = true}`: those members, at any depth), or `true` (every number);
-- other numbers become Lua numbers. Returns value | nil, message. JSON null is `json.null`.
--
-- Writing: `json.encode(v)` writes ordered objects (`json.object()` + `json.put`), plain tables
-- (a sequence as an array, else an object with sorted keys), and `json.decimal("27.50")` as
-- the bare number 27.50; a Lua float is refused. It is one function, so a faster writer (a C
-- one) can replace it: `json.set_encoder(fn)`, fn(v) -> text (raising on misuse like this one).
--
-- Amounts in results: `json.amount(v, currency)` is `money.format`ed text for the currency
-- ("27.5" USD -> "27.50"), or nil when v is not an exact decimal within the currency.
-- @module paykit.kit.json
-- @usage
--   local json = require "paykit.kit.json"
--   local t = json.decode('{"Data":{"Amount":27.50,"Count":3}}', {exact = {Amount = true}})
--   t.Data.Amount --> "27.50"   t.Data.Count --> 3
--   json.encode(json.put(json.object(), "Amount", json.decimal("27.50")))  --> {"Amount":27.50}
--   json.amount(t.Data.Amount, "TRY")   --> "27.50"
local gateway = require "paykit.gateway"
local money = require "paykit.money"

local _M = {}

local core_decode = require("paykit.core").json_decode

-- JSON null: the C reader's (`paykit.core.json_null`, the same value as `cjson.null`)
_M.null = require("paykit.core").json_null

local MAX_DEPTH = 64
local byte, sub, find, char = string.byte, string.sub, string.find, string.char

local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local floor = math.floor
local function utf8_char(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then return char(0xC0 + floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then return char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64) end
  return char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64, 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
end

local Parser = {}
Parser.__index = Parser

local function fail(p, what) error({ json = what .. " at byte " .. p.i }, 0) end

local function skip(p)
  p.i = find(p.s, "[^ \t\r\n]", p.i) or (#p.s + 1)
end

local function parse_string(p)
  local s, i = p.s, p.i + 1
  local out = {}
  while true do
    local j = find(s, '["\\%c]', i)
    if not j then fail(p, "unterminated string") end
    local c = sub(s, j, j)
    out[#out + 1] = sub(s, i, j - 1)
    if c == '"' then p.i = j + 1; return table.concat(out) end
    if c ~= "\\" then p.i = j; fail(p, "control character in a string") end
    local e = sub(s, j + 1, j + 1)
    if ESCAPES[e] then
      out[#out + 1] = ESCAPES[e]; i = j + 2
    elseif e == "u" then
      local hex = s:match("^%x%x%x%x", j + 2)
      if not hex then p.i = j; fail(p, "bad \\u escape") end
      local cp = tonumber(hex, 16)
      i = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local lo = s:match("^\\u(%x%x%x%x)", i)
        lo = lo and tonumber(lo, 16)
        if not lo or lo < 0xDC00 or lo > 0xDFFF then p.i = j; fail(p, "unpaired surrogate") end
        cp = 0x10000 + (cp - 0xD800) * 1024 + (lo - 0xDC00)
        i = i + 6
      elseif cp >= 0xDC00 and cp <= 0xDFFF then
        p.i = j; fail(p, "unpaired surrogate")
      end
      out[#out + 1] = utf8_char(cp)
    else
      p.i = j; fail(p, "bad escape")
    end
  end
end

local value

local function parse_number(p, key)
  local lit = p.s:match("^%-?%d+%.?%d*[eE]?[%+%-]?%d*", p.i)
  if not lit or not (lit:match("^%-?0$") or lit:match("^%-?0[%.eE]") or lit:match("^%-?[1-9]") )
     or not (lit:match("^%-?%d+$") or lit:match("^%-?%d+%.%d+$") or lit:match("^%-?%d+%.%d+[eE][%+%-]?%d+$")
             or lit:match("^%-?%d+[eE][%+%-]?%d+$")) then
    fail(p, "bad number")
  end
  p.i = p.i + #lit
  local exact = p.exact
  if exact == true or (key ~= nil and exact and exact[key]) then return lit end
  return tonumber(lit)
end

function value(p, key, depth)
  if depth > MAX_DEPTH then fail(p, "nested too deeply") end
  skip(p)
  local s, i = p.s, p.i
  local c = sub(s, i, i)
  if c == "{" then
    local t = {}
    p.i = i + 1; skip(p)
    if sub(s, p.i, p.i) == "}" then p.i = p.i + 1; return t end
    while true do
      skip(p)
      if sub(s, p.i, p.i) ~= '"' then fail(p, "expected a member name") end
      local k = parse_string(p)
      skip(p)
      if sub(s, p.i, p.i) ~= ":" then fail(p, "expected ':'") end
      p.i = p.i + 1
      t[k] = value(p, k, depth + 1)
      skip(p)
      local d = sub(s, p.i, p.i)
      p.i = p.i + 1
      if d == "}" then return t end
      if d ~= "," then p.i = p.i - 1; fail(p, "expected ',' or '}'") end
    end
  elseif c == "[" then
    local t, n = {}, 0
    p.i = i + 1; skip(p)
    if sub(s, p.i, p.i) == "]" then p.i = p.i + 1; return t end
    while true do
      n = n + 1
      t[n] = value(p, key, depth + 1) -- an array's numbers are read as its member's
      skip(p)
      local d = sub(s, p.i, p.i)
      p.i = p.i + 1
      if d == "]" then return t end
      if d ~= "," then p.i = p.i - 1; fail(p, "expected ',' or ']'") end
    end
  elseif c == '"' then
    return parse_string(p)
  elseif c == "-" or (byte(c) and byte(c) >= 48 and byte(c) <= 57) then
    return parse_number(p, key)
  elseif sub(s, i, i + 3) == "true" then p.i = i + 4; return true
  elseif sub(s, i, i + 4) == "false" then p.i = i + 5; return false
  elseif sub(s, i, i + 3) == "null" then p.i = i + 4; return _M.null
  end
  fail(p, c == "" and "unexpected end" or "unexpected character")
end

-- The C reader's options for an `exact` choice, made once per set (weak keys: a provider's
-- set lives as long as its module).
local C_BASE = { duplicates = "last" }
local C_ALL = { duplicates = "last", numbers = "text" }
local c_opts = setmetatable({}, { __mode = "k" })

--- Decodes JSON text (see the module description).
-- The reader is `paykit.core.json_decode` (C, strict RFC 8259, one pass); a repeated member
-- name keeps its last value, as this module's Lua reader (`decode_lua`) always did.
-- @tparam string text
-- @tparam[opt] table opts `exact` (a set of member names, or true)
-- @return the value (objects and arrays as tables, null as `json.null`)
-- @return[2] nil
-- @return[2] string what is wrong and where
function _M.decode(text, opts)
  if type(text) ~= "string" then return nil, "json.decode: text must be a string" end
  local exact = opts and opts.exact
  local o
  if exact == true then o = C_ALL
  elseif exact then
    o = c_opts[exact]
    if not o then o = { duplicates = "last", text = exact }; c_opts[exact] = o end
  else o = C_BASE end
  local v, err = core_decode(text, o)
  if v == nil and err then return nil, err end
  return v
end

--- The C reader's options of @{decode} for an `exact` choice (made once per set): what
-- `paykit.core.json_decode(text, o)` takes to read as @{decode} does (a lazily decoded
-- `result.raw` is read with them, `paykit.gateway.result`).
-- @param exact a set of member names, true or nil
-- @treturn table
function _M.read_opts(exact)
  if exact == true then return C_ALL end
  if not exact then return C_BASE end
  local o = c_opts[exact]
  if not o then o = { duplicates = "last", text = exact }; c_opts[exact] = o end
  return o
end

local core = require "paykit.core"
local core_map, core_pick = core.json_map, core.json_pick

--- Compiles the members an answer's reading needs, for @{pick} (`paykit.core.json_map`).
-- @tparam table paths each a member name or a list of names from the top-level object down
--   (`{"ResultCode", {"Data", "Url"}}`)
-- @param[opt] exact as @{decode}'s `exact`: a set of member names whose numbers stay text, or true
-- @treturn userdata the map
-- @tparam[opt] boolean null_absent a null at a path is nil (not @{null}; inside a value
--   built at a path it stays @{null})
-- @tparam[opt] boolean keep_strings `paykit.core.json_map`'s `keep_strings`: the map keeps the
--   strings it last picked (the same values; an answer's repeated values cost no new string),
--   so the last answer's strings stay alive until the next pick: never for a map that reads a secret
function _M.map(paths, exact, null_absent, keep_strings)
  local null = null_absent and "absent" or nil
  local keep = keep_strings and true or nil
  if exact == true then return core_map(paths, { numbers = "text", null = null, keep_strings = keep }) end
  return core_map(paths, { text = exact or nil, null = null, keep_strings = keep })
end

--- Reads only what a map (@{map}) names, in one pass over the whole text
-- (`paykit.core.json_pick`): the text is checked exactly as @{decode} checks it (the same
-- errors, a repeated member name's last value wins) and nothing else is built.
-- @function pick
-- @tparam string text
-- @tparam userdata map
-- @treturn string the top-level value's kind: "object", "array", "string", "number", "boolean", "null"
-- @return ... the value at each path, as @{decode} gives it (nil when absent); at a path that
--   another goes below, the scalar itself or @{object_mark} / @{array_mark}
-- @return[2] nil
-- @return[2] string what is wrong and where
_M.pick = core_pick

--- What @{pick} gives at a path that another goes below when its value is an object.
_M.object_mark = core.json_object_mark
--- The same for an array.
_M.array_mark = core.json_array_mark

--- The Lua reader (what @{decode} was before the C one; kept for comparison in the specs).
-- @tparam string text
-- @tparam[opt] table opts `exact`
-- @return the value (null as `json.null`)
-- @return[2] nil
-- @return[2] string what is wrong and where
function _M.decode_lua(text, opts)
  if type(text) ~= "string" then return nil, "json.decode: text must be a string" end
  local p = setmetatable({ s = text, i = 1, exact = opts and opts.exact }, Parser)
  local ok, v = pcall(value, p, nil, 1)
  if not ok then
    if type(v) == "table" and v.json then return nil, v.json end
    error(v, 0)
  end
  skip(p)
  if p.i <= #text then return nil, "trailing text at byte " .. p.i end
  return v
end

local encoder = gateway.json

--- Writes v as JSON text (see the module description).
-- @param v the value
-- @treturn string
-- @raise for a float, a function, ...
function _M.encode(v) return encoder(v) end

local core_encode = core.json_encode
local default_encoder = gateway.json

--- The default writer's text of v in one C call, or nil when a writer was set
-- (@{set_encoder}) or when the C writer refuses v (then @{encode} says why).
-- @param v the value
-- @treturn ?string
function _M.encode_quick(v)
  if encoder ~= default_encoder then return nil end
  return core_encode(v)
end

--- Whether the default writer is in use (no @{set_encoder} writer): a provider that writes a
-- body in C (a compiled `core.shape`) does so only then, so a writer that was set is used.
-- @treturn boolean
function _M.default_writer() return encoder == default_encoder end

--- Replaces the writer (e.g. with a C one); nil restores the Lua writer.
-- @tparam ?function fn fn(v) -> text
function _M.set_encoder(fn) encoder = fn or gateway.json end

--- An empty ordered JSON object (`paykit.gateway.object`).
-- @function object
-- @treturn table
_M.object = gateway.object

--- Appends a member to an ordered object, nothing when v is nil (`paykit.gateway.put`).
-- @function put
-- @tparam table o
-- @tparam string k
-- @param v
-- @treturn table o
_M.put = gateway.put

--- A decimal written as its exact text (`paykit.gateway.decimal`).
-- @function decimal
-- @tparam string text e.g. "27.50"
-- @treturn table
_M.decimal = gateway.decimal

--- An answer's amount as `money.format`ed text for its currency, or nil.
-- @param v decimal text (from @{decode} with `exact`), or an integer number
-- @tparam string currency
-- @treturn ?string e.g. "27.50"
function _M.amount(v, currency)
  if type(v) == "number" then
    if v ~= math.floor(v) or v ~= v or math.abs(v) >= 2 ^ 53 then return nil end
    v = string.format("%d", v)
  end
  if type(v) ~= "string" or not money.exponent(currency) then return nil end
  local minor, text = money.parse(v, currency) -- text: money.format(minor, currency)
  if not minor then return nil end
  return text
end

return _M
