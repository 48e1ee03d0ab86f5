-- The loop adapters (paykit.loop.luv, paykit.loop.cqueues) used more than once in one process:
-- after luv was unloaded and collected (what busted does between spec files), and after the
-- paykit loop was closed with its driver still attached; and a loop closed from a callback.
local sb = require "spec.support.sandbox"
local paykit = require "paykit"
local loop = require "paykit.loop"

local LUA = rawget(_G, "jit") and "luajit" or "lua5.4"

local base, gw

-- n status calls of references that do not exist: each ends with the provider's own answer
local function start_calls(lp, n, tag, seen)
  for i = 1, n do
    lp:start(function() return gw:status(tag .. "-" .. i) end, function(r, err)
      seen[#seen + 1] = r and "result" or (type(err) == "table" and err.code or tostring(err))
    end)
  end
end

local function count(list, value)
  local k = 0
  for _, v in ipairs(list) do if v == value then k = k + 1 end end
  return k
end

lazy_setup(function()
  base = sb.start()
  gw = assert(paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass", base_url = base .. "/moka" })
end)
lazy_teardown(function() sb.stop() end)

describe("paykit.loop closed from one of its callbacks", function()
  it("ends the step that ran the callback without an error; the other calls end cancelled", function()
    local lp = loop.new()
    local seen = {}
    for i = 1, 5 do
      lp:start(function() return gw:status("cb-close-" .. i) end, function(r, err)
        seen[#seen + 1] = r and "result" or (type(err) == "table" and err.code or tostring(err))
        if not lp.closed then lp:close() end
      end)
    end
    local ok, err = pcall(function() while lp:pending() > 0 do lp:step(0.1) end end)
    assert.is_true(ok, tostring(err))
    assert.equal(5, #seen)
    assert.equal("moka.payment_not_found", seen[1])
    -- answers that had arrived with the first one still end as answers; the rest cancelled
    assert.equal(5, count(seen, "cancelled") + count(seen, "moka.payment_not_found"))
    assert.equal(0, lp:step(0)) -- a closed loop has nothing to step
  end)
end)

describe("paykit.loop.luv", function()
  it("works again after luv was unloaded and collected (no crash in a second use)", function()
    local cmd = ("PAYKIT_SANDBOX_URL=%s %s spec/support/loop_luv_reuse.lua 2>&1; echo \"exit=$?\""):format(base, LUA)
    local p = assert(io.popen(cmd))
    local out = p:read("*a"); p:close()
    assert.matches("round 1: 20 of 20 answers", out, 1, true)
    assert.matches("round 2: 20 of 20 answers", out, 1, true)
    assert.matches("exit=0\n", out, 1, true)
  end)

  it("lets uv.run return when the paykit loop is closed with its driver still attached", function()
    local uv = require "luv"
    local lp = loop.new()
    local driver = require("paykit.loop.luv").attach(lp)
    local seen = {}
    start_calls(lp, 5, "luv-closed", seen)
    lp:close() -- the calls are cancelled; the driver's poll and timer must not outlive the loop
    local guard_fired = false
    local guard = uv.new_timer()
    guard:start(30000, 0, function() guard_fired = true; uv.stop() end)
    guard:unref() -- the guard alone does not keep uv.run going
    local ok, err = pcall(uv.run)
    guard:close()
    driver:close() -- after the loop closed it: nothing left to do, no error
    uv.run()
    assert.is_true(ok, tostring(err))
    assert.is_false(guard_fired, "uv.run was still running 30 s after the loop closed")
    assert.equal(5, count(seen, "cancelled"))
  end)

  it("attaches a new loop after one was closed with its driver attached", function()
    local uv = require "luv"
    local adapter = require "paykit.loop.luv"
    local first = loop.new()
    adapter.attach(first)
    start_calls(first, 3, "luv-first", {})
    first:close()
    uv.run()
    local lp = loop.new() -- its descriptor may well get the closed one's number
    local driver = adapter.attach(lp)
    local seen = {}
    start_calls(lp, 10, "luv-second", seen)
    uv.run()
    driver:close()
    uv.run()
    lp:close()
    assert.equal(10, count(seen, "moka.payment_not_found"))
  end)
end)

describe("paykit.loop.cqueues", function()
  it("ends its driver when the paykit loop is closed with the driver still attached", function()
    local cqueues = require "cqueues"
    local pk = require "paykit.loop.cqueues"
    local cq, lp = cqueues.new(), loop.new()
    pk.attach(lp, cq)
    local seen = {}
    start_calls(lp, 5, "cq-closed", seen)
    cq:wrap(function() lp:close() end)
    local ok, err = cq:loop(30)
    assert.is_true(ok, tostring(err))
    assert.is_true(cq:empty(), "the driver coroutine still runs after the loop closed")
    assert.equal(5, count(seen, "cancelled"))
  end)

  it("drives a new loop on the same controller after one was closed", function()
    local cqueues = require "cqueues"
    local pk = require "paykit.loop.cqueues"
    local cq = cqueues.new()
    local first = loop.new()
    pk.attach(first, cq)
    cq:wrap(function() first:close() end)
    assert(cq:loop(30))
    assert.is_true(cq:empty(), "the first driver still runs after its loop closed")
    local lp = loop.new()
    local driver = pk.attach(lp, cq)
    local seen = {}
    cq:wrap(function()
      for i = 1, 10 do
        local _, err = pk.call(lp, function() return gw:status("cq-second-" .. i) end)
        seen[#seen + 1] = type(err) == "table" and err.code or tostring(err)
      end
      driver:close()
    end)
    local ok, err = cq:loop(60)
    assert.is_true(ok, tostring(err))
    lp:close()
    assert.equal(10, count(seen, "moka.payment_not_found"))
  end)
end)
