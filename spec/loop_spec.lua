-- paykit.loop against the real sandbox nginx: calls that never block the host's tick, the
-- same answers as paykit.batch (through step, luv and cqueues), cancelling and the journal.
local sb = require "spec.support.sandbox"
local paykit = require "paykit"
local core = require "paykit.core"
local http = require "paykit.http"
local loop = require "paykit.loop"
local journal = require "paykit.journal"
local moka = require "paykit.sandbox.moka"

local LUA = rawget(_G, "jit") and "luajit" or "lua5.4"

local base, gw
local dealer = moka.credentials[1]

local function card(number) return { holder = "Ali Yilmaz", number = number, exp_month = "12", exp_year = "2030", cvc = "123" } end

local function new_gw(extra)
  local o = { dealer_code = dealer.DealerCode, username = dealer.Username, password = dealer.Password,
              base_url = base .. "/moka" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return assert(paykit.moka(o))
end

local function direct(ref, number)
  return { three_d = false, reference = ref, amount = "1.00", currency = "TL", client_ip = "127.0.0.1", card = card(number) }
end

-- What a call's answer says, without what differs from run to run (ids, timestamps).
local function outcome(r, e)
  if r then return (r.status or "?") .. ":" .. tostring(r.amount) end
  return "error:" .. tostring(type(e) == "table" and e.code or e)
end

describe("paykit.loop", function()
  lazy_setup(function() base = sb.start(); gw = new_gw() end)
  lazy_teardown(function() sb.stop() end)

  it("is exposed as paykit.loop", function()
    assert.equal(loop, paykit.loop)
  end)

  it("gets its calls' requests and backoffs from paykit.http through the scheduler paykit.runtime holds", function()
    -- a scheduler of the spec's own: paykit.http must hand it every attempt and every backoff
    -- of a coroutine it is installed for, and nothing of a coroutine without one
    local runtime = require "paykit.runtime"
    local seen = {}
    local mine = {
      request = function(_, transport, req) seen[#seen + 1] = "request " .. req.url; return transport:core_client():request(req) end,
      sleep = function(_, s) seen[#seen + 1] = "sleep" .. (s > 0 and "" or " 0") end,
    }
    local t = http.new { retry = { attempts = 2, base_delay = 0.01, max_delay = 0.01 } }
    local co = coroutine.create(function()
      local r = assert(t:request { url = base .. "/_sink/sched?reply=mine" })
      local _, err = t:request { url = "http://127.0.0.1:1/refused" }
      return r.body, err.code
    end)
    runtime.set_scheduler(co, mine)
    assert.equal(mine, runtime.scheduler(co))
    local ok, body, code = coroutine.resume(co)
    assert.is_true(ok, body)
    assert.equal("mine", body)
    assert.equal("connect", code)
    assert.same({ "request " .. base .. "/_sink/sched?reply=mine", "request http://127.0.0.1:1/refused", "sleep",
      "request http://127.0.0.1:1/refused" }, seen)
    assert.is_nil(runtime.scheduler()) -- the spec itself runs without one
    assert.has_error(function() runtime.set_scheduler(co, { request = true }) end)
    t:close()
  end)

  it("keeps the host's tick running while a slow-card payment is in flight for 3 s", function()
    local lp = loop.new()
    local h = lp:start(function() return gw:purchase(direct("loop-slow-" .. core.random_hex(4), moka.cards.slow)) end)
    local ticks = 0
    while not h:done() do
      ticks = ticks + 1        -- one tick of the game
      lp:step(0)
      core.sleep(0.01)
    end
    local r, err = h:result()
    assert.is_nil(err)
    assert.equal("paid", r.status)
    assert.is_true(ticks >= 100, "ticks while in flight: " .. ticks)
    print(("\n  slow card: %d ticks of the host loop ran while the payment was in flight"):format(ticks))
  end)

  it("step(0) with nothing ready makes no system call that waits (strace)", function()
    if os.execute("command -v strace >/dev/null 2>&1") ~= true and os.execute("command -v strace >/dev/null 2>&1") ~= 0 then
      pending("strace is not installed"); return
    end
    local log = os.tmpname()
    local cmd = ("PAYKIT_SANDBOX_URL=%s strace -f -qq -o %s "
      .. "-e trace=poll,ppoll,select,pselect6,epoll_wait,epoll_pwait,openat %s spec/support/loop_step0.lua 2>&1")
      :format(base, log, LUA)
    local p = assert(io.popen(cmd))
    local out = p:read("*a"); p:close()
    assert.matches("step0: 200 steps, done=false", out)
    local f = assert(io.open(log)); local text = f:read("*a"); f:close(); os.remove(log)
    local inside, waits, seen = false, {}, 0
    for line in text:gmatch("[^\n]+") do
      if line:find("paykit-step0-begin", 1, true) then inside = true
      elseif line:find("paykit-step0-end", 1, true) then inside = false
      elseif inside and line:match("epoll_wait%(") or inside and line:match("poll%(") or inside and line:match("select%(") then
        seen = seen + 1
        -- the timeout is the last argument: 0 (epoll_wait, poll) or a zero timespec/timeval
        local zero = line:match(",%s*0%)%s*=") or line:match("tv_sec=0, tv_nsec=0") or line:match("tv_sec=0, tv_usec=0")
        if not zero then waits[#waits + 1] = line end
      end
    end
    assert.same({}, waits)
    assert.is_true(seen <= 200, "at most one zero-timeout poll per step: " .. seen)
  end)

  it("finishes 1,000 calls through step, luv and cqueues with the same results as paykit.batch", function()
    local refs = {}
    for i = 1, 3 do
      refs[i] = "loop-st-" .. core.random_hex(6)
      assert(gw:purchase(direct(refs[i], i == 2 and moka.cards.decline or moka.cards.approve[1])))
    end
    refs[4] = "loop-none-" .. core.random_hex(6) -- not a payment
    local N = 1000
    local function tasks(tag)
      local t = {}
      for i = 1, N do
        if i % 10 == 0 then -- a charging call now and then: exactly once each
          t[i] = function() return gw:purchase(direct(tag .. "-" .. i, i % 20 == 0 and moka.cards.decline or moka.cards.approve[2])) end
        else
          t[i] = function() return gw:status(refs[i % 4 + 1]) end
        end
      end
      return t
    end
    local function norm(results, errs)
      local o = {}
      for i = 1, N do o[i] = outcome(results[i], errs[i]) end
      return o
    end
    local want = norm(paykit.batch(tasks("lb-" .. core.random_hex(3)), { max_in_flight = 64 }))

    -- the plain tick
    local lp = loop.new { max_in_flight = 64 }
    local rs, es, steps = {}, {}, 0
    for i, fn in ipairs(tasks("ls-" .. core.random_hex(3))) do
      lp:start(fn, function(r, e) rs[i], es[i] = r, e end)
    end
    while lp:pending() > 0 do lp:step(0.05); steps = steps + 1 end
    assert.same(want, norm(rs, es))

    -- luv
    local uv = require "luv"
    lp = loop.new { max_in_flight = 64 }
    local driver = require("paykit.loop.luv").attach(lp)
    rs, es = {}, {}
    for i, fn in ipairs(tasks("lu-" .. core.random_hex(3))) do
      lp:start(fn, function(r, e) rs[i], es[i] = r, e end)
    end
    uv.run()
    driver:close()
    uv.run() -- libuv closes handles on its next turn
    assert.equal(0, lp:pending())
    assert.same(want, norm(rs, es))

    -- cqueues
    local cqueues = require "cqueues"
    local pk = require "paykit.loop.cqueues"
    local cq = cqueues.new()
    lp = loop.new { max_in_flight = 64 }
    local drv = pk.attach(lp, cq)
    rs, es = {}, {}
    local left = N
    for i, fn in ipairs(tasks("lc-" .. core.random_hex(3))) do
      cq:wrap(function()
        rs[i], es[i] = pk.call(lp, fn)
        left = left - 1
        if left == 0 then drv:close() end
      end)
    end
    assert(cq:loop())
    assert.same(want, norm(rs, es))
    local paid = 0
    for i = 1, N do if want[i]:match("^paid") then paid = paid + 1 end end
    print(("\n  1,000 calls: %d paid answers; the same %d outcomes through batch, step (%d steps), luv and cqueues")
      :format(paid, N, steps))
  end)

  it("finishes 20,000 calls started at once behind max_in_flight = 8 (a long request queue)", function()
    -- every call waits in the loop's queue for a transfer; the refused connections end quickly
    local t = http.new { retry = false }
    local lp = loop.new { max_in_flight = 8 }
    local n, refused = 20000, 0
    for _ = 1, n do
      lp:start(function() return t:request { url = "http://127.0.0.1:1/queued" } end,
        function(_, err) if err and err.code == "connect" then refused = refused + 1 end end)
    end
    lp:run()
    lp:close()
    assert.equal(n, refused)
    t:close()
  end)

  it("serves two transports' wire clients in turn from the same transfers, and lets go of them once closed", function()
    -- a transfer slot keeps its client's reference between transfers of that client (no new
    -- one per request); another client taking the slot, and closing the loop, let it go
    local ta, tb = http.new { retry = false }, http.new { retry = false }
    local lp = loop.new { max_in_flight = 4 }
    local got = {}
    for round = 1, 3 do
      for i = 1, 8 do
        local t = (i + round) % 2 == 0 and ta or tb
        lp:start(function() return t:request { url = base .. "/_sink/loopclients?reply=" .. round .. "-" .. i } end,
          function(r, err) got[#got + 1] = r and r.body or tostring(err) end)
      end
      lp:run()
    end
    assert.equal(24, #got)
    table.sort(got)
    assert.equal("1-1", got[1])
    assert.equal("3-8", got[24])
    local seen = setmetatable({ ta:wire_client(), tb:wire_client() }, { __mode = "v" })
    assert.is_truthy(seen[1] and seen[2])
    lp:close()
    ta, tb, lp = nil, nil, nil -- luacheck: ignore
    collectgarbage(); collectgarbage()
    assert.is_nil(seen[1])
    assert.is_nil(seen[2])
  end)

  it("files each call's request as its own when a call starts another from inside it", function()
    -- a call's handle is its coroutine's scheduler: the inner call's request (started while the
    -- outer call's coroutine runs) and the outer's own are filed on, and answered to, each
    -- their own call, on the wire loop and on libcurl's
    for _, kind in ipairs { "wire", "curl" } do
      local t = http.new { transport = kind, retry = false }
      local lp = loop.new()
      local inner, order = nil, {}
      local outer = lp:start(function()
        inner = lp:start(function()
          local r = assert(t:request { url = base .. "/_sink/nested?reply=inner-" .. kind })
          order[#order + 1] = "inner"
          return r.body
        end)
        local r = assert(t:request { url = base .. "/_sink/nested?reply=outer-" .. kind })
        order[#order + 1] = "outer"
        local again = assert(t:request { url = base .. "/_sink/nested?reply=again-" .. kind })
        return r.body .. "+" .. again.body
      end)
      lp:run()
      assert.equal("outer-" .. kind .. "+again-" .. kind, outer:result())
      assert.equal("inner-" .. kind, inner:result())
      assert.equal(2, #order)
      lp:close()
      t:close()
    end
  end)

  it("lets go of a finished call's last answer while its handle is kept", function()
    -- the answer a call was last resumed with stays on its handle only until the call is done
    local t = http.new { retry = false }
    local lp = loop.new()
    local answers = setmetatable({}, { __mode = "k" })
    local h = lp:start(function()
      local r = assert(t:request { url = base .. "/_sink/lastanswer?reply=kept" })
      answers[r] = true
      return r.body
    end)
    lp:run()
    assert.equal("kept", h:result())
    collectgarbage(); collectgarbage()
    assert.is_nil(next(answers))
    assert.is_true(h:done()) -- (the handle is still held here)
    lp:close()
    t:close()
  end)

  it("gives the same validation error as a blocking call, before any network", function()
    local bad = { reference = "x", amount = "1.005", currency = "TL", client_ip = "127.0.0.1", card = card(moka.cards.approve[1]), three_d = false }
    local _, want = gw:purchase(bad)
    local lp = loop.new()
    local h = lp:start(function() return gw:purchase(bad) end)
    assert.is_true(h:done()) -- refused before any request: done inside start
    local r, err = h:result()
    assert.is_nil(r)
    assert.equal(want.kind, err.kind)
    assert.equal(want.code, err.code)
    assert.equal(want.field, err.field)
  end)

  it("keeps a retry's backoff as a timer: the host steps on while a call waits to retry", function()
    local t = http.new { retry = { attempts = 3, base_delay = 0.3, max_delay = 0.3, deadline = 30 },
                         random = function() return 1 end }
    local lp = loop.new()
    local h = lp:start(function() return t:request { url = "http://127.0.0.1:1/refused" } end)
    local steps = 0
    while not h:done() do lp:step(0); steps = steps + 1; core.sleep(0.005) end
    local r, err = h:result()
    assert.is_nil(r)
    assert.equal("connect", err.code)
    assert.is_true(steps >= 20, "steps during two backoffs of 0.3 s: " .. steps)
  end)

  -- over libcurl (core.http_loop) and over the wire transport (core.wire_loop)
  for _, via in ipairs { "libcurl", "wire" } do
    local function gw_of()
      if via == "libcurl" then return gw end
      local g = new_gw { transport = http.new { transport = "wire" } }
      assert.equal("paykit.wire.client", getmetatable(g.http:wire_client()).__name)
      return g
    end
    it("cancelling a charging call in flight leaves its payment unknown in the journal, for the sweeper (" .. via .. ")", function()
      local vgw = gw_of()
      local jgw = journal.wrap(vgw, {})
      local ref = "loop-cancel-" .. core.random_hex(4)
      local lp = loop.new()
      local called = 0
      local h = lp:start(function() return jgw:purchase(direct(ref, moka.cards.slow)) end, function() called = called + 1 end)
      for _ = 1, 50 do lp:step(0.01) end -- the request is out: the slow card answers after 3 s
      assert.is_false(h:done())
      assert.is_true(h:cancel())
      assert.is_true(h:done())
      assert.equal(1, called)
      local r, err = h:result()
      assert.is_nil(r)
      assert.equal("cancelled", err.code)
      assert.is_false(err.retryable)
      assert.matches("may have reached the provider", err.message)
      local rec = jgw:record_of(ref)
      assert.equal("unknown", rec.state)
      -- the same reference is never sent again: the stored unknown outcome answers
      local _, again = jgw:purchase(direct(ref, moka.cards.slow))
      assert.equal("cancelled", again.code)
      -- and the sweeper resolves it from the provider's status once the slow answer is in
      core.sleep(3.2)
      local report = assert(jgw:sweep { older_than = 0 })
      assert.equal("paid", jgw:record_of(ref).state, require("cjson").encode(report))
    end)

    it("cancelling a call whose request never left leaves nothing sent: refused, retryable (" .. via .. ")", function()
      local vgw = gw_of()
      local jgw = journal.wrap(vgw, {})
      local lp = loop.new { max_in_flight = 1 }
      local first = lp:start(function() return vgw:purchase(direct("loop-busy-" .. core.random_hex(4), moka.cards.slow)) end)
      local ref = "loop-queued-" .. core.random_hex(4)
      local h = lp:start(function() return jgw:purchase(direct(ref, moka.cards.approve[1])) end)
      lp:step(0)
      assert.is_true(h:cancel())
      local _, err = h:result()
      assert.equal("cancelled", err.code)
      assert.is_true(err.retryable)
      assert.matches("never reached the provider", err.message)
      assert.equal("refused", jgw:record_of(ref).state)
      assert.is_true(first:cancel())
      lp:close()
      -- nothing reached the sandbox for the queued reference
      local found = vgw:status(ref)
      assert.is_true(found == nil or found.status ~= "paid")
    end)
  end
end)
