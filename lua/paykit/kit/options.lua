--- paykit.kit.options: a provider's options, declared with types and defaults, read once.
--
-- A schema maps each option to `{type = T, required = bool, default = v, check = fn, doc = "..."}`.
-- Types: "string" (non-empty), "url" (absolute http(s), `paykit.kit.checks.is_http_url`),
-- "boolean", "number" (>= 0), "seconds" (> 0, at most 600: a typo of milliseconds, such as
-- `timeout = 5000`, is refused), "integer" (>= 0), "table", "function", "keys" (`{[id] = secret}`,
-- normalised by `paykit.kit.signature.keys`), "any". `check(v)` -> nil | message refines a type;
-- `one_of = {test = true, production = true}` limits it to a set.
--
-- `options.read(schema, opts, what)` returns a table of every option (given or default), or
-- nil and a config error naming the option: "unknown option timeout_ms; did you mean timeout?"
-- for a name no schema knows. `options.TRANSPORT` is the schema every provider includes:
-- the `paykit.http.new` options plus `transport`, `logger`, `duplicate_capacity` (1024), `store`
-- (get/add, `paykit.kit.notify`) and `dedupe_ttl` (seconds a notification is remembered).
-- @module paykit.kit.options
-- @usage
--   local options = require "paykit.kit.options"
--   local o, err = options.read({api_key = {type = "string", required = true},
--     base_url = {type = "url", default = "https://api.tiny.example"}}, opts, "paykit.tiny")
local errors = require "paykit.errors"
local checks = require "paykit.kit.checks"

local _M = {}

_M.TRANSPORT = {
  timeout = { type = "seconds" }, connect_timeout = { type = "seconds" },
  cafile = { type = "string" }, capath = { type = "string" }, verify_tls = { type = "boolean" },
  max_response = { type = "integer" }, logger = { type = "any" }, hooks = { type = "table" },
  retry = { type = "any", check = function(v) if v ~= false and type(v) ~= "table" then return "must be a table or false" end end },
  sleep = { type = "function" }, user_agent = { type = "string" }, allow_blocking = { type = "boolean" },
  -- a paykit.http transport of the caller's, or the kind of the one made ("auto", "wire", "curl")
  transport = { type = "any", check = function(v)
    if type(v) ~= "table" and v ~= "auto" and v ~= "wire" and v ~= "curl" then
      return 'must be a paykit.http transport or "auto", "wire" or "curl"'
    end
  end },
  duplicate_capacity = { type = "integer", default = 1024, check = function(v) if v < 1 then return "must be at least 1" end end },
  store = { type = "any", check = function(v)
    if type(v) ~= "table" or type(v.get) ~= "function" or type(v.add) ~= "function" then
      return "must be a store with get(key) and add(key, value, ttl) (paykit.kit.notify.memory, paykit.store)"
    end
  end },
  dedupe_ttl = { type = "seconds_long" },
}
-- Every other paykit.http option (pool size, send/read timeouts, correlation header, ...) is
-- taken as given and checked by paykit.http.new, which names the field; `clock` and `random`
-- stay the provider's own (wall time, request ids).
_M.HTTP_EXCLUDED = { clock = true, random = true }
for k in pairs(require("paykit.http").OPTIONS) do
  if not _M.TRANSPORT[k] and not _M.HTTP_EXCLUDED[k] then _M.TRANSPORT[k] = { type = "any" } end
end

--- The edit distance of two strings (Levenshtein), for "did you mean".
-- @tparam string a
-- @tparam string b
-- @treturn number
function _M.distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- The known name closest to name, or nil when none is close.
-- A known name that begins or ends name (`timeout_ms` -> `timeout`) counts as close.
-- @tparam string name
-- @tparam table known a set or a list of names
-- @treturn ?string
function _M.closest(name, known)
  local best, best_d
  for k, v in pairs(known) do
    local cand = type(k) == "string" and k or v
    if type(cand) == "string" then
      local d = _M.distance(name, cand)
      if #cand >= 3 and (name:sub(1, #cand) == cand or name:sub(-#cand) == cand) then d = math.min(d, 1) end
      if (not best_d or d < best_d or (d == best_d and cand < best)) then best, best_d = cand, d end
    end
  end
  if best_d and best_d <= math.max(2, math.floor(#name / 3)) then return best end
end

--- The refusal of an unknown name: a message with "did you mean" when one is close.
-- @tparam string kind "option" or "field"
-- @tparam string name
-- @tparam table known
-- @treturn string
function _M.unknown_message(kind, name, known)
  local near = _M.closest(name, known)
  return "unknown " .. kind .. " " .. name .. (near and ("; did you mean " .. near .. "?") or "")
end

local TYPES = {
  string = function(v) if type(v) ~= "string" or v == "" then return "must be a non-empty string" end end,
  url = function(v) if not checks.is_http_url(v) then return "must be an absolute http(s) URL" end end,
  boolean = function(v) if type(v) ~= "boolean" then return "must be true or false" end end,
  number = function(v) if type(v) ~= "number" or v ~= v or v < 0 then return "must be a non-negative number" end end,
  seconds = function(v)
    if type(v) ~= "number" or v ~= v or v <= 0 then return "must be a positive number of seconds" end
    if v > 600 then return "is in seconds (at most 600); " .. v .. " looks like milliseconds" end
  end,
  seconds_long = function(v) if type(v) ~= "number" or v ~= v or v <= 0 then return "must be a positive number of seconds" end end,
  integer = function(v)
    if type(v) ~= "number" or v ~= math.floor(v) or v < 0 or v >= 2 ^ 53 then return "must be a non-negative integer" end
  end,
  table = function(v) if type(v) ~= "table" then return "must be a table" end end,
  ["function"] = function(v) if type(v) ~= "function" then return "must be a function" end end,
  keys = function() end, -- normalised below
  any = function() end,
}

--- Reads opts against schema (and `TRANSPORT` unless `schema[false]`... see `read_with`).
-- @tparam table schema name -> spec
-- @param opts the caller's table
-- @tparam string what the constructor's name, for messages ("paykit.zippy")
-- @treturn table every option's value (defaults filled; "keys" options as `{keys=, newest=}`)
-- @return[2] nil
-- @return[2] a config error naming the option
function _M.read(schema, opts, what)
  if type(opts) ~= "table" then
    return nil, errors.config("opts", "invalid", what .. " expects a table of options: " .. what .. "{...}")
  end
  local function spec_of(k) return schema[k] or _M.TRANSPORT[k] end
  for k in pairs(opts) do
    if type(k) ~= "string" or not spec_of(k) then
      local name = type(k) == "string" and k:sub(1, 64) or tostring(k)
      local known = {}
      for n in pairs(schema) do known[n] = true end
      for n in pairs(_M.TRANSPORT) do known[n] = true end
      return nil, errors.config(name, "unknown_option", what .. ": " .. _M.unknown_message("option", name, known))
    end
  end
  local out = {}
  local names = {}
  for k in pairs(schema) do names[#names + 1] = k end
  for k in pairs(_M.TRANSPORT) do if not schema[k] then names[#names + 1] = k end end
  table.sort(names)
  for _, k in ipairs(names) do
    local s = spec_of(k)
    local v = opts[k]
    if v == nil then v = s.default end
    if v == nil then
      if s.required then return nil, errors.config(k, "required", what .. ": " .. k .. " is required") end
    else
      local why = TYPES[s.type or "any"](v) or (s.one_of and not s.one_of[v] and ("must be one of " .. (function()
        local l = {}
        for name in pairs(s.one_of) do l[#l + 1] = tostring(name) end
        table.sort(l)
        return table.concat(l, ", ")
      end)())) or (s.check and s.check(v))
      if why then return nil, errors.config(k, "invalid", what .. ": " .. k .. " " .. why) end
      if s.type == "keys" then
        local keys, newest = require("paykit.kit.signature").keys(v, k)
        if not keys then newest.message = what .. ": " .. newest.message; return nil, newest end
        v = { keys = keys, newest = newest }
      end
      out[k] = v
    end
  end
  return out
end

--- Refuses the unknown fields of a call's table (also `paykit.kit.fields`; here, below
-- paykit.kit and paykit.kit.ops, which both use it). Returns t (not copied) or nil, err.
-- @param t the caller's table
-- @tparam table allowed the set of field names
-- @tparam string what the call's name for messages ("purchase")
-- @treturn table t
-- @return[2] nil
-- @return[2] a validation error naming the field (code `unknown_field`; `invalid` when t is
--   not a table)
function _M.fields(t, allowed, what)
  if type(t) ~= "table" then
    return nil, errors.validation(what, "invalid", what .. " expects a table of fields: " .. what .. "{...}")
  end
  for k in pairs(t) do
    if not allowed[k] then
      local name = type(k) == "string" and k:sub(1, 64) or tostring(k)
      local near = _M.closest(name, allowed)
      return nil, errors.validation(name, "unknown_field", "unknown field " .. name .. " in " .. what ..
        (near and ("; did you mean " .. near .. "?") or ""))
    end
  end
  return t
end

return _M
