-- Orders in the `orders` lua_shared_dict, correct with any number of nginx workers: every
-- change is one atomic dict operation (incr for ids and counters, add for "first one wins").
--
--   order:<id>     JSON {id, provider, product, amount, currency, reference, created}
--   keep:<id>      JSON of what gw:purchase said to keep until the buyer returns (never shown)
--   ref:<ref>      order id for a merchant reference (notifications carry only the reference)
--   final:<id>     "paid" | "failed": the first final outcome wins, later reports cannot flip it
--   grant:<id>     set once by add(): whoever adds it delivers the item
--   granted:<id>   how many times the item was delivered (1 at most, by construction)
--   note:<id>:<k>  provider facts learned later (MoCoPay's session id)
--   ev:<id>:<n>    the order's history ("return: paid", "notification: paid (duplicate)", ...)
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
  o.status = d:get("final:" .. o.id) or "pending"
  o.granted = d:get("granted:" .. o.id) or 0
  o.events = {}
  for n = 1, d:get("evn:" .. o.id) or 0 do o.events[n] = d:get("ev:" .. o.id .. ":" .. n) end
  return o
end

-- The provider's reference for this order and what to keep until the buyer returns.
function _M.set_reference(o, reference, keep)
  local d = dict()
  o.reference = reference
  d:set("order:" .. o.id, cjson.encode(o))
  d:set("ref:" .. reference, o.id)
  if keep then d:set("keep:" .. o.id, cjson.encode(keep)) end
end

function _M.keep(id) return get_json("keep:" .. tostring(id)) end

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

-- Records a provider result for the order: "paid" grants the item once, "failed" marks the
-- order failed unless it was already paid; "pending" changes nothing. `source` names who
-- reported it (return, notification, status). Returns the order's status afterwards and
-- whether this call granted the item.
function _M.apply(id, result, source)
  local d = dict()
  local status = result and result.status
  local granted_now = false
  if status == "paid" or status == "failed" then d:add("final:" .. id, status) end
  if status == "paid" and d:get("final:" .. id) == "paid" and d:add("grant:" .. id, true) then
    d:incr("granted:" .. id, 1, 0)
    granted_now = true
  end
  _M.event(id, string.format("%s: %s%s%s", source, tostring(status),
    result and result.duplicate and " (duplicate)" or "", granted_now and ", granted" or ""))
  return d:get("final:" .. id) or "pending", granted_now
end

return _M
