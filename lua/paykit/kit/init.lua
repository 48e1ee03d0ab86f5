--- paykit.kit: one way to write a provider.
--
-- A provider module declares itself with `kit.provider{...}` and returns what it gets:
--
--     local kit = require "paykit.kit"
--     local checks = require "paykit.kit.checks"
--     local P = kit.provider {
--       name = "tiny", title = "Tiny",
--       options = {                                  -- paykit.kit.options schema (+ transport options)
--         api_key = { type = "string", required = true, secret = true },
--         notice_keys = { type = "keys", required = true },          -- {[id] = secret}, rotation
--         base_url = { type = "url", default = "https://api.tiny.example" },
--       },
--       init = function(self, o)                     -- o: every option; secrets only here
--         local key = o.api_key
--         self.auth = function() return "Bearer " .. key end          -- held in a closure
--         return self                                -- or nil, err
--       end,
--       wire = {                                     -- paykit.kit.wire.commit's hooks
--         sign = function(self, req) req.headers.Authorization = self.auth(); return true end,
--         exact = { amount = true },                  -- JSON numbers kept as text
--         success_from = function(self, a) return a.state == "ok" end,
--         message_from = function(self, a) return a.message, a.code end,
--         authorization_from = function(self, a) return a.id end,
--       },
--       operations = {                               -- alike calls as data (paykit.kit.ops)
--         get_page = { method = "GET", path = "/pages/:id", args = { id = checks.key } },
--         create_page = { method = "POST", path = "/pages", fields = {...}, body = function(self, t) ... end },
--       },
--       notice = { decode = ..., verify = ..., payment = ..., result = ... },   -- paykit.kit.notify
--     }
--     function P.methods:purchase(p) ... return kit.result{...} end   -- hand-written calls
--     return P
--
-- What every provider then has, the same way:
--
--  * one constructor: `paykit.tiny{...}` (= `P.new(opts)`) returns the instance, or nil and a
--    config error: an unknown option is refused naming the closest known one ("unknown option
--    timeout_ms; did you mean timeout?"), a wrong type or a missing required one names it;
--  * one instance shape: a table with `provider`, `log`, `http`, `store`, the non-secret
--    options, and a metatable whose `__index` is `P.methods` only (the module's functions, such
--    as `new`, are not reachable from an instance; `kit.instance_of(P, x)` tells an instance);
--  * every method refuses a call with a dot (`gw.purchase{}`): "use gw:purchase{...}";
--  * `gw:notification(req)` from `notice` (paykit.kit.notify), `gw:commit(op, req)` = `wire.commit`;
--  * `kit.fields(t, allowed, what)`: a call's table with an unknown field is refused naming it
--    ("unknown field reurn_url in purchase; did you mean return_url?");
--  * `kit.result{...}`: a `paykit.gateway.result` whose amount is `money.format`ed.
-- @module paykit.kit
local errors = require "paykit.errors"
local gateway = require "paykit.gateway"
local http = require "paykit.http"
local options = require "paykit.kit.options"
local wire = require "paykit.kit.wire"
local notify = require "paykit.kit.notify"
local json = require "paykit.kit.json"
local core_json_encode = require("paykit.core").json_encode
local find, sub = string.find, string.sub

local _M = {}

-- The fields of gw:commit's request (`paykit.kit.wire.commit`; it adds `url` itself).
local COMMIT_FIELDS = { method = true, path = true, query = true, body = true, headers = true, idempotent = true }

_M.checks = require "paykit.kit.checks"
_M.signature = require "paykit.kit.signature"
_M.options, _M.wire, _M.notify, _M.json = options, wire, notify, json
_M.registry = require "paykit.kit.registry"

--- Refuses the unknown fields of a call's table (`paykit.kit.options.fields`). Returns t
-- (not copied) or nil, err.
-- @function fields
-- @param t the caller's table
-- @tparam table allowed the set of field names
-- @tparam string what the call's name for messages ("purchase")
-- @treturn table t
-- @return[2] nil
-- @return[2] a validation error naming the field (code `unknown_field`; `invalid` when t is
--   not a table)
_M.fields = options.fields

--- A result (`paykit.gateway.result`) with its amount `money.format`ed for its currency.
-- @tparam table t the result's fields (`amount` decimal text or an integer, with `currency`)
-- @treturn table the result
-- @raise for an amount that is not exact in its currency (the provider's mistake)
function _M.result(t)
  if t.amount ~= nil then
    local a = json.amount(t.amount, t.currency)
    if not a then error("kit.result: amount " .. tostring(t.amount) .. " is not exact in " .. tostring(t.currency), 2) end
    t.amount = a
  end
  return gateway.result(t)
end

local REDACTED = "[REDACTED]"

-- The texts of the secret options' values as they can appear in a line: as given and as
-- JSON writes them inside a string (a username with a quote is `\"` in a logged body).
local function secret_texts(decl_options, o)
  local list = {}
  for k, spec in pairs(decl_options) do
    local v = o[k]
    if spec.secret and type(v) == "string" and v ~= "" then
      list[#list + 1] = v
      local j = core_json_encode(v)
      if j then
        j = j:sub(2, -2)
        if j ~= v then list[#list + 1] = j end
      end
    end
  end
  -- longest first: a secret inside another is replaced after the longer one
  table.sort(list, function(a, b) return #a > #b end)
  return list
end

-- Replaces every occurrence of each text of list in line (plain, no pattern) with [REDACTED];
-- a line cut by paykit.redact.line ("...[N bytes cut]") that ends in the first bytes of a
-- secret (4 or more, or the whole of a shorter one) loses them too.
local function scrub_secrets(line, list)
  if type(line) ~= "string" then return line end
  for i = 1, #list do
    local s = list[i]
    local a, b = find(line, s, 1, true)
    if a then
      local out, n, from = {}, 0, 1
      while a do
        n = n + 1; out[n] = sub(line, from, a - 1)
        n = n + 1; out[n] = REDACTED
        from = b + 1
        a, b = find(line, s, from, true)
      end
      n = n + 1; out[n] = sub(line, from)
      line = table.concat(out, "", 1, n)
    end
  end
  local cut = find(line, "...[", 1, true)
  while cut do
    local nxt = find(line, "...[", cut + 1, true)
    if not nxt then break end
    cut = nxt
  end
  if cut and find(line, "^%.%.%.%[%d+ bytes cut%]$", cut) then
    local head = sub(line, 1, cut - 1)
    for i = 1, #list do
      local s = list[i]
      for len = math.min(#s - 1, #head), math.min(4, #s), -1 do
        if sub(head, -len) == sub(s, 1, len) then
          return sub(head, 1, #head - len) .. REDACTED .. sub(line, cut)
        end
      end
    end
  end
  return line
end
_M._scrub_secrets = scrub_secrets

-- The instance's logger: the user's, with the secret options' values taken out of every line
-- (paykit.redact scrubs by key name: a secret under a name it does not know, such as Moka's
-- Username, would pass). A logger of another kind is returned as it is (make_logger refuses it).
local function secret_logger(logger, list)
  if #list == 0 then return logger end
  if type(logger) == "function" then
    return function(level, line) return logger(level, scrub_secrets(line, list)) end
  elseif (type(logger) == "table" or type(logger) == "userdata") and logger.log then
    return function(level, line) return logger:log(level, scrub_secrets(line, list)) end
  end
  return logger
end

-- Whether x is an instance of P, or a table inheriting from one through __index tables (a
-- proxy such as paykit.journal.wrap's, which replaces the instance's `http`).
local function is_self(P, x) return wire.provider_of(x) == P end
-- instance -> provider, of the instances new made (paykit.kit.wire.INSTANCES)
local INSTANCES = wire.INSTANCES

-- The method wrapper: refuses a dot call (self is not an instance of P).
local guarded = setmetatable({}, { __mode = "k" })
local function guard(P, name, fn)
  local mt = P._mt
  local g = function(self, ...)
    -- an instance this provider's new made (a table read), else its own metatable (the
    -- usual case), then a proxy's chain
    if INSTANCES[self] ~= P and getmetatable(self) ~= mt and not is_self(P, self) then
      error(P.name .. "." .. name .. ": call it with a colon, gw:" .. name .. "(...), not gw." .. name .. "(...)", 2)
    end
    return fn(self, ...)
  end
  guarded[g] = true
  return g
end

-- Guards every method of P not guarded yet (methods are plain functions in P.methods, so
-- that pairs() lists them on every runtime; this runs at each construction).
local function seal(P)
  for k, v in pairs(P.methods) do
    if type(v) == "function" and not guarded[v] then P.methods[k] = guard(P, k, v) end
  end
end

--- The provider (from @{provider}) of an instance, or nil.
-- @param x any value
-- @treturn ?table P
function _M.provider_of(x) return wire.provider_of(x) end

--- Whether x is an instance of the provider P.
-- @tparam table P a provider (from @{provider})
-- @param x any value
-- @treturn boolean
function _M.instance_of(P, x) return getmetatable(x) == P._mt end

--- Declares a provider (see the module description). Returns the provider module P:
-- `P.new(opts)`, `P.methods` (the instances' methods: add hand-written ones to it), `P.name`,
-- `P.title`; the declaration is kept as `P._decl`. Only `new` is a function on P: everything
-- else an instance does is in P.methods, and the module's other fields are the provider's.
-- @tparam table decl the declaration
-- @treturn table P
function _M.provider(decl)
  if type(decl) ~= "table" or type(decl.name) ~= "string" then error("kit.provider: the declaration needs a name", 2) end
  -- the declaration is kept under _decl: a provider's own module fields (Zippy's `notice`
  -- module, ...) never collide with it
  local P = {
    name = decl.name, title = decl.title or decl.name, methods = {},
    _decl = { options = decl.options or {}, wire = decl.wire or {}, operations = decl.operations,
              notice = decl.notice, init = decl.init },
  }
  -- __kit: the provider, for the kit's own modules (not reachable through the instance's fields)
  P._mt = { __index = P.methods, __kit = P }

  function P.new(opts)
    seal(P)
    local what = "paykit." .. P.name
    local o, err = options.read(P._decl.options, opts, what)
    if not o then return nil, err end
    local logger = o.logger
    if logger ~= nil and logger ~= false then logger = secret_logger(logger, secret_texts(P._decl.options, o)) end
    local ok, transport = pcall(function()
      if type(o.transport) == "table" then return o.transport end
      local hopts = {}
      for k in pairs(http.OPTIONS) do
        if not options.HTTP_EXCLUDED[k] then hopts[k] = o[k] end
      end
      hopts.logger = logger
      return http.new(hopts)
    end)
    if not ok then
      if errors.is(transport) then return nil, transport end
      return nil, errors.config("opts", "invalid", what .. ": " .. tostring(transport))
    end
    local log_ok, log = pcall(http.make_logger, logger)
    if not log_ok then return nil, errors.config("logger", "invalid", what .. ": " .. tostring(log)) end
    local self = {
      provider = P.name, http = transport, log = log,
      store = o.store or notify.memory { capacity = o.duplicate_capacity },
      dedupe_ttl = o.dedupe_ttl,
    }
    for k, spec in pairs(P._decl.options) do
      if not spec.secret and spec.type ~= "keys" and spec.type ~= "function" then self[k] = o[k] end
    end
    if type(self.base_url) == "string" then self.base_url = self.base_url:gsub("/+$", "") end
    setmetatable(self, P._mt)
    if P._decl.init then
      local s, e = P._decl.init(self, o)
      if not s then return nil, e end
    end
    INSTANCES[self] = P
    return self
  end

  -- gw:commit(op, req) -> answer, info | nil, err (paykit.kit.wire.commit); a field of req
  -- it does not know (`idempotant`) is refused, as in every call's table
  P.methods.commit = function(self, op, req)
    local t, err = options.fields(req, COMMIT_FIELDS, "commit")
    if not t then return nil, err end
    return wire.commit(self, op, t)
  end
  if decl.notice then
    P.methods.notification = notify.handle
  end
  if decl.operations then require("paykit.kit.ops").install(P, decl.operations) end
  return P
end

return _M
