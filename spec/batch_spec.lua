-- paykit.batch against the real sandbox nginx: many tasks' requests go out together through the
-- core client's batch, each task gets its own answer, results come back in task order.
local sb = require "spec.support.sandbox"
local paykit = require "paykit"
local http = require "paykit.http"
local batch = require "paykit.batch"

local base

local sink_log = sb.sink_log

describe("paykit.batch", function()
  lazy_setup(function() base = sb.start() end)
  lazy_teardown(function() sb.stop() end)

  it("is exposed as paykit.batch", function()
    assert.equal(batch, paykit.batch)
  end)

  it("runs 200 tasks and returns their results in task order", function()
    local t = http.new {}
    local tasks = {}
    for i = 1, 200 do
      tasks[i] = function()
        local res, err = t:request { method = "GET", url = base .. "/_sink/batch200?reply=task-" .. i }
        if not res then return nil, err end
        return res.body, res.status
      end
    end
    local results, errs = paykit.batch(tasks, { max_in_flight = 64 })
    assert.equal(200, #results)
    for i = 1, 200 do
      assert.equal("task-" .. i, results[i])
      assert.equal(200, errs[i])
    end
    assert.equal(200, #sink_log("batch200"))
    t:close()
  end)

  it("checks 200 Moka payments with ordinary gw:status calls, each answer for its own task", function()
    local moka = require "paykit.sandbox.moka"
    local dealer = moka.credentials[1]
    local gw = assert(paykit.moka { dealer_code = dealer.DealerCode, username = dealer.Username,
                                    password = dealer.Password, base_url = base .. "/moka" })
    local refs, want = {}, {}
    for i = 1, 4 do
      refs[i] = "batch-" .. require("paykit.core").random_hex(6)
      local r = assert(gw:purchase { three_d = false, reference = refs[i], amount = "1.00", currency = "TL",
        client_ip = "127.0.0.1", card = { holder = "Ali Yilmaz", number = i % 2 == 1 and moka.cards.approve[1]
        or moka.cards.decline, exp_month = "12", exp_year = "2030", cvc = "123" } })
      want[i] = r.status
    end
    assert.same({ "paid", "failed", "paid", "failed" }, want)
    local tasks = {}
    for i = 1, 200 do tasks[i] = function() return gw:status(refs[i % 4 + 1]) end end
    local results, errs = paykit.batch(tasks, { max_in_flight = 64 })
    for i = 1, 200 do
      assert.is_nil(errs[i])
      assert.equal(refs[i % 4 + 1], results[i].reference)
      assert.equal(want[i % 4 + 1], results[i].status)
    end
  end)

  -- The client that served a batch's (and a paykit.loop's) requests: the starts each core loop
  -- (core.wire_loop, core.http_loop) was handed while fn ran.
  local function starts_during(fn)
    local core = require "paykit.core"
    local real = { wire = core.wire_loop, curl = core.http_loop }
    local n = { wire = 0, curl = 0 }
    local function wrap(kind)
      return function()
        local l = real[kind]()
        return setmetatable({ start = function(_, c, ...) n[kind] = n[kind] + 1; return l:start(c, ...) end },
          { __index = function(_, k) return function(_, ...) return l[k](l, ...) end end })
      end
    end
    core.wire_loop, core.http_loop = wrap("wire"), wrap("curl")
    local ok, err = pcall(fn)
    core.wire_loop, core.http_loop = real.wire, real.curl
    assert(ok, err)
    return n
  end

  describe("picks the client a single request of the same transport would", function()
    local function run(t, url, n)
      local tasks = {}
      for i = 1, n do
        tasks[i] = function()
          local res, err = t:request { url = url .. i }
          if not res then return nil, err end
          return res.body
        end
      end
      return batch(tasks, { max_in_flight = 4 })
    end

    for _, case in ipairs { { "auto", "wire" }, { "wire", "wire" }, { "curl", "curl" } } do
      it("transport = " .. case[1] .. ": " .. case[2] .. " in paykit.batch and paykit.loop", function()
        local t = http.new { transport = case[1] }
        local results, errs
        local n = starts_during(function() results, errs = run(t, base .. "/_sink/pick?reply=", 6) end)
        for i = 1, 6 do
          assert.is_nil(errs[i])
          assert.equal(tostring(i), results[i])
        end
        assert.same({ wire = case[2] == "wire" and 6 or 0, curl = case[2] == "curl" and 6 or 0 }, n)
        -- the libcurl client is never made where wire serves
        assert.equal(case[2] == "curl", t.client ~= nil)
        -- a paykit.loop call too
        local lp, h
        n = starts_during(function()
          lp = require("paykit.loop").new()
          h = lp:start(function() return t:request { url = base .. "/_sink/pick?reply=loop" } end)
          while not h:done() do lp:step(0.05) end
        end)
        lp:close()
        assert.equal("loop", assert(h:result()).body)
        assert.same({ wire = case[2] == "wire" and 1 or 0, curl = case[2] == "curl" and 1 or 0 }, n)
        t:close()
      end)
    end

    it("a URL wire cannot use (user information): libcurl under auto, wire's refusal (never sent) under wire", function()
      local url = base:gsub("^http://", "http://user:pw@") .. "/_sink/pickauth?reply="
      local t = http.new { retry = false }
      local results, errs
      local n = starts_during(function() results, errs = run(t, url, 3) end)
      for i = 1, 3 do
        assert.is_nil(errs[i])
        assert.equal(tostring(i), results[i])
      end
      -- wire refused each at start (nothing sent), libcurl sent it
      assert.same({ wire = 3, curl = 3 }, n)
      assert.equal(3, #sink_log("pickauth"))
      t:close()
      t = http.new { retry = false, transport = "wire" }
      n = starts_during(function() results, errs = run(t, url, 3) end)
      for i = 1, 3 do
        assert.is_nil(results[i])
        assert.equal("unusable_url", errs[i].code)
        assert.matches("never reached", errs[i].message)
      end
      assert.same({ wire = 3, curl = 0 }, n)
      assert.equal(3, #sink_log("pickauth"))
      t:close()
    end)

    it("libcurl when a proxy variable is set (auto), through the proxy", function()
      -- the sandbox nginx as the proxy: a name under .invalid resolves nowhere, so an answer
      -- means libcurl sent the absolute URL to the proxy
      local LUA = rawget(_G, "jit") and "luajit" or "lua5.4"
      local code = [[
        local core = require "paykit.core"
        local wl = core.wire_loop
        local wired = 0
        core.wire_loop = function()
          local l = wl()
          return setmetatable({ start = function(_, c, r) wired = wired + 1; return l:start(c, r) end },
            { __index = function(_, k) return function(_, ...) return l[k](l, ...) end end })
        end
        local t = require("paykit.http").new { retry = false }
        local r, e = require("paykit.batch")({ function()
          local res, err = t:request { url = "http://paykit-proxy.invalid/_sink/pickproxy?reply=via-proxy" }
          return res and res.body, err and err.code
        end })
        print(r[1], e[1], wired, t.wire, t.client ~= nil)]]
      local p = assert(io.popen("http_proxy=" .. base .. " " .. LUA
        .. " -e 'package.path=\"./lua/?.lua;./lua/?/init.lua;\"..package.path;"
        .. " package.cpath=\"./build/" .. LUA .. "/?.so;\"..package.cpath' -e '" .. code .. "' 2>&1"))
      local out = p:read("*a")
      p:close()
      assert.matches("^via%-proxy\tnil\t0\tfalse\ttrue", out)
    end)
  end)

  it("hands the requests of all waiting tasks to one loop, max_in_flight at a time", function()
    local core = require "paykit.core"
    local real = core.http_loop
    local loops, starts, most = 0, 0, 0
    core.http_loop = function()
      loops = loops + 1
      local l = real()
      return setmetatable({ start = function(_, c, req)
        starts = starts + 1
        local id, o = l:start(c, req)
        if l:count() > most then most = l:count() end
        return id, o
      end }, { __index = function(_, k) return function(_, ...) return l[k](l, ...) end end })
    end
    local t = http.new { transport = "curl" }
    local tasks = {}
    for i = 1, 30 do
      tasks[i] = function() return (assert(t:request { url = base .. "/_sink/onebatch?reply=" .. i })).body end
    end
    local ok, results = pcall(batch, tasks, { max_in_flight = 8 })
    core.http_loop = real
    assert(ok, results)
    assert.equal(1, loops)
    assert.equal(30, starts)
    assert.equal(8, most)
    for i = 1, 30 do assert.equal(tostring(i), results[i]) end
    t:close()
  end)

  it("runs tasks over the wire transport (core.wire_loop), results in order, max_in_flight at a time", function()
    local t = http.new { transport = "wire" }
    assert.equal("paykit.wire.client", getmetatable(t:wire_client()).__name)
    local running, most = 0, 0
    local tasks = {}
    for i = 1, 300 do
      tasks[i] = function()
        running = running + 1
        if running > most then most = running end
        local a = assert(t:request { url = base .. "/_sink/wirebatch?reply=a" .. i })
        local b = assert(t:request { method = "POST", url = base .. "/_sink/wirebatch?reply=b" .. i, body = a.body })
        running = running - 1
        return a.body .. "," .. b.body
      end
    end
    local results, errs = batch(tasks, { max_in_flight = 24 })
    for i = 1, 300 do
      assert.is_nil(errs[i])
      assert.equal("a" .. i .. ",b" .. i, results[i])
    end
    assert.equal(24, most)
    assert.equal(600, #sink_log("wirebatch"))
    t:close()
  end)

  it("lets a task make several requests one after another", function()
    local t = http.new {}
    local tasks = {}
    for i = 1, 20 do
      tasks[i] = function()
        local a = assert(t:request { url = base .. "/_sink/seq?reply=a" .. i })
        local b = assert(t:request { method = "POST", url = base .. "/_sink/seq?reply=b" .. i, body = a.body })
        return a.body .. "," .. b.body
      end
    end
    local results = batch(tasks)
    for i = 1, 20 do assert.equal("a" .. i .. ",b" .. i, results[i]) end
    local log = sink_log("seq")
    assert.equal(40, #log)
    local posted = 0
    for _, r in ipairs(log) do if r.method == "POST" then posted = posted + 1; assert.matches("^a%d+$", r.body) end end
    assert.equal(20, posted)
    t:close()
  end)

  it("keeps a task's raised error in errs and finishes the others", function()
    local t = http.new {}
    local results, errs = batch {
      function() return (assert(t:request { url = base .. "/_sink/raise?reply=one" })).body end,
      function() error("task two broke", 0) end,
      function() return (assert(t:request { url = base .. "/_sink/raise?reply=three" })).body end,
    }
    assert.equal("one", results[1])
    assert.is_nil(results[2])
    assert.equal("task two broke", errs[2])
    assert.equal("three", results[3])
    t:close()
  end)

  it("files every task's outcome when tasks raise after a request while others fail at start (300 tasks)", function()
    -- a raising task ends its worker, whose callback starts a new one inside the loop's drain;
    -- a start refused at once (an unusable URL under transport = wire) is runnable at once there
    local t = http.new { transport = "wire", retry = false }
    local bad = base:gsub("^http://", "http://user:pw@") .. "/_sink/reentry?reply=never"
    local tasks = {}
    for i = 1, 300 do
      tasks[i] = function()
        if i % 3 == 1 then
          local _, err = t:request { url = bad }
          return "refused", err and err.code
        end
        local res = assert(t:request { url = base .. "/_sink/reentry?reply=" .. i })
        if i % 3 == 0 then error({ task = i, body = res.body }) end
        return res.body
      end
    end
    local results, errs = batch(tasks, { max_in_flight = 8 })
    for i = 1, 300 do
      if i % 3 == 1 then
        assert.equal("refused", results[i])
        assert.equal("unusable_url", errs[i])
      elseif i % 3 == 0 then
        assert.is_nil(results[i])
        assert.same({ task = i, body = tostring(i) }, errs[i])
      else
        assert.equal(tostring(i), results[i])
        assert.is_nil(errs[i])
      end
    end
    assert.equal(200, #sink_log("reentry")) -- each request sent once, the refused ones never
    t:close()
  end)

  it("gives a transport error to the one task whose request failed, after its retries", function()
    local t = http.new { retry = { attempts = 3, base_delay = 0.01, max_delay = 0.02 } }
    -- two failing tasks, each waiting 0.6 s twice (random = 1: no jitter): with the backoff
    -- sleeps yielded to the scheduler they wait side by side (~1.2 s), blocking they would
    -- wait one after the other (~2.4 s); the bound leaves a loaded machine 0.8 s
    local dead = http.new { retry = { attempts = 3, base_delay = 0.6, max_delay = 0.6 }, random = function() return 1 end }
    local attempts = 0
    dead.hooks.before = function() attempts = attempts + 1 end
    local started = http.now()
    local results, errs = batch {
      function() return t:request { url = base .. "/_sink/ok?reply=fine" } end,
      function() return dead:request { url = "http://127.0.0.1:1/nothing" } end,
      function() return dead:request { url = "http://127.0.0.1:1/nothing-either" } end,
    }
    local elapsed = http.now() - started
    assert.equal("fine", results[1].body)
    for i = 2, 3 do
      assert.is_nil(results[i])
      assert.truthy(paykit.errors.is(errs[i]))
      assert.equal("transport", errs[i].kind)
      assert.equal("connect", errs[i].code)
    end
    assert.equal(6, attempts) -- a connection never made is retried: 3 attempts per task
    assert.is_true(elapsed >= 1.15 and elapsed < 2.0, "the two tasks' backoff took " .. elapsed .. " s")
    t:close(); dead:close()
  end)

  it("does not intercept requests made in coroutines of its own", function()
    local t = http.new {}
    local co = coroutine.wrap(function() return (assert(t:request { url = base .. "/_sink/own?reply=direct" })).body end)
    assert.equal("direct", co())
    t:close()
  end)

  it("inside nginx runs the tasks as light threads over cosockets, results in order", function()
    local nginx = require "spec.support.nginx"
    local port = 18857
    local srv = nginx.start("batch_spec", [[
      server {
        listen 127.0.0.1:${PORT};
        location = /run { content_by_lua_block {
          local paykit, http = require "paykit", require "paykit.http"
          local t = http.new {}
          local tasks = {}
          for i = 1, 30 do
            tasks[i] = function()
              local res = assert(t:request { url = "${SANDBOX}/_sink/innginx?reply=n" .. i })
              return res.body
            end
          end
          local results = paykit.batch(tasks, { max_in_flight = 8 })
          ngx.print(table.concat(results, ","), ";curl client made: ", tostring(t.client ~= nil))
        } }
      }
    ]], { PORT = port, SANDBOX = base })
    local t = http.new { retry = false }
    local res, err = t:request { url = "http://127.0.0.1:" .. port .. "/run" }
    t:close()
    srv:stop()
    assert.is_nil(err)
    local want = {}
    for i = 1, 30 do want[i] = "n" .. i end
    assert.equal(table.concat(want, ",") .. ";curl client made: false", res.body)
    assert.equal(30, #sink_log("innginx"))
  end)

  it("starts a task only when one of the window's max_in_flight tasks has finished (10,000 tasks)", function()
    -- every task waits on the loop (a backoff-sized sleep, and every 50th a request to the
    -- sandbox), so many are in progress together; none may begin before a running one ended
    local t = http.new {}
    local running, most, began = 0, 0, 0
    local order_ok = true
    local tasks = {}
    for i = 1, 10000 do
      tasks[i] = function()
        began = began + 1
        if began ~= i then order_ok = false end
        running = running + 1
        if running > most then most = running end
        http.sleep(0.0005)
        local body = "s" .. i
        if i % 50 == 0 then body = (assert(t:request { url = base .. "/_sink/window?reply=w" .. i })).body end
        running = running - 1
        return body, i
      end
    end
    local results, errs = batch(tasks, { max_in_flight = 16 })
    assert.equal(16, most)
    assert.is_true(order_ok, "tasks began out of their order")
    assert.equal(10000, #results)
    for i = 1, 10000 do
      assert.equal(i % 50 == 0 and "w" .. i or "s" .. i, results[i])
      assert.equal(i, errs[i])
    end
    assert.equal(200, #sink_log("window"))
    t:close()
  end)

  it("keeps each task's first two values in its own slot, holes and raised errors included", function()
    local tasks = {}
    for i = 1, 300 do
      tasks[i] = function()
        http.sleep(0.0005)
        if i % 3 == 0 then return nil, "no" .. i end
        if i % 3 == 1 then error({ task = i }) end
        return i, nil, "a third value is dropped"
      end
    end
    local results, errs = batch(tasks, { max_in_flight = 7 })
    for i = 1, 300 do
      if i % 3 == 0 then
        assert.is_nil(results[i]); assert.equal("no" .. i, errs[i])
      elseif i % 3 == 1 then
        assert.is_nil(results[i]); assert.same({ task = i }, errs[i])
      else
        assert.equal(i, results[i]); assert.is_nil(errs[i])
      end
    end
  end)

  it("runs with the collector pause gc_pause asks for, and restores the caller's afterwards", function()
    local before = collectgarbage("setpause", 180)
    local seen = {}
    local function task()
      http.sleep(0.001)
      local p = collectgarbage("setpause", 100); collectgarbage("setpause", p)
      seen[#seen + 1] = p
      return p
    end
    batch({ task, task, task }, { gc_pause = 120 })
    local after = collectgarbage("setpause", before)
    assert.same({ 120, 120, 120 }, seen)
    assert.equal(180, after)
    for _, bad in ipairs { 0, 49, 1001, 100.5, "100" } do
      assert.has_error(function() batch({ task }, { gc_pause = bad }) end)
    end
  end)

  it("returns empty arrays for no tasks and refuses what is not a task", function()
    local r, e = batch {}
    assert.same({}, r); assert.same({}, e)
    assert.has_error(function() batch { 1 } end)
    assert.has_error(function() batch({ function() end }, { max_in_flight = 0 }) end)
    assert.has_error(function() batch("nope") end)
  end)

  it("reports a task that yields something of its own, and runs the tasks after it", function()
    local t = http.new {}
    local function fetch(i) return function() return (assert(t:request { url = base .. "/_sink/yields?reply=y" .. i })).body end end
    local results, errs = batch({ fetch(1), function() coroutine.yield("hello") end, fetch(3),
      function() coroutine.yield("again") end, function() coroutine.yield("and again") end, fetch(6) }, { max_in_flight = 1 })
    for _, i in ipairs { 2, 4, 5 } do
      assert.is_nil(results[i])
      assert.matches("yielded something other than a request", errs[i])
    end
    assert.equal("y1", results[1]); assert.equal("y3", results[3]); assert.equal("y6", results[6])
    t:close()
  end)

  it("gives a task's error none of the answer ids an earlier task of the batch received", function()
    local t = http.new { request_id_field = "rid", retry = false }
    local results, errs = batch({
      function() return (assert(t:request { url = base .. "/_sink/ids?reply=" .. '{"rid":"r-first"}', json = true })).json.rid end,
      -- a provider error built without an answer of its own (as a provider refusing what it read)
      function() return nil, paykit.errors.new { kind = "provider", code = "unusable", message = "no answer here" } end,
    }, { max_in_flight = 1 })
    assert.equal("r-first", results[1])
    assert.equal("unusable", errs[2].code)
    assert.is_nil(errs[2].request_id)
    t:close()
  end)
end)
