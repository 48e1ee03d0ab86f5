-- The examples as users run them: each script against the spec sandbox, under the runtime
-- running this spec; its exit status and the lines a reader looks for.
local sb = require "spec.support.sandbox"

local LUA = rawget(_G, "jit") and "luajit" or "lua5.4"

-- Runs a command with the sandbox's URL in the environment; returns output, exit code.
local function run(cmd, env)
  local prefix = "PAYKIT_SANDBOX_URL=" .. sb.url() .. " " .. (env or "")
  local p = assert(io.popen(prefix .. " " .. cmd .. " 2>&1; echo \"exit=$?\""))
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("exit=(%d+)%s*$"))
  return out, code
end

describe("examples", function()
  lazy_setup(function() sb.start() end)
  lazy_teardown(function() sb.stop() end)

  it("moka.lua pays with 3D Secure and finds the payment paid", function()
    local out, code = run(LUA .. " examples/moka.lua")
    assert.equal(0, code, out)
    assert.matches("purchase: redirect", out)
    assert.matches("return: paid 27.50 TL", out)
    assert.matches("status: paid", out)
    assert.is_nil(out:find("4111111111111111", 1, true))
  end)

  it("mocopay.lua pays by phone and finds the session paid", function()
    local out, code = run(LUA .. " examples/mocopay.lua")
    assert.equal(0, code, out)
    assert.matches("purchase: redirect", out)
    assert.matches("return: paid %(session %x+%)", out)
    assert.matches("status: paid", out)
  end)

  it("zippy.lua pays on the hosted page, verifies the notice and flags its repeat", function()
    local out, code = run(LUA .. " examples/zippy.lua")
    assert.equal(0, code, out)
    assert.matches("return: paid 0.99 EUR", out)
    assert.matches("notification: paid, reply OK; again: duplicate=true", out)
    assert.matches("status: unsupported", out)
  end)

  -- The game servers: each prints "<name>: N ticks ... P paid, F failed, W walked away" and
  -- "<name>: granted G items here; paid purchases without their item: 0; granted twice: 0".
  local function game_lines(out, name)
    local ticks, paid, failed = out:match(name .. ": (%d+) ticks %(worst tick [%d.]+ ms%) while %d+ purchases ran: (%d+) paid, (%d+) failed")
    local granted, missing, twice = out:match(name .. ": granted (%d+) items here; paid purchases without their item: (%d+); granted twice: (%d+)")
    local returns, notices, statuses = out:match(name .. ": heard (%d+) returns, (%d+) notifications, (%d+) status answers")
    assert(ticks and granted and returns, "no summary for " .. name .. " in:\n" .. out)
    return { ticks = tonumber(ticks), paid = tonumber(paid), failed = tonumber(failed), granted = tonumber(granted),
             missing = tonumber(missing), twice = tonumber(twice), returns = tonumber(returns),
             notices = tonumber(notices), statuses = tonumber(statuses) }
  end
  local function no_notify_url() sb.post_json("/moka/_sandbox/dealer", { DealerCode = "1730", NotifyUrl = "" }) end

  for _, script in ipairs { "game_server.lua", "game_server_luv.lua" } do
    it(script .. " keeps ticking while players buy, return and get notified, and grants each item once", function()
      local out, code = run(LUA .. " examples/" .. script .. " 40 18871", "NAME=solo")
      no_notify_url()
      assert.equal(0, code, out)
      local g = game_lines(out, "solo")
      assert.equal(32, g.paid)     -- 40 buyers: every 5th card declines, every 10th walks away
      assert.equal(4, g.failed)
      assert.equal(32, g.granted)
      assert.equal(0, g.missing)
      assert.equal(0, g.twice)
      assert.is_true(g.returns > 0 and g.notices > 0, out)
      assert.is_true(g.ticks >= 80, out) -- one purchase every 2 ticks
    end)
  end

  it("two game_server.lua processes share one Redis journal: each item granted once", function()
    local rs = require "spec.support.redis"
    local srv = rs.start { port = 16481 }
    local env = "PAYKIT_SANDBOX_URL=" .. sb.url() .. " REDIS_PORT=16481 "
    local a = assert(io.popen(env .. "NAME=a NOTIFY=1 " .. LUA .. " examples/game_server.lua 40 18871 2>&1; echo \"exit=$?\""))
    local b = assert(io.popen(env .. "NAME=b NOTIFY=0 " .. LUA .. " examples/game_server_luv.lua 40 18872 2>&1; echo \"exit=$?\""))
    local out_a, out_b = a:read("*a"), b:read("*a")
    a:close(); b:close()
    local keys = srv:cli("EVAL", "return #redis.call('KEYS', 'game:granted:*')", "0")
    srv:stop()
    no_notify_url()
    assert.matches("exit=0%s*$", out_a)
    assert.matches("exit=0%s*$", out_b)
    local ga, gb = game_lines(out_a, "a"), game_lines(out_b, "b")
    assert.equal(32, ga.paid); assert.equal(32, gb.paid)
    -- a's listener hears b's notifications too: the grants land wherever the payment was first
    -- reported, and add up to one per paid purchase
    assert.equal(64, ga.granted + gb.granted, out_a .. out_b)
    assert.equal(0, ga.missing + gb.missing)
    assert.equal(0, ga.twice + gb.twice)
    assert.equal("64", keys)
  end)

  it("an example says so when the sandbox is not there", function()
    local p = assert(io.popen("PAYKIT_SANDBOX_URL=http://127.0.0.1:1 " .. LUA .. " examples/moka.lua 2>&1; echo \"exit=$?\""))
    local out = p:read("*a"); p:close()
    assert.matches("purchase failed: paykit transport error %[connect%]", out)
    assert.equal(1, tonumber(out:match("exit=(%d+)")))
  end)

  it("the demo walks every provider through the shop and stops its shop", function()
    local port = sb.port()
    local out, code = run("bash examples/demo/run", "PAYKIT_SANDBOX_PORT=" .. port .. " PAYKIT_SHOP_PORT=18859")
    assert.equal(0, code, out)
    assert.matches("using the sandbox already running", out)
    assert.matches("moka     approved order %d+ +%-> 3D page %-> approve %-> return: paid, granted 1x; notification again: "
      .. "duplicate, granted 1x; journal: paid, grant done, hook ran 1x", out)
    assert.matches("mocopay  declined .*; journal: failed, grant none, hook ran 0x", out)
    assert.matches("zippy    declined order %d+ +%-> card page %-> CC_ERROR %-> return: failed, granted 0x", out)
    assert.matches("journal  the shop's shared dict", out)
    assert.matches("payment journal: shared dict", out)
    assert.matches("demo: every step went as expected", out)
    assert.is_false(require("paykit.sandbox.nginx").handle("shop-18859"):running())
    assert.is_true(require("paykit.sandbox").running { port = port }) -- not the demo's to stop
  end)

  it("the demo runs the shop on Redis with PAYKIT_SHOP_REDIS, and never prints its password", function()
    local rs = require "spec.support.redis"
    local redis = rs.start { port = 16496, password = "demo-pw" }
    local ok, out, code = pcall(run, "bash examples/demo/run", "PAYKIT_SANDBOX_PORT=" .. sb.port()
      .. " PAYKIT_SHOP_PORT=18859 PAYKIT_SHOP_REDIS=redis://:demo-pw@127.0.0.1:16496/3")
    local keys = redis:cli("-n", "3", "KEYS", "shop:{*}:rec")
    redis:stop()
    assert(ok, out)
    assert.equal(0, code, out)
    assert.matches("journal  Redis redis://:%*%*%*@127%.0%.0%.1:16496/3", out)
    assert.matches("payment journal: redis", out)
    assert.matches("zippy    approved order %d+ +%-> card page %-> pay %-> return: paid, granted 1x; notification again: "
      .. "duplicate, granted 1x; journal: paid, grant done, hook ran 1x", out)
    assert.matches("demo: every step went as expected", out)
    assert.is_nil(out:find("demo-pw", 1, true))
    local n = 0
    for _ in keys:gmatch("shop:{[^\n]-}:rec") do n = n + 1 end
    assert.equal(7, n, "the seven payments' records are in Redis db 3: " .. keys)
  end)
end)
