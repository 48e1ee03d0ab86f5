--- paykit.cosocket: the HTTP/1.1 client used inside nginx (OpenResty) request and timer
-- phases, where blocking the worker on libcurl is not allowed. It speaks over ngx.socket.tcp,
-- reads the usual answer (HTTP/1.1, whole head and Content-Length body in the first read, plain
-- headers) with a few plain searches and parses every other one with the C parser
-- (core.http_response_parser, on libhttp-parser), which alone decides what is malformed, and
-- reuses connections through nginx's cosocket keep-alive pool (a next call in the
-- same nginx request also reuses the cosocket object of its last clean one).
--
-- Returns the same shape as the libcurl client: {status=, headers={lowercase = "v"}, body=}
-- or nil, message, code, maybe_sent. Codes: dns, connect, connect_timeout, tls, tls_verify
-- (a refused certificate, or an IP-literal host with verification on; final) (never sent);
-- timeout, send, recv, too_large, protocol (maybe sent); other.
--
-- TLS certificates are verified by default against nginx's `lua_ssl_trusted_certificate`
-- (nginx cannot take a CA file per connection: opts.cafile only names the trust context and
-- keeps the keep-alive pools of different contexts apart; opts.capath, a CA directory, cannot
-- be honoured at all: a verified https request with it is refused, code tls_verify, before
-- any connection); the host name is both sent as SNI
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
-- The usual methods, known good without a pattern match
local METHOD_OK = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true, HEAD = true, OPTIONS = true }
local HEAD_OPT = { head = true }
local DEFAULT_USER_AGENT = "paykit/" .. (core._VERSION or _M._VERSION) .. " (cosocket)"

local handshake -- below

local function ip_verify_message(host)
  return "cannot check a certificate against the IP address " .. host .. " inside nginx"
    .. " (nginx checks names only through SNI, which an IP address does not get): use the"
    .. " host name, or verify = false"
end

-- nginx verifies only against lua_ssl_trusted_certificate: a CA directory cannot be honoured
local CAPATH_MESSAGE = "the capath option (a CA directory) cannot be honoured inside nginx: nginx verifies"
  .. " certificates only against lua_ssl_trusted_certificate; put the CA certificates in that file and"
  .. " leave capath unset (or set cafile to name the trust context)"

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

-- Header names already checked, by name: their lowercase form, and the piece that starts their
-- line ("\r\nName: ", see build_request) (a bounded cache: the names a program sends are
-- few). Values are checked on every call.
local NAME_OK, NAME_PIECE = {}, {}
local name_count = 0
local function checked_name(name)
  local l = NAME_OK[name]
  if l then return l end
  if not name:find("^[!#$%%&'*+%-.^_`|~%w]+$") then return nil end
  if name_count >= 512 then NAME_OK, NAME_PIECE, name_count = {}, {}, 0 end
  l = name:lower()
  NAME_OK[name], NAME_PIECE[name], name_count = l, "\r\n" .. name .. ": ", name_count + 1
  return l
end

-- Header values found clean (no CR, LF or NUL), by value: the first 256 seen (the values a
-- program sends again, a Content-Type or an Authorization, are among the first; a value that
-- changes on every call, a correlation id, is checked on every call once the table is full).
local VALUE_OK = {}
local value_count = 0

-- Framing is ours: a caller's Content-Length / Transfer-Encoding / Connection is dropped.
local FRAMING = { ["content-length"] = true, ["transfer-encoding"] = true, connection = true }

-- Appends "\r\nName: " and the value to parts (from n + 1) unless it is a framing header.
-- Returns the new n and the header's lowercase name, or nil, message.
local function add_header(parts, n, name, value)
  if type(name) ~= "string" then name = tostring(name) end
  if type(value) ~= "string" then value = tostring(value) end
  local lname = checked_name(name)
  if not lname then return nil, "invalid header name" end
  if not VALUE_OK[value] then
    -- three plain searches (memchr) cost less than one pattern with a character class
    if value:find("\r", 1, true) or value:find("\n", 1, true) or value:find("\0", 1, true) then
      return nil, "invalid header value for " .. name
    end
    if value_count < 256 then VALUE_OK[value], value_count = true, value_count + 1 end
  end
  if FRAMING[lname] then return n, lname end
  parts[n + 1], parts[n + 2] = NAME_PIECE[name], value
  return n + 2, lname
end

-- "Name: value" -> name, value (spaces around the value dropped), or nil. Without "(.-)%s*$",
-- whose lazy match costs a pattern step per byte of a long value.
local function split_line(line)
  local colon = line:find(":", 1, true)
  if not colon or colon == 1 then return nil end
  local first = line:find("%S", colon + 1)
  if not first then return line:sub(1, colon - 1), "" end
  return line:sub(1, colon - 1), line:match("^.*%S", first)
end

-- Content-Length values as text, by length (bounded: emptied when full)
local LENGTH_TEXT, length_count = {}, 0
local function length_text(len)
  local t = LENGTH_TEXT[len]
  if t then return t end
  if length_count >= 256 then LENGTH_TEXT, length_count = {}, 0 end
  t = tostring(len)
  LENGTH_TEXT[len], length_count = t, length_count + 1
  return t
end

-- The whole request (head and body) in one string, or nil, message. Headers may be a map
-- {Name = "v"} or an array {"Name: v"}; a map value may be an array (the header repeats).
-- The pieces of a request are gathered in one table per worker: build_request never yields,
-- so no other call can use it meanwhile. Pieces past the current request are left in place
-- (table.concat is given the range) and overwritten by later requests. Each line's CRLF goes
-- at the start of the next line's piece, so that a header is two pieces ("\r\nName: " and
-- its value); the request line of a usual method, the Host and User-Agent lines are pieces of
-- the call's conf (c), made once.
local parts = {}

local function request_line(c, method)
  local line = c.lines[method]
  if line then return line end
  line = method .. " " .. c.u.target .. " HTTP/1.1"
  if METHOD_OK[method] then c.lines[method] = line end
  return line
end

-- The lead header (opts.lead_header, c.lead: paykit.http's correlation header) goes first, right
-- after the request line, when the map has it with a plain value: a value that changes on every
-- call then sits early in the request. OpenResty's LuaJIT hashes a string of 128 bytes or more
-- from a few 8-byte samples at positions drawn when nginx starts, none in the second half of
-- the string but its last 8 bytes: where the headers' order (the map's) put the id late, in
-- some starts no sample met it, every request string of a run had one hash and each new one was
-- compared with all those still alive (MoCoPay verifyPayment inside nginx: about 2 starts in 5,
-- +19k instructions per call).
local function build_request(method, c, headers, body)
  parts[1] = request_line(c, method)
  local n, has_host, has_ua = 1, false, false
  if headers ~= nil then
    if type(headers) ~= "table" then return nil, "headers must be a table" end
    local e
    local lead = c.lead
    local lv = lead and headers[lead]
    if lv ~= nil and type(lv) ~= "table" then
      n, e = add_header(parts, n, lead, lv)
      if not n then return nil, e end
      if e == "host" then has_host = true elseif e == "user-agent" then has_ua = true end
    else
      lead = nil
    end
    for k, v in pairs(headers) do
      if k == lead then -- luacheck: ignore 542 (written first)
      elseif type(k) == "number" then
        local name, value = split_line(tostring(v))
        if not name then return nil, "invalid header line" end
        n, e = add_header(parts, n, name, value)
        if n then
          if e == "host" then has_host = true elseif e == "user-agent" then has_ua = true end
        end
      elseif type(v) == "table" then
        for _, one in ipairs(v) do
          n, e = add_header(parts, n, k, one)
          if not n then break end
          if e == "host" then has_host = true elseif e == "user-agent" then has_ua = true end
        end
      else
        n, e = add_header(parts, n, k, v)
        if n then
          if e == "host" then has_host = true elseif e == "user-agent" then has_ua = true end
        end
      end
      if not n then return nil, e end
    end
  end
  if not has_host then n = n + 1; parts[n] = c.host_piece end
  if not has_ua then n = n + 1; parts[n] = c.ua_piece end
  if body ~= nil or method == "POST" or method == "PUT" or method == "PATCH" then
    parts[n + 1], parts[n + 2] = "\r\nContent-Length: ", length_text(#(body or "")); n = n + 2
  end
  parts[n + 1] = "\r\nConnection: keep-alive\r\n\r\n"
  parts[n + 2] = body or ""
  return table.concat(parts, "", 1, n + 2)
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

-- Idle response parsers by max_body, reused across calls (a parser is reset before it is put
-- back; a call owns its parser between take and give, so coroutines never share one).
local idle_parsers = {}
local MAX_IDLE_PARSERS = 16

local function take_parser(max_body, head)
  local list = idle_parsers[max_body]
  local n = list and #list or 0
  if n > 0 then
    local p = list[n]
    list[n] = nil
    if head then p:reset(HEAD_OPT) end
    return p
  end
  return core.http_response_parser { max_body = max_body, head = head }
end

local function give_parser(max_body, p)
  p:reset()
  local list = idle_parsers[max_body]
  if not list then list = {}; idle_parsers[max_body] = list end
  if #list < MAX_IDLE_PARSERS then list[#list + 1] = p else p:close() end
end

-- The usual answer read in one step, without the C parser: the status line and the headers of
-- a whole head found in the first read, by plain searches. Only the plainest form is taken here
-- (HTTP/1.1, a final status 200-599 other than 204 and 304, one Content-Length of digits within
-- max_body, no Transfer-Encoding, a Connection of "close" or "keep-alive" or none, every header
-- "Name: value" with a token name and a printable value without spaces at either end); anything
-- else returns nil and the C parser (core.http_response_parser) reads the same bytes, so its
-- checks and messages stay the only ones. Returns status, headers (lowercase names, a repeated
-- name's values joined by ", " as the C parser does), the head's length, the Content-Length and
-- whether the connection may be kept; or nil.
local find, sub, lower, byte = string.find, string.sub, string.lower, string.byte

-- Answer header names already seen, by name as sent: their lowercase form, or false for a name
-- that is no token (a bounded cache, as NAME_OK: servers send few names). Only plain searches
-- and byte tests run per answer (no patterns: LuaJIT compiles those, and not a pattern).
local RESP_NAME = {}
local resp_names = 0
local function resp_name(name)
  local l = RESP_NAME[name]
  if l ~= nil then return l end
  l = find(name, "^[!#$%%&'*+%-.^_`|~%w]+$") ~= nil and lower(name)
  if resp_names >= 512 then RESP_NAME, resp_names = {}, 0 end
  RESP_NAME[name], resp_names = l, resp_names + 1
  return l
end

-- LuaJIT's table.new (a table made at its size); plain {} elsewhere
local new_tab = (function()
  local ok, tn = pcall(require, "table.new")
  if ok and type(tn) == "function" then return tn end
  return function() return {} end
end)()

local function fast_head(data, max_body)
  local e = find(data, "\r\n\r\n", 1, true)
  if not e or sub(data, 1, 9) ~= "HTTP/1.1 " then return nil end
  -- no NUL anywhere in the head
  local nul = find(data, "\0", 1, true)
  if nul and nul < e then return nil end
  local d1, d2, d3, sp = byte(data, 10, 13)
  -- 2xx-5xx, three digits and a space (1xx interim answers go to the C parser)
  if not (d1 and d1 >= 50 and d1 <= 53 and d2 >= 48 and d2 <= 57 and d3 >= 48 and d3 <= 57 and sp == 32) then
    return nil
  end
  local status = (d1 - 48) * 100 + (d2 - 48) * 10 + d3 - 48
  if status == 204 or status == 304 then return nil end
  -- every line ends in CRLF and holds no other CR or LF (a bare LF ends a line for the C parser)
  local stop = find(data, "\r", 14, true)
  if find(data, "\n", 14, true) ~= stop + 1 then return nil end
  local headers, length, keep = new_tab(0, 8), nil, true -- sized for the usual answer: no rehash as it fills
  local pos = stop + 2
  while pos < e + 2 do
    stop = find(data, "\r", pos, true)
    if find(data, "\n", pos, true) ~= stop + 1 then return nil end
    local colon = find(data, ":", pos, true)
    if not colon or colon >= stop or colon == pos then return nil end
    local name = resp_name(sub(data, pos, colon - 1))
    if not name then return nil end
    local vs = colon + 1
    if byte(data, vs) == 32 then vs = vs + 1 end
    -- a value: not empty, no space or tab at either end
    if vs >= stop then return nil end
    local first, last = byte(data, vs), byte(data, stop - 1)
    if first == 32 or first == 9 or last == 32 or last == 9 then return nil end
    local value = sub(data, vs, stop - 1)
    if name == "content-length" then
      if length or stop - vs > 15 then return nil end
      length = 0
      for i = vs, stop - 1 do
        local d = byte(data, i)
        if d < 48 or d > 57 then return nil end
        length = length * 10 + d - 48
      end
      if length > max_body then return nil end
    elseif name == "transfer-encoding" then
      return nil
    elseif name == "connection" then
      local v = lower(value)
      if v == "close" then keep = false elseif v ~= "keep-alive" then return nil end
    end
    local earlier = headers[name]
    headers[name] = earlier and (earlier .. ", " .. value) or value
    pos = stop + 2
  end
  if not length then return nil end
  return status, headers, e + 4, length, keep
end

-- (internal, for spec/cosocket_head_spec.lua: the fast path next to the C parser)
_M._fast_head = fast_head

-- A copy of a table's fields (LuaJIT's table.clone, one C call; a copy by pairs elsewhere).
local clone = (function()
  local ok, tc = pcall(require, "table.clone")
  if ok and type(tc) == "function" then return tc end
  return function(t)
    local c = {}
    for k, v in pairs(t) do c[k] = v end
    return c
  end
end)()

-- The heads fast_head took lately, by the head's bytes (status line to the blank line): the
-- same server sends the same head on every answer until its Date moves on, so the head is
-- read once a second rather than once an answer. fast_head's outcome depends on nothing but
-- the head's bytes and max_body (its searches never pass the head's end), so a head found
-- here gives what fast_head gives for it: the status, a new copy of the headers, the
-- Content-Length and keep (nil when that length is above this call's max_body, as fast_head
-- answers). Bounded (emptied when full). A server whose heads differ on every answer (a
-- request id header) would only pay for the lookups: after MAX_MISSES misses in a row the
-- lookups stop for SKIP answers, then are tried again.
local HEADS, heads_n = {}, 0
local MAX_HEADS, MAX_MISSES, SKIP = 32, 16, 1024
local misses, skip = 0, 0

local function read_head(data, max_body)
  if skip > 0 then
    skip = skip - 1
    return fast_head(data, max_body)
  end
  local e = find(data, "\r\n\r\n", 1, true)
  if not e then return nil end
  local head = sub(data, 1, e + 3)
  local h = HEADS[head]
  if h then
    misses = 0
    local length = h[3]
    if length > max_body then return nil end
    return h[1], clone(h[2]), e + 4, length, h[4]
  end
  local status, headers, body_at, length, keep = fast_head(data, max_body)
  misses = misses + 1
  if misses >= MAX_MISSES then misses, skip = 0, SKIP end
  if not status then return nil end
  -- a head that sets a cookie is not kept (a session the provider gives stays only in its answer)
  if find(head, "\n[Ss][Ee][Tt]%-[Cc][Oo][Oo][Kk][Ii][Ee][ \t]*:") then return status, headers, body_at, length, keep end
  if heads_n >= MAX_HEADS then HEADS, heads_n = {}, 0 end
  HEADS[head], heads_n = { status, clone(headers), length, keep }, heads_n + 1
  return status, headers, body_at, length, keep
end

-- (internal, for spec/cosocket_head_spec.lua: whether a head's bytes are kept)
_M._head_kept = function(head) return HEADS[head] ~= nil end
_M._heads_reset = function() HEADS, heads_n, misses, skip = {}, 0, 0, 0 end

-- (internal, for spec/cosocket_head_spec.lua)
_M._read_head = read_head
_M._build_request = build_request

local function fail(sock, parser, message, code, maybe_sent)
  if parser then parser:close() end
  if sock then sock:close() end
  return nil, message, code, maybe_sent
end

local max, min = math.max, math.min

-- A cosocket object whose last exchange ended cleanly (its connection given to nginx's pool by
-- setkeepalive), kept for the next exchange in the same nginx request: connect() on it takes a
-- pooled connection as a new object does, without making the object (a table and, at connect,
-- the userdata of its upstream) again. nginx raises on an object used in another request than
-- the one that connected it (it compares the request's address, and resets the object at
-- connect: one kept by a request that ended may serve the one nginx later puts at the same
-- address): each kept object is found by its request (the pointer thread.exdata gives,
-- resty.core's get_request, as a number) and used only in that one (by any of its light
-- threads: nginx lets them share an object, one exchange at a time). An object is taken out
-- (false in its place) while its exchange runs, so it never serves two at once, and put back
-- only after a clean end: one that failed, or whose exchange raised, is dropped. Keyed by the
-- request, not the coroutine: coroutine.running is not compiled by LuaJIT (a trace stitch,
-- ~230 instructions, on every call). The keys are plain numbers (no weak keys): the table is
-- emptied once it holds MAX_IDLE requests, those of requests that ended with it.
local idle_socks, idle_n = {}, 0 -- request -> kept object, or false while its exchange runs
local MAX_IDLE = 64
local get_request -- resty.core's (thread.exdata), found on the first request; false: none

local cast -- ffi.cast, found with get_request

-- The running request's pointer as a number (exdata gives a new cdata on each call: no table
-- key), or nil (no request, or no thread.exdata here). (No closure made in here: a function
-- that closes over its locals ends in a bytecode LuaJIT does not compile.)
local function request_ptr()
  if get_request == nil then
    get_request = false
    local ok, exdata = pcall(require, "thread.exdata")
    local fok, ffi = pcall(require, "ffi")
    -- (exdata raises until the ffi module is loaded: resty.core loads it, but paykit does not
    -- count on resty.core)
    if ok and type(exdata) == "function" and fok and pcall(exdata) then get_request, cast = exdata, ffi.cast end
  end
  if not get_request then return nil end
  local n = tonumber(cast("uintptr_t", get_request()))
  if n == 0 then return nil end -- (NULL: no request)
  return n
end

local function done_with(r, sock, keep, c)
  if keep and sock:setkeepalive(c.keepalive_timeout, c.pool_size) then
    if r ~= nil then
      if idle_socks[r] == nil then
        if idle_n >= MAX_IDLE then idle_socks, idle_n = {}, 0 end
        idle_n = idle_n + 1
      end
      idle_socks[r] = sock
    end
    return
  end
  sock:close()
end

-- The waits last given to each object (weak keys), so that a kept object whose next exchange
-- needs the same ones (the usual case: a call with the same timeouts, its first waits set
-- before any wait, so from the whole timeout) is not given them again: nginx keeps an
-- object's timeouts across setkeepalive and connect. Every settimeout(s) on an object goes
-- through set_waits or forgets its entry.
local waits_of = setmetatable({}, { __mode = "k" })

-- sock:settimeouts for what is left of the call (each wait also capped by the send/read timeout)
local function set_waits(sock, connect_timeout, send, read, left)
  send = max(1, (send and send < left) and send or left)
  read = max(1, (read and read < left) and read or left)
  local w = waits_of[sock]
  if w and w[1] == connect_timeout and w[2] == send and w[3] == read then return end
  sock:settimeouts(connect_timeout, send, read)
  if w then w[1], w[2], w[3] = connect_timeout, send, read else waits_of[sock] = { connect_timeout, send, read } end
end

-- One exchange on one connection. Returns res, or nil, message, code, maybe_sent, retry
-- (retry = true when a pooled connection was found dead before any response byte).
-- ngx.now() is nginx's cached clock, brought up to date by its event loop after every wait
-- (request() updates it once at the start).
-- replay: the request may be sent again when a pooled connection was dead; connect_timeout,
-- send_timeout, read_timeout: the call's (ms; the last two may be nil).
local function exchange(ngx, c, method, request, deadline, replay, connect_timeout, send_timeout, read_timeout)
  local u = c.u
  local r = request_ptr()
  local sock = r ~= nil and idle_socks[r]
  if sock then idle_socks[r] = false end
  if not sock then
    local serr
    sock, serr = ngx.socket.tcp()
    if not sock then return nil, "cannot create a socket: " .. tostring(serr), "other", false end
  end

  local left = deadline - ngx.now() * 1000
  if left <= 0 then return fail(sock, nil, "request timed out before connecting", "connect_timeout", false) end
  -- one settimeouts for connect, send and the first read: a connection from the pool is
  -- taken without waiting, so nginx's clock (moved only by waits) still reads the same after it
  set_waits(sock, max(1, min(connect_timeout, left)), send_timeout, read_timeout, left)
  local ok, err = sock:connect(u.host, u.port, c.pool_opts)
  if not ok then
    return fail(sock, nil, "connect to " .. u.authority .. " failed: " .. tostring(err), connect_code(err), false)
  end
  -- Whether the connection came from the pool is asked (getreusedtimes) only where it
  -- matters: a new TLS connection needs its handshake, and a request that may be sent again
  -- is sent again only after a pooled connection was found dead. A plain-http request that is
  -- never sent twice (a charging POST) does not ask: there a new connection differs from a
  -- pooled one only by the time its connect took (a pooled one is taken without waiting), so
  -- its waits are set again, from what is left, only when nginx's clock moved.
  local reused = false
  local asked = u.tls or replay
  if asked then reused = (sock:getreusedtimes() or 0) > 0 end

  if not reused and (asked or deadline - ngx.now() * 1000 ~= left) then
    if u.tls then
      left = deadline - ngx.now() * 1000
      if left <= 0 then return fail(sock, nil, "request timed out during the TLS handshake", "connect_timeout", false) end
      waits_of[sock] = nil -- (settimeout below: all three waits)
      sock:settimeout(max(1, min(connect_timeout, left)))
      local code
      ok, err, code = handshake(sock, u.host, c.verify)
      if not ok then
        return fail(sock, nil, "TLS handshake with " .. u.authority .. " failed: " .. tostring(err), code, false)
      end
    end
    left = deadline - ngx.now() * 1000
    if left <= 0 then return fail(sock, nil, "request timed out before sending", "connect_timeout", false) end
    -- send_timeout / read_timeout: the longest wait for one send / one read (nginx's
    -- settimeouts), never past the whole call's deadline
    set_waits(sock, connect_timeout, send_timeout, read_timeout, left)
  end
  local sent
  sent, err = sock:send(request)
  if not sent then
    -- bytes of the request may have left before the failure: only a replayable one is resent
    if reused and err ~= "timeout" and replay then
      sock:close()
      return nil, "send failed on a pooled connection: " .. tostring(err), "send", true, true
    end
    local code = err == "timeout" and "timeout" or "send"
    return fail(sock, nil, "sending to " .. u.authority .. " failed: " .. tostring(err), code, true)
  end

  local max_body = c.max_response
  local head = method == "HEAD"
  local parser
  local got = 0
  local first = true
  while true do
    left = deadline - ngx.now() * 1000
    if left <= 0 then return fail(sock, parser, "request to " .. u.authority .. " timed out", "timeout", true) end
    if not first then set_waits(sock, connect_timeout, send_timeout, read_timeout, left) end
    local data, rerr = sock:receiveany(READ_SIZE)
    local done, perr, pcode
    if data then
      if first and not head then
        -- the usual answer, whole head in the first read: no parser (see fast_head)
        local status, headers, body_at, length, keep = read_head(data, max_body)
        -- the whole answer in this read (else the loop below, whose every read is held to the
        -- call's deadline: a body trickling in must not outlast it)
        local have = status and #data - body_at + 1
        if status and have >= length then
          local body = have == length and sub(data, body_at) or sub(data, body_at, body_at + length - 1)
          if have > length then keep = false end -- bytes beyond this answer: not a clean connection
          done_with(r, sock, keep, c)
          return { status = status, headers = headers, body = body }
        end
      end
      if not parser then parser = take_parser(max_body, head) end
      got = got + #data
      done, perr, pcode = parser:feed(data)
    elseif rerr == "closed" then
      if got == 0 then
        if parser then parser:close() end
        sock:close()
        return nil, "connection closed by " .. u.authority .. " before any response", "recv", true,
          reused and replay
      end
      done, perr, pcode = parser:finish()
      if not done and pcode == "protocol" and perr:find("closed", 1, true) then pcode = "recv" end
    elseif rerr == "timeout" then
      local what = (read_timeout and read_timeout < left) and (" (no data for " .. read_timeout .. " ms)") or ""
      return fail(sock, parser, "request to " .. u.authority .. " timed out" .. what, "timeout", true)
    else
      return fail(sock, parser, "receiving from " .. u.authority .. " failed: " .. tostring(rerr), "recv", true)
    end
    first = false
    if done == nil then
      return fail(sock, parser, perr .. " (from " .. u.authority .. ")", pcode, true)
    end
    if done then break end
    if rerr == "closed" then
      return fail(sock, parser, "connection closed before the response was complete", "recv", true)
    end
  end

  local res = parser:result()
  -- a parser keeps its buffers when reset: one that held a large answer is not kept
  if #res.body <= 65536 then give_parser(max_body, parser) else parser:close() end
  done_with(r, sock, res.keepalive, c)
  res.keepalive = nil
  return res
end

-- What a request needs from its url and the caller's opts, worked out once per (opts, url):
-- the parsed url, the pool name and connect options, verification and pool settings. Kept in a
-- table per opts table (weak keys: paykit.http keeps one opts table per transport) and, for a
-- call without opts, in one shared table; each is bounded (urls with per-call query strings
-- would otherwise pile up).
local by_opts = setmetatable({}, { __mode = "k" })
local NO_OPTS = {}
local MAX_URLS = 64

-- the opts fields a conf depends on: a hit is used only while they are unchanged
local function same_opts(c, opts)
  return c.o_verify == opts.verify and c.o_cafile == opts.cafile and c.o_capath == opts.capath
    and c.o_pool_name == opts.pool_name
    and c.o_pool_size == opts.pool_size and c.o_max_response == opts.max_response
    and c.o_keepalive_timeout == opts.keepalive_timeout and c.o_user_agent == opts.user_agent
    and c.o_lead_header == opts.lead_header
end

local function conf_of(url, opts)
  local cache = by_opts[opts]
  if cache then
    local c = cache[url]
    if c and same_opts(c, opts) then return c end
  else
    cache = { n = 0 }
    by_opts[opts] = cache
  end
  local u, uerr = parse_url(url)
  if not u then return nil, "invalid url: " .. uerr end
  local verify = opts.verify
  if verify == nil then verify = true end
  verify = verify and true or false
  if u.tls and verify and is_ip_literal(u.host) then
    return nil, ip_verify_message(u.host), "tls_verify" -- before any connection
  end
  if u.tls and verify and opts.capath ~= nil then
    return nil, CAPATH_MESSAGE, "tls_verify" -- before any connection: not verified as asked
  end
  -- The pool is per nginx worker, shared by every server{} block. A connection verified
  -- once must never serve an unverified caller (nor the reverse), and one verified against
  -- one CA must not serve a caller that names another: the CA file is part of the key.
  local tls_key = "plain"
  if u.tls then
    tls_key = verify and "tls" or "tls-noverify"
    if verify and opts.cafile then tls_key = tls_key .. ":" .. tostring(opts.cafile) end
  end
  local pool_key = u.host .. ":" .. u.port .. ":" .. tls_key
  if opts.pool_name then pool_key = tostring(opts.pool_name) .. "/" .. pool_key end
  local pool_size = tonumber(opts.pool_size) or DEFAULT_POOL_SIZE
  local c = {
    u = u, verify = verify, pool_size = pool_size,
    pool_opts = { pool = pool_key, pool_size = pool_size },
    max_response = tonumber(opts.max_response) or DEFAULT_MAX_RESPONSE,
    keepalive_timeout = tonumber(opts.keepalive_timeout) or DEFAULT_KEEPALIVE_TIMEOUT,
    user_agent = opts.user_agent or DEFAULT_USER_AGENT,
    lines = {}, host_piece = "\r\nHost: " .. u.authority,
    ua_piece = "\r\nUser-Agent: " .. (opts.user_agent or DEFAULT_USER_AGENT),
    o_verify = opts.verify, o_cafile = opts.cafile, o_capath = opts.capath, o_pool_name = opts.pool_name, o_pool_size = opts.pool_size,
    o_max_response = opts.max_response, o_keepalive_timeout = opts.keepalive_timeout,
    o_user_agent = opts.user_agent, o_lead_header = opts.lead_header,
    lead = type(opts.lead_header) == "string" and opts.lead_header or nil,
  }
  if cache.n >= MAX_URLS then cache = { n = 0 }; by_opts[opts] = cache end
  cache[url], cache.n = c, cache.n + 1
  return c
end

-- (internal, for spec/cosocket_head_spec.lua: build_request's conf)
_M._conf_of = conf_of

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
--   `capath` (refused for a verified https request: see above),
--   `timeout` (ms, default 30000), `connect_timeout` (ms, default 10000), `send_timeout`,
--   `read_timeout` (ms, as in req; req wins), `max_response` (bytes, default 8 MiB),
--   `pool_size` (idle connections kept per pool, default 32; nginx fixes a pool's size when
--   the pool is first made), `keepalive_timeout` (ms an idle connection is kept, default
--   30000), `pool_name` (a prefix of the pool name `host:port:tls`, so that callers with
--   other pool settings get pools of their own), `user_agent`. What follows from opts and the
--   url (the parsed url, the pool name, verification, pool settings) is worked out once per
--   opts table and url and used again while those fields of opts are unchanged: pass the
--   same opts table on every call (paykit.http does) rather than a new one per call;
--   `lead_header` (a header name: that header of a map, when its value is a string, is
--   written first, right after the request line; paykit.http passes its correlation header)
-- @treturn table `{status=, headers={lowercase-name = "value"}, body=}`
-- @return[2] nil
-- @return[2] string message (no body content)
-- @return[2] string code: dns, connect, connect_timeout, tls, tls_verify, timeout, send, recv, too_large,
--   protocol or other (also for misuse such as a bad url or outside nginx)
-- @return[2] boolean maybe_sent: whether the server may have received the request
-- @param[opt] fresh (internal, for paykit.http) `ngx.now()` as read right after an
--   `ngx.update_time()` at the start of this call, nothing having waited since: the deadline
--   starts from it instead of updating nginx's time again
-- @raise when req is not a table
function _M.request(req, opts, fresh)
  if type(req) ~= "table" then error("paykit.cosocket.request: req must be a table", 2) end
  opts = opts or NO_OPTS
  local ngx = ngx_api()
  if not ngx or type(ngx.socket) ~= "table" then
    return nil, "cosocket transport used outside nginx", "other", false
  end
  local body = req.body
  local method = req.method or (body ~= nil and "POST" or "GET")
  if type(method) ~= "string" or not METHOD_OK[method] and not method:find("^[A-Z]+$") then
    return nil, "invalid method", "other", false
  end
  if body ~= nil and type(body) ~= "string" then
    return nil, "body must be a string", "other", false
  end
  local url = req.url
  if type(url) ~= "string" then return nil, "invalid url: url must be a string", "other", false end
  local c, cerr, ccode = conf_of(url, opts)
  if not c then return nil, cerr, ccode or "other", false end
  local request, herr = build_request(method, c, req.headers, body)
  if not request then return nil, herr, "other", false end

  local replay = req.idempotent
  if replay == nil then replay = REPLAYABLE[method] == true end
  replay = replay and true or false -- may be sent again when a pooled connection was dead
  local send_timeout, read_timeout = req.send_timeout or opts.send_timeout, req.read_timeout or opts.read_timeout
  local connect_timeout = tonumber(req.connect_timeout or opts.connect_timeout) or DEFAULT_CONNECT_TIMEOUT
  send_timeout, read_timeout = send_timeout and tonumber(send_timeout), read_timeout and tonumber(read_timeout)
  local timeout = tonumber(req.timeout or opts.timeout) or DEFAULT_TIMEOUT
  -- (fresh: paykit.http's reading of ngx.now() right after its ngx.update_time, in this call)
  if type(fresh) ~= "number" then
    ngx.update_time()
    fresh = ngx.now()
  end
  local deadline = fresh * 1000 + timeout

  local res, message, code, maybe_sent, retry
  for _ = 1, 3 do
    res, message, code, maybe_sent, retry = exchange(ngx, c, method, request, deadline, replay, connect_timeout,
      send_timeout, read_timeout)
    -- retry: a pooled connection had been closed by the server while idle; take another
    if res or not retry then break end
  end
  if retry then maybe_sent = true end
  if not res then return nil, message, code, maybe_sent end
  return res
end

return _M
