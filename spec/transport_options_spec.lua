-- Transport options on both transports, against real servers: a spec nginx (port 18875 a
-- front whose handler calls through paykit.http over cosockets, 18876 an upstream that says
-- which connection a request came on and can answer slowly) and the fault server
-- (spec/support/fault_server.lua: its hang and trickle cells).
--   * per-call timeouts override the instance's (request fields and http.with)
--   * read_timeout ends a call on a server that never answers or trickles, long before the
--     call's own timeout
--   * pool_size limits the idle connections kept; keepalive_timeout closes idle ones
--   * a typo or a wrong type among the options is refused at construction, the field named
local nginx = require "spec.support.nginx"
local fault = require "spec.support.fault"
local http = require "paykit.http"
local cjson = require "cjson"
local socket = require "socket"

local FRONT, UP, BACKLOG = 18875, 18876, 18878 -- BACKLOG: a listener that never accepts
local CONF = [[
  server {
    listen 127.0.0.1:${UP};
    keepalive_requests 10000;
    location = /conn { content_by_lua_block {
      local ms = tonumber(ngx.var.arg_ms)
      if ms then ngx.sleep(ms / 1000) end
      ngx.header["Content-Type"] = "text/plain"
      ngx.print(ngx.var.connection)
    } }
    location = /bytes { content_by_lua_block { ngx.print(string.rep("b", tonumber(ngx.var.arg_n))) } }
    location = /ua { content_by_lua_block { ngx.print(ngx.var.http_user_agent or "(none)") } }
    location = /auth { content_by_lua_block { ngx.print(ngx.var.http_authorization or "(none)") } }
    # never reads the request body: a large one fills the socket buffers and the sender waits
    location = /noread {
      client_max_body_size 0;
      content_by_lua_block { ngx.sleep(30); ngx.say("late") }
    }
  }
  server {
    listen 127.0.0.1:${FRONT};
    # q = {opts = {...http.new options}, calls = {{req = {...}, parallel = n, sleep = s}, ...}}
    location = /run { content_by_lua_block {
      local cjson = require "cjson"
      local http = require "paykit.http"
      ngx.req.read_body()
      local q = cjson.decode(ngx.req.get_body_data())
      local t = http.new(q.opts)
      for _, c in ipairs(q.calls) do
        if c.req.body_mb then c.req.body = string.rep("x", c.req.body_mb * 1048576); c.req.body_mb = nil end
      end
      local function one(req)
        local res, err = t:request(req)
        return { status = res and res.status, body = res and res.body, code = err and err.code,
                 message = err and err.message }
      end
      local out = {}
      for i, c in ipairs(q.calls) do
        if c.sleep then ngx.sleep(c.sleep) end
        local got = {}
        if c.parallel then
          local threads = {}
          for j = 1, c.parallel do threads[j] = ngx.thread.spawn(one, c.req) end
          for j = 1, c.parallel do local _, r = ngx.thread.wait(threads[j]); got[j] = r end
        else
          got[1] = one(c.req)
        end
        out[i] = got
      end
      ngx.header["Content-Type"] = "application/json"
      ngx.say(cjson.encode(out))
    } }
  }
]]

local function up(path) return "http://127.0.0.1:" .. UP .. path end
local function faulty(cell) return "http://127.0.0.1:" .. fault.PORTS.http .. "/" .. cell .. "/x" end

-- Runs calls inside nginx (cosockets); returns, per call, the list of {status, body, code}.
local function in_nginx(opts, calls)
  opts.retry = false
  local reader = http.new { retry = false, timeout = 120 }
  local res = assert(reader:request { method = "POST", url = "http://127.0.0.1:" .. FRONT .. "/run",
    body = cjson.encode { opts = opts, calls = calls } })
  assert(res.status == 200, res.body)
  return cjson.decode(res.body)
end

-- A CA directory holding crt under its subject hash (what capath wants); returns the directory.
local function capath(crt)
  local dir = crt:gsub("[^/]+$", "") .. "capath"
  local p = assert(io.popen("openssl x509 -hash -noout -in '" .. crt .. "'"))
  local hash = assert(p:read("*l"))
  p:close()
  assert(os.execute("mkdir -p '" .. dir .. "' && cp '" .. crt .. "' '" .. dir .. "/" .. hash .. ".0'"))
  return dir
end

local function set(list)
  local s = {}
  for _, r in ipairs(list) do s[r.body] = true end
  return s
end

describe("transport options", function()
  local srv, flt

  lazy_setup(function()
    flt = fault.start(nginx.root())
    srv = nginx.start("transport-options", CONF, { FRONT = FRONT, UP = UP, WORKERS = 1 })
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if flt then flt.stop() end
  end)

  describe("at construction", function()
    local cases = {
      { { pool_sise = 4 }, "pool_sise", "unknown" },
      { { readtimeout = 1 }, "readtimeout", "unknown" },
      { { timeout = "30" }, "timeout", "invalid" },
      { { connect_timeout = -1 }, "connect_timeout", "invalid" },
      { { send_timeout = {} }, "send_timeout", "invalid" },
      { { read_timeout = 0 / 0 }, "read_timeout", "invalid" },
      { { pool_size = 0 }, "pool_size", "invalid" },
      { { pool_size = 2.5 }, "pool_size", "invalid" },
      { { keepalive_timeout = "60s" }, "keepalive_timeout", "invalid" },
      { { pool_name = 7 }, "pool_name", "invalid" },
      { { correlation_header = "X Bad" }, "correlation_header", "invalid" },
      { { request_id_headers = "X-Request-Id" }, "request_id_headers", "invalid" },
      { { request_id_headers = { "ok", "bad:name" } }, "request_id_headers", "invalid" },
      { { request_id_field = 1 }, "request_id_field", "invalid" },
      { { request_id_headers = { "X-Request-Id", false } }, "request_id_headers", "invalid" },
      { { verify_tls = "no" }, "verify_tls", "invalid" },
      { { cafile = true }, "cafile", "invalid" },
      { { max_response = 1.5 }, "max_response", "invalid" },
      { { user_agent = 2 }, "user_agent", "invalid" },
    }
    for _, c in ipairs(cases) do
      it("refuses " .. c[2] .. " " .. c[3], function()
        local ok, err = pcall(http.new, c[1])
        assert.is_false(ok)
        assert.are.equal("config", err.kind)
        assert.are.equal(c[2], err.field)
        assert.are.equal(c[3], err.code)
      end)
    end

    it("refuses them through a provider's options too", function()
      local gw, err = require("paykit").moka { dealer_code = "1", username = "u", password = "p",
        read_timeout = "soon" }
      assert.is_nil(gw)
      assert.are.equal("read_timeout", err.field)
    end)

    it("refuses a malformed per-call option in http.with", function()
      local ok, err = pcall(http.with, { timout = 1 }, function() end)
      assert.is_false(ok)
      assert.are.equal("timout", err.field)
      ok, err = pcall(http.with, { read_timeout = -2 }, function() end)
      assert.is_false(ok)
      assert.are.equal("read_timeout", err.field)
    end)
  end)

  -- The two C transports outside nginx: wire (the default) and libcurl. Every option
  -- paykit.http passes to them has an effect on both.
  for _, kind in ipairs { "wire", "curl" } do
    local label = kind == "curl" and "libcurl" or "wire"
    describe("through " .. label, function()
      local function new(o) o.transport = kind; return http.new(o) end

      it("is the client that serves the request", function()
        local t = new { retry = false }
        assert(t:request { url = up("/conn") })
        if kind == "wire" then
          assert.matches("^paykit%.wire%.client", tostring(t.wire))
          assert.is_nil(t.client)
        else
          assert.is_false(t.wire)
          assert.matches("^paykit%.http%.client", tostring(t.client))
        end
        t:close()
      end)

      it("ends a connection that is never accepted after connect_timeout, never sent", function()
        -- a listener with a full accept queue: the kernel drops further SYNs
        local l = assert(socket.tcp())
        l:setoption("reuseaddr", true)
        assert(l:bind("127.0.0.1", BACKLOG))
        assert(l:listen(1))
        local fill = {}
        for i = 1, 4 do local c = socket.tcp(); c:settimeout(0); c:connect("127.0.0.1", BACKLOG); fill[i] = c end
        socket.sleep(0.1)
        local t = new { connect_timeout = 0.3, timeout = 60, retry = false }
        local none, err = t:request { url = "http://127.0.0.1:" .. BACKLOG .. "/pay", method = "POST", body = "x" }
        for _, c in ipairs(fill) do c:close() end
        l:close()
        assert.is_nil(none)
        assert.are.equal("connect_timeout", err.code)
        assert.matches("never reached", err.message)
      end)

      it("lets a call's timeout override the instance's", function()
        local t = new { timeout = 0.3, retry = false }
        local res = assert(t:request { url = up("/conn?ms=1000"), timeout = 10 })
        assert.are.equal(200, res.status)
        local none, err = t:request { url = up("/conn?ms=1000") }
        assert.is_nil(none)
        assert.are.equal("timeout", err.code)
      end)

      it("lets http.with set a call's timeout for every request inside it", function()
        local t = new { timeout = 0.3, retry = false }
        local res = assert(http.with({ timeout = 10 }, t.request, t, { url = up("/conn?ms=1000") }))
        assert.are.equal(200, res.status)
        -- outside, the instance's again
        local _, err = t:request { url = up("/conn?ms=1000") }
        assert.are.equal("timeout", err.code)
      end)

      it("ends a call on a server that never answers after read_timeout, not the call's timeout", function()
        -- the hang cell holds the connection 60 s, then closes it (a recv error): a timeout
        -- here is read_timeout's
        local t = new { timeout = 120, read_timeout = 1, retry = false }
        local none, err = t:request { url = faulty("hang"), method = "POST", body = "{}" }
        assert.is_nil(none)
        assert.are.equal("timeout", err.code)
        assert.is_true(err.message:find("may have reached", 1, true) ~= nil)
      end)

      it("ends a call whose body the server does not read after send_timeout", function()
        -- 32 MiB to a server that never reads: once the socket buffers are full nothing moves;
        -- /noread answers after 30 s, a timeout before that is send_timeout's (libcurl: its
        -- stall timer)
        local t = new { timeout = 120, send_timeout = 1, retry = false }
        local none, err = t:request { url = up("/noread"), method = "POST", body = string.rep("x", 32 * 1048576) }
        assert.is_nil(none)
        assert.are.equal("timeout", err.code)
      end)

      if kind == "wire" then
        it("ends a call on a server that trickles its answer after read_timeout (one wait, not the whole answer)", function()
          -- the trickle cell sends a byte every 0.3 s: libcurl's stall timer (1 byte a second)
          -- never fires there; wire's read_timeout bounds each wait
          local t = new { timeout = 120, read_timeout = 0.1, retry = false }
          local none, err = t:request { url = faulty("trickle"), method = "POST", body = "{}" }
          assert.is_nil(none)
          assert.are.equal("timeout", err.code)
          assert.matches("read_timeout", err.message)
          -- a read_timeout longer than the gaps lets the same answer through to the call's timeout
          t = new { timeout = 1, read_timeout = 0.8, retry = false }
          none, err = t:request { url = faulty("trickle"), method = "POST", body = "{}" }
          assert.is_nil(none)
          assert.are.equal("timeout", err.code)
          assert.is_nil(err.message:find("read_timeout", 1, true))
        end)
      end

      it("keeps at most pool_size idle connections", function()
        -- two host names for one server (the fault server, which logs each request's
        -- connection): a connection is kept per name
        local function run(size)
          flt.reset()
          local t = new { pool_size = size, retry = false }
          local P = fault.PORTS.http
          assert(t:request { url = "http://127.0.0.1:" .. P .. "/ok/a" })
          assert(t:request { url = "http://localhost:" .. P .. "/ok/b" })
          assert(t:request { url = "http://127.0.0.1:" .. P .. "/ok/c" })
          t:close()
          local log = flt.log().requests
          assert.are.equal(3, #log)
          return log[1].conn == log[3].conn
        end
        assert.is_true(run(2))  -- 127.0.0.1's connection was kept beside localhost's
        assert.is_false(run(1)) -- only localhost's was kept
      end)

      it("closes a connection idle longer than keepalive_timeout", function()
        local function run(opts)
          local t = new(opts)
          local a = assert(t:request { url = up("/conn") }).body
          socket.sleep(2.2) -- libcurl counts idle time in whole seconds
          local b = assert(t:request { url = up("/conn") }).body
          t:close()
          return a == b
        end
        assert.is_true(run { retry = false })
        assert.is_false(run { retry = false, keepalive_timeout = 1 })
      end)

      it("refuses an answer larger than max_response with too_large", function()
        local t = new { retry = false, max_response = 1000 }
        assert.are.equal(200, assert(t:request { url = up("/bytes?n=1000") }).status)
        local none, err = t:request { url = up("/bytes?n=1001") }
        assert.is_nil(none)
        assert.are.equal("too_large", err.code)
      end)

      it("verifies TLS by default, with cafile, capath or not at all (verify_tls = false)", function()
        -- the untrusted cell: a self-signed certificate for localhost and 127.0.0.1
        local url = "https://localhost:" .. fault.PORTS.untrusted .. "/x"
        local function code(o)
          o.retry = false
          local res, err = new(o):request { url = url }
          return res and res.status or err.code
        end
        local crt = flt.dir .. "/untrusted.crt"
        assert.are.equal("tls_verify", code {})
        assert.are.equal("tls_verify", code { cafile = flt.cafile }) -- another CA
        assert.are.equal(200, code { cafile = crt })
        assert.are.equal(200, code { capath = capath(crt) })
        assert.are.equal(200, code { verify_tls = false })
        -- the wronghost cell: the test CA's certificate for wrong.example
        url = "https://localhost:" .. fault.PORTS.wronghost .. "/x"
        assert.are.equal("tls_verify", code { cafile = flt.cafile })
        assert.are.equal(200, code { cafile = flt.cafile, verify_tls = false })
      end)

      it("sends user_agent, or paykit/<version>", function()
        local t = new { retry = false }
        assert.are.equal("paykit/" .. require("paykit").VERSION, assert(t:request { url = up("/ua") }).body)
        t = new { retry = false, user_agent = "shop/3" }
        assert.are.equal("shop/3", assert(t:request { url = up("/ua") }).body)
      end)
    end)
  end

  describe("choice of the C transport", function()
    -- a Lua of the running kind, with this checkout's paths and the given environment
    local LUA = rawget(_G, "jit") and "luajit" or "lua5.4"
    local function lua_with(env, code)
      local cmd = env .. " " .. LUA .. " -e 'package.path=\"./lua/?.lua;./lua/?/init.lua;\"..package.path;"
        .. " package.cpath=\"./build/" .. LUA .. "/?.so;\"..package.cpath' -e '" .. code .. "' 2>&1"
      local p = assert(io.popen(cmd))
      local out = p:read("*a")
      p:close()
      return out
    end

    it("is wire by default, and libcurl for a URL wire cannot use (user information)", function()
      local t = http.new { retry = false }
      assert(t:request { url = up("/conn") })
      assert.is_truthy(t.wire)
      assert.is_nil(t.client)
      local res = assert(t:request { url = "http://user:pw@127.0.0.1:" .. UP .. "/auth" })
      assert.are.equal("Basic " .. require("paykit.core").b64_encode("user:pw"), res.body)
      assert.is_truthy(t.client)
      -- asked for wire only: wire's refusal, never sent
      local none, err = http.new { retry = false, transport = "wire" }:request {
        url = "http://user:pw@127.0.0.1:" .. UP .. "/auth" }
      assert.is_nil(none)
      assert.are.equal("unusable_url", err.code)
      assert.matches("never reached", err.message)
    end)

    it("gives a provider the transport kind it was asked for", function()
      local paykit = require "paykit"
      for _, kind in ipairs { "auto", "wire", "curl" } do
        local g = assert(paykit.moka { dealer_code = "1", username = "u", password = "p", transport = kind })
        assert.are.equal(kind, g.http.transport)
      end
      local g, err = paykit.moka { dealer_code = "1", username = "u", password = "p", transport = "fast" }
      assert.is_nil(g)
      assert.are.equal("transport", err.field)
    end)

    it("is libcurl when a proxy variable is set, and the request goes through the proxy", function()
      -- the upstream nginx as the proxy: a name under .invalid resolves nowhere, so an
      -- answer means libcurl sent the absolute URL to the proxy
      local out = lua_with("http_proxy=http://127.0.0.1:" .. UP, [[
        local t = require("paykit.http").new { retry = false }
        local res, err = t:request { url = "http://paykit-proxy.invalid/conn" }
        print(res and res.status, err and err.code, t.wire, t.client ~= nil)]])
      assert.matches("^200\tnil\tfalse\ttrue", out)
    end)

    it("follows PAYKIT_TRANSPORT for the default, and refuses a value it does not know", function()
      local out = lua_with("PAYKIT_TRANSPORT=curl", [[
        local t = require("paykit.http").new { retry = false }
        print(t.transport, t:wire_client())]])
      assert.matches("^curl\tfalse", out)
      out = lua_with("PAYKIT_TRANSPORT=fast", [[
        print(pcall(require("paykit.http").new, {}))]])
      assert.matches("PAYKIT_TRANSPORT", out)
      assert.matches("^false", out)
    end)
  end)

  describe("through cosockets", function()
    it("lets a call's timeout override the instance's", function()
      local out = in_nginx({ timeout = 0.3 }, {
        { req = { url = up("/conn?ms=1000"), timeout = 10 } },
        { req = { url = up("/conn?ms=1000") } },
      })
      assert.are.equal(200, out[1][1].status)
      assert.are.equal("timeout", out[2][1].code)
    end)

    it("lets a call's read_timeout override the instance's", function()
      local out = in_nginx({ timeout = 60, read_timeout = 0.3 }, {
        { req = { url = up("/conn?ms=1000"), read_timeout = 10 } },
        { req = { url = up("/conn?ms=1000") } },
      })
      assert.are.equal(200, out[1][1].status)
      assert.are.equal("timeout", out[2][1].code)
    end)

    it("ends a call on a server that never answers after read_timeout", function()
      local out = in_nginx({ timeout = 120, read_timeout = 0.5 },
        { { req = { url = faulty("hang"), method = "POST", body = "{}" } } })
      assert.are.equal("timeout", out[1][1].code)
      assert.is_true(out[1][1].message:find("may have reached", 1, true) ~= nil)
    end)

    it("ends a call whose body the server does not read after send_timeout", function()
      local out = in_nginx({ timeout = 120, send_timeout = 0.5 },
        { { req = { url = up("/noread"), method = "POST", body_mb = 32 } } })
      assert.are.equal("timeout", out[1][1].code)
    end)

    it("ends a call on a server that trickles its answer after read_timeout", function()
      -- the trickle cell sends a byte every 0.3 s (about 17 s for the whole body)
      local out = in_nginx({ timeout = 120, read_timeout = 0.1 },
        { { req = { url = faulty("trickle"), method = "POST", body = "{}" } } })
      assert.are.equal("timeout", out[1][1].code)
    end)

    it("keeps at most pool_size idle connections", function()
      local function reused(size)
        -- three connections at once, then three again: those of the second round that the
        -- first had opened came from the pool (pool_name: a fresh pool for each size)
        local out = in_nginx({ pool_size = size, pool_name = "size" .. size .. "-" .. os.time() }, {
          { req = { url = up("/conn?ms=200") }, parallel = 3 },
          { req = { url = up("/conn?ms=200") }, parallel = 3 },
        })
        local first, n = set(out[1]), 0
        for _, r in ipairs(out[2]) do
          assert.are.equal(200, r.status)
          if first[r.body] then n = n + 1 end
        end
        return n
      end
      assert.are.equal(1, reused(1))
      assert.are.equal(3, reused(3))
    end)

    it("closes a connection idle longer than keepalive_timeout", function()
      local function same(opts)
        local out = in_nginx(opts, {
          { req = { url = up("/conn") } },
          { req = { url = up("/conn") }, sleep = 0.8 },
        })
        return out[1][1].body == out[2][1].body
      end
      assert.is_true(same { pool_name = "idle-default" })
      assert.is_false(same { pool_name = "idle-short", keepalive_timeout = 0.2 })
    end)
  end)
end)
