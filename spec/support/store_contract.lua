-- The store contract (paykit.store): cases that every store must pass, written with plain
-- error-raising checks so that they run under busted and inside nginx alike.
--   for _, c in ipairs(require("spec.support.store_contract")) do
--     it(c.name, function() c.run(store, sleep) end)
--   end
-- Each case uses keys of its own (a random prefix), so a case never sees another's data.
local cjson = require "cjson"
local core = require "paykit.core"

local function eq(want, got, what)
  if want ~= got then error((what or "value") .. ": expected " .. tostring(want) .. ", got " .. tostring(got), 2) end
end

local function is_err(v, err, what)
  if v ~= nil or type(err) ~= "table" or type(err.code) ~= "string" then
    error((what or "call") .. ": expected nil and a paykit error, got " .. tostring(v) .. ", " .. tostring(err), 2)
  end
end

local function key(name) return "contract:{" .. core.random_hex(6) .. "}:" .. name end

return {
  { name = "answers nil for an absent key and gives back what was set, byte for byte", run = function(s)
    local k = key("v")
    eq(nil, (s:get(k)), "absent")
    eq(true, s:set(k, "a\0b\255\n", 60), "set")
    eq("a\0b\255\n", s:get(k), "get")
    eq(true, s:set(k, "second", 60), "set again")
    eq("second", s:get(k), "overwritten")
  end },

  { name = "adds only when absent", run = function(s)
    local k = key("add")
    eq(true, s:add(k, "first", 60), "first add")
    local ok, why = s:add(k, "second", 60)
    eq(false, ok, "second add")
    eq("exists", why, "second add's reason")
    eq("first", s:get(k), "the first value stays")
  end },

  { name = "forgets a key after its TTL, and then adds it again", run = function(s, sleep)
    local k = key("ttl")
    eq(true, s:add(k, "x", 0.2))
    sleep(0.7)
    eq(nil, (s:get(k)), "expired")
    eq(true, s:add(k, "y", 60), "added again")
    eq("y", s:get(k))
  end },

  { name = "deletes a key (and deleting an absent key is fine)", run = function(s)
    local k = key("del")
    s:set(k, "x", 60)
    eq(true, s:delete(k))
    eq(nil, (s:get(k)))
    eq(true, s:delete(k), "absent")
  end },

  { name = "moves a record's field only from an allowed value, merging the patch", run = function(s)
    local k = key("rec")
    eq(true, s:add(k, cjson.encode { state = "created", amount = "27.50", n = 1 }, 60))
    local ok, text = s:transition(k, "state", { created = true }, "sent", { sent_at = 1700000000123, n = 2 })
    eq(true, ok, "first transition")
    local rec = cjson.decode(text)
    eq("sent", rec.state); eq(1700000000123, rec.sent_at); eq(2, rec.n); eq("27.50", rec.amount, "amount kept as text")
    local again, why, cur = s:transition(k, "state", { created = true }, "sent", { n = 3 })
    eq(false, again, "second transition from created")
    eq("conflict", why)
    eq("sent", cjson.decode(cur).state, "the conflict answers the record as it is")
    eq(2, cjson.decode(s:get(k)).n, "nothing merged on conflict")
    ok = s:transition(k, "state", { created = true, sent = true }, "paid", {})
    eq(true, ok, "sent -> paid")
    eq("paid", cjson.decode(s:get(k)).state)
  end },

  { name = "answers missing for a transition of an absent record, and an error for a non-record", run = function(s)
    local ok, why = s:transition(key("none"), "state", { created = true }, "sent", {})
    eq(false, ok); eq("missing", why)
    local k = key("text")
    s:set(k, "not json", 60)
    local v, err = s:transition(k, "state", { created = true }, "sent", {})
    is_err(v, err, "transition of a non-record")
  end },

  { name = "keeps a record's TTL across a transition", run = function(s, sleep)
    local k = key("recttl")
    s:add(k, cjson.encode { state = "created" }, 0.3)
    eq(true, (s:transition(k, "state", { created = true }, "sent", {})))
    sleep(0.9)
    eq(nil, (s:get(k)), "expired with the TTL set at add")
  end },

  { name = "locks for one owner, and only that owner unlocks", run = function(s)
    local k = key("lock")
    eq(true, s:lock(k, "owner-a", 60))
    local ok, why = s:lock(k, "owner-b", 60)
    eq(false, ok); eq("locked", why)
    ok, why = s:unlock(k, "owner-b")
    eq(false, ok, "unlock by another owner"); eq("not_owner", why)
    eq(true, s:unlock(k, "owner-a"))
    eq(true, s:lock(k, "owner-b", 60), "free again")
    eq(true, s:unlock(k, "owner-b"))
  end },

  { name = "lets a lock expire so that another owner can take it", run = function(s, sleep)
    local k = key("lease")
    eq(true, s:lock(k, "dies", 0.2))
    sleep(0.7)
    eq(true, s:lock(k, "next", 60))
    local ok = s:unlock(k, "dies")
    eq(false, ok, "the expired owner cannot unlock the next one")
    eq(true, s:unlock(k, "next"))
  end },

  { name = "keeps an index of members by score, lowest first", run = function(s)
    local ix = key("ix")
    s:index_add(ix, "m1", 10); s:index_add(ix, "m2", 5); s:index_add(ix, "m3", 20)
    s:index_add(ix, "m2", 50) -- a member keeps its first score
    local l = assert(s:index_range(ix, 15, 10))
    eq(2, #l, "members up to 15"); eq("m2", l[1]); eq("m1", l[2])
    l = s:index_range(ix, 100, 1)
    eq(1, #l, "limit"); eq("m2", l[1])
    eq(true, s:index_remove(ix, "m2"))
    l = s:index_range(ix, 100, 10)
    eq(2, #l); eq("m1", l[1]); eq("m3", l[2])
    s:index_remove(ix, "m1"); s:index_remove(ix, "m3")
    eq(0, #s:index_range(ix, 100, 10), "empty")
  end },
}
