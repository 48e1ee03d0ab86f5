--- paykit.cosocket: the HTTP/1.1 client used inside nginx (OpenResty) request and timer
-- phases, where blocking the worker on libcurl is not allowed. It speaks over ngx.socket.tcp,
-- parses the response with the C parser (core.http_response_parser, on libhttp-parser) and
-- reuses connections through nginx's cosocket keep-alive pool.
--
-- Returns the same shape as the libcurl client: {status=, headers={lowercase = "v"}, body=}
-- or nil, message, code, maybe_sent. Codes: dns, connect, connect_timeout, tls, tls_verify
-- (a refused certificate, or an IP-literal host with verification on; final) (never sent);
-- timeout, send, recv, too_large, protocol (maybe sent); other.
--
-- TLS certificates are verified by default against nginx's `lua_ssl_trusted_certificate`
-- (nginx cannot take a CA file per connection: opts.cafile only names the trust context and
-- keeps the keep-alive pools of different contexts apart); the host name is both sent as SNI
-- and checked against the certificate. Host names are resolved by the
-- nginx `resolver` directive. Bodies are never logged or put in error messages.
--
-- Requiring the module works anywhere; only @{request} needs nginx.
-- @module paykit.cosocket
-- @usage
--   local cosocket = require "paykit.cosocket"
--   if cosocket.available() then
--     local res, err, code, maybe_sent = cosocket.request(
--       {method = "POST", url = "https://api.example/pay", headers = {...}, body = "...",
--        timeout = 30000, connect_timeout = 10000},                -- milliseconds
--       {verify = true, max_response = 8388608, pool_size = 32, keepalive_timeout = 30000})
--   end
local _M = { _VERSION = "0.1.0" }

local core = require "paykit.core"
local url_mod = require "paykit.url"

local DEFAULT_TIMEOUT = 30000
local DEFAULT_CONNECT_TIMEOUT = 10000
local DEFAULT_MAX_RESPONSE = 8 * 1024 * 1024
local DEFAULT_POOL_SIZE = 32
local DEFAULT_KEEPALIVE_TIMEOUT = 30000 -- below the usual server idle timeouts (nginx: 75 s)
local READ_SIZE = 65536

-- The phases in which ngx.socket.tcp may be used are paykit.runtime's (one list for the
-- transports; paykit.http requires this module, so it cannot be the other way round).
local in_cosocket_phase = require("paykit.runtime").in_cosocket_phase

-- Methods that may be sent a second time when a pooled connection turns out to be dead.
local REPLAYABLE = { GET = true, HEAD = true, OPTIONS = true }

local handshake -- below

local function ip_verify_message(host)
  return "cannot check a certificate against the IP address " .. host .. " inside nginx"
    .. " (nginx checks names only through SNI, which an IP address does not get): use the"
    .. " host name, or verify = false"
end

local function ngx_api()
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" then return ngx end
  return nil
end

--- Whether cosockets can be used here: inside nginx, in a phase that allows ngx.socket.tcp
-- (`paykit.runtime.in_cosocket_phase`: rewrite, server_rewrite, access, content, timer, ssl_cert,
-- ssl_session_fetch, ssl_client_hello, preread).
-- @treturn boolean false outside nginx or in another phase (init, log, header_filter, ...)
function _M.available()
  local ngx = ngx_api()
  return ngx ~= nil and type(ngx.socket) == "table" and in_cosocket_phase() == true
end

--- Splits an http(s) URL: `paykit.url.parse`, kept here under its first name.
-- @function parse_url
-- @tparam string url an absolute http or https URL
-- @treturn table see `paykit.url.parse`
local parse_url = url_mod.parse
_M.parse_url = parse_url

local function bad_header_text(s)
  return s:find("[\r\n%z]") ~= nil
end

-- Headers may be a map {Name = "v"} or an array {"Name: v"}; a map value may be an array
-- (the header repeats). Returns an array of {name, value} or nil, message.
local function header_list(headers)
  local out = {}
  if headers == nil then return out end
  if type(headers) ~= "table" then return nil, "headers must be a table" end
  local function add(name, value)
    name, value = tostring(name), tostring(value)
    if not name:find("^[!#$%%&'*+%-.^_`|~%w]+$") then return "invalid header name" end
    if bad_header_text(value) then return "invalid header value for " .. name end
    out[#out + 1] = { name, value }
  end
  for k, v in pairs(headers) do
    local e
    if type(k) == "number" then
      local name, value = tostring(v):match("^([^:]+):%s*(.-)%s*$")
      if not name then return nil, "invalid header line" end
      e = add(name, value)
    elseif type(v) == "table" then
      for _, one in ipairs(v) do e = e or add(k, one) end
    else
      e = add(k, v)
    end
    if e then return nil, e end
  end
  return out
end

local function build_request(method, u, headers, body, user_agent)
  local has = {}
  local lines = { method .. " " .. u.target .. " HTTP/1.1" }
  for _, h in ipairs(headers) do
    local lname = h[1]:lower()
    -- framing is ours: a caller's Content-Length / Transfer-Encoding / Connection is dropped
    if lname ~= "content-length" and lname ~= "transfer-encoding" and lname ~= "connection" then
      has[lname] = true
      lines[#lines + 1] = h[1] .. ": " .. h[2]
    end
  end
  if not has.host then lines[#lines + 1] = "Host: " .. u.authority end
  if not has["user-agent"] then lines[#lines + 1] = "User-Agent: " .. user_agent end
  if body ~= nil or method == "POST" or method == "PUT" or method == "PATCH" then
    lines[#lines + 1] = "Content-Length: " .. #(body or "")
  end
  lines[#lines + 1] = "Connection: keep-alive"
  lines[#lines + 1] = ""
  lines[#lines + 1] = body or ""
  return table.concat(lines, "\r\n")
end

-- sock:connect / sslhandshake messages -> code
local function connect_code(err)
  err = tostring(err)
  if err:find("timeout", 1, true) then return "connect_timeout" end
  if err:find("resolve", 1, true) or err:find("resolver", 1, true) then return "dns" end
  return "connect"
end

--- Whether a URL host is an IP address (IPv4 dotted, or IPv6 in brackets): such a host gets
-- no SNI, and inside nginx its certificate cannot be checked (see @{request}).
-- @tparam string host the host as in a URL (`"127.0.0.1"`, `"[::1]"`, `"api.example"`)
-- @treturn boolean
function _M.is_ip_literal(host)
  return host:find("^%[.*%]$") ~= nil or host:find("^%d+%.%d+%.%d+%.%d+$") ~= nil
end
local is_ip_literal = _M.is_ip_literal

-- The TLS handshake: true, or nil, message, code. Never raises: resty.core's sslhandshake
-- asserts on some failure paths, and a failed assertion must not escape gw:purchase.
-- An IP-literal host gets no SNI (RFC 6066 allows none); nginx checks the certificate's name
-- only against the SNI name, so with verification on such a host is refused rather than
-- accepted with its name unchecked. A refused certificate is final (tls_verify): never retried.
handshake = function(sock, host, verify)
  local name = host
  if is_ip_literal(host) then
    if verify then return nil, ip_verify_message(host), "tls_verify" end
    name = nil
  end
  -- reused_session = false: true on success (a session object may be nil under TLS 1.3)
  local pok, ok, err = pcall(sock.sslhandshake, sock, false, name, verify)
  if not pok then return nil, "TLS handshake raised: " .. tostring(ok), "tls" end
  if ok then
    -- lua-nginx-module 0.10.23: when the handshake completes at once, a refused certificate
    -- closes the connection but the call still answers true; a closed socket tells
    local _, closed = sock:getreusedtimes()
    if closed then
      return nil, "the connection was closed right after the handshake: the certificate was refused"
        .. " (nginx's error log has the reason)", "tls_verify"
    end
    return true
  end
  err = tostring(err)
  if err:find("timeout", 1, true) then return nil, err, "connect_timeout" end
  -- nginx reports a refused chain as "<X509 verify code>: <reason>" and a wrong name as
  -- "certificate host mismatch"
  if err:find("^%d+: ") or err:find("certificate", 1, true) then return nil, err, "tls_verify" end
  return nil, err, "tls"
end

local function now_ms(ngx)
  ngx.update_time()
  return ngx.now() * 1000
end

local function fail(sock, parser, message, code, maybe_sent)
  if parser then parser:close() end
  if sock then sock:close() end
  return nil, message, code, maybe_sent
end

-- One exchange on one connection. Returns res, or nil, message, code, maybe_sent, retry
-- (retry = true when a pooled connection was found dead before any response byte).
local function exchange(ngx, u, method, request, o, deadline)
  local sock, serr = ngx.socket.tcp()
  if not sock then return nil, "cannot create a socket: " .. tostring(serr), "other", false end
  local function remaining()
    return deadline - now_ms(ngx)
  end

  local left = remaining()
  if left <= 0 then return fail(sock, nil, "request timed out before connecting", "connect_timeout", false) end
  sock:settimeout(math.max(1, math.min(o.connect_timeout, left)))
  local ok, err = sock:connect(u.host, u.port, { pool = o.pool_key, pool_size = o.pool_size })
  if not ok then
    return fail(sock, nil, "connect to " .. u.authority .. " failed: " .. tostring(err), connect_code(err), false)
  end
  local reused = (sock:getreusedtimes() or 0) > 0

  if u.tls and not reused then
    left = remaining()
    if left <= 0 then return fail(sock, nil, "request timed out during the TLS handshake", "connect_timeout", false) end
    sock:settimeout(math.max(1, math.min(o.connect_timeout, left)))
    local code
    ok, err, code = handshake(sock, u.host, o.verify)
    if not ok then
      return fail(sock, nil, "TLS handshake with " .. u.authority .. " failed: " .. tostring(err), code, false)
    end
  end

  left = remaining()
  if left <= 0 then return fail(sock, nil, "request timed out before sending", "connect_timeout", false) end
  -- send_timeout / read_timeout: the longest wait for one send / one read (nginx's
  -- settimeouts), never past the whole call's deadline
  sock:settimeouts(o.connect_timeout, math.max(1, math.min(o.send_timeout or left, left)),
    math.max(1, math.min(o.read_timeout or left, left)))
  local sent
  sent, err = sock:send(request)
  if not sent then
    -- bytes of the request may have left before the failure: only a replayable one is resent
    if reused and err ~= "timeout" and o.replay then
      sock:close()
      return nil, "send failed on a pooled connection: " .. tostring(err), "send", true, true
    end
    local code = err == "timeout" and "timeout" or "send"
    return fail(sock, nil, "sending to " .. u.authority .. " failed: " .. tostring(err), code, true)
  end

  local parser = core.http_response_parser { max_body = o.max_response, head = method == "HEAD" }
  local got = 0
  while true do
    left = remaining()
    if left <= 0 then return fail(sock, parser, "request to " .. u.authority .. " timed out", "timeout", true) end
    sock:settimeouts(o.connect_timeout, math.max(1, math.min(o.send_timeout or left, left)),
      math.max(1, math.min(o.read_timeout or left, left)))
    local data, rerr = sock:receiveany(READ_SIZE)
    local done, perr, pcode
    if data then
      got = got + #data
      done, perr, pcode = parser:feed(data)
    elseif rerr == "closed" then
      if got == 0 then
        parser:close(); sock:close()
        return nil, "connection closed by " .. u.authority .. " before any response", "recv", true,
          reused and o.replay
      end
      done, perr, pcode = parser:finish()
      if not done and pcode == "protocol" and perr:find("closed", 1, true) then pcode = "recv" end
    elseif rerr == "timeout" then
      local what = (o.read_timeout and o.read_timeout < left) and (" (no data for " .. o.read_timeout .. " ms)") or ""
      return fail(sock, parser, "request to " .. u.authority .. " timed out" .. what, "timeout", true)
    else
      return fail(sock, parser, "receiving from " .. u.authority .. " failed: " .. tostring(rerr), "recv", true)
    end
    if done == nil then
      return fail(sock, parser, perr .. " (from " .. u.authority .. ")", pcode, true)
    end
    if done then break end
    if rerr == "closed" then
      return fail(sock, parser, "connection closed before the response was complete", "recv", true)
    end
  end

  local res = parser:result()
  parser:close()
  if res.keepalive then
    local kept = sock:setkeepalive(o.keepalive_timeout, o.pool_size)
    if not kept then sock:close() end
  else
    sock:close()
  end
  return { status = res.status, headers = res.headers, body = res.body }
end

--- One HTTP request over a cosocket, with nginx's keep-alive pool.
-- A pooled connection found closed by the server is replaced; a request is sent again on
-- the new connection only when `req.idempotent` (default: GET, HEAD and OPTIONS), since the
-- server may have read it before closing. A charging call is never sent twice.
-- @tparam table req `method` (default POST with a body, else GET), `url`, `headers` (a map
--   `{Name = "v"}`, a value may be an array; or an array `{"Name: v"}`; Content-Length,
--   Transfer-Encoding and Connection are set by the client), `body` (string), `idempotent`,
--   `timeout` (ms, whole exchange), `connect_timeout` (ms), `send_timeout` and `read_timeout`
--   (ms, the longest wait for one send / one read; default: up to the whole timeout)
-- @tparam[opt] table opts `verify` (default true), `cafile` (names the trust context, see above),
--   `timeout` (ms, default 30000), `connect_timeout` (ms, default 10000), `send_timeout`,
--   `read_timeout` (ms, as in req; req wins), `max_response` (bytes, default 8 MiB),
--   `pool_size` (idle connections kept per pool, default 32; nginx fixes a pool's size when
--   the pool is first made), `keepalive_timeout` (ms an idle connection is kept, default
--   30000), `pool_name` (a prefix of the pool name `host:port:tls`, so that callers with
--   other pool settings get pools of their own), `user_agent`
-- @treturn table `{status=, headers={lowercase-name = "value"}, body=}`
-- @return[2] nil
-- @return[2] string message (no body content)
-- @return[2] string code: dns, connect, connect_timeout, tls, tls_verify, timeout, send, recv, too_large,
--   protocol or other (also for misuse such as a bad url or outside nginx)
-- @return[2] boolean maybe_sent: whether the server may have received the request
-- @raise when req is not a table
function _M.request(req, opts)
  if type(req) ~= "table" then error("paykit.cosocket.request: req must be a table", 2) end
  opts = opts or {}
  local ngx = ngx_api()
  if not ngx or type(ngx.socket) ~= "table" then
    return nil, "cosocket transport used outside nginx", "other", false
  end
  local method = req.method or (req.body ~= nil and "POST" or "GET")
  if type(method) ~= "string" or not method:find("^[A-Z]+$") then
    return nil, "invalid method", "other", false
  end
  if req.body ~= nil and type(req.body) ~= "string" then
    return nil, "body must be a string", "other", false
  end
  local u, uerr = parse_url(req.url)
  if not u then return nil, "invalid url: " .. uerr, "other", false end
  local headers, herr = header_list(req.headers)
  if not headers then return nil, herr, "other", false end

  local verify = opts.verify
  if verify == nil then verify = true end
  if u.tls and verify and is_ip_literal(u.host) then
    return nil, ip_verify_message(u.host), "tls_verify", false -- before any connection
  end
  local replay = req.idempotent
  if replay == nil then replay = REPLAYABLE[method] == true end
  local o = {
    replay = replay and true or false, -- may be sent again when a pooled connection was dead
    verify = verify and true or false,
    connect_timeout = tonumber(req.connect_timeout or opts.connect_timeout) or DEFAULT_CONNECT_TIMEOUT,
    max_response = tonumber(opts.max_response) or DEFAULT_MAX_RESPONSE,
    pool_size = tonumber(opts.pool_size) or DEFAULT_POOL_SIZE,
    keepalive_timeout = tonumber(opts.keepalive_timeout) or DEFAULT_KEEPALIVE_TIMEOUT,
    send_timeout = tonumber(req.send_timeout or opts.send_timeout),
    read_timeout = tonumber(req.read_timeout or opts.read_timeout),
  }
  -- The pool is per nginx worker, shared by every server{} block. A connection verified
  -- once must never serve an unverified caller (nor the reverse), and one verified against
  -- one CA must not serve a caller that names another: the CA file is part of the key.
  local tls_key = "plain"
  if u.tls then
    tls_key = o.verify and "tls" or "tls-noverify"
    if o.verify and opts.cafile then tls_key = tls_key .. ":" .. tostring(opts.cafile) end
  end
  o.pool_key = u.host .. ":" .. u.port .. ":" .. tls_key
  if opts.pool_name then o.pool_key = tostring(opts.pool_name) .. "/" .. o.pool_key end
  local timeout = tonumber(req.timeout or opts.timeout) or DEFAULT_TIMEOUT
  local deadline = now_ms(ngx) + timeout

  local request = build_request(method, u, headers, req.body,
    opts.user_agent or ("paykit/" .. (core._VERSION or _M._VERSION) .. " (cosocket)"))

  local res, message, code, maybe_sent, retry
  for _ = 1, 3 do
    res, message, code, maybe_sent, retry = exchange(ngx, u, method, request, o, deadline)
    -- retry: a pooled connection had been closed by the server while idle; take another
    if res or not retry then break end
  end
  if retry then maybe_sent = true end
  if not res then return nil, message, code, maybe_sent end
  return res
end

return _M
