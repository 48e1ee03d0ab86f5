-- The store interface: one contract (spec/support/store_contract.lua) run against the memory
-- store, a real redis-server (password, ACL user) and a real 3-master Redis Cluster; plus what
-- only Redis can do wrong: a refused AUTH, a slow server, a dead one.
local store = require "paykit.store"
local core = require "paykit.core"
local rs = require "spec.support.redis"
local contract = require "spec.support.store_contract"

local PORT = 16410
local CLUSTER = { 16421, 16422, 16423 }

local function run_contract(get_store)
  for _, c in ipairs(contract) do
    it(c.name, function() c.run(get_store(), core.sleep) end)
  end
end

describe("the store interface", function()
  it("names its methods, and every store has them", function()
    assert.is_true(store.is_store(store.memory()))
    assert.is_true(store.is_store(assert(store.redis { port = PORT })))
    assert.is_false(store.is_store({ get = function() end }))
  end)
end)

describe("the memory store", function()
  local s = store.memory()
  run_contract(function() return s end)

  it("keeps at most its capacity, dropping the oldest", function()
    local m = store.memory { capacity = 3 }
    for i = 1, 5 do m:set("k" .. i, tostring(i)) end
    assert.is_nil(m:get("k1")); assert.is_nil(m:get("k2"))
    assert.are.equal("5", m:get("k5"))
    -- a key deleted and added again counts from its new place
    m:delete("k3"); m:set("k3", "again")
    m:set("k6", "6")
    assert.are.equal("again", m:get("k3"))
    assert.is_nil(m:get("k4"))
  end)
end)

describe("the Redis store", function()
  local srv
  lazy_setup(function() srv = rs.start { port = PORT, password = "store-pw", users = { { "paykit", "acl-pw" } } } end)
  lazy_teardown(function() srv:stop() end)

  describe("with a password", function()
    local s
    run_contract(function() s = s or assert(store.redis { port = PORT, password = "store-pw", db = 3 }); return s end)
  end)

  describe("with an ACL user", function()
    local s
    run_contract(function() s = s or assert(store.redis { port = PORT, user = "paykit", password = "acl-pw" }); return s end)
  end)

  it("writes to the db it was given", function()
    local s = assert(store.redis { port = PORT, password = "store-pw", db = 5 })
    assert.is_true(s:set("db-check", "five", 60))
    assert.are.equal("five", srv:cli("-n", "5", "GET", "db-check"))
    assert.are.equal("", srv:cli("-n", "0", "GET", "db-check"))
  end)

  it("is refused with a wrong password: a config error that does not show the password", function()
    local s = assert(store.redis { port = PORT, password = "not-the-password" })
    local v, err = s:add("k", "v", 10)
    assert.is_nil(v)
    assert.are.equal("config", err.kind)
    assert.are.equal("store_auth", err.code)
    assert.is_nil(tostring(err):find("not-the-password", 1, true))
    local _, err2 = assert(store.redis { port = PORT, user = "paykit", password = "wrong" }):get("k")
    assert.are.equal("store_auth", err2.code)
  end)

  it("is refused without a password", function()
    local _, err = assert(store.redis { port = PORT }):get("k")
    assert.are.equal("store_auth", err.code)
  end)

  it("reports a slow Redis as a store timeout instead of hanging", function()
    local s = assert(store.redis { port = PORT, password = "store-pw", timeout = 300 })
    assert.is_true(s:set("slow", "x", 60)) -- a pooled connection
    -- the admin pauses every client's commands for 2 s
    srv:cli("CLIENT", "PAUSE", "2000", "ALL")
    local v, err = s:get("slow")
    assert.is_nil(v)
    assert.are.equal("timeout", err.kind)
    assert.are.equal("store_timeout", err.code)
    srv:cli("CLIENT", "UNPAUSE")
    assert.are.equal("x", s:get("slow"), "a fresh connection after the timed-out one")
  end)

  it("runs scripts again with EVAL after SCRIPT FLUSH (NOSCRIPT)", function()
    local s = assert(store.redis { port = PORT, password = "store-pw" })
    assert.is_true(s:add("nos", '{"state":"a"}', 60))
    assert.is_true((s:transition("nos", "state", { a = true }, "b", {})))
    srv:cli("SCRIPT", "FLUSH")
    assert.is_true((s:transition("nos", "state", { b = true }, "c", {})))
    assert.are.equal("c", require("cjson").decode(s:get("nos")).state)
  end)

  -- Redis drops every idle connection (CLIENT KILL: as a restart or its `timeout` does) while
  -- one waits in the pool: the next command on it fails before any reply byte.
  describe("on a pooled connection that Redis closed", function()
    local redis = require "paykit.redis"
    local function pooled()
      local r = assert(redis.new { port = PORT, password = "store-pw", db = 7 })
      assert.are.equal("OK", r:call("SET", "kill-check", "kept"))
      srv:cli("CLIENT", "KILL", "TYPE", "normal")
      return r
    end

    it("sends a command that is safe to repeat once more, on a new connection", function()
      local r = pooled()
      assert.are.equal("kept", r:call("GET", "kill-check"))
    end)

    it("sends SET NX (the journal's create) once more: a repeat cannot write twice", function()
      local r = pooled()
      local key = "kill-nx-" .. core.random_hex(4)
      assert.are.equal("OK", r:call("SET", key, "v", "NX", "PX", "60000"))
    end)

    it("does not send a command that is not safe to repeat (INCR) again, and says why", function()
      local r = pooled()
      local key = "kill-incr-" .. core.random_hex(4)
      local v, err, code = r:call("INCR", key)
      assert.is_nil(v)
      assert.are.equal("closed", code)
      assert.truthy(err:find("redis", 1, true), err)
      assert.are.equal("", srv:cli("-n", "7", "GET", key), "the INCR never ran")
      assert.are.equal(1, r:call("INCR", key), "the next command gets a new connection")
    end)

    it("knows which commands may be sent twice", function()
      assert.is_true(redis.repeat_safe { "GET", "k" })
      assert.is_true(redis.repeat_safe { "set", "k", "v", "NX", "PX", "10" })
      assert.is_false(redis.repeat_safe { "SET", "k", "v", "GET" })
      assert.is_true(redis.repeat_safe { "ZADD", "i", "NX", "1", "m" })
      assert.is_false(redis.repeat_safe { "ZADD", "i", "INCR", "1", "m" })
      assert.is_false(redis.repeat_safe { "INCR", "k" })
      assert.is_false(redis.repeat_safe { "RPUSH", "l", "x" })
      local src = "return redis.call('INCR', KEYS[1])"
      local unsafe, safe = redis.script(src), redis.script("return redis.call('GET', KEYS[1])", { repeat_safe = true })
      assert.is_false(redis.repeat_safe { "EVALSHA", unsafe.sha, 1, "k" })
      assert.is_false(redis.repeat_safe { "EVAL", src, 1, "k" })
      assert.is_true(redis.repeat_safe { "EVALSHA", safe.sha, 1, "k" })
      assert.is_true(redis.repeat_safe { "EVAL", "return redis.call('GET', KEYS[1])", 1, "k" })
    end)
  end)

  it("answers store_unavailable when nothing listens", function()
    local s = assert(store.redis { port = PORT + 49, connect_timeout = 500 })
    local v, err = s:set("k", "v", 1)
    assert.is_nil(v)
    assert.are.equal("transport", err.kind)
    assert.are.equal("store_unavailable", err.code)
  end)

  it("refuses tls outside nginx, saying why", function()
    local s, err = store.redis { port = PORT, tls = true }
    assert.is_nil(s)
    assert.are.equal("config", err.kind)
    assert.truthy(err.message:find("hiredis 0.14 has no TLS", 1, true))
  end)

  it("refuses a db with Cluster, and an ACL user without a password", function()
    local _, err = store.redis { cluster = true, db = 2 }
    assert.truthy(err.message:find("db", 1, true))
    _, err = store.redis { user = "paykit" }
    assert.truthy(err.message:find("password", 1, true))
  end)

  it("refuses an unknown option by name", function()
    local s, err = store.redis { port = PORT, timeout_ms = 5 }
    assert.is_nil(s)
    assert.truthy(err.message:find("timeout_ms", 1, true))
  end)
end)

describe("store.seen, a shared gateway.seen", function()
  local paykit = require "paykit"
  local sb = require "spec.support.sandbox"
  local srv
  lazy_setup(function() sb.start(); srv = rs.start { port = PORT + 5 } end)
  lazy_teardown(function() srv:stop(); sb.stop() end)

  it("flags a Zippy notice already handled by another instance (another worker) as a duplicate", function()
    local keys = { [0] = "zippy-notice-secret-0" }
    local function instance()
      -- a provider on the kit dedupes through its `store` option (get / add with a TTL)
      return assert(paykit.zippy { consumer_key = "k", consumer_secret = "s", notice_keys = keys,
        base_url = sb.url() .. "/zippy", store = assert(store.redis { port = PORT + 5 }) })
    end
    local a, b = instance(), instance()
    local _, body = require("paykit.providers.zippy").generate_test_notice {
      key = keys[0], key_id = 0, ext_transaction_id = "seen-" .. core.random_hex(4) }
    local first = assert(a:notification { method = "POST", body = body })
    local second = assert(b:notification { method = "POST", body = body })
    assert.is_false(first.duplicate)
    assert.is_true(second.duplicate)
  end)

  it("keeps a value with a key, and answers nil and the error when the store is down", function()
    local s = store.seen(store.memory())
    assert.is_false(s:add("k", { status = "paid" }))
    assert.is_true(s:add("k", { status = "other" }))
    assert.are.equal("paid", s:get("k").status)
    assert.is_true(s:has("k"))
    local down = store.seen(assert(store.redis { port = PORT + 48, connect_timeout = 300 }))
    local v, err = down:add("k")
    assert.is_nil(v)
    assert.are.equal("store_unavailable", err.code)
  end)
end)

describe("the Redis Cluster store", function()
  local cl
  lazy_setup(function() cl = rs.cluster { ports = CLUSTER } end)
  lazy_teardown(function() cl:stop() end)

  local s
  run_contract(function() s = s or assert(store.redis { cluster = true, nodes = cl:seeds() }); return s end)

  it("spreads keys over the three masters and finds each again", function()
    local c = assert(store.redis { cluster = true, nodes = { cl:seeds()[2] } })
    local masters = {}
    for i = 1, 30 do
      local k = "spread:{" .. i .. "}"
      assert.is_true(c:set(k, tostring(i), 60))
      masters[c.client.slots[core.redis_slot(k)]] = true
    end
    local n = 0
    for _ in pairs(masters) do n = n + 1 end
    assert.are.equal(3, n)
    for i = 1, 30 do assert.are.equal(tostring(i), c:get("spread:{" .. i .. "}")) end
  end)

  it("follows MOVED when its slot map is stale", function()
    local c = assert(store.redis { cluster = true, nodes = cl:seeds() })
    assert.is_true(c:set("moved:{a}", "1", 60))
    -- point every slot at the first seed: most keys then answer MOVED
    local wrong = cl:seeds()[1]
    for slot = 0, 16383 do c.client.slots[slot] = wrong end
    for i = 1, 10 do
      assert.is_true(c:set("moved:{" .. i .. "}", "v" .. i, 60))
      assert.are.equal("v" .. i, c:get("moved:{" .. i .. "}"))
    end
  end)

  it("follows ASK while a slot migrates", function()
    local c = assert(store.redis { cluster = true, nodes = cl:seeds() })
    local k = "ask:{mig}"
    local slot = core.redis_slot(k)
    assert(c.client:refresh_slots())
    local from_addr = c.client.slots[slot]
    local from, to
    for _, srv in ipairs(cl.servers) do
      if "127.0.0.1:" .. srv.port == from_addr then from = srv else to = to or srv end
    end
    local to_id = to:cli("CLUSTER", "MYID")
    local from_id = from:cli("CLUSTER", "MYID")
    to:cli("CLUSTER", "SETSLOT", tostring(slot), "IMPORTING", from_id)
    from:cli("CLUSTER", "SETSLOT", tostring(slot), "MIGRATING", to_id)
    -- a key absent on the old master is asked for on the new one (ASK), so it is written there
    assert.is_true(c:set(k, "asked", 60))
    assert.are.equal("asked", c:get(k))
    assert.truthy(from:cli("GET", k):find("ASK", 1, true), "the old master sends it on")
    -- finish the migration so the cluster is whole for the next specs
    for _, srv in ipairs(cl.servers) do srv:cli("CLUSTER", "SETSLOT", tostring(slot), "NODE", to_id) end
    assert.are.equal("asked", to:cli("GET", k), "written on the new master")
    assert.are.equal("asked", c:get(k))
  end)
end)
