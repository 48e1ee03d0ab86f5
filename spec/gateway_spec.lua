-- paykit.gateway: the pieces of the uniform flow every provider shares.
local gateway = require "paykit.gateway"

describe("gateway.seen (the bounded memory of processed notifications)", function()
  it("reports a key as a duplicate the second time", function()
    local s = gateway.seen(4)
    assert.is_false(s:add("a"))
    assert.is_true(s:add("a"))
    assert.is_true(s:has("a"))
    assert.is_false(s:has("b"))
  end)

  it("forgets the oldest key, and only it, once full", function()
    local s = gateway.seen(3)
    for _, k in ipairs { "a", "b", "c", "d" } do s:add(k) end
    assert.are.equal(3, s:size())
    assert.is_false(s:has("a"))
    for _, k in ipairs { "b", "c", "d" } do assert.is_true(s:has(k), k) end
    assert.is_false(s:add("a")) -- new again
  end)

  it("keeps the first value stored with a key, and forgets it with the key", function()
    local s = gateway.seen(2)
    local first = { status = "paid" }
    s:add("k", first)
    assert.is_true(s:add("k", { status = "failed" }))
    assert.are.equal(first, s:get("k"))
    s:add("x"); s:add("y")
    assert.is_nil(s:get("k"))
    assert.is_false(s:has("k"))
  end)

  it("gives no value for a key added without one", function()
    local s = gateway.seen(2)
    s:add("plain")
    assert.is_true(s:has("plain"))
    assert.is_nil(s:get("plain"))
  end)
end)

describe("gateway.seen claims (a key taken before work that yields)", function()
  it("lets one caller claim a key; the others see it pending, then settled with its value", function()
    local s = gateway.seen(4)
    assert.is_true(s:claim("k"))
    assert.same({ false, "pending" }, { s:claim("k") })
    assert.is_true(s:has("k"))
    assert.is_true(s:pending("k"))
    assert.is_nil(s:get("k"))
    assert.is_true(s:add("k")) -- a claimed key is a duplicate for add too
    local v = { status = "paid" }
    s:settle("k", v)
    assert.is_false(s:pending("k"))
    local claimed, state, value = s:claim("k")
    assert.is_false(claimed)
    assert.equal("done", state)
    assert.equal(v, value)
    assert.equal(v, s:get("k"))
  end)

  it("forgets a released claim entirely, so the next caller claims it afresh", function()
    local s = gateway.seen(2)
    assert.is_true(s:claim("k"))
    s:release("k")
    assert.is_false(s:has("k"))
    assert.equal(0, s:size())
    assert.is_true(s:claim("k"))
    s:settle("k", true)
    s:release("k") -- a settled key is not released
    assert.is_true(s:has("k"))
  end)

  it("keeps its bound and FIFO order across released claims", function()
    local s = gateway.seen(3)
    s:claim("a"); s:release("a")
    for _, k in ipairs { "b", "c", "d", "e" } do s:add(k) end
    assert.is_true(s:size() <= 3)
    assert.is_false(s:has("b"))
    for _, k in ipairs { "c", "d", "e" } do assert.is_true(s:has(k), k) end
    -- a released slot reused later does not take a newer key with it
    s:claim("x"); s:release("x"); s:add("y")
    assert.is_true(s:has("y"))
  end)

  it("adds a key settled after it was forgotten while claimed", function()
    local s = gateway.seen(1)
    assert.is_true(s:claim("k"))
    s:add("other") -- the set is full: the claim is forgotten
    assert.is_false(s:has("k"))
    s:settle("k", "v")
    assert.equal("v", s:get("k"))
  end)

  it("does not wait where no one else can run, and tells the state", function()
    local s = gateway.seen(4)
    s:claim("k")
    assert.equal("pending", s:wait("k", 5)) -- plain Lua: at once, not after 5 s
    s:settle("k", 7)
    assert.same({ "done", 7 }, { s:wait("k") })
    assert.equal("free", s:wait("nothing"))
  end)

  it("waits inside paykit.batch tasks until the claim holder settles", function()
    local batch = require "paykit.batch"
    local s = gateway.seen(4)
    local order = {}
    local results = batch {
      function()
        assert(s:claim("k"))
        require("paykit.http").sleep(0.05) -- the holder's yield (as a request would)
        order[#order + 1] = "holder"
        s:settle("k", "first")
        return "holder"
      end,
      function()
        local claimed = s:claim("k")
        assert(not claimed)
        local state, value = s:wait("k", 10)
        order[#order + 1] = "waiter"
        return state .. ":" .. tostring(value)
      end,
    }
    assert.same({ "holder", "done:first" }, results)
    assert.same({ "holder", "waiter" }, order)
  end)

  it("makes a bad duplicate_capacity of a provider a config error naming it", function()
    for _, v in ipairs { 0, -1, 2.5, "64" } do
      local ok, err = pcall(gateway.base, "x", { duplicate_capacity = v })
      assert.is_false(ok)
      assert.equal("config", err.kind)
      assert.equal("duplicate_capacity", err.field)
    end
    assert.equal(16, gateway.base("x", { duplicate_capacity = 16 }).seen.capacity)
  end)

  it("refuses a capacity that is not a positive integer", function()
    assert.has_error(function() gateway.seen(0) end)
    assert.has_error(function() gateway.seen(1.5) end)
    assert.has_error(function() gateway.seen("8") end)
  end)
end)

describe("gateway.reply", function()
  it("is the plain-text reply a notification handler sends back", function()
    assert.are.same({ status = 200, body = "OK", content_type = "text/plain" }, gateway.reply())
    assert.are.same({ status = 401, body = "not signed", content_type = "text/plain" }, gateway.reply(401, "not signed"))
  end)
end)

describe("gateway.json (the C writer, the Lua writer behind it)", function()
  it("writes ordered objects and exact decimals through paykit.core", function()
    local o = gateway.put(gateway.put(gateway.object(), "Z", "last?"), "Amount", gateway.decimal("27.50"))
    assert.equal('{"Z":"last?","Amount":27.50}', gateway.json(o))
    assert.equal(gateway.json_lua(o), gateway.json(o))
  end)

  it("falls back to the Lua writer for what the C writer refuses, instead of raising", function()
    local bad = gateway.put(gateway.object(), "Name", "caf\233") -- not UTF-8
    assert.is_nil((require("paykit.core").json_encode(bad)))
    assert.equal('{"Name":"caf\233"}', gateway.json(bad))
    assert.has_error(function() gateway.json({ amount = 0.5 }) end)
  end)
end)

describe("gateway.shared_keys", function()
  it("an object on a shared member list gets its own list when a member is put", function()
    local keys = gateway.shared_keys { "A", "B" }
    local o1 = gateway.object_of(keys, { 1, 2 })
    local o2 = gateway.object_of(keys, { 3, 4 })
    gateway.put(o1, "C", 5)
    assert.equal(2, #keys); assert.equal("A", keys[1]); assert.equal("B", keys[2])
    assert.equal('{"A":1,"B":2,"C":5}', gateway.json(o1))
    assert.equal('{"A":3,"B":4}', gateway.json(o2))
  end)
end)

describe("gateway.result with the answer's text (raw decoded on first read)", function()
  it("decodes each result's raw with its own reader options, whatever the order of the calls", function()
    local as_text, dups = { numbers = "text" }, { duplicates = "last" }
    local choices = { false, as_text, dups }
    for i = 1, 60 do
      -- readers interleaved (nil, numbers as text, last duplicate wins) in a generated order
      local c = choices[(i * 7 + math.floor(i / 3)) % 3 + 1] or nil
      local text = c == dups and '{"a":1,"a":' .. i .. '}' or '{"a":' .. i .. '.5}'
      local r = gateway.result({ status = "paid" }, true, text, c)
      local seen = {}
      for k in pairs(r) do seen[#seen + 1] = k end
      assert.are.same({ "status" }, seen)
      if c == as_text then assert.are.equal(i .. ".5", r.raw.a)
      elseif c == dups then assert.are.equal(i, r.raw.a)
      else assert.are.equal(i + 0.5, r.raw.a) end
      assert.are.equal(r.raw, r.raw)
    end
  end)

  it("keeps no reader options alive once nothing else holds them (nor their results)", function()
    local probe = setmetatable({}, { __mode = "v" })
    local function one()
      local opts = { numbers = "text" }
      probe[1] = opts
      -- the last result made: these options are the gateway's last reader's
      local r = gateway.result({ status = "paid" }, true, '{"a":1.5}', opts)
      assert.are.equal("1.5", r.raw.a)
      local r2 = gateway.result({ status = "paid" }, true, '{"a":2.5}', opts)
      return r2
    end
    local r2 = one()
    collectgarbage("collect"); collectgarbage("collect")
    -- a live result still decodes with its options
    assert.is_not_nil(probe[1])
    assert.are.equal("2.5", r2.raw.a)
    r2 = nil -- luacheck: ignore 311
    collectgarbage("collect"); collectgarbage("collect")
    assert.is_nil(probe[1])
    -- and the next result of other options is read with those
    local r3 = gateway.result({ status = "paid" }, true, '{"a":3.5}', { numbers = "text" })
    assert.are.equal("3.5", r3.raw.a)
  end)

  it("lazy_result gives what result gives for a fresh table and the answer's text", function()
    local errors = require "paykit.errors"
    local core = require "paykit.core"
    local as_text, dups = { numbers = "text" }, { duplicates = "last" }
    local choices = { false, as_text, dups }
    local function fields(i)
      local t = { status = ({ "redirect", "paid", "failed", "pending" })[i % 4 + 1], provider = "moka" }
      if i % 3 ~= 0 then t.reference = "ref-" .. i end
      if i % 5 ~= 0 then t.amount = i .. ".50"; t.currency = "TL" end
      if i % 2 == 0 then
        t.keep = { code_for_hash = "CFH-" .. i, reference = t.reference or "", amount = t.amount,
                   pre_auth = i % 4 == 0 or nil }
      end
      return t
    end
    local function view(r)
      local out = {}
      for k, v in pairs(r) do out[k] = v end
      out.keep_printed = r.keep and tostring(r.keep)
      out.printed = tostring(r)
      out.raw = core.json_encode(r.raw)
      out.keep_mt = r.keep and getmetatable(r.keep)
      return out
    end
    for i = 1, 200 do
      local c = choices[(i * 7 + math.floor(i / 3)) % 3 + 1] or nil
      local text = c == dups and '{"a":1,"a":' .. i .. '}' or '{"a":' .. i .. '.5,"b":[true,null]}'
      -- the ids of an answer noted (or not) before each result, as paykit.http does
      if i % 3 ~= 1 then errors.remember_ids(i % 2 == 0 and ("req-" .. i) or nil, "corr-" .. i) end
      local a = gateway.result(fields(i), true, text, c)
      if i % 3 ~= 1 then errors.remember_ids(i % 2 == 0 and ("req-" .. i) or nil, "corr-" .. i) end
      local b = gateway.lazy_result(fields(i), text, c)
      assert.are.same(view(a), view(b))
      assert.are.equal(getmetatable(a), getmetatable(b))
      assert.is_nil(errors.take_ids())
    end
  end)
end)
