local http = require "paykit.http"
local errors = require "paykit.errors"
local nginx = require "spec.support.nginx"

local PORT = tonumber(os.getenv("PAYKIT_TEST_HTTP_PORT") or "18812")
local BASE = "http://127.0.0.1:" .. PORT
local CLOSED = "http://127.0.0.1:1/" -- nothing listens on port 1: connection refused

local CONF = [[
  lua_shared_dict counts 1m;
  server {
    listen 127.0.0.1:${PORT};
    location /json { content_by_lua_block { ngx.header.content_type = "application/json"; ngx.say('{"ok":true,"n":[1,2]}') } }
    location /echo { content_by_lua_block { ngx.req.read_body(); ngx.print(ngx.req.get_body_data() or "") } }
    location /slow { content_by_lua_block { ngx.sleep(1.5); ngx.say("late") } }
    location /flaky {
      content_by_lua_block {
        local key = ngx.var.arg_key
        local n = ngx.shared.counts:incr(key, 1, 0)
        if n <= tonumber(ngx.var.arg_fail or 1) then ngx.status = 503; ngx.say("busy"); return end
        ngx.say("ok after " .. n)
      }
    }
    location /count { content_by_lua_block { ngx.say(ngx.shared.counts:get(ngx.var.arg_key) or 0) } }
  }
]]

local srv
local seq = 0
local function key()
  seq = seq + 1
  return tostring(os.time()) .. "-" .. seq .. "-" .. math.random(1e6)
end

local function transport(opts)
  opts = opts or {}
  local t = { lines = {}, delays = {}, ctx = {} }
  opts.logger = opts.logger or function(level, line) t.lines[#t.lines + 1] = level .. " " .. line end
  opts.sleep = opts.sleep or function(s) t.delays[#t.delays + 1] = s end
  opts.random = opts.random or function() return 1 end
  opts.hooks = opts.hooks or {
    before = function(ctx) t.ctx[#t.ctx + 1] = { phase = "before", attempt = ctx.attempt } end,
    after = function(ctx) t.ctx[#t.ctx + 1] = ctx end,
  }
  t.http = http.new(opts)
  return t
end

local function get_count(k)
  local t = transport()
  local res = assert(t.http:request { url = BASE .. "/count?key=" .. k })
  return tonumber(res.body:match("%d+"))
end

describe("paykit.http", function()
  setup(function()
    srv = nginx.start("http_spec", CONF, { PORT = PORT })
  end)
  teardown(function() if srv then srv:stop() end end)

  it("returns status, headers, body and decoded JSON", function()
    local t = transport()
    local res, err = t.http:request { url = BASE .. "/json", json = true, op = "test.json" }
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.equal("application/json", res.headers["content-type"])
    assert.is_true(res.json.ok)
    assert.same({ 1, 2 }, res.json.n)
  end)

  it("sends a POST body", function()
    local t = transport()
    local res = assert(t.http:request { method = "POST", url = BASE .. "/echo", body = "a=1&b=2" })
    assert.equal("a=1&b=2", res.body)
  end)

  it("encodes a table body as JSON when json is set", function()
    local t = transport()
    local res = assert(t.http:request { method = "POST", url = BASE .. "/echo", body = { x = "y" }, json = true })
    assert.same({ x = "y" }, res.json)
  end)

  describe("retries", function()
    it("retries a connection that was never made, even when not idempotent", function()
      local t = transport { retry = { attempts = 3, base_delay = 0.1, max_delay = 1, deadline = 10 } }
      local res, err = t.http:request { method = "POST", url = CLOSED, body = "x", op = "test.connect" }
      assert.is_nil(res)
      assert.is_true(errors.is(err))
      assert.equal("transport", err.kind)
      assert.equal("connect", err.code)
      assert.is_true(err.retryable)
      assert.equal(2, #t.delays) -- 3 attempts, 2 waits
    end)

    it("backs off exponentially with a cap", function()
      local t = transport { retry = { attempts = 5, base_delay = 0.2, max_delay = 0.5, deadline = 10 } }
      t.http:request { url = CLOSED }
      assert.same({ 0.2, 0.4, 0.5, 0.5 }, t.delays)
    end)

    it("uses full jitter", function()
      local t = transport { retry = { attempts = 3, base_delay = 0.2, max_delay = 2, deadline = 10 },
                            random = function() return 0.25 end }
      t.http:request { url = CLOSED }
      assert.same({ 0.05, 0.1 }, t.delays)
    end)

    it("does not retry at all with retry = false", function()
      local t = transport { retry = false }
      local _, err = t.http:request { url = CLOSED }
      assert.equal("connect", err.code)
      assert.equal(0, #t.delays)
    end)

    it("stops when the next wait would pass the deadline", function()
      local t = transport { retry = { attempts = 10, base_delay = 1, max_delay = 1, deadline = 0.5 } }
      local _, err = t.http:request { url = CLOSED }
      assert.equal("connect", err.code)
      assert.equal(0, #t.delays)
    end)

    it("does not retry a timeout after sending when the call is not idempotent", function()
      local t = transport { timeout = 0.3, retry = { attempts = 3, base_delay = 0, max_delay = 0, deadline = 10 } }
      local res, err = t.http:request { method = "POST", url = BASE .. "/slow", body = "pay", op = "test.pay" }
      assert.is_nil(res)
      assert.equal("timeout", err.kind)
      assert.equal("timeout", err.code)
      assert.is_false(err.retryable)
      assert.equal(0, #t.delays)
    end)

    it("retries a timeout after sending when the call is idempotent", function()
      local t = transport { timeout = 0.3, retry = { attempts = 2, base_delay = 0, max_delay = 0, deadline = 10 } }
      local _, err = t.http:request { method = "POST", url = BASE .. "/slow", body = "q", idempotent = true }
      assert.equal("timeout", err.kind)
      assert.is_true(err.retryable)
      assert.equal(1, #t.delays)
    end)

    it("retries 503 only for idempotent calls", function()
      local k1, k2 = key(), key()
      local t = transport { retry = { attempts = 3, base_delay = 0, max_delay = 0, deadline = 10 } }
      local res = assert(t.http:request { url = BASE .. "/flaky?fail=1&key=" .. k1 })
      assert.equal(503, res.status)
      assert.equal(1, get_count(k1))
      res = assert(t.http:request { url = BASE .. "/flaky?fail=1&key=" .. k2, idempotent = true })
      assert.equal(200, res.status)
      assert.equal(2, get_count(k2))
    end)

    it("bounds an attempt's timeout by the overall deadline", function()
      local t = transport { timeout = 5, retry = { attempts = 1, deadline = 0.3 } }
      local started = http.now()
      local _, err = t.http:request { url = BASE .. "/slow" }
      assert.equal("timeout", err.kind)
      assert.is_true(http.now() - started < 1.2)
    end)
  end)

  describe("hooks and logging", function()
    it("calls before and after hooks with the documented context and no body", function()
      local t = transport()
      assert(t.http:request { method = "POST", url = BASE .. "/echo", body = "secret body", op = "test.echo" })
      assert.equal(2, #t.ctx)
      assert.same({ phase = "before", attempt = 1 }, t.ctx[1])
      local after = t.ctx[2]
      assert.equal("test.echo", after.op)
      assert.equal("POST", after.method)
      assert.equal(BASE .. "/echo", after.url)
      assert.equal(1, after.attempt)
      assert.equal(200, after.status)
      assert.is_number(after.elapsed)
      assert.is_nil(after.body)
    end)

    it("passes the error to the after hook", function()
      local t = transport { retry = false }
      t.http:request { url = CLOSED }
      assert.is_true(errors.is(t.ctx[2].err))
    end)

    it("survives a failing hook", function()
      local t = transport { hooks = { before = function() error("boom") end } }
      local res = assert(t.http:request { url = BASE .. "/json" })
      assert.equal(200, res.status)
      assert.truthy(table.concat(t.lines, "\n"):find("hook before failed", 1, true))
    end)

    it("logs one line per attempt", function()
      local t = transport { retry = { attempts = 3, base_delay = 0, max_delay = 0, deadline = 10 } }
      t.http:request { url = CLOSED, op = "test.refused" }
      local n = 0
      for _, l in ipairs(t.lines) do if l:find("attempt=%d error=connect") then n = n + 1 end end
      assert.equal(3, n)
    end)

    it("never logs a card number, CVC or password", function()
      local t = transport()
      local body = '{"CardNumber":"4111111111111111","CvcNumber":"123","Password":"hunter2"}'
      assert(t.http:request { method = "POST", url = BASE .. "/echo?password=pw1", body = body })
      local all = table.concat(t.lines, "\n")
      assert.truthy(all:find("411111******1111", 1, true)) -- the body was logged, scrubbed
      assert.is_nil(all:find("4111111111111111", 1, true))
      assert.is_nil(all:find('"123"', 1, true))
      assert.is_nil(all:find("hunter2", 1, true))
      assert.is_nil(all:find("pw1", 1, true))
    end)

    it("accepts a logger object with :log", function()
      local seen = {}
      local obj = { log = function(_, _, line) seen[#seen + 1] = line end }
      local h = http.new { logger = obj }
      assert(h:request { url = BASE .. "/json" })
      assert.is_true(#seen > 0)
    end)
  end)

  describe("transport choice", function()
    local saved_ngx
    before_each(function() saved_ngx = rawget(_G, "ngx") end)
    after_each(function()
      rawset(_G, "ngx", saved_ngx)
      package.loaded["paykit.cosocket"] = nil
    end)

    it("uses the cosocket transport in a cosocket phase", function()
      local got
      package.loaded["paykit.cosocket"] = { request = function(req, opts)
        got = { req = req, opts = opts }
        return { status = 299, headers = {}, body = "via cosocket" }
      end }
      rawset(_G, "ngx", { get_phase = function() return "content" end, sleep = function() end })
      local h = http.new { pool_size = 4, keepalive_timeout = 2.5, pool_name = "shop", read_timeout = 3 }
      local res = assert(h:request { url = BASE .. "/json", send_timeout = 1 })
      assert.equal(299, res.status)
      assert.equal(BASE .. "/json", got.req.url)
      -- the call's timeouts in milliseconds, the pool settings as options
      assert.is_true(got.req.timeout > 29000 and got.req.timeout <= 30000)
      assert.equal(1000, got.req.send_timeout)
      assert.equal(3000, got.req.read_timeout)
      assert.same({ 4, 2500, "shop" }, { got.opts.pool_size, got.opts.keepalive_timeout, got.opts.pool_name })
    end)

    it("uses curl outside cosocket phases when allowed to block", function()
      package.loaded["paykit.cosocket"] = { request = function() error("must not be called") end }
      rawset(_G, "ngx", { get_phase = function() return "init" end })
      local h = http.new { allow_blocking = true }
      local res = assert(h:request { url = BASE .. "/json" })
      assert.equal(200, res.status)
      -- and without the opt-in, refuses (spec/openresty_phases_spec.lua: in a real nginx)
      local none, err = http.new {}:request { url = BASE .. "/json" }
      assert.is_nil(none)
      assert.equal("blocking_phase", err.code)
    end)
  end)

  it("refuses malformed options with a config error", function()
    local ok, err = pcall(http.new, { timeout = "soon" })
    assert.is_false(ok)
    assert.equal("config", err.kind)
    assert.equal("timeout", err.field)
  end)
end)
