-- paykit.core's two HTTP clients against a real nginx on 127.0.0.1: core.http_client (libcurl,
-- csrc/http.c) and core.wire_client (csrc/wire.c: HTTP/1.1 over sockets and OpenSSL). One table
-- of cases runs against both (the same Lua interface and error vocabulary), each client with an
-- nginx of its own; a few cases are one client's (redirects: libcurl follows them when asked,
-- wire refuses to be asked; wire sends libcurl's bytes; how batches share connections). Then
-- the fault cells of spec/support/fault_server.lua at the bare transport, wire next to libcurl.
local core = require "paykit.core"
local nginx = require "spec.support.nginx"
local socket = require "socket"

-- The clients. ports: HTTP, HTTPS, a closed port, a listener with a full backlog, TLS with a
-- certificate for another name.
local CLIENTS = {
  { name = "core http client", tag = "http", new = core.http_client, closed = "paykit http client is closed",
    ports = { 18780, 18781, 18782, 18783, 18784 } },
  { name = "core wire client", tag = "wire", new = core.wire_client, closed = "paykit wire client is closed",
    ports = { 18790, 18791, 18792, 18793, 18794 } },
}

-- Endpoints shared by the plain and the TLS server.
local LOCATIONS = [[
  location = /echo {
    content_by_lua_block {
      ngx.req.read_body()
      local body = ngx.req.get_body_data() or ""
      local h = ngx.req.get_headers()
      ngx.header["X-Method"] = ngx.req.get_method()
      ngx.header["X-Echo-Test"] = h["x-test"]
      ngx.header["X-Echo-Other"] = h["x-other"]
      ngx.header["X-Echo-Empty"] = h["x-empty"] and ("[" .. h["x-empty"] .. "]") or nil
      ngx.header["X-Echo-Expect"] = h["expect"] or "none"
      ngx.header["X-Multi"] = { "one", "two" }
      ngx.header["X-Body-Length"] = #body
      ngx.print(body)
    }
  }
  location = /json {
    default_type application/json;
    content_by_lua_block {
      local body = '{"ok":true,"id":"' .. (ngx.var.arg_id or "") .. '"}'
      ngx.header["Content-Length"] = #body
      ngx.print(body)
    }
  }
  location = /slow {
    content_by_lua_block {
      ngx.sleep(tonumber(ngx.var.arg_s) or 0.2)
      ngx.print("slept " .. (ngx.var.arg_id or ""))
    }
  }
  location = /big {
    content_by_lua_block {
      local n = tonumber(ngx.var.arg_n) or 100000
      for _ = 1, math.floor(n / 1000) do ngx.print(string.rep("x", 1000)); ngx.flush(true) end
    }
  }
  location = /bigcl {
    content_by_lua_block {
      local n = tonumber(ngx.var.arg_n) or 100000
      ngx.header["Content-Length"] = n
      ngx.print(string.rep("y", n))
    }
  }
  location = /redirect { return 302 /json?id=redirected; }
  location = /redirect307 {
    content_by_lua_block {
      ngx.req.read_body()
      ngx.shared.counts:incr(ngx.var.arg_key or "r307", 1, 0)
      ngx.redirect("/echo", 307)
    }
  }
  location = /conn {
    content_by_lua_block {
      ngx.header["X-Conn"] = ngx.var.connection
      ngx.header["X-Conn-Requests"] = ngx.var.connection_requests
      ngx.print("conn")
    }
  }
  location = /status { content_by_lua_block { ngx.status = 418; ngx.print("teapot") } }
  location = /closeconn {
    keepalive_timeout 0; # Connection: close
    content_by_lua_block { ngx.print("closed " .. (ngx.var.arg_id or "")) }
  }
  # Answers the first request of a connection (keep-alive), then reads the next one, counts
  # it and closes without a word: the race libcurl would paper over by resending.
  location = /drop_second {
    content_by_lua_block {
      ngx.req.read_body()
      local n = ngx.shared.counts:incr(ngx.var.arg_key or "drop", 1, 0)
      if ngx.var.connection_requests == "1" then ngx.print("first " .. n); return end
      ngx.exit(444)
    }
  }
  # A status line with a two-digit code, after the whole request was read.
  location = /bad_status {
    content_by_lua_block {
      ngx.req.read_body()
      ngx.shared.counts:incr(ngx.var.arg_key or "bad", 1, 0)
      local sock = ngx.req.socket(true)
      sock:send("HTTP/1.1 " .. (ngx.var.arg_code or "21") .. " OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    }
  }
  location = /raw {
    content_by_lua_block { ngx.req.read_body(); ngx.print(ngx.req.raw_header(), ngx.req.get_body_data() or "") }
  }
  location = /sni { content_by_lua_block { ngx.print(ngx.var.ssl_server_name or "none") } }
  location = /count {
    content_by_lua_block { ngx.print(ngx.shared.counts:get(ngx.var.arg_key) or 0) }
  }
]]

local SERVERS = [[
  lua_shared_dict counts 1m;
  client_body_buffer_size 4m; # bodies up to 4m stay in memory, for /echo
  client_max_body_size 8m;
  keepalive_requests 10000;
  server {
    listen 127.0.0.1:${HTTP_PORT};
]] .. LOCATIONS .. [[
  }
  server {
    listen 127.0.0.1:${HTTPS_PORT} ssl;
    ssl_certificate ${DIR}/server.crt;
    ssl_certificate_key ${DIR}/server.key;
]] .. LOCATIONS .. [[
  }
  server {
    listen 127.0.0.1:${WRONG_NAME_PORT} ssl;
    ssl_certificate ${DIR}/wrong.crt;
    ssl_certificate_key ${DIR}/wrong.key;
]] .. LOCATIONS .. [[
  }
]]

local function sh(cmd)
  local ok, _, code = os.execute(cmd)
  if type(ok) == "number" then return ok == 0 end
  return ok and code == 0
end

-- A private CA and two server certificates signed by it, made with the openssl CLI:
-- server.crt names 127.0.0.1 and localhost, wrong.crt names only wrong.example.
local function make_certs(dir)
  local q = function(s) return "'" .. s .. "'" end
  assert(sh("mkdir -p " .. q(dir)))
  local steps = {
    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=paykit test CA' "
      .. "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign "
      .. "-keyout " .. q(dir .. "/ca.key") .. " -out " .. q(dir .. "/ca.crt"),
  }
  for _, leaf in ipairs({ { "server", "IP:127.0.0.1,DNS:localhost" }, { "wrong", "DNS:wrong.example" } }) do
    local name, san = leaf[1], leaf[2]
    local f = function(ext) return q(dir .. "/" .. name .. "." .. ext) end
    steps[#steps + 1] = "openssl req -newkey rsa:2048 -nodes -subj '/CN=" .. name .. "' -keyout " .. f("key")
      .. " -out " .. f("csr")
    local ext = assert(io.open(dir .. "/" .. name .. ".ext", "wb"))
    ext:write("subjectAltName=" .. san .. "\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    ext:close()
    steps[#steps + 1] = "openssl x509 -req -days 2 -in " .. f("csr") .. " -CA " .. q(dir .. "/ca.crt")
      .. " -CAkey " .. q(dir .. "/ca.key") .. " -CAcreateserial -extfile " .. f("ext") .. " -out " .. f("crt")
  end
  for _, cmd in ipairs(steps) do
    assert(sh(cmd .. " >/dev/null 2>&1"), "openssl failed: " .. cmd)
  end
end

local function header(res, name) return res and res.headers and res.headers[name] end

for _, C in ipairs(CLIENTS) do
  local new = C.new
  local HTTP_PORT, HTTPS_PORT, CLOSED_PORT, BACKLOG_PORT, WRONG_NAME_PORT = (table.unpack or unpack)(C.ports)
  local BASE = "http://127.0.0.1:" .. HTTP_PORT
  local TLS_BASE = "https://127.0.0.1:" .. HTTPS_PORT

  describe(C.name, function()
    local srv, client, dir
    local listener, fillers = nil, {}

    lazy_setup(function()
      dir = nginx.root() .. "/build/run/core_" .. C.tag .. "_certs"
      make_certs(dir)
      srv = nginx.start("core_" .. C.tag, SERVERS,
        { HTTP_PORT = HTTP_PORT, HTTPS_PORT = HTTPS_PORT, WRONG_NAME_PORT = WRONG_NAME_PORT, DIR = dir,
          PORTS = { HTTP_PORT, HTTPS_PORT, WRONG_NAME_PORT } })
      client = new { timeout = 5000, connect_timeout = 2000 }
    end)

    lazy_teardown(function()
      if client then client:close() end
      for _, c in ipairs(fillers) do c:close() end
      if listener then listener:close() end
      if srv then srv:stop() end
    end)

    describe("request", function()
      it("returns status, lowercase headers and body of a JSON answer", function()
        local res, err = client:request { url = BASE .. "/json?id=42" }
        assert.is_nil(err)
        assert.are.equal(200, res.status)
        assert.are.equal('{"ok":true,"id":"42"}', res.body)
        assert.are.equal("application/json", res.headers["content-type"])
        assert.are.equal(tostring(#res.body), res.headers["content-length"])
        assert.is_nil(res.headers["Content-Type"])
      end)

      it("returns non-2xx answers as responses, not errors", function()
        local res = assert(client:request { url = BASE .. "/status" })
        assert.are.equal(418, res.status)
        assert.are.equal("teapot", res.body)
      end)

      it("sends method, map and array headers and a body with NUL bytes", function()
        local body = "a\0b\0\0c" .. string.rep("\0\255", 3000)
        local res = assert(client:request {
          method = "PUT", url = BASE .. "/echo", body = body,
          headers = { "X-Test: array form", ["X-Other"] = "map form", ["X-Empty"] = "" },
        })
        assert.are.equal(200, res.status)
        assert.are.equal("PUT", res.headers["x-method"])
        assert.are.equal("array form", res.headers["x-echo-test"])
        assert.are.equal("map form", res.headers["x-echo-other"])
        assert.are.equal("[]", res.headers["x-echo-empty"])
        assert.are.equal("none", res.headers["x-echo-expect"])
        assert.are.equal(tostring(#body), res.headers["x-body-length"])
        assert.are.equal(#body, #res.body)
        assert.are.equal(body, res.body)
      end)

      it("defaults to POST with a body and GET without, and sends an empty POST", function()
        assert.are.equal("POST", header(client:request { url = BASE .. "/echo", body = "x=1" }, "x-method"))
        assert.are.equal("GET", header(client:request { url = BASE .. "/echo" }, "x-method"))
        local res = assert(client:request { method = "POST", url = BASE .. "/echo" })
        assert.are.equal("POST", res.headers["x-method"])
        assert.are.equal("0", res.headers["x-body-length"])
        local del = assert(client:request { method = "DELETE", url = BASE .. "/echo" })
        assert.are.equal("DELETE", del.headers["x-method"])
      end)

      if C.tag == "wire" then
        it("sends the same bytes as the libcurl client", function()
          for _, req in ipairs {
            { url = BASE .. "/raw?a=1&b=%20", method = "POST", headers = { "Content-Type: application/json", "X-A: 1" },
              body = '{"x":1}' },
            { url = BASE .. "/raw" },
            { url = BASE .. "/raw", method = "PUT", headers = { ["X-Empty"] = "" }, body = "" },
          } do
            local a = assert(core.http_client({ user_agent = "paykit-test/1" }):request(req))
            local b = assert(core.wire_client({ user_agent = "paykit-test/1" }):request(req))
            assert.are.equal(a.body, b.body)
          end
        end)
      end

      if C.tag == "wire" then
        -- client:request(method, url, headers, body, idempotent, timeout, connect_timeout,
        -- send_timeout, read_timeout, stall_timeout, extra_name, extra_value, json)
        it("takes a request's fields as arguments: the table's bytes, outcome and errors", function()
          local function lines(raw)
            local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
            local ls = {}
            for l in (head .. "\r\n"):gmatch("([^\r\n]*)\r\n") do ls[#ls + 1] = l end
            local first = table.remove(ls, 1)
            table.sort(ls)
            return first .. "\n" .. table.concat(ls, "\n") .. "\n\n" .. body
          end
          local U = BASE .. "/raw?a=1"
          -- no extra header, no json: byte for byte the table's request
          for _, q in ipairs {
            { "POST", U, { "Content-Type: application/json", ["X-A"] = 1 }, '{"x":1}', false, 5000, 2000 },
            { "GET", U, nil, nil, nil, 5000, 2000 },
            { "PUT", U, { ["X-Empty"] = "" }, "", true, 5000, 2000, 100, 200, 300 },
          } do
            local t = { method = q[1], url = q[2], headers = q[3], body = q[4], idempotent = q[5], timeout = q[6],
              connect_timeout = q[7], send_timeout = q[8], read_timeout = q[9], stall_timeout = q[10] }
            local a = assert(client:request(t))
            local b, made = client:request((table.unpack or unpack)(q, 1, 10))
            assert.are.equal(a.body, assert(b).body)
            assert.is_nil(made)
          end
          -- the extra header (over a caller's of that exact name, beside one of another case),
          -- generated when not given; json's Content-Type and Accept unless the caller's name them
          for _, c in ipairs {
            { { ["X-Correlation-Id"] = "theirs", ["x-correlation-id"] = "lower", Accept = "text/plain" }, "X-Correlation-Id",
              "corr-1", true, { ["X-Correlation-Id"] = "corr-1", ["x-correlation-id"] = "lower", Accept = "text/plain",
                                ["Content-Type"] = "application/json" } },
            { { "Content-Type: text/plain" }, "X-Id", 12345, true,
              { "Content-Type: text/plain", ["X-Id"] = 12345, ["Content-Type"] = "application/json",
                Accept = "application/json" } },
            { nil, "X-Id", "v", nil, { ["X-Id"] = "v" } },
            { { ["content-type"] = "x/y" }, "Accept", "a/b", true, { ["content-type"] = "x/y", Accept = "application/json" } },
          } do
            local a = assert(client:request { method = "POST", url = U, headers = c[5], body = "{}" })
            local b, made = client:request("POST", U, c[1], "{}", nil, nil, nil, nil, nil, nil, c[2], c[3], c[4])
            assert.are.equal(lines(a.body), lines(assert(b).body))
            assert.is_nil(made)
          end
          local b, made = client:request("GET", U, { ["X-A"] = "1" }, nil, nil, nil, nil, nil, nil, nil, "X-Corr")
          assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", made)
          assert.equal(36, #made)
          assert.truthy(assert(b).body:find("\r\nX-Corr: " .. made .. "\r\n", 1, true))
          local _, made2 = client:request("GET", U, nil, nil, nil, nil, nil, nil, nil, nil, "X-Corr")
          assert.are_not.equal(made, made2)
          -- a failure: the same four values, then the id
          local res, msg, code, sent, id = client:request("GET", "http://127.0.0.1:" .. CLOSED_PORT .. "/", nil, nil,
            nil, nil, nil, nil, nil, nil, "X-Corr")
          local tres, tmsg, tcode, tsent = client:request { url = "http://127.0.0.1:" .. CLOSED_PORT .. "/" }
          assert.same({ tres, tmsg, tcode, tsent }, { res, msg, code, sent })
          assert.equal(36, #id)
          -- misuse: the table form's words, as argument 1
          for _, case in ipairs {
            { { url = 42 }, { "GET", 42 } },
            { { url = U .. "\0x" }, { "GET", U .. "\0x" } },
            { { url = U, method = "" }, { "", U } },
            { { url = U, method = 1 }, { 1, U } },
            { { url = U, method = true }, { true, U } },
            { { url = U, method = "PO ST" }, { "PO ST", U } },
            { { url = U, timeout = "5" }, { "GET", U, nil, nil, nil, "5" } },
            { { url = U, connect_timeout = -1 }, { "GET", U, nil, nil, nil, nil, -1 } },
            { { url = U, stall_timeout = 0.5 }, { "GET", U, nil, nil, nil, nil, nil, nil, nil, 0.5 } },
            { { url = U, send_timeout = -2 }, { "GET", U, nil, nil, nil, nil, nil, -2 } },
            { { url = U, read_timeout = "1" }, { "GET", U, nil, nil, nil, nil, nil, nil, "1" } },
            { { url = U, body = {} }, { "GET", U, nil, {} } },
            { { url = U, idempotent = 1 }, { "GET", U, nil, nil, 1 } },
            { { url = U, headers = "X-A: 1" }, { "GET", U, "X-A: 1" } },
            { { url = U, headers = { 1 } }, { "GET", U, { 1 } } },
            { { url = U, headers = { ["X-A"] = true } }, { "GET", U, { ["X-A"] = true } } },
            { { url = U, headers = { ["X:A"] = "1" } }, { "GET", U, { ["X:A"] = "1" } } },
            { { url = U, headers = { ["X-A"] = "v\r\nX-B: w" } }, { "GET", U, { ["X-A"] = "v\r\nX-B: w" } } },
            -- the extra header is checked as a table's entry would be
            { { url = U, headers = { ["X-A"] = "v\r\nX-B: w" } },
              { "GET", U, nil, nil, nil, nil, nil, nil, nil, nil, "X-A", "v\r\nX-B: w" } },
            { { url = U, headers = { ["X-A"] = true } }, { "GET", U, nil, nil, nil, nil, nil, nil, nil, nil, "X-A", true } },
            { { url = U, headers = { ["X:A"] = "1" } }, { "GET", U, nil, nil, nil, nil, nil, nil, nil, nil, "X:A", "1" } },
            { { url = U, headers = { [""] = "1" } }, { "GET", U, nil, nil, nil, nil, nil, nil, nil, nil, "", "1" } },
            { { url = U, headers = { ["X\nA"] = "1" } }, { "GET", U, nil, nil, nil, nil, nil, nil, nil, nil, "X\nA" } },
          } do
            local ok1, e1 = pcall(client.request, client, case[1])
            local ok2, e2 = pcall(client.request, client, (table.unpack or unpack)(case[2], 1, 13))
            assert.is_false(ok1)
            assert.is_false(ok2)
            assert.are.equal(tostring(e1), tostring(e2))
          end
        end)
      end

      it("carries nothing of one request into the next on the same connection", function()
        -- the client keeps a transfer's options between requests of the same shape: every
        -- change of method, body, headers or timeout must still reach the wire
        local seq = {
          { req = { method = "POST", body = "abc", headers = { ["X-Test"] = "one" } }, method = "POST", len = "3", test = "one" },
          { req = { method = "POST", body = "abcdef" }, method = "POST", len = "6" },
          { req = {}, method = "GET", len = "0" },
          { req = { method = "PUT", body = "xy", idempotent = true }, method = "PUT", len = "2" },
          { req = { method = "PUT", body = "xyz" }, method = "PUT", len = "3" },
          { req = { method = "DELETE" }, method = "DELETE", len = "0" },
          { req = { method = "POST", body = "q", idempotent = true, headers = { "X-Test: two" } }, method = "POST", len = "1", test = "two" },
          { req = { method = "POST", body = "qq", idempotent = true }, method = "POST", len = "2" },
          { req = { method = "HEAD" }, method = "HEAD", len = "0" },
          { req = { headers = { ["X-Test"] = "three" } }, method = "GET", len = "0", test = "three" },
        }
        for round = 1, 2 do
          for i, step in ipairs(seq) do
            local req = { url = BASE .. "/echo" }
            for k, v in pairs(step.req) do req[k] = v end
            local res, err = client:request(req)
            assert(res, err)
            local where = "round " .. round .. " step " .. i
            assert.are.equal(200, res.status, where)
            assert.are.equal(step.method, res.headers["x-method"], where)
            assert.are.equal(step.len, res.headers["x-body-length"], where)
            assert.are.equal(step.test, res.headers["x-echo-test"], where)
            assert.are.equal(step.method == "HEAD" and "" or (step.req.body or ""), res.body, where)
          end
        end
        -- a short timeout after long ones, then a long one again
        local res, _, code = client:request { url = BASE .. "/slow?s=1", timeout = 200 }
        assert.is_nil(res)
        assert.are.equal("timeout", code)
        assert.are.equal("slept ok", assert(client:request { url = BASE .. "/slow?s=0.3&id=ok", timeout = 10000 }).body)
      end)

      it("sends a body over 1 MiB in full and without Expect: 100-continue", function()
        local body = string.rep("0123456789abcdef", 96 * 1024) -- 1.5 MiB
        for _, idem in ipairs { false, true } do -- the read callback (never resent), then POSTFIELDS
          local res = assert(client:request { method = "POST", url = BASE .. "/echo", body = body, idempotent = idem })
          assert.are.equal(200, res.status)
          assert.are.equal("none", res.headers["x-echo-expect"])
          assert.are.equal(tostring(#body), res.headers["x-body-length"])
          assert.are.equal(body, res.body)
        end
      end)

      it("joins repeated response headers with a comma", function()
        local res = assert(client:request { url = BASE .. "/echo" })
        assert.are.equal("one, two", res.headers["x-multi"])
      end)

      it("refuses header injection and wrong argument types", function()
        assert.has_error(function() client:request { url = BASE .. "/echo", headers = { ["X-A"] = "v\r\nX-B: w" } } end)
        assert.has_error(function() client:request { url = BASE .. "/echo", headers = { "X-A: v\nX-B: w" } } end)
        assert.has_error(function() client:request { url = BASE .. "/echo", body = {} } end)
        assert.has_error(function() client:request { url = 42 } end)
        assert.has_error(function() client:request("http://x") end)
        assert.has_error(function() new { timeout = -1 } end)
        assert.has_error(function() new { timeout = 2 ^ 63 } end) -- beyond a C long: refused, not cast
        assert.has_error(function() new { verify = "yes" } end)
      end)

      -- Both clients read their option tables with csrc/reqopts.c: the same words name the
      -- same mistake, whichever client it is.
      it("names the bad field of an option table or a request in the same words as the other client", function()
        local function says(want, fn)
          local ok, err = pcall(fn)
          assert.is_false(ok, want)
          assert.matches(want, tostring(err), 1, true)
        end
        local U = BASE .. "/json"
        for _, case in ipairs {
          { "'connect_timeout' must be a number", { connect_timeout = "1" } },
          { "'timeout' must be a non-negative integer", { timeout = -1 } },
          { "'max_response' must be a non-negative integer", { max_response = 1.5 } },
          { "'max_redirects' must be a non-negative integer", { max_redirects = 1001 } },
          { "'max_connections' must be a non-negative integer", { max_connections = 10001 } },
          { "'keepalive_timeout' must be a number", { keepalive_timeout = true } },
          { "'stall_timeout' must be a non-negative integer", { stall_timeout = -5 } },
          { "'verify' must be a boolean", { verify = "yes" } },
          { "'follow_redirects' must be a boolean", { follow_redirects = 1 } },
          { "'cafile' must be a string", { cafile = 1 } },
          { "'capath' must not contain NUL bytes", { capath = "/etc\0/x" } },
          { "'user_agent' must not contain CR or LF", { user_agent = "shop/1\r\nX-Injected: 1" } },
        } do
          says(case[1], function() new(case[2]) end)
        end
        for _, case in ipairs {
          { "'url' must be a string", { url = 42 } },
          { "'url' must not contain NUL bytes", { url = U .. "\0x" } },
          { "'method' must be a string", { url = U, method = 1 } },
          { "'method' must not be empty", { url = U, method = "" } },
          { "'method' must be a token such as \"POST\"", { url = U, method = "PO ST" } },
          { "'timeout' must be a number", { url = U, timeout = "5" } },
          { "'connect_timeout' must be a non-negative integer", { url = U, connect_timeout = -1 } },
          { "'stall_timeout' must be a non-negative integer", { url = U, stall_timeout = 0.5 } },
          { "'follow_redirects' must be a boolean", { url = U, follow_redirects = "no" } },
          { "'body' must be a string", { url = U, body = {} } },
          { "'idempotent' must be a boolean", { url = U, idempotent = 1 } },
          { "'headers' must be a table", { url = U, headers = "X-A: 1" } },
          { "array headers must be strings \"Name: value\"", { url = U, headers = { 1 } } },
          { "header values must be strings or numbers", { url = U, headers = { ["X-A"] = true } } },
          { "invalid header name", { url = U, headers = { ["X:A"] = "1" } } },
          { "header keys must be names or array positions", { url = U, headers = { [true] = "1" } } },
          { "header values must not contain CR, LF or NUL", { url = U, headers = { ["X-A"] = "v\r\nX-B: w" } } },
        } do
          says(case[1], function() client:request(case[2]) end)
          says("request 2: " .. case[1], function() client:batch { { url = U }, case[2] } end)
        end
        says("request 2 must be a table", function() client:batch { { url = U }, "http://x" } end)
      end)
    end)

    describe("keep-alive", function()
      it("reuses one server connection for sequential requests", function()
        local c = new()
        local conns, counts = {}, {}
        for i = 1, 5 do
          local res = assert(c:request { url = BASE .. "/conn" })
          conns[i] = res.headers["x-conn"]
          counts[i] = tonumber(res.headers["x-conn-requests"])
        end
        c:close()
        for i = 2, 5 do
          assert.are.equal(conns[1], conns[i])
          assert.are.equal(counts[i - 1] + 1, counts[i])
        end
      end)

      it("reuses the TLS connection too", function()
        local c = new { cafile = dir .. "/ca.crt" }
        local a = assert(c:request { url = TLS_BASE .. "/conn" })
        local b = assert(c:request { url = TLS_BASE .. "/conn" })
        c:close()
        assert.are.equal(a.headers["x-conn"], b.headers["x-conn"])
        assert.are.equal(tonumber(a.headers["x-conn-requests"]) + 1, tonumber(b.headers["x-conn-requests"]))
      end)

      it("lets a batch reuse the connection of an earlier request", function()
        local c = new()
        local first = assert(c:request { url = BASE .. "/conn" })
        local out = c:batch({ { url = BASE .. "/conn" } }, { max_in_flight = 1 })
        c:close()
        assert.are.equal(first.headers["x-conn"], out[1].headers["x-conn"])
      end)
    end)

    describe("failures", function()
      it("reports a refused connection as connect, not sent", function()
        local res, msg, code, maybe_sent = client:request { url = "http://127.0.0.1:" .. CLOSED_PORT .. "/" }
        assert.is_nil(res)
        assert.is_string(msg)
        assert.are.equal("connect", code)
        assert.is_false(maybe_sent)
      end)

      it("reports a connection that is never accepted as connect_timeout, not sent", function()
        -- a listener with a full accept queue: the kernel drops further SYNs
        listener = assert(socket.tcp())
        listener:setoption("reuseaddr", true)
        assert(listener:bind("127.0.0.1", BACKLOG_PORT))
        assert(listener:listen(1))
        for i = 1, 4 do
          local c = socket.tcp(); c:settimeout(0); c:connect("127.0.0.1", BACKLOG_PORT); fillers[i] = c
        end
        socket.sleep(0.1)
        local t0 = socket.gettime()
        local res, msg, code, maybe_sent = client:request {
          url = "http://127.0.0.1:" .. BACKLOG_PORT .. "/", connect_timeout = 300 }
        assert.is_nil(res)
        assert.are.equal("connect_timeout", code, msg)
        assert.is_false(maybe_sent)
        assert.is_true(socket.gettime() - t0 < 3)
      end)

      it("reports a slow answer as timeout, maybe sent (fresh and reused connection)", function()
        local c = new { timeout = 300 }
        local res, msg, code, maybe_sent = c:request { url = BASE .. "/slow?s=2" }
        assert.is_nil(res)
        assert.are.equal("timeout", code, msg)
        assert.is_true(maybe_sent)
        assert(c:request { url = BASE .. "/json" })
        res, msg, code, maybe_sent = c:request { url = BASE .. "/slow?s=2", timeout = 200 }
        assert.is_nil(res)
        assert.are.equal("timeout", code, msg)
        assert.is_true(maybe_sent)
        c:close()
      end)

      -- ISSUE8 item 1: on a reused connection that the server closes after reading the
      -- request, libcurl reconnected and sent a non-idempotent POST a second time.
      local function count(key)
        local res = assert(client:request { url = BASE .. "/count?key=" .. key })
        return tonumber(res.body)
      end

      it("never resends a request that may charge when a reused connection drops after reading it", function()
        local c = new { timeout = 5000 }
        local first = assert(c:request { url = BASE .. "/drop_second?key=pay", body = "pay=1" })
        assert.are.equal("first 1", first.body)
        local res, msg, code, maybe_sent = c:request { url = BASE .. "/drop_second?key=pay", body = "pay=1" }
        c:close()
        assert.is_nil(res)
        assert.are.equal("recv", code, msg)
        assert.is_true(maybe_sent)
        assert.matches("never sent again", msg, 1, true)
        assert.are.equal(2, count("pay")) -- the first request and one copy of the second
      end)

      it("never resends a body-less request that may charge either", function()
        local c = new { timeout = 5000 }
        assert(c:request { url = BASE .. "/drop_second?key=empty", method = "POST" })
        local res, _, code, maybe_sent = c:request { url = BASE .. "/drop_second?key=empty", method = "POST" }
        c:close()
        -- a connection of its own: it is the first request there, answered
        assert.are.equal(200, res and res.status, code)
        assert.is_nil(maybe_sent)
        assert.are.equal(2, count("empty"))
      end)

      it("resends an idempotent request on a reused connection that dropped (libcurl itself; wire once)", function()
        local c = new { timeout = 5000 }
        assert(c:request { url = BASE .. "/drop_second?key=idem", body = "q=1", idempotent = true })
        local res = c:request { url = BASE .. "/drop_second?key=idem", body = "q=1", idempotent = true }
        c:close()
        assert.are.equal("first 3", res and res.body) -- dropped once, then answered on a new connection
        assert.are.equal(3, count("idem"))
      end)

      it("refuses a non-boolean idempotent", function()
        assert.has_error(function() client:request { url = BASE .. "/json", idempotent = "yes" } end)
      end)

      -- ISSUE8 item 2: "HTTP/1.1 21 OK" was CURLE_UNSUPPORTED_PROTOCOL, classed never sent.
      for _, st in ipairs { "21", "600", "999", "000" } do
        it("reports status line code " .. st .. " after the request went out as protocol, maybe sent", function()
          local res, msg, code, maybe_sent = client:request {
            url = BASE .. "/bad_status?code=" .. st .. "&key=st" .. st, body = "pay=1" }
          assert.is_nil(res)
          assert.are.equal("protocol", code, msg)
          assert.is_true(maybe_sent)
          assert.are.equal(1, count("st" .. st))
        end)
      end

      it("reports a bad status line on a reused connection as maybe sent, and sends it once", function()
        local c = new { timeout = 5000 }
        assert(c:request { url = BASE .. "/json" })
        local res, msg, code, maybe_sent = c:request { url = BASE .. "/bad_status?code=21&key=reused", body = "pay=1" }
        c:close()
        assert.is_nil(res)
        assert.are.equal("protocol", code, msg)
        assert.is_true(maybe_sent)
        assert.are.equal(1, count("reused"))
      end)

      -- wire's own code for a URL it cannot use: paykit.http hands such a request to libcurl
      local UNUSABLE = C.tag == "wire" and "unusable_url" or "other"

      it("still reports a scheme it does not speak as " .. UNUSABLE .. ", never sent", function()
        local res, _, code, maybe_sent = client:request { url = "ftp://127.0.0.1:" .. CLOSED_PORT .. "/" }
        assert.is_nil(res)
        assert.are.equal(UNUSABLE, code)
        assert.is_false(maybe_sent)
      end)

      if C.tag == "wire" then
        it("reports user information in the URL as unusable_url, never sent", function()
          local res, msg, code, maybe_sent = client:request { url = "http://user:pw@127.0.0.1:" .. HTTP_PORT .. "/json" }
          assert.is_nil(res)
          assert.are.equal("unusable_url", code)
          assert.matches("^unusable URL: user information", msg)
          assert.is_false(maybe_sent)
        end)
      end

      it("reports an unknown host as dns", function()
        local _, _, code, maybe_sent = client:request { url = "http://paykit-no-such-host.invalid/" }
        assert.are.equal("dns", code)
        assert.is_false(maybe_sent)
      end)

      it("never puts request headers or body in the message", function()
        local _, msg = client:request { url = "http://127.0.0.1:" .. CLOSED_PORT .. "/pay",
          headers = { Authorization = "Bearer sekret-token" }, body = "CvcNumber=123&pan=4111111111111111" }
        assert.is_string(msg)
        assert.is_nil(msg:find("sekret", 1, true))
        assert.is_nil(msg:find("4111", 1, true))
      end)
    end)

    describe("TLS", function()
      it("refuses the self-signed chain by default with tls, not sent", function()
        local c = new()
        local res, msg, code, maybe_sent = c:request { url = TLS_BASE .. "/json" }
        c:close()
        assert.is_nil(res)
        assert.are.equal("tls_verify", code, msg) -- final: a refused certificate is not retried
        assert.is_false(maybe_sent)
      end)

      it("accepts the server once its CA file is given", function()
        local c = new { cafile = dir .. "/ca.crt" }
        local res, err = c:request { url = TLS_BASE .. "/json?id=tls" }
        c:close()
        assert.is_nil(err)
        assert.are.equal('{"ok":true,"id":"tls"}', res.body)
      end)

      it("checks the host name, not only the chain", function()
        -- this server's certificate is signed by the same CA but names only wrong.example
        local c = new { cafile = dir .. "/ca.crt" }
        local res, msg, code = c:request { url = "https://127.0.0.1:" .. WRONG_NAME_PORT .. "/json" }
        c:close()
        assert.is_nil(res)
        assert.are.equal("tls_verify", code, msg)
      end)

      it("sends the host name as SNI, and none for an IP address", function()
        local c = new { cafile = dir .. "/ca.crt" }
        local by_name = assert(c:request { url = "https://localhost:" .. HTTPS_PORT .. "/sni" })
        local by_ip = assert(c:request { url = TLS_BASE .. "/sni" })
        c:close()
        assert.are.equal("localhost", by_name.body)
        assert.are.equal("none", by_ip.body)
      end)

      it("skips verification only when told verify = false", function()
        local c = new { verify = false }
        local res = assert(c:request { url = TLS_BASE .. "/json" })
        c:close()
        assert.are.equal(200, res.status)
      end)
    end)

    describe("limits and redirects", function()
      it("aborts a chunked body over max_response with too_large", function()
        local c = new { max_response = 10000 }
        local res, msg, code, maybe_sent = c:request { url = BASE .. "/big?n=200000" }
        assert.is_nil(res)
        assert.are.equal("too_large", code, msg)
        assert.are.equal("response body larger than 10000 bytes", msg)
        assert.is_true(maybe_sent)
        local ok = assert(c:request { url = BASE .. "/big?n=10000" })
        assert.are.equal(10000, #ok.body)
        c:close()
      end)

      it("refuses a declared Content-Length over max_response with too_large", function()
        local c = new { max_response = 1000 }
        local _, msg, code = c:request { url = BASE .. "/bigcl?n=5000" }
        c:close()
        assert.are.equal("too_large", code, msg)
      end)

      if C.tag == "http" then
        it("does not follow redirects unless asked", function()
          local res = assert(client:request { url = BASE .. "/redirect" })
          assert.are.equal(302, res.status)
          assert.matches("/json%?id=redirected$", res.headers["location"])
          local followed = assert(client:request { url = BASE .. "/redirect", follow_redirects = true })
          assert.are.equal(200, followed.status)
          assert.are.equal('{"ok":true,"id":"redirected"}', followed.body)
          assert.is_nil(followed.headers["location"])
        end)

        it("does not resend a request that may charge to a 307 Location", function()
          local c = new { follow_redirects = true }
          local res, msg, code, maybe_sent = c:request { url = BASE .. "/redirect307?key=r307pay", body = "pay=1" }
          assert.is_nil(res)
          assert.are.equal("protocol", code)
          assert.is_true(maybe_sent)
          assert.matches("redirected", msg)
          -- an idempotent one follows it with its body
          local again = assert(c:request { url = BASE .. "/redirect307?key=r307idem", body = "q=1", idempotent = true })
          local received = assert(c:request { url = BASE .. "/count?key=r307pay" })
          c:close()
          assert.are.equal("q=1", again.body)
          assert.are.equal("1", received.body)
        end)

        it("follows redirects for a client made with follow_redirects", function()
          local c = new { follow_redirects = true }
          local res = assert(c:request { url = BASE .. "/redirect" })
          c:close()
          assert.are.equal(200, res.status)
        end)
      else
        it("never follows redirects, and refuses to be asked to", function()
          local res = assert(client:request { url = BASE .. "/redirect" })
          assert.are.equal(302, res.status)
          assert.matches("/json%?id=redirected$", res.headers["location"])
          assert.has_error(function() client:request { url = BASE .. "/redirect", follow_redirects = true } end)
          assert.has_error(function() new { follow_redirects = true } end)
          local r = assert(client:request { url = BASE .. "/redirect307?key=wr307", body = "pay=1" })
          assert.are.equal(307, r.status)
          local received = assert(client:request { url = BASE .. "/count?key=wr307" })
          assert.are.equal("1", received.body)
        end)
      end
    end)

    describe("batch", function()
      it("runs 50 slow requests 25 at a time and returns them in order", function()
        local reqs = {}
        for i = 1, 50 do reqs[i] = { url = BASE .. "/slow?s=0.2&id=" .. i } end
        local c = new()
        local t0 = socket.gettime()
        local out = c:batch(reqs, { max_in_flight = 25 })
        local elapsed = socket.gettime() - t0
        c:close()
        assert.are.equal(50, #out)
        for i = 1, 50 do
          assert.are.equal(200, out[i].status)
          assert.are.equal("slept " .. i, out[i].body)
        end
        assert.is_true(elapsed < 5, "50 x 200 ms with 25 in flight took " .. elapsed .. " s")
      end)

      it("mixes failures with successes, each in its place", function()
        local out = client:batch({
          { url = BASE .. "/json?id=a" },
          { url = "http://127.0.0.1:" .. CLOSED_PORT .. "/" },
          { url = BASE .. "/slow?s=2", timeout = 200 },
          { method = "POST", url = BASE .. "/echo", body = "b\0b" },
          { url = "http://paykit-no-such-host.invalid/" },
        }, { max_in_flight = 3 })
        assert.are.equal(5, #out)
        assert.are.equal('{"ok":true,"id":"a"}', out[1].body)
        assert.are.equal("connect", out[2].code)
        assert.is_false(out[2].maybe_sent)
        assert.is_string(out[2].error)
        assert.are.equal("timeout", out[3].code)
        assert.is_true(out[3].maybe_sent)
        assert.are.equal("b\0b", out[4].body)
        assert.are.equal("dns", out[5].code)
      end)

      it("reuses connections across batches", function()
        local c = new()
        local reqs = {}
        for i = 1, 8 do reqs[i] = { url = BASE .. "/conn" } end
        local a = c:batch(reqs, { max_in_flight = 4 })
        local b = c:batch(reqs, { max_in_flight = 4 })
        c:close()
        local seen, n = {}, 0
        if C.tag == "http" then
          for i = 1, 8 do seen[a[i].headers["x-conn"]] = true end
          for _ in pairs(seen) do n = n + 1 end
          assert.is_true(n <= 4, "first batch used " .. n .. " connections")
          for i = 1, 8 do assert.is_true(seen[b[i].headers["x-conn"]], "second batch opened a new connection") end
        else
          -- at most 4 in flight: kept connections are taken before new ones are opened, so both
          -- batches together use at most 4 (the wire may finish a request before the next slot
          -- starts, so the first batch alone may use fewer)
          for i = 1, 8 do seen[a[i].headers["x-conn"]] = true; seen[b[i].headers["x-conn"]] = true end
          for _ in pairs(seen) do n = n + 1 end
          assert.is_true(n <= 4, "the two batches used " .. n .. " connections")
        end
      end)

      it("keeps each answer in its place as slots move between kept, closed and new connections", function()
        -- two servers interleaved (http and https), answers that close their connection, kept
        -- connections dropped under a second request (idempotent: sent again), a batch after a
        -- request after a batch, on one client: every answer must be its own request's
        local c = new { cafile = dir .. "/ca.crt", timeout = 5000, connect_timeout = 2000 }
        for round = 1, 3 do
          local reqs, want = {}, {}
          for i = 1, 120 do
            local base = (i % 3 == 0) and TLS_BASE or BASE
            local id = round .. "_" .. i
            if i % 7 == 0 then
              reqs[i], want[i] = { url = base .. "/closeconn?id=" .. id }, "^closed " .. id .. "$"
            elseif i % 11 == 0 and C.tag == "wire" then -- (libcurl gives up on a run of them)
              reqs[i], want[i] = { url = base .. "/drop_second?key=park" .. C.tag }, "^first %d+$"
            else
              reqs[i], want[i] = { url = base .. "/json?id=" .. id }, '^{"ok":true,"id":"' .. id .. '"}$'
            end
          end
          local out = c:batch(reqs, { max_in_flight = round == 2 and 3 or 16 })
          assert.are.equal(#reqs, #out)
          for i = 1, #reqs do
            assert.is_nil(out[i].error, "round " .. round .. " request " .. i .. ": " .. tostring(out[i].error))
            assert.are.equal(200, out[i].status)
            assert.truthy(out[i].body:match(want[i]), "round " .. round .. " request " .. i .. ": " .. out[i].body)
          end
          local one = assert(c:request { url = BASE .. "/json?id=between" .. round })
          assert.are.equal('{"ok":true,"id":"between' .. round .. '"}', one.body)
        end
        -- no deadline at all (timeout 0: no limit): the batch waits for the answers
        local reqs = {}
        for i = 1, 4 do reqs[i] = { url = BASE .. "/slow?s=0.05&id=" .. i, timeout = 0 } end
        local out = c:batch(reqs, { max_in_flight = 4 })
        for i = 1, 4 do assert.are.equal("slept " .. i, out[i].body) end
        c:close()
      end)

      it("returns an empty array for no requests and checks every request first", function()
        assert.are.same({}, client:batch({}))
        assert.has_error(function() client:batch({ { url = BASE .. "/json" }, "nope" }) end)
        local ok, err = pcall(client.batch, client, { { url = BASE .. "/json" }, { url = BASE, headers = { A = "x\ny" } } })
        assert.is_false(ok)
        assert.matches("request 2: header values must not contain CR, LF or NUL", err, 1, true)
        assert.has_error(function() client:batch({ { url = BASE .. "/json" } }, { max_in_flight = 0 }) end)
      end)
    end)

    describe("close", function()
      it("is idempotent and makes further use raise", function()
        local c = new()
        assert(c:request { url = BASE .. "/json" })
        assert.is_false(c:closed())
        c:close()
        c:close()
        assert.is_true(c:closed())
        assert.has_error(function() c:request { url = BASE .. "/json" } end, C.closed)
        assert.has_error(function() c:batch({}) end, C.closed)
      end)

      it("leaves the collector a closed client without trouble", function()
        local c = new()
        c:close()
        c = nil -- luacheck: ignore 311 (dropped for the collector)
        collectgarbage()
        collectgarbage()
        local d = new()
        assert(d:request { url = BASE .. "/json" })
        getmetatable(d).__gc(d) -- __gc frees an open client's connections ...
        assert.is_true(d:closed())
        d = nil -- luacheck: ignore 311
        local e = new()
        assert(e:request { url = BASE .. "/json" })
        e = nil -- luacheck: ignore 311
        collectgarbage() -- ... and the collector frees d again and e open; the valgrind run checks both
        collectgarbage()
      end)

      if _VERSION == "Lua 5.4" then
        it("closes a to-be-closed client at the end of its scope", function()
          local chunk = assert(load([[
            local new, url = ...
            local seen
            do
              local c <close> = new()
              assert(c:request { url = url })
              seen = c
            end
            return seen
          ]]))
          local c = chunk(new, BASE .. "/json")
          assert.is_true(c:closed())
        end)
      end
    end)
  end)
end

describe("core clock", function()
  it("monotonic() advances by what sleep() waited, at sub-second resolution", function()
    local t0 = core.monotonic()
    core.sleep(0.15)
    local waited = core.monotonic() - t0
    assert.is_true(waited >= 0.15, "waited " .. waited)
    assert.is_true(waited < 5, "waited " .. waited)
    assert.are_not.equal(math.floor(waited), waited)
  end)

  it("sleep() refuses what is not a number of seconds up to a day", function()
    assert.has_error(function() core.sleep("soon") end)
    assert.has_error(function() core.sleep(0 / 0) end)
    assert.has_error(function() core.sleep(86401) end)
    core.sleep(0)
    core.sleep(-1)
  end)
end)

-- The fault cells (spec/support/fault_server.lua) at the bare transport: every cell, a charging
-- POST with a body, a charging POST without one and an idempotent GET, through the wire client
-- and through libcurl in the same run. A charging request reaches the server exactly once (0
-- where no HTTP peer was reached); codes and maybe_sent are libcurl's, except where the wire
-- reads the answer more strictly (DIFFER).
describe("core wire client in the fault cells", function()
  local fault = require "spec.support.fault"
  local P = fault.PORTS
  local PLAIN = "http://127.0.0.1:" .. P.http .. "/"
  local f, seq = nil, 0
  local CELLS = {
    { "refused", url = "http://127.0.0.1:" .. P.refused .. "/refused", sent = false },
    { "dns", url = "http://paykit-fault.invalid:" .. P.http .. "/dns", sent = false },
    { "tls_untrusted", url = "https://localhost:" .. P.untrusted .. "/tls_untrusted", sent = false },
    { "tls_wronghost", url = "https://localhost:" .. P.wronghost .. "/tls_wronghost", sent = false },
    { "reset_before" }, { "reset_mid" }, { "hang" }, { "trickle" },
    { "s500" }, { "s502" }, { "s503" }, { "s504" }, { "garbage" }, { "truncated" },
    { "oversize" }, { "wrong_ct" }, { "bad_chunk" }, { "dup_cl" }, { "bad_status" },
    { "drop_second", twice = true }, { "idle_close", twice = true, pause = 0.5 },
  }
  -- libcurl reads a broken chunk size as a receive error and takes one of two Content-Lengths;
  -- libhttp-parser refuses both answers as malformed
  local DIFFER = { bad_chunk = "protocol", dup_cl = "protocol" }
  local CALLS = {
    { "charging POST with a body", method = "POST", body = "pay=1", charging = true },
    { "charging POST without a body", method = "POST", charging = true },
    { "idempotent GET", method = "GET" },
  }

  lazy_setup(function() f = fault.start(nginx.root()) end)
  lazy_teardown(function() if f then f.stop() end end)

  local function run(make, cell, call)
    local c = make { timeout = 1500, connect_timeout = 1500, cafile = f.cafile }
    local url = cell.url or (PLAIN .. cell[1])
    if cell.twice then seq = seq + 1; url = PLAIN .. cell[1] .. "/w" .. seq end
    f.reset()
    local req = { url = url, method = call.method, body = call.body }
    local out = {}
    for i = 1, cell.twice and 2 or 1 do
      if i == 2 and cell.pause then socket.sleep(cell.pause) end
      local res, msg, code, maybe_sent = c:request(req)
      out[i] = { res = res, msg = msg, code = code, maybe_sent = maybe_sent }
    end
    c:close()
    local n = 0
    for _, r in ipairs(f.log().requests) do if r.cell == cell[1] then n = n + 1 end end
    if cell.twice then
      assert(out[1].res, "the first call was not answered: " .. tostring(out[1].msg))
      n = n - 1
    end
    return out[#out], n, f.log()
  end

  for _, cell in ipairs(CELLS) do
    for _, call in ipairs(CALLS) do
      it(call[1] .. " in cell " .. cell[1] .. ": as libcurl, exactly once", function()
        local w, wn, wlog = run(core.wire_client, cell, call)
        local c, cn = run(core.http_client, cell, call)
        local what = cell[1] .. " / " .. call[1] .. ": wire " .. tostring(w.code) .. " " .. tostring(w.msg)
          .. ", libcurl " .. tostring(c.code) .. " " .. tostring(c.msg)
        if call.charging then
          assert.are.equal(cell.sent == false and 0 or 1, wn, "requests received: " .. what)
        end
        if DIFFER[cell[1]] then
          assert.is_nil(w.res, what)
          assert.are.equal(DIFFER[cell[1]], w.code, what)
          assert.is_true(w.maybe_sent, what)
          assert.are.equal(1, wn, what)
          return
        end
        assert.are.equal(cn, wn, "requests received, wire and libcurl: " .. what)
        assert.are.equal(c.code, w.code, what)
        assert.are.equal(c.maybe_sent, w.maybe_sent, what)
        if c.res then
          assert.are.equal(c.res.status, w.res.status, what)
          assert.are.equal(c.res.body, w.res.body, what)
        end
        if cell[1]:match("^tls_") then
          assert.are.equal("tls_verify", w.code, what)
          assert.are.equal(1, wlog.conns[tostring(cell.url:match(":(%d+)/"))], what)
        end
      end)
    end
  end
end)
