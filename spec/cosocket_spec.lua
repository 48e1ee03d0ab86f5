-- paykit.cosocket inside a real nginx (LuaJIT, build/luajit core): a "front" server whose
-- handlers call an "upstream" server of the same nginx through the cosocket transport.
-- Ports: 18820 front (no trusted CA), 18821 upstream (plain), 18822 upstream (TLS, valid
-- certificate for 127.0.0.1), 18823 front (lua_ssl_trusted_certificate = test CA),
-- 18824 upstream (TLS, certificate for another name), 18825 upstream (closes idle
-- connections after 300 ms), 18829 nothing listens.
-- The pure parser specs are in core_httpparse_spec.lua (they also run under valgrind).
local nginx = require "spec.support.nginx"
local fault = require "spec.support.fault"
local cjson = require "cjson"
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"

local FRONT, UP, UP_TLS, FRONT_TRUST, UP_BADNAME, UP_SHORT, CLOSED = 18820, 18821, 18822, 18823, 18824, 18825, 18829

local function sh(cmd)
  local ok, _, code = os.execute(cmd)
  if type(ok) == "number" then return ok == 0 end
  return ok and code == 0
end

local function write(path, data)
  local f = assert(io.open(path, "wb")); f:write(data); f:close()
end

-- A throwaway CA and two leaf certificates, made with the openssl CLI.
local function make_certs(dir)
  assert(sh("rm -rf '" .. dir .. "' && mkdir -p '" .. dir .. "'"))
  write(dir .. "/good.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
  write(dir .. "/bad.ext", "subjectAltName=DNS:other.example\n")
  local q = " >>'" .. dir .. "/openssl.log' 2>&1"
  local ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  assert(sh("cd '" .. dir .. "' && openssl req -x509" .. ec .. " -keyout ca.key -out ca.crt -days 2"
    .. " -subj '/CN=paykit test CA' -addext 'basicConstraints=critical,CA:TRUE'"
    .. " -addext 'keyUsage=critical,keyCertSign,cRLSign'" .. q), "openssl: CA")
  for _, name in ipairs { "good", "bad" } do
    assert(sh("cd '" .. dir .. "' && openssl req" .. ec .. " -keyout " .. name .. ".key -out " .. name
      .. ".csr -subj '/CN=paykit " .. name .. "'" .. q), "openssl: " .. name .. " key")
    assert(sh("cd '" .. dir .. "' && openssl x509 -req -in " .. name .. ".csr -CA ca.crt -CAkey ca.key"
      .. " -CAcreateserial -days 2 -out " .. name .. ".crt -extfile " .. name .. ".ext" .. q),
      "openssl: " .. name .. " certificate")
  end
end

local UPSTREAM_HANDLER = [[
      content_by_lua_block {
        local cjson = require "cjson"
        local uri, args = ngx.var.uri, ngx.req.get_uri_args()
        local n = tonumber(args.n or 10)
        if uri == "/echo" then
          ngx.req.read_body()
          local h = ngx.req.get_headers()
          local out = cjson.encode {
            method = ngx.req.get_method(), body = ngx.req.get_body_data() or "",
            content_type = h["content-type"], content_length = h["content-length"],
            host = h.host, connection = h.connection, user_agent = h["user-agent"],
            scheme = ngx.var.scheme, conn = ngx.var.connection, sni = ngx.var.ssl_server_name,
          }
          ngx.header["Content-Type"] = "application/json"
          ngx.header["Content-Length"] = #out
          ngx.print(out)
        elseif uri == "/chunked" then
          ngx.header["Content-Type"] = "text/plain"
          for i = 1, n do ngx.print("chunk " .. i .. ";"); ngx.flush(true) end
        elseif uri == "/length" then
          ngx.header["Content-Length"] = n
          ngx.print(string.rep("L", n))
        elseif uri == "/stream" then
          for _ = 1, n do ngx.print(string.rep("S", 1000)); ngx.flush(true) end
        elseif uri == "/slow" then
          ngx.sleep(tonumber(args.ms) / 1000)
          ngx.say("slow done")
        elseif uri == "/conn" then
          ngx.print(ngx.var.connection)
        else
          ngx.status = 404
          ngx.say("no such upstream path")
        end
      }
]]

local FRONT_HANDLER = [[
    location = /call {
      content_by_lua_block {
        local cjson = require "cjson"
        local cosocket = require "paykit.cosocket"
        local a = ngx.req.get_uri_args()
        ngx.req.read_body()
        local body = ngx.req.get_body_data() or a.body -- a POSTed body stays out of the access/error logs
        local url = (a.scheme or "http") .. "://" .. (a.host or "127.0.0.1") .. ":" .. (a.port or ]] .. UP .. [[) .. (a.path or "/conn")
        local out = { available = cosocket.available(), calls = {} }
        for i = 1, tonumber(a.times or 1) do
          ngx.update_time()
          local t0 = ngx.now()
          local res, err, code, maybe_sent = cosocket.request({
            method = a.method, url = url, body = body,
            headers = a.ct and { ["Content-Type"] = a.ct } or nil,
            timeout = tonumber(a.timeout), connect_timeout = tonumber(a.connect_timeout),
          }, { verify = a.verify ~= "0", max_response = tonumber(a.max), cafile = CAFILE })
          ngx.update_time()
          out.calls[i] = {
            status = res and res.status, headers = res and res.headers, body = res and res.body,
            err = err, code = code, maybe_sent = maybe_sent, elapsed = ngx.now() - t0,
          }
        end
        ngx.header["Content-Type"] = "application/json"
        ngx.say(cjson.encode(out))
      }
    }
    location = /fast { content_by_lua_block { ngx.say("fast") } }
    # a JSON list of calls ({path=, timeout=, port=, raise=}) made in order in this one request,
    # or with ?threads=N the same list in N light threads at once; raise: the call's send raises;
    # ?count=1: {made = the cosocket objects made, calls = the list's outcomes}
    location = /seq {
      content_by_lua_block {
        local cjson = require "cjson"
        local cosocket = require "paykit.cosocket"
        if ngx.var.arg_count then
          local tcp, made = ngx.socket.tcp, 0
          ngx.socket.tcp = function(...) made = made + 1; return tcp(...) end
          ngx.req.read_body()
          local out = {}
          local ok, e = pcall(function()
            for i, c in ipairs(cjson.decode(ngx.req.get_body_data())) do
              local res, err, code = cosocket.request { url = "http://127.0.0.1:" .. (c.port or ]] .. UP .. [[) .. c.path,
                timeout = c.timeout }
              out[i] = { status = res and res.status, body = res and res.body, code = code, err = err }
            end
          end)
          ngx.socket.tcp = tcp
          assert(ok, e)
          ngx.say(cjson.encode { made = made, calls = out })
          return
        end
        ngx.req.read_body()
        local list = cjson.decode(ngx.req.get_body_data())
        local methods = debug.getregistry().__tcp_cosocket_mt
        local function run()
          local out = {}
          for i, c in ipairs(list) do
            local real = methods.send
            if c.raise then methods.send = function() error("send raised") end end
            local ok, res, err, code = pcall(cosocket.request, { url = "http://127.0.0.1:" .. (c.port or ]] .. UP .. [[) .. c.path,
              timeout = c.timeout })
            methods.send = real
            out[i] = { raised = not ok or nil, status = ok and res and res.status or nil,
              body = ok and res and res.body or nil, code = ok and code or nil, err = ok and err or tostring(res) }
          end
          return out
        end
        local n = tonumber(ngx.var.arg_threads or 0)
        if n == 0 then ngx.say(cjson.encode(run())); return end
        local threads, all = {}, {}
        for i = 1, n do threads[i] = ngx.thread.spawn(run) end
        for i = 1, n do local _, out = ngx.thread.wait(threads[i]); all[i] = out end
        ngx.say(cjson.encode(all))
      }
    }
    # resty.core's sslhandshake asserts on some failure paths; this location makes it raise
    # (its method, for this one call) to show the error stays inside paykit.http's nil, err
    location = /raise {
      content_by_lua_block {
        local cjson = require "cjson"
        local methods = debug.getregistry().__tcp_cosocket_mt
        local real = methods.sslhandshake
        methods.sslhandshake = function() error("assertion failed!") end
        local t = require("paykit.http").new { retry = { attempts = 3, base_delay = 0 } }
        local attempts = 0
        t.hooks.before = function() attempts = attempts + 1 end
        local ok, res, err = pcall(t.request, t, { url = "https://localhost:" .. ngx.var.arg_port .. "/echo",
          body = "x=1", op = "test.raise" })
        methods.sslhandshake = real
        ngx.say(cjson.encode { raised = not ok, res = res ~= nil and ok, kind = ok and err and err.kind or nil,
          code = ok and err and err.code or nil, message = ok and err and err.message or tostring(res),
          attempts = attempts })
      }
    }
    location = /set_phase {
      set_by_lua_block $avail { return tostring(require("paykit.cosocket").available()) }
      return 200 $avail;
    }
]]

-- The keep-alive pool is per worker, shared by every server{}: the trusting front names its
-- CA file (opts.cafile), which keeps its verified connections in a pool of their own.
local function front(cafile)
  return (FRONT_HANDLER:gsub("CAFILE", cafile and ("%q"):format(cafile) or "nil"))
end

local function config(certs)
  return [[
  resolver 127.0.0.1:]] .. fault.PORTS.dns .. [[ ipv6=off; # the fault server's DNS: localhost -> 127.0.0.1
  server {
    listen 127.0.0.1:]] .. FRONT .. [[;
]] .. front(nil) .. [[
  }
  server {
    listen 127.0.0.1:]] .. FRONT_TRUST .. [[;
    lua_ssl_trusted_certificate ]] .. certs .. [[/ca.crt;
    lua_ssl_verify_depth 2;
]] .. front(certs .. "/ca.crt") .. [[
  }
  server {
    listen 127.0.0.1:]] .. UP .. [[;
    listen 127.0.0.1:]] .. UP_TLS .. [[ ssl;
    ssl_certificate ]] .. certs .. [[/good.crt;
    ssl_certificate_key ]] .. certs .. [[/good.key;
    keepalive_requests 1000;
    location / {
]] .. UPSTREAM_HANDLER .. [[
    }
  }
  server {
    listen 127.0.0.1:]] .. UP_SHORT .. [[;
    keepalive_timeout 300ms;
    location / {
]] .. UPSTREAM_HANDLER .. [[
    }
  }
  server {
    listen 127.0.0.1:]] .. UP_BADNAME .. [[ ssl;
    ssl_certificate ]] .. certs .. [[/bad.crt;
    ssl_certificate_key ]] .. certs .. [[/bad.key;
    location / {
]] .. UPSTREAM_HANDLER .. [[
    }
  }
]]
end

local function enc(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function get(port, path, body)
  local chunks = {}
  local _, status = http.request {
    url = "http://127.0.0.1:" .. port .. path, sink = ltn12.sink.table(chunks),
    method = body and "POST" or "GET", source = body and ltn12.source.string(body) or nil,
    headers = body and { ["content-length"] = tostring(#body) } or nil,
  }
  return status, table.concat(chunks)
end

-- Calls the front's /call handler; returns the decoded {available, calls = {...}}.
-- A body given as args.body is sent to the front as its request body.
local function call(args, port)
  local q, upbody = {}, nil
  for k, v in pairs(args) do
    if k == "body" then upbody = v else q[#q + 1] = k .. "=" .. enc(v) end
  end
  table.sort(q)
  local status, body = get(port or FRONT, "/call?" .. table.concat(q, "&"), upbody)
  assert(status == 200, "front answered " .. tostring(status) .. ": " .. tostring(body))
  return cjson.decode(body)
end

local function first(args, port)
  return call(args, port).calls[1]
end

describe("paykit.cosocket in nginx", function()
  local srv, dns

  setup(function()
    dns = fault.start(nginx.root())
    local root = nginx.root()
    local certs = root .. "/build/run/cosocket-certs"
    make_certs(certs)
    srv = nginx.start("cosocket", config(certs),
      { PORTS = { FRONT, UP, UP_TLS, FRONT_TRUST, UP_BADNAME, UP_SHORT }, WORKERS = 1 })
  end)

  teardown(function()
    if srv then srv:stop() end
    if dns then dns.stop() end
  end)

  describe("availability", function()
    it("is available in the content phase", function()
      assert.is_true(call({ path = "/conn" }).available)
    end)

    it("is not available in the set phase, nor outside nginx", function()
      local status, body = get(FRONT, "/set_phase")
      assert.equal(200, status)
      assert.equal("false", body)
      assert.is_false(require("paykit.cosocket").available())
    end)
  end)

  describe("plain HTTP", function()
    it("round-trips a JSON POST with Host, Content-Length and keep-alive set", function()
      local payload = cjson.encode { amount = "27.50", currency = "TRY", reference = "order-1" }
      local c = first { method = "POST", path = "/echo", body = payload, ct = "application/json" }
      assert.is_nil(c.err)
      assert.equal(200, c.status)
      assert.equal("application/json", c.headers["content-type"])
      local echo = cjson.decode(c.body)
      assert.equal("POST", echo.method)
      assert.equal(payload, echo.body)
      assert.same({ amount = "27.50", currency = "TRY", reference = "order-1" }, cjson.decode(echo.body))
      assert.equal("application/json", echo.content_type)
      assert.equal(tostring(#payload), echo.content_length)
      assert.equal("127.0.0.1:" .. UP, echo.host)
      assert.equal("keep-alive", echo.connection)
      assert.matches("^paykit/", echo.user_agent)
    end)

    it("reads a chunked answer", function()
      local c = first { path = "/chunked?n=4" }
      assert.equal(200, c.status)
      assert.equal("chunked", c.headers["transfer-encoding"])
      assert.equal("chunk 1;chunk 2;chunk 3;chunk 4;", c.body)
    end)

    it("reads a Content-Length answer", function()
      local c = first { path = "/length?n=70000" }
      assert.equal(200, c.status)
      assert.equal("70000", c.headers["content-length"])
      assert.equal(string.rep("L", 70000), c.body)
    end)

    it("passes non-2xx statuses through as responses", function()
      local c = first { path = "/missing" }
      assert.is_nil(c.err)
      assert.equal(404, c.status)
    end)
  end)

  describe("keep-alive", function()
    it("reuses one upstream connection across sequential calls", function()
      local out = call { path = "/conn", times = 3 }
      local conns = {}
      for i, c in ipairs(out.calls) do
        assert.equal(200, c.status)
        conns[i] = c.body
      end
      assert.equal(conns[1], conns[2])
      assert.equal(conns[2], conns[3])
    end)

    it("reuses the pooled connection from one front request to the next", function()
      local a = first { path = "/conn" }
      local b = first { path = "/conn" }
      assert.equal(a.body, b.body)
    end)

    it("opens a new connection when the server closed the pooled one while idle", function()
      local a = first { port = UP_SHORT, path = "/conn" }
      assert.equal(200, a.status)
      socket.sleep(0.6)
      local b = first { port = UP_SHORT, path = "/conn" }
      assert.is_nil(b.err)
      assert.equal(200, b.status)
      assert.are_not.equal(a.body, b.body)
    end)

    it("reuses a TLS connection too", function()
      local out = call({ scheme = "https", host = "localhost", port = UP_TLS, path = "/conn", times = 2 }, FRONT_TRUST)
      assert.equal(200, out.calls[1].status)
      assert.equal(out.calls[1].body, out.calls[2].body)
    end)
  end)

  -- the cosocket object of a call that ended cleanly is kept for the next call of the same
  -- coroutine in the same request (its connection is in nginx's pool meanwhile)
  describe("the kept cosocket object", function()
    local function seq(list, threads)
      local status, body = get(FRONT, "/seq" .. (threads and ("?threads=" .. threads) or ""), cjson.encode(list))
      assert.equal(200, status, body)
      return cjson.decode(body)
    end

    it("serves only the request that made it (nginx reuses coroutines across requests)", function()
      local conn
      for _ = 1, 6 do
        local out = seq { { path = "/conn" }, { path = "/conn" } }
        for _, c in ipairs(out) do
          assert.is_nil(c.raised, c.err)
          assert.equal(200, c.status, c.err)
          conn = conn or c.body
          assert.equal(conn, c.body) -- one pooled connection throughout
        end
      end
    end)

    -- (a request that nginx puts where an ended one was may get that one's object: nginx's
    -- connect checks only the request's address, and resets the object)
    it("is made at most once per request and used again by its next clean calls", function()
      local function counted(list)
        local status, body = get(FRONT, "/seq?count=1", cjson.encode(list))
        assert.equal(200, status, body)
        return cjson.decode(body)
      end
      for _ = 1, 3 do
        local got = counted { { path = "/conn" }, { path = "/conn" }, { path = "/conn" }, { path = "/conn" } }
        for _, c in ipairs(got.calls) do assert.equal(200, c.status, c.err) end
        assert.is_true(got.made <= 1, "objects made: " .. got.made) -- once, or none
      end
      -- a failed call's object is dropped: the next call makes another
      local got = counted { { path = "/conn" }, { path = "/slow?ms=400", timeout = 100 }, { path = "/conn" }, { path = "/conn" } }
      assert.equal("timeout", got.calls[2].code)
      assert.equal(200, got.calls[4].status)
      assert.is_true(got.made >= 1 and got.made <= 2, "objects made: " .. got.made)
    end)

    it("is never shared by two light threads of one request", function()
      local all = seq({ { path = "/slow?ms=30" }, { path = "/slow?ms=30" }, { path = "/conn" } }, 3)
      assert.equal(3, #all)
      for _, out in ipairs(all) do
        for _, c in ipairs(out) do
          assert.is_nil(c.raised, c.err)
          assert.equal(200, c.status, c.err)
        end
      end
    end)

    it("connects to whichever server the next call names (each keeps its own pooled connection)", function()
      local out = seq { { path = "/conn" }, { path = "/conn", port = UP_SHORT }, { path = "/conn" }, { path = "/conn", port = UP_SHORT } }
      for _, c in ipairs(out) do assert.equal(200, c.status, c.err) end
      assert.equal(out[1].body, out[3].body)
      assert.equal(out[2].body, out[4].body)
    end)

    it("does not bring back the connection of a failed call", function()
      local out = seq { { path = "/conn" }, { path = "/slow?ms=400", timeout = 100 }, { path = "/conn" }, { path = "/conn" } }
      assert.equal(200, out[1].status)
      assert.equal("timeout", out[2].code)
      assert.equal(200, out[3].status)
      assert.are_not.equal(out[1].body, out[3].body) -- the timed-out connection was closed
      assert.equal(out[3].body, out[4].body)
    end)

    -- the object keeps its waits across setkeepalive and connect, and paykit gives them again
    -- only when they change: each call must still wait what its own timeout allows
    it("gives each call on the kept object its own waits, longer or shorter than the last", function()
      local out = seq { { path = "/conn", timeout = 300 }, { path = "/slow?ms=3000", timeout = 300 } }
      assert.equal(200, out[1].status, out[1].err)
      assert.equal("timeout", out[2].code, out[2].err) -- the same waits as the call before: still kept to
      out = seq { { path = "/conn", timeout = 300 }, { path = "/slow?ms=700", timeout = 5000 },
        { path = "/conn", timeout = 5000 }, { path = "/slow?ms=3000", timeout = 300 } }
      assert.equal(200, out[1].status, out[1].err)
      assert.equal(200, out[2].status, out[2].err) -- longer than the last call's 300 ms
      assert.equal(out[1].body, out[3].body) -- the same pooled connection: the kept object throughout
      assert.equal("timeout", out[4].code, out[4].err) -- shorter again
    end)

    it("is dropped when a call raised, and the next call works", function()
      local out = seq { { path = "/conn" }, { path = "/conn", raise = true }, { path = "/conn" }, { path = "/conn" } }
      assert.equal(200, out[1].status)
      assert.is_true(out[2].raised)
      assert.matches("send raised", out[2].err)
      assert.equal(200, out[3].status, out[3].err)
      assert.equal(200, out[4].status, out[4].err)
      assert.equal(out[3].body, out[4].body)
    end)
  end)

  describe("HTTPS", function()
    it("refuses a certificate from an untrusted CA with code tls_verify (final)", function()
      local c = first { scheme = "https", host = "localhost", port = UP_TLS, path = "/echo" }
      assert.is_nil(c.status)
      assert.equal("tls_verify", c.code)
      assert.is_false(c.maybe_sent)
      assert.matches("certificate", c.err)
    end)

    it("accepts the certificate when nginx trusts the CA, and sends the name as SNI", function()
      local c = first({ scheme = "https", host = "localhost", port = UP_TLS, path = "/echo" }, FRONT_TRUST)
      assert.is_nil(c.err)
      assert.equal(200, c.status)
      assert.equal("https", cjson.decode(c.body).scheme)
      assert.equal("localhost", cjson.decode(c.body).sni)
    end)

    it("refuses a trusted certificate issued for another name", function()
      local c = first({ scheme = "https", host = "localhost", port = UP_BADNAME, path = "/echo" }, FRONT_TRUST)
      assert.is_nil(c.status)
      assert.equal("tls_verify", c.code)
      assert.matches("mismatch", c.err)
    end)

    -- ISSUE8 item 9: an IP address gets no SNI; nginx checks a name only through SNI, so a
    -- verified connection to an IP address is refused rather than left with its name unchecked
    it("refuses to verify an IP-literal host instead of skipping the name check", function()
      local c = first({ scheme = "https", port = UP_TLS, path = "/echo" }, FRONT_TRUST)
      assert.is_nil(c.status)
      assert.equal("tls_verify", c.code)
      assert.is_false(c.maybe_sent)
      assert.matches("IP address", c.err)
    end)

    it("sends no SNI to an IP-literal host", function()
      local c = first { scheme = "https", port = UP_TLS, path = "/echo", verify = "0" }
      assert.is_nil(c.err)
      assert.equal(200, c.status)
      assert.is_nil(cjson.decode(c.body).sni)
    end)

    -- ISSUE8 item 9: a handshake that raises must come back as nil, err
    it("returns nil, err when the TLS handshake raises, never an error out of the call", function()
      local status, body = get(FRONT, "/raise?port=" .. UP_TLS)
      assert.equal(200, status, body)
      local r = cjson.decode(body)
      assert.is_false(r.raised, r.message)
      assert.is_false(r.res)
      assert.equal("transport", r.kind)
      assert.equal("tls", r.code)
      assert.matches("raised", r.message)
    end)

    it("skips verification only when verify is false", function()
      local c = first { scheme = "https", port = UP_TLS, path = "/conn", verify = "0" }
      assert.is_nil(c.err)
      assert.equal(200, c.status)
    end)
  end)

  describe("failures", function()
    it("stops at the total timeout against a slow endpoint", function()
      local c = first { path = "/slow?ms=3000", timeout = 300 }
      assert.is_nil(c.status)
      assert.equal("timeout", c.code)
      assert.is_true(c.maybe_sent)
      assert.is_true(c.elapsed >= 0.25 and c.elapsed < 1.5, "elapsed " .. c.elapsed)
    end)

    it("reports a refused connection with code connect, not sent, and logs no body", function()
      local before = #srv:error_log() -- the log survives from earlier runs: read only what is new
      local c = first { method = "POST", port = CLOSED, path = "/echo", body = "card=4111111111111111" }
      assert.is_nil(c.status)
      assert.equal("connect", c.code)
      assert.is_false(c.maybe_sent)
      assert.is_nil(c.err:find("4111111111111111", 1, true))
      local log = srv:error_log():sub(before + 1)
      assert.matches("Connection refused", log) -- the log is there and was read
      assert.is_nil(log:find("4111111111111111", 1, true))
    end)

    it("refuses a Content-Length answer above max_response with too_large", function()
      local c = first { path = "/length?n=5000", max = 1000 }
      assert.is_nil(c.status)
      assert.equal("too_large", c.code)
      assert.is_true(c.maybe_sent)
    end)

    it("refuses a chunked answer that grows above max_response with too_large", function()
      local c = first { path = "/stream?n=20", max = 5000 }
      assert.is_nil(c.status)
      assert.equal("too_large", c.code)
    end)

    it("still works on the next call after a failed one", function()
      local c = first { path = "/length?n=10" }
      assert.equal(200, c.status)
      assert.equal("LLLLLLLLLL", c.body)
    end)
  end)

  describe("the nginx worker", function()
    it("keeps answering other requests while a cosocket call waits 2 s", function()
      local slow = assert(socket.tcp())
      slow:settimeout(5)
      assert(slow:connect("127.0.0.1", FRONT))
      local started = socket.gettime()
      assert(slow:send("GET /call?path=" .. enc("/slow?ms=2000") .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        .. "Connection: close\r\n\r\n"))
      socket.sleep(0.1) -- the single worker has taken the slow call
      local quick = {}
      for i = 1, 5 do
        local t0 = socket.gettime()
        local status, body = get(FRONT, i % 2 == 0 and "/fast" or "/call?path=%2Fconn")
        assert.equal(200, status)
        assert.is_true(#body > 0)
        quick[i] = socket.gettime() - t0
      end
      local quick_done = socket.gettime() - started
      local answer = slow:receive("*a")
      local slow_done = socket.gettime() - started
      slow:close()
      assert.matches("slow done", answer)
      assert.is_true(slow_done >= 1.95, "the slow call took " .. slow_done .. " s")
      assert.is_true(quick_done < 1.7, "quick requests finished " .. quick_done .. " s after the slow one began")
      for i, t in ipairs(quick) do assert.is_true(t < 1.0, "quick request " .. i .. " took " .. t .. " s") end
    end)
  end)
end)

-- Failure codes against a fake ngx (no nginx): the deadline runs out at a chosen step. A
-- request that never went out is "connect_timeout" with maybe_sent false, as the libcurl
-- client (http.c failure_code) and paykit.http's own "deadline passed" error say it.
describe("paykit.cosocket failure codes", function()
  local saved, cosocket
  local clock, sent
  local function fake_ngx(jump_at)
    sent = false
    local sock = {
      settimeout = function() end, settimeouts = function() end, getreusedtimes = function() return 0 end,
      close = function() end,
      connect = function() if jump_at == "connect" then clock = clock + 60 end; return 1 end,
      send = function(_, data) sent = true; return #data end,
    }
    return {
      now = function() return clock end, update_time = function() end,
      socket = { tcp = function() if jump_at == "socket" then clock = clock + 60 end; return sock end },
    }
  end
  before_each(function()
    saved = rawget(_G, "ngx")
    clock = 1000
    cosocket = require "paykit.cosocket"
  end)
  after_each(function() rawset(_G, "ngx", saved) end)

  for _, case in ipairs { { "socket", "before connecting" }, { "connect", "before sending" } } do
    it("reports a deadline passed " .. case[2] .. " as connect_timeout, never sent", function()
      rawset(_G, "ngx", fake_ngx(case[1]))
      local res, msg, code, maybe_sent = cosocket.request { method = "POST", url = "http://127.0.0.1:1/x",
        body = "b", timeout = 5000 }
      assert.is_nil(res)
      assert.matches(case[2], msg)
      assert.equal("connect_timeout", code)
      assert.is_false(maybe_sent)
      assert.is_false(sent)
    end)
  end
end)

-- nginx's clock is brought up to date once per call: paykit.http's default clock does it and
-- hands its reading to paykit.cosocket.request (fresh), which then starts the deadline from it;
-- a request given no reading (or paykit.http with a clock of its own) updates the time itself.
describe("paykit.cosocket and nginx's clock", function()
  local saved, clock, updates, waits
  local function fake_ngx()
    updates, waits = 0, {}
    local sock = {
      settimeout = function() end, getreusedtimes = function() return 0 end, close = function() end,
      settimeouts = function(_, c, s, r) waits[#waits + 1] = { c, s, r } end,
      connect = function() return 1 end, send = function(_, data) return #data end,
      setkeepalive = function() return 1 end,
      receiveany = function() return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" end,
    }
    return {
      now = function() return clock end, get_phase = function() return "content" end, sleep = function() end,
      update_time = function() updates = updates + 1; clock = clock + 0.25 end,
      socket = { tcp = function() return sock end },
    }
  end
  before_each(function() saved = rawget(_G, "ngx"); clock = 1000; rawset(_G, "ngx", fake_ngx()) end)
  after_each(function() rawset(_G, "ngx", saved) end)
  local REQ = { method = "POST", url = "http://127.0.0.1:1/x", body = "b", timeout = 5000, connect_timeout = 5000 }

  it("starts the deadline from a given reading, without updating the time", function()
    local cosocket = require "paykit.cosocket"
    -- a reading 10 s old: a 5 s call is past its deadline before connecting, nothing sent
    local res, msg, code, maybe_sent = cosocket.request(REQ, nil, clock - 10)
    assert.is_nil(res)
    assert.matches("before connecting", msg, 1, true)
    assert.equal("connect_timeout", code)
    assert.is_false(maybe_sent)
    assert.equal(0, updates)
    -- a reading 1 s old: 4 s left for connecting and for every send and read
    res = assert(cosocket.request(REQ, nil, clock - 1))
    assert.equal("ok", res.body)
    assert.equal(0, updates)
    assert.same({ { 4000, 4000, 4000 } }, waits)
  end)

  it("updates the time itself when given no reading", function()
    local cosocket = require "paykit.cosocket"
    local res = assert(cosocket.request(REQ))
    assert.equal("ok", res.body)
    assert.equal(1, updates)
  end)

  it("through paykit.http: one update per call with the default clock, the deadline from it", function()
    local http_mod = require "paykit.http"
    local t = http_mod.new { retry = false, timeout = 5, connect_timeout = 5 }
    for i = 1, 3 do
      local res = assert(t:request { url = "http://127.0.0.1:1/x", body = "b", op = "test.clock" })
      assert.equal(200, res.status)
      assert.equal(i, updates)
      assert.same({ 5000, 5000, 5000 }, waits[#waits])
    end
    -- a clock of the caller's: paykit.cosocket brings nginx's time up to date itself
    local t2 = http_mod.new { retry = false, clock = function() return 0 end }
    updates = 0
    assert(t2:request { url = "http://127.0.0.1:1/x", body = "b", op = "test.clock" })
    assert.equal(1, updates)
  end)
end)

-- getreusedtimes is asked only where it matters (TLS, or a request that may be sent again); a
-- plain-http request never sent twice tells a new connection by nginx's clock having moved
-- during its connect, and then sets its waits again from what is left.
describe("paykit.cosocket and getreusedtimes", function()
  local saved, clock, asked, waits, connect_takes, sent
  local function fake_ngx()
    asked, waits, sent = 0, {}, 0
    local sock = {
      settimeout = function() end, close = function() end, sslhandshake = function() return true end,
      getreusedtimes = function() asked = asked + 1; return 0 end,
      settimeouts = function(_, c, s, r) waits[#waits + 1] = { c, s, r } end,
      connect = function() clock = clock + connect_takes; return 1 end,
      send = function(_, data) sent = sent + 1; return #data end,
      setkeepalive = function() return 1 end,
      receiveany = function() return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" end,
    }
    return {
      now = function() return clock end, update_time = function() end, get_phase = function() return "content" end,
      socket = { tcp = function() return sock end },
    }
  end
  before_each(function() saved = rawget(_G, "ngx"); clock, connect_takes = 1000, 0; rawset(_G, "ngx", fake_ngx()) end)
  after_each(function() rawset(_G, "ngx", saved) end)
  local function req(method, url, idempotent)
    return { method = method, url = url or "http://127.0.0.1:1/x", body = method == "POST" and "b" or nil,
      timeout = 5000, connect_timeout = 3000, idempotent = idempotent }
  end

  it("is not asked for a plain POST; a connect that took time gets its waits set again", function()
    local cosocket = require "paykit.cosocket"
    assert(cosocket.request(req("POST")))
    assert.equal(0, asked)
    assert.same({ { 3000, 5000, 5000 } }, waits) -- the clock did not move: the waits before connect stand
    rawset(_G, "ngx", fake_ngx())
    connect_takes = 1.5 -- a new connection, 1.5 s to connect
    assert(cosocket.request(req("POST")))
    assert.equal(0, asked)
    assert.same({ { 3000, 5000, 5000 }, { 3000, 3500, 3500 } }, waits)
    rawset(_G, "ngx", fake_ngx())
    connect_takes = 6 -- past the deadline: never sent
    local res, msg, code, maybe_sent = cosocket.request(req("POST"))
    assert.is_nil(res)
    assert.matches("before sending", msg, 1, true)
    assert.equal("connect_timeout", code)
    assert.is_false(maybe_sent)
    assert.equal(0, sent)
  end)

  it("is asked for a request that may be sent again and for TLS", function()
    local cosocket = require "paykit.cosocket"
    assert(cosocket.request(req("GET")))
    assert.equal(1, asked)
    rawset(_G, "ngx", fake_ngx())
    assert(cosocket.request(req("POST", nil, true)))
    assert.equal(1, asked)
    rawset(_G, "ngx", fake_ngx())
    assert(cosocket.request(req("POST", "https://pay.example/x"), { verify = false }))
    assert.is_true(asked >= 1)
  end)
end)

describe("paykit.cosocket.available", function()
  local saved
  before_each(function() saved = rawget(_G, "ngx") end)
  after_each(function() rawset(_G, "ngx", saved) end)

  it("agrees with paykit.http.in_cosocket_phase in every phase (server_rewrite included)", function()
    local cosocket, phttp = require "paykit.cosocket", require "paykit.http"
    for _, phase in ipairs { "init", "init_worker", "set", "rewrite", "server_rewrite", "access", "content",
                             "header_filter", "body_filter", "log", "timer", "balancer", "ssl_cert",
                             "ssl_session_fetch", "ssl_session_store", "ssl_client_hello", "preread" } do
      rawset(_G, "ngx", { get_phase = function() return phase end, socket = {} })
      assert.equal(phttp.in_cosocket_phase() == true, cosocket.available(), phase)
    end
    rawset(_G, "ngx", { get_phase = function() return "server_rewrite" end, socket = {} })
    assert.is_true(cosocket.available())
    rawset(_G, "ngx", { get_phase = function() return "content" end }) -- no ngx.socket
    assert.is_false(cosocket.available())
  end)
end)

-- The libcurl and wire transports verify against opts.capath (a directory of hashed CA
-- certificates); nginx takes its trust only from lua_ssl_trusted_certificate, so inside nginx a
-- capath cannot be honoured: it is refused, naming the option, before any connection.
describe("paykit.cosocket and the capath option", function()
  local saved, sockets
  local function fake_ngx()
    sockets = 0
    local sock = {
      settimeout = function() end, settimeouts = function() end, getreusedtimes = function() return 0 end,
      close = function() end, connect = function() return 1 end, send = function(_, data) return #data end,
      sslhandshake = function() return true end, setkeepalive = function() return 1 end,
      receiveany = function() return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" end,
    }
    return {
      now = function() return 1000 end, update_time = function() end, get_phase = function() return "content" end,
      sleep = function() end,
      socket = { tcp = function() sockets = sockets + 1; return sock end },
    }
  end
  before_each(function() saved = rawget(_G, "ngx"); rawset(_G, "ngx", fake_ngx()) end)
  after_each(function() rawset(_G, "ngx", saved) end)

  it("refuses capath over verified TLS with code tls_verify, naming the option, nothing sent", function()
    local cosocket = require "paykit.cosocket"
    local res, msg, code, maybe_sent = cosocket.request({ method = "POST", url = "https://pay.example/x", body = "b" },
      { verify = true, capath = "/etc/ssl/certs" })
    assert.is_nil(res)
    assert.equal("tls_verify", code)
    assert.is_false(maybe_sent)
    assert.matches("capath", msg, 1, true)
    assert.matches("lua_ssl_trusted_certificate", msg, 1, true)
    assert.equal(0, sockets)
  end)

  it("through paykit.http: one attempt, a final error naming capath, no connection", function()
    local http_mod = require "paykit.http"
    local t = http_mod.new { capath = "/etc/ssl/certs", retry = { attempts = 3, base_delay = 0 } }
    local attempts = 0
    t.hooks.before = function() attempts = attempts + 1 end
    local res, err = t:request { url = "https://pay.example/x", body = "b", op = "test.capath" }
    assert.is_nil(res)
    assert.equal("tls_verify", err.code)
    assert.is_false(err.retryable)
    assert.matches("capath", err.message, 1, true)
    assert.matches("never reached the provider", err.message, 1, true)
    assert.equal(1, attempts)
    assert.equal(0, sockets)
  end)

  it("is not in the way where it would not be used: plain http, or verify = false", function()
    local cosocket = require "paykit.cosocket"
    local res, msg = cosocket.request({ url = "http://pay.example/x" }, { capath = "/etc/ssl/certs" })
    assert.is_nil(msg)
    assert.equal(200, res.status)
    res, msg = cosocket.request({ url = "https://pay.example/x" }, { capath = "/etc/ssl/certs", verify = false })
    assert.is_nil(msg)
    assert.equal(200, res.status)
  end)
end)
