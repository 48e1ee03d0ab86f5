-- Orders in the `orders` lua_shared_dict: the example's stand-in for the merchant's own
-- database (the items a buyer has, the order's history). The truth about each payment (its
-- state, whether it was granted) is in the payment journal (shop.init), not here. Every change
-- is one atomic dict operation, correct with any number of nginx workers.
--
--   order:<id>        JSON {id, provider, product, amount, currency, reference, created}
--   ref:<ref>         order id for a merchant reference (notifications carry only the reference)
--   delivered:<token> set once by add(): the grant hook's idempotency on the journal's token
--   granted:<id>      how many times the item was delivered (1 at most)
--   grant_calls:<id>  how many times the journal called the grant hook (1, unless a worker died
--                     inside it and the lease ran out)
--   note:<id>:<k>     provider facts learned later (MoCoPay's session id)
--   ev:<id>:<n>       the order's history ("return: paid, granted, worker 2", ...)
local cjson = require "cjson.safe"

local _M = {}

local function dict() return ngx.shared.orders end

local function get_json(key)
  local v = dict():get(key)
  return v and cjson.decode(v) or nil
end

-- Creates an order; returns it (with a fresh id) or nil, err.
function _M.create(o)
  local d = dict()
  local id, err = d:incr("next_id", 1, 0)
  if not id then return nil, err end
  o.id = tostring(math.floor(id))
  o.created = ngx.now()
  local ok, serr = d:set("order:" .. o.id, cjson.encode(o))
  if not ok then return nil, serr end
  return o
end

function _M.get(id)
  local o = get_json("order:" .. tostring(id))
  if not o then return nil end
  local d = dict()
  o.granted = d:get("granted:" .. o.id) or 0
  o.grant_calls = d:get("grant_calls:" .. o.id) or 0
  o.events = {}
  for n = 1, d:get("evn:" .. o.id) or 0 do o.events[n] = d:get("ev:" .. o.id .. ":" .. n) end
  return o
end

-- The merchant reference of this order (the journal's name for its payment).
function _M.set_reference(o, reference)
  local d = dict()
  o.reference = reference
  d:set("order:" .. o.id, cjson.encode(o))
  d:set("ref:" .. reference, o.id)
end

-- Another name the provider gives the order's payment (Zippy's id), for notifications.
function _M.alias(o, name)
  dict():set("ref:" .. name, o.id)
end

-- Forgets an order whose payment never started (the journal could not be written): nothing
-- of it stays behind.
function _M.discard(o)
  local d = dict()
  d:delete("order:" .. o.id)
  if o.reference then d:delete("ref:" .. o.reference) end
  for n = 1, d:get("evn:" .. o.id) or 0 do d:delete("ev:" .. o.id .. ":" .. n) end
  d:delete("evn:" .. o.id)
end

function _M.by_reference(reference)
  if type(reference) ~= "string" then return nil end
  local id = dict():get("ref:" .. reference)
  return id and _M.get(id) or nil
end

-- Small provider facts learned along the way (MoCoPay's sessionId for status checks).
function _M.note(id, key, value)
  if value ~= nil then dict():set("note:" .. id .. ":" .. key, tostring(value)) end
end

function _M.notes(id, keys)
  local t = {}
  for _, k in ipairs(keys) do t[k] = dict():get("note:" .. id .. ":" .. k) end
  return t
end

function _M.event(id, text)
  local d = dict()
  local n = d:incr("evn:" .. id, 1, 0)
  if n then d:set("ev:" .. id .. ":" .. math.floor(n), text) end
end

-- The grant hook's work: delivers the item once per journal token (a second call with the same
-- token, after a worker died inside the first, finds it delivered). Returns true when the item
-- is delivered (now or before).
function _M.grant(id, token)
  local d = dict()
  d:incr("grant_calls:" .. id, 1, 0)
  if d:add("delivered:" .. token, true) then
    d:incr("granted:" .. id, 1, 0)
    _M.event(id, "grant: item delivered (token " .. token .. ")")
  else
    _M.event(id, "grant: already delivered (token " .. token .. ")")
  end
  return true
end

-- Writes what a report of the payment said to the order's history: the provider's status,
-- whether the journal saw it first (duplicate) and whether this report granted the item.
-- `source` names who reported it (return, notification, status).
function _M.record(id, result, source)
  local j = result.journal or {}
  local worker = rawget(_G, "ngx") and ngx.worker.id()
  _M.event(id, string.format("%s: %s%s%s%s, worker %s", source, tostring(result.status),
    result.duplicate and " (duplicate)" or "", j.grant == "granted" and ", granted" or "",
    j.error and ", NOT journaled" or "", tostring(worker)))
end

return _M
