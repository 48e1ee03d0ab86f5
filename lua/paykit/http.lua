--- paykit.http: the transport under every provider. Picks the OpenResty cosocket
-- transport inside nginx request/timer phases and the C core elsewhere (the wire client,
-- libcurl for what wire does not do: see `transport` in @{new}); retries only what is safe;
-- calls hooks; logs one redacted line per attempt.
--
-- Retry policy: a failure that never reached the server (dns, connect, connect_timeout,
-- tls) is retried always, except a refused certificate (tls_verify), which is final; a failure after the request may have been sent (timeout, send,
-- recv, protocol, ...) and HTTP 502/503/504 only when the call is `idempotent` (the provider
-- knows the merchant's unique reference, so a repeat cannot charge twice). Backoff is
-- capped exponential with full jitter, and no attempt starts or runs past `deadline`.
-- `retry = false` turns retries off for the instance; `idempotent = false` (the default)
-- keeps them off for a call that could charge twice.
--
-- A coroutine that has a scheduler (`paykit.runtime.scheduler()`: a `paykit.loop` call or a
-- `paykit.batch` task) hands each attempt and each retry's sleep to it instead of running
-- them; the transport knows nothing else of who schedules.
-- @module paykit.http
-- @usage
--   local t = http.new{timeout = 30, connect_timeout = 10, logger = fn, hooks = {...},
--                      retry = {attempts = 3, base_delay = 0.2, max_delay = 2, deadline = 30}}
--   local res, err = t:request{method = "POST", url = url, body = json_text, json = true,
--                              op = "moka.capture", idempotent = true}
--   -- res = {status=, headers=, body=, json=}; err is a paykit error (transport or timeout)
local errors = require "paykit.errors"
local redact = require "paykit.redact"
local runtime = require "paykit.runtime"

local _M = {}

local mt = { __index = _M }

-- code -> {kind, sent, final}: a final failure is never retried (a refused certificate will
-- be refused again)
local CODES = {
  dns = { "transport", false }, connect = { "transport", false }, tls = { "transport", false },
  tls_verify = { "transport", false, true },
  connect_timeout = { "timeout", false },
  timeout = { "timeout", true }, send = { "transport", true }, recv = { "transport", true },
  too_large = { "transport", true }, protocol = { "transport", true }, other = { "transport", true },
}

local OTHER_CODE = { "transport", true } -- a code the transports do not give
local RETRY_STATUS = { [502] = true, [503] = true, [504] = true }

local DEFAULT_RETRY = { attempts = 3, base_delay = 0.2, max_delay = 2, deadline = 30 }


local request_id_of, scoped, ngx_first -- below
local core_uuid4 = require("paykit.core").uuid4
local core_monotonic = require("paykit.core").monotonic
local find = string.find

local in_cosocket_phase = runtime.in_cosocket_phase
_M.in_cosocket_phase = in_cosocket_phase

--- Whether cosockets may be used here.
-- True inside nginx in a phase that allows them (rewrite, server_rewrite, access, content, timer, ssl_cert, ssl_session_fetch,
-- ssl_client_hello, preread).
-- @function in_cosocket_phase
-- @treturn boolean

local now = runtime.now
_M.now = now

--- The current time in seconds.
-- A clock for deadlines and intervals: ngx.now() inside nginx (time updated first), else the
-- C core's monotonic clock (`paykit.core.monotonic`, sub-millisecond, never jumps).
-- @function now
-- @treturn number seconds (compare two readings; not a date)

--- The shared lua-cjson instance.
-- A `cjson.safe` instance, made on first use: decoding bad JSON answers nil rather than raising.
-- @function cjson
-- @treturn table the cjson.safe instance

local scheduler = runtime.scheduler
local scheduler_of, co_running = runtime.scheduler_of, coroutine.running

local function default_sleep(s)
  if s <= 0 then return end
  local sched = scheduler()
  if sched then return sched:sleep(s) end
  return runtime.sleep(s)
end
_M.sleep = default_sleep

--- Waits s seconds the way a retry's backoff does.
-- Handed to the coroutine's scheduler (a `paykit.loop` call, a `paykit.batch` task), ngx.sleep in a cosocket phase,
-- else the C core's sleep (`paykit.core.sleep`). Nothing for s <= 0.
-- @function sleep
-- @tparam number s seconds

-- The logger of a transport without one: nothing is built for it (see @{transport:request}).
local NOOP = function() end
_M.NOOP_LOGGER = NOOP

--- The logger of a transport without one: does nothing.
-- A transport whose `log` is this function builds no log line (and redacts nothing for one).
-- @function NOOP_LOGGER

--- Normalise a logger into a function that scrubs every line.
-- Returns a no-op when there is no logger.
-- A logger that raises is ignored (the call returns false).
-- @tparam ?function|table logger function(level, line), an object with `:log(level, line)`,
--   or nil/false for none
-- @treturn function function(level, line) passing `paykit.redact.line(line)` (scrubbed, at most
--   `redact.MAX_LINE` bytes) to the logger; without a logger the shared no-op `NOOP_LOGGER`
--   (the transport then builds no log line at all)
-- @raise for a logger of another kind
function _M.make_logger(logger)
  if logger == nil or logger == false then return NOOP end
  local emit
  if type(logger) == "function" then
    emit = logger
  elseif (type(logger) == "table" or type(logger) == "userdata") and logger.log then
    emit = function(level, line) return logger:log(level, line) end
  else
    error("logger must be a function(level, line) or an object with :log(level, line)", 3)
  end
  return function(level, line)
    local ok = pcall(emit, level, redact.line(line))
    return ok
  end
end

local function num(v, name, default)
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < 0 or v == math.huge then
    error(errors.config(name, "invalid", name .. " must be a non-negative number of seconds"), 0)
  end
  return v
end

local function count(v, name, default)
  if v == nil then return default end
  if type(v) ~= "number" or v ~= math.floor(v) or v < 1 or v > 10000 then
    error(errors.config(name, "invalid", name .. " must be an integer from 1 to 10000"), 0)
  end
  return v
end

local function header_name(v, name, default)
  if v == nil then return default end
  if v == false then return false end
  if type(v) ~= "string" or not v:find("^[!#$%%&'*+%-.^_`|~%w]+$") then
    error(errors.config(name, "invalid", name .. " must be a header name (or false)"), 0)
  end
  return v
end

-- The options http.new takes: a key not listed here is refused (a typo would otherwise be
-- silently ignored).
local OPTIONS = {
  timeout = true, connect_timeout = true, send_timeout = true, read_timeout = true,
  pool_size = true, keepalive_timeout = true, pool_name = true,
  correlation_header = true, request_id_headers = true, request_id_field = true,
  verify_tls = true, cafile = true, capath = true, max_response = true, user_agent = true,
  allow_blocking = true, logger = true, hooks = true, retry = true, sleep = true, random = true,
  clock = true, transport = true,
}
_M.OPTIONS = OPTIONS

-- The type of the options that have one (the others are checked below, or are functions or
-- objects: logger)
local TYPES = {
  verify_tls = "boolean", allow_blocking = "boolean", cafile = "string", capath = "string",
  user_agent = "string", max_response = "number", sleep = "function", random = "function",
  clock = "function", transport = "string",
}

-- transport: which C client serves requests outside cosockets
local KINDS = { auto = true, wire = true, curl = true }

-- The proxy variables libcurl reads (it ignores HTTP_PROXY in capitals): any one set means
-- libcurl, the transport that speaks to proxies.
local PROXY_VARS = { "http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY" }
local function proxied()
  for _, v in ipairs(PROXY_VARS) do
    local p = os.getenv(v)
    if p and p ~= "" then return v end
  end
  return nil
end

-- A provider's own request id: looked for in these answer headers (UNCONFIRMED: no provider's
-- spec names one), then in the JSON field `request_id_field` when the provider sets one.
local DEFAULT_REQUEST_ID_HEADERS = { "X-Request-Id", "Request-Id" }
local DEFAULT_CORRELATION_HEADER = "X-Correlation-Id"
local MAX_ID = 200 -- longer ids are not kept (they are not ids)

-- The ids of a string: printable ASCII without spaces, at most MAX_ID bytes; else nil.
local function clean_id(v)
  if type(v) == "number" and v == math.floor(v) then v = string.format("%.0f", v) end
  if type(v) ~= "string" or #v == 0 or #v > MAX_ID or v:find("[^\33-\126]") then return nil end
  return v
end
_M.clean_id = clean_id

local function milliseconds(s)
  if s == nil then return nil end
  return math.max(1, math.floor(s * 1000 + 0.5))
end

--- The options @{new} takes (a set: `OPTIONS.read_timeout == true`).
-- @table OPTIONS

--- Whether v can serve as an id (a request or correlation id): a printable ASCII string without
-- spaces, at most 200 bytes, or an integer; returns it as a string, else nil.
-- @function clean_id
-- @param v the value
-- @treturn ?string

--- A new transport; raises a config error for malformed options.
-- @tparam[opt] table opts
--
--  * `timeout` (seconds, default 30), `connect_timeout` (seconds, default 10)
--  * `send_timeout`, `read_timeout` (seconds; default none: up to `timeout`): over cosockets
--    and wire the longest wait for one send / one read (`sock:settimeouts`, milliseconds on
--    wire); libcurl has no such timers: a transfer moving less than 1 byte a second for the smaller of the two (whole
--    seconds, rounded up) times out (`CURLOPT_LOW_SPEED_LIMIT` / `CURLOPT_LOW_SPEED_TIME`)
--  * `pool_size` (1..10000; default cosocket 32 per pool, wire and libcurl 16): idle
--    connections kept (cosocket `setkeepalive`, libcurl `CURLOPT_MAXCONNECTS`)
--  * `keepalive_timeout` (seconds; default cosocket 30, wire and libcurl 118): how long an idle
--    connection is kept (cosocket `setkeepalive`, libcurl `CURLOPT_MAXAGE_CONN`, whole seconds;
--    wire in milliseconds)
--  * `pool_name` cosockets: a prefix of the nginx pool name (nginx fixes a pool's size when
--    it is made: give other sizes their own name)
--  * `correlation_header` (default "X-Correlation-Id"; false: none): the header carrying the
--    call's correlation id (`core.uuid4()` per call, or `correlation_id` per call)
--  * `request_id_headers` (default `{"X-Request-Id", "Request-Id"}`; false: none) and
--    `request_id_field` (a top-level JSON member, default none): where the provider's
--    request id is read from an answer (UNCONFIRMED for every provider; see README)
--  * `verify_tls` (default true), `cafile`, `capath`, `max_response` (bytes),
--    (inside nginx the cosocket transport verifies against `lua_ssl_trusted_certificate`:
--    `cafile` only names the trust context there, and `capath` cannot be honoured, so a
--    verified https request with it is refused, code tls_verify, before any connection)
--    `user_agent` (default "paykit/VERSION", `paykit.runtime.USER_AGENT`)
--  * `transport` (outside cosockets) "auto" (the default), "wire" or "curl". "auto": requests
--    go through `paykit.core.wire_client` (plain HTTP/1.1 keep-alive over sockets and OpenSSL,
--    TLS verified as libcurl does it, with the same `verify_tls`, `cafile`, `capath`, timeouts,
--    `pool_size`, `keepalive_timeout`, `max_response` and `user_agent`) and libcurl
--    (`paykit.core.http_client`) serves what wire does not do by design: proxies (a proxy
--    variable http_proxy, https_proxy, HTTPS_PROXY, all_proxy or ALL_PROXY set when the first
--    request is made; paykit has no proxy option), a URL wire cannot use (user information, a
--    scheme but http/https: libcurl answers it); the same for `paykit.batch` and `paykit.loop`
--    requests (@{client_for}: `core.wire_loop`, or libcurl's multi interface for those).
--    paykit.http asks for no redirects, client certificates or HTTP/2, which wire does not do.
--    "wire": wire for every request but proxies (a URL it cannot use fails, code unusable_url);
--    "curl": libcurl for every request. The environment variable PAYKIT_TRANSPORT sets the
--    default.
--  * `allow_blocking` true: inside nginx, make requests with libcurl even in a phase without
--    cosockets (log, header_filter, ...), blocking the worker; refused otherwise
--    (`paykit.runtime.check_blocking`)
--  * `logger` function(level, line) or an object with `:log(level, line)` (see @{make_logger})
--  * `hooks` `{before = fn(ctx), after = fn(ctx)}`, ctx = `{op, method, url, attempt,
--    status, elapsed, err}` (no bodies; a failing hook is logged and ignored)
--  * `retry` `{attempts = 3, base_delay = 0.2, max_delay = 2, deadline = 30}` (seconds), or
--    false for a single attempt
--  * `sleep` function(seconds), `random` function() -> [0, 1), `clock` function() -> seconds:
--    for tests
--
-- Any other key is refused (`errors.config(key, "unknown")`), so a typo is not ignored.
-- @treturn transport the transport
-- @raise a config error (a `paykit.errors` table) for a malformed or unknown option
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error(errors.config("opts", "invalid", "transport options must be a table"), 0) end
  for k, v in pairs(opts) do
    if not OPTIONS[k] then
      error(errors.config(tostring(k), "unknown", "unknown transport option " .. tostring(k)), 0)
    end
    local want = TYPES[k]
    if want and type(v) ~= want then
      error(errors.config(k, "invalid", k .. " must be a " .. want), 0)
    end
  end
  if opts.max_response ~= nil and (opts.max_response ~= math.floor(opts.max_response) or opts.max_response < 1) then
    error(errors.config("max_response", "invalid", "max_response must be a positive integer (bytes)"), 0)
  end
  local retry = opts.retry
  local r
  if retry == false then
    r = { attempts = 1, base_delay = 0, max_delay = 0, deadline = DEFAULT_RETRY.deadline }
  else
    retry = retry or {}
    if type(retry) ~= "table" then error(errors.config("retry", "invalid", "retry must be a table or false"), 0) end
    r = {
      attempts = math.max(1, math.floor(num(retry.attempts, "retry.attempts", DEFAULT_RETRY.attempts))),
      base_delay = num(retry.base_delay, "retry.base_delay", DEFAULT_RETRY.base_delay),
      max_delay = num(retry.max_delay, "retry.max_delay", DEFAULT_RETRY.max_delay),
      deadline = num(retry.deadline, "retry.deadline", DEFAULT_RETRY.deadline),
    }
  end
  local kind = opts.transport
  if kind == nil then
    kind = os.getenv("PAYKIT_TRANSPORT")
    if kind == "" then kind = nil end
    if kind ~= nil and not KINDS[kind] then
      error(errors.config("transport", "invalid", 'the environment variable PAYKIT_TRANSPORT must be "auto", "wire" or "curl"'), 0)
    end
  elseif not KINDS[kind] then
    error(errors.config("transport", "invalid", 'transport must be "auto", "wire" or "curl"'), 0)
  end
  local hooks = opts.hooks or {}
  if type(hooks) ~= "table" then error(errors.config("hooks", "invalid", "hooks must be a table {before=fn, after=fn}"), 0) end
  local id_headers = opts.request_id_headers
  if id_headers == nil then id_headers = DEFAULT_REQUEST_ID_HEADERS end
  if id_headers == false then id_headers = {} end
  if type(id_headers) ~= "table" then
    error(errors.config("request_id_headers", "invalid",
      "request_id_headers must be an array of header names (or false)"), 0)
  end
  local lowered = {}
  for i, h in ipairs(id_headers) do
    if type(h) ~= "string" then header_name(1, "request_id_headers") end -- raises
    lowered[i] = header_name(h, "request_id_headers", nil):lower()
  end
  if opts.request_id_field ~= nil and (type(opts.request_id_field) ~= "string" or opts.request_id_field == "") then
    error(errors.config("request_id_field", "invalid", "request_id_field must be a JSON member name"), 0)
  end
  if opts.pool_name ~= nil and (type(opts.pool_name) ~= "string" or opts.pool_name == "") then
    error(errors.config("pool_name", "invalid", "pool_name must be a non-empty string"), 0)
  end
  local self = {
    timeout = num(opts.timeout, "timeout", 30),
    connect_timeout = num(opts.connect_timeout, "connect_timeout", 10),
    send_timeout = num(opts.send_timeout, "send_timeout", nil),
    read_timeout = num(opts.read_timeout, "read_timeout", nil),
    pool_size = count(opts.pool_size, "pool_size", nil),
    keepalive_timeout = num(opts.keepalive_timeout, "keepalive_timeout", nil),
    pool_name = opts.pool_name,
    correlation_header = header_name(opts.correlation_header, "correlation_header", DEFAULT_CORRELATION_HEADER),
    request_id_headers = lowered,
    request_id_field = opts.request_id_field or false, -- (false: as hooks' below)
    cafile = opts.cafile, capath = opts.capath,
    verify_tls = opts.verify_tls ~= false,
    max_response = opts.max_response,
    user_agent = opts.user_agent or runtime.USER_AGENT,
    allow_blocking = opts.allow_blocking == true,
    transport = kind or "auto", -- see wire_client below
    wire = nil, -- the core.wire_client, made on first use; false: libcurl serves this transport
    wire_core = nil, -- the wire client wire_client made (request's direct call: see there)
    log = _M.make_logger(opts.logger),
    -- (false, not nil: request reads them on every call, and a field that is there is read
    -- faster than one that is not)
    hooks = { before = hooks.before or false, after = hooks.after or false },
    retry = r,
    sleep = opts.sleep or default_sleep,
    random = opts.random or math.random,
    clock = opts.clock or now,
    client = nil, -- the core client, made on first use
  }
  -- the waits of a first attempt with no per-call timeouts, in milliseconds, as request works
  -- them out for an attempt (its direct first try takes them as they are); first_ms nil: the
  -- retry deadline leaves the first attempt no time (request gives the deadline's error)
  local first = math.min(self.timeout, r.deadline)
  if first > 0 then
    self.first_ms = math.max(1, math.floor(first * 1000))
    self.first_cms = math.max(1, math.floor(math.min(self.connect_timeout, first) * 1000))
  end
  local send, read = self.send_timeout, self.read_timeout
  self.waits = send ~= nil or read ~= nil
  if self.waits then
    self.send_ms, self.read_ms = send and milliseconds(send), read and milliseconds(read)
    self.stall_ms = milliseconds((send and read) and math.min(send, read) or send or read)
  end
  return setmetatable(self, mt)
end

--- A transport (from @{new}).
-- @type transport

local function client_options(self)
  return {
    connect_timeout = math.floor(self.connect_timeout * 1000),
    timeout = math.floor(self.timeout * 1000),
    verify = self.verify_tls, cafile = self.cafile, capath = self.capath,
    max_response = self.max_response, user_agent = self.user_agent,
    max_connections = self.pool_size, keepalive_timeout = milliseconds(self.keepalive_timeout),
  }
end

--- The transport's libcurl client (`paykit.core.http_client`), made on first use.
-- It serves what the wire client does not (see @{new}'s `transport` and @{client_for}).
-- @treturn paykit.core.client the client
function _M:core_client()
  if not self.client then self.client = require("paykit.core").http_client(client_options(self)) end
  return self.client
end

--- The transport's wire client (`paykit.core.wire_client`), made on first use, or false when
-- libcurl serves this transport's requests: `transport = "curl"`, or a proxy variable
-- (http_proxy, https_proxy, HTTPS_PROXY, all_proxy, ALL_PROXY) set when it is first asked for.
-- @treturn paykit.core.wire_client|false
function _M:wire_client()
  if self.wire == nil then
    self.wire = self.transport ~= "curl" and not proxied() and require("paykit.core").wire_client(client_options(self))
    self.wire_core = self.wire -- what request's direct call takes its fields as arguments for
  end
  return self.wire
end

--- The C client that serves this transport's requests outside cosockets: one rule for a single
-- request (@{send_once}) and for `paykit.loop` and `paykit.batch` (whose loop drives that client's
-- transfers: `core.wire_loop` for the wire client, `core.http_loop` for libcurl's).
-- Asked with no arguments: the wire client (@{wire_client}) unless libcurl is needed
-- (`transport = "curl"`, a proxy variable). Asked again with the client that failed and its
-- outcome: the client to try instead, or nil when the failure stands. The only case with
-- another client is the wire client's refusal of a URL it cannot use (code `unusable_url`,
-- nothing sent): libcurl's client, which answers such URLs, except under
-- `transport = "wire"`. Every other failure, and anything that may have been sent, stands.
-- @tparam[opt] paykit.core.wire_client|paykit.core.client failed the client that failed
-- @tparam[opt] string code its error code
-- @tparam[opt] boolean maybe_sent whether the request may have left
-- @treturn ?paykit.core.wire_client|paykit.core.client the client, nil: the failure stands
function _M:client_for(failed, code, maybe_sent)
  if failed == nil then
    local w = self.wire
    if w == nil then w = self:wire_client() end
    return w or self:core_client()
  end
  if code ~= "unusable_url" or maybe_sent or self.transport == "wire" or failed ~= self.wire then
    return nil
  end
  return self:core_client()
end

--- Closes the core clients made so far (a later request makes new ones).
function _M:close()
  if self.client then self.client:close(); self.client = nil end
  if self.wire then self.wire:close() end
  self.wire, self.wire_core = nil, nil
end

local cosocket_mod -- paykit.cosocket, loaded on the first request inside nginx

-- The options paykit.cosocket gets from this transport: one table per transport, made again
-- only when one of the fields it is made from changed (paykit.cosocket keeps what it works out
-- from an opts table and a url, and a table per call would defeat that).
local function cosocket_opts(self)
  local o = self.cosocket_opts
  if o and o.verify == self.verify_tls and o.cafile == self.cafile and o.capath == self.capath
      and o.max_response == self.max_response and o.user_agent == self.user_agent
      and o.pool_size == self.pool_size and self.cosocket_keepalive == self.keepalive_timeout
      and o.pool_name == self.pool_name and o.lead_header == (self.correlation_header or nil) then
    return o
  end
  local keepalive = milliseconds(self.keepalive_timeout)
  self.cosocket_keepalive = self.keepalive_timeout
  o = {
    verify = self.verify_tls, cafile = self.cafile, capath = self.capath,
    max_response = self.max_response, user_agent = self.user_agent,
    pool_size = self.pool_size, keepalive_timeout = keepalive, pool_name = self.pool_name,
    -- the correlation id first in the request (see paykit.cosocket's lead_header)
    lead_header = self.correlation_header or nil,
  }
  self.cosocket_opts = o
  return o
end

-- A request on the client client_for picks, and once more on the fallback client_for names
-- for the failure (send_once's last step, and request's own first try outside nginx with no
-- scheduler).
local function send_direct(self, req)
  local c = self.wire
  if not c then c = self:client_for() end
  local res, msg, code, maybe_sent = c:request(req)
  if res then return res end
  local again = self:client_for(c, code, maybe_sent)
  if again == nil then return res, msg, code, maybe_sent end
  return again:request(req)
end

--- One attempt, without retries, hooks or logging: through cosocket, wire or libcurl (see
-- @{new}'s `transport`). Returns the core shape: res | nil, message, code, maybe_sent.
-- In a coroutine with a scheduler (a `paykit.loop` call, a `paykit.batch` task) the attempt
-- is handed to it (`scheduler:request(self, req)`, same return shape).
-- @tparam table req `{method=, url=, headers=, body=, timeout=, connect_timeout=}`
--   (timeouts in milliseconds), as `paykit.core` client:request
-- @treturn table `{status=, headers=, body=}`
-- @return[2] nil
-- @return[2] string message
-- @return[2] string code (see `paykit.core` client:request)
-- @return[2] boolean maybe_sent
function _M:send_once(req)
  local sched = scheduler()
  if sched then return sched:request(self, req) end
  if in_cosocket_phase() then
    if cosocket_mod == nil then
      local ok, mod = pcall(require, "paykit.cosocket")
      cosocket_mod = (ok and type(mod) == "table" and mod.request) and mod or false
    end
    if cosocket_mod then return cosocket_mod.request(req, cosocket_opts(self)) end
  end
  return send_direct(self, req)
end

local function call_hook(self, name, ctx)
  local fn = self.hooks[name]
  if not fn then return end
  local ok, e = pcall(fn, ctx)
  if not ok then self.log("warn", "paykit hook " .. name .. " failed: " .. tostring(e)) end
end

local function backoff(self, attempt)
  local cap = math.min(self.retry.max_delay, self.retry.base_delay * 2 ^ (attempt - 1))
  return self.random() * cap -- full jitter
end

local cjson_mod
local function cjson()
  if not cjson_mod then cjson_mod = require("cjson.safe").new() end
  return cjson_mod
end
_M.cjson = cjson
local function json_encode(v) return cjson().encode(v) end

-- The provider's request id in an answer: the first of the request_id_headers present, else
-- the top-level JSON member request_id_field (decoded here when the caller did not ask for
-- json); nil when the answer has none.
-- (headers_done: the headers were looked at already, only the JSON member is left)
local NO_HEADERS = {}
local core_json_pick, core_json_map = require("paykit.core").json_pick, require("paykit.core").json_map
local ID_MAPS = {} -- request_id_field -> its json_map (one top-level member), false: none
local function id_map(field)
  local m = ID_MAPS[field]
  if m == nil then
    local ok, made = pcall(core_json_map, { field })
    m = ok and made or false
    ID_MAPS[field] = m
  end
  return m
end
function request_id_of(self, res, headers_done)
  local h = res.headers or NO_HEADERS
  local names = self.request_id_headers
  for i = 1, headers_done and 0 or #names do
    local v = h[names[i]]
    if v ~= nil then
      if type(v) == "table" then v = v[1] end
      v = clean_id(v)
      if v then return v end
    end
  end
  local field = self.request_id_field
  -- the member can only be there when its name (or a \u escape that might spell it) is
  if field and res.body and res.body ~= "" and (find(res.body, field, 1, true) or find(res.body, "\\u", 1, true)) then
    local json = res.json
    if json == nil then
      local ct = h["content-type"]
      if type(ct) == "string" and ct:lower():find("json", 1, true) then
        -- the member alone picked (no table built of the answer): taken when it is a string;
        -- anything else (a number, no object, text the strict reader refuses) read as before
        local map = id_map(field)
        if map then
          local kind, v = core_json_pick(res.body, map)
          if kind == "object" and type(v) == "string" then return clean_id(v) end
        end
        json = cjson().decode(res.body)
      end
    end
    if type(json) == "table" then return clean_id(json[field]) end
  end
  return nil
end
_M._request_id_of = request_id_of -- internal: spec/request_id_spec.lua reads answers with it

-- Per-call options set by @{with} for the running coroutine (a stack: the innermost wins).
local MAIN = {}
local function pack(...) return { n = select("#", ...), ... } end
local scopes = setmetatable({}, { __mode = "k" })
local open_scopes = 0 -- calls of with() under way (in any coroutine): none, no lookup per request

function scoped()
  if open_scopes == 0 then return nil end
  local list = scopes[coroutine.running() or MAIN]
  return list and list[#list] or nil
end

local CALL_OPTIONS = { timeout = true, connect_timeout = true, send_timeout = true,
                       read_timeout = true, correlation_id = true }

--- Runs fn(...) with per-call transport options.
-- Every request made by this coroutine inside fn (a provider call: `gw:purchase(p)`, ...)
-- uses them over the transport's own; an inner `with` wins over an outer one. Requests of
-- `paykit.batch` tasks started inside fn run in their own coroutines and do not see them.
-- @tparam table opts `timeout`, `connect_timeout`, `send_timeout`, `read_timeout` (seconds),
--   `correlation_id` (sent in the correlation header instead of a generated one)
-- @tparam function fn the call
-- @param ... its arguments
-- @return what fn returns
-- @raise a config error for an unknown or malformed option; what fn raises
-- @usage local res, err = http.with({timeout = 5, correlation_id = order_id}, gw.purchase, gw, p)
function _M.with(opts, fn, ...)
  if type(opts) ~= "table" then error(errors.config("opts", "invalid", "call options must be a table"), 2) end
  for k, v in pairs(opts) do
    if not CALL_OPTIONS[k] then
      error(errors.config(tostring(k), "unknown", "unknown call option " .. tostring(k)), 2)
    end
    if k == "correlation_id" then
      if not clean_id(v) then
        error(errors.config(k, "invalid", "correlation_id must be printable ASCII without spaces"), 2)
      end
    else
      num(v, k, nil)
    end
  end
  if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    error(errors.config("fn", "invalid", "http.with needs a function to run"), 2)
  end
  local key = coroutine.running() or MAIN
  local list = scopes[key] or {}
  scopes[key] = list
  local depth = #list + 1
  list[depth] = opts
  open_scopes = open_scopes + 1
  local out = pack(pcall(fn, ...))
  open_scopes = open_scopes - 1
  for i = #list, depth, -1 do list[i] = nil end
  if not out[1] then error(out[2], 0) end
  return (table.unpack or unpack)(out, 2, out.n)
end

-- A per-call timeout: the request's, else @{with}'s, else the transport's.
local function pick(self, req, call, name)
  local v = req[name]
  if v == nil and call then v = call[name] end
  if v == nil then return self[name] end
  return num(v, name, nil)
end

local floor, mmin = math.floor, math.min
local send_once = _M.send_once
local remember_ids, take_ids = errors.remember_ids, errors.take_ids
local check_blocking = runtime.check_blocking
local G, rawget = _G, rawget

-- Each attempt makes its own request table (what send_once gets): the transport keeps nothing
-- of a request (its body holds card data and credentials) once the call is over.

-- Whether the caller's headers name a Content-Type and an Accept (any case).
local function json_headers_named(given)
  local have_ct, have_accept = false, false
  for k in pairs(given) do
    if type(k) == "string" then
      local lk = k:lower()
      if lk == "content-type" then have_ct = true elseif lk == "accept" then have_accept = true end
    end
  end
  return have_ct, have_accept
end

-- The headers of a request table: the caller's (req.headers, given) copied unless they are
-- the call's own (own_headers), with the correlation header and, for json, Content-Type (with
-- a body) and Accept application/json unless the caller's name them (any case).
local function merged_headers(req, given, json, body, corr_header, correlation_id)
  -- not a table: handed on as it is, for the transport to refuse in its words (as the wire
  -- client's direct call does)
  if given ~= nil and type(given) ~= "table" then return given end
  -- (the caller's headers as they came: before the correlation header goes into its own)
  local have_ct, have_accept = false, false
  if json and given then have_ct, have_accept = json_headers_named(given) end
  local headers
  if given and req.own_headers then
    headers = given
  else
    -- grown as the headers go in (a table made at another size would hand them to the
    -- transport in another order: other bytes on the wire)
    headers = {}
    if given then
      for k, v in pairs(given) do headers[k] = v end
    end
  end
  if corr_header and correlation_id then headers[corr_header] = correlation_id end
  if json then
    if body and not have_ct then headers["Content-Type"] = "application/json" end
    if not have_accept then headers["Accept"] = "application/json" end
  end
  return headers
end

-- An attempt's request table (timeouts in milliseconds). One constructor: the table is made at
-- its full size. idempotent nil: the transport decides by method (GET, HEAD, OPTIONS); false:
-- the transport never sends it twice, whatever the connection does. The per-attempt waits
-- only when set (absent and nil are the same to every transport; a constructor with them
-- always made a table twice the size).
local function request_table(method, url, headers, body, idempotent, ms, cms, send_ms, read_ms, stall_ms)
  local r = {
    method = method, url = url, headers = headers, body = body, idempotent = idempotent,
    timeout = ms, connect_timeout = cms,
  }
  if send_ms then r.send_timeout = send_ms end
  if read_ms then r.read_timeout = read_ms end
  if stall_ms then r.stall_timeout = stall_ms end
  return r
end

-- An attempt's request table as the general way and the direct first try inside nginx
-- (ngx_first) make it, one set-up for both: the correlation id it carries (a new uuid4 when
-- the transport has a correlation header and the call no id yet) and the merged headers
-- (headers: those an earlier attempt of the call made, used again; nil: made here). Returns
-- the table, the correlation id and the headers.
local function attempt_table(req, method, url, given, json, body, idempotent, corr_header, correlation_id, headers,
                             ms, cms, send_ms, read_ms, stall_ms)
  if corr_header and correlation_id == nil then correlation_id = core_uuid4() end
  if headers == nil then headers = merged_headers(req, given, json, body, corr_header, correlation_id) end
  return request_table(method, url, headers, body, idempotent, ms, cms, send_ms, read_ms, stall_ms), correlation_id,
    headers
end

-- The failure of an attempt as a paykit error (and its kind, whether it may have been sent
-- and whether a retry is allowed). Only here is the URL redacted when nothing logs it.
local function attempt_error(op, method, url, safe_url, correlation_id, idempotent, msg, code, maybe_sent)
  code = code or "other"
  local info = CODES[code] or OTHER_CODE
  if maybe_sent == nil then maybe_sent = info[2] end
  local retry_ok = not info[3] and ((not maybe_sent) or (idempotent and true or false))
  safe_url = safe_url or redact.text(url)
  local err = errors.new {
    kind = info[1], code = code, op = op, retryable = retry_ok, correlation_id = correlation_id,
    message = op .. ": " .. method .. " " .. safe_url .. " failed (" .. code .. "): " .. tostring(msg) ..
      (maybe_sent and "; the request may have reached the provider" or "; the request never reached the provider"),
  }
  return err, info, code, maybe_sent, retry_ok, safe_url
end

-- The answer request returns: json decoded when asked for, the provider's request id and the
-- correlation id sent, both noted for the result or error the provider builds from it.
local function answered(self, res, json, correlation_id)
  if json then
    local decoded = nil
    if res.body and res.body ~= "" then decoded = cjson().decode(res.body) end
    res.json = decoded
  end
  -- the first of request_id_headers present, else the JSON member request_id_field: the
  -- headers are looked at only when one of the first two names is there or there are more
  -- (a read with a nil key is nil: fewer names need no test; #names, not names[3]: a field
  -- that is not there is the slow read)
  local request_id
  local h, names = res.headers, self.request_id_headers
  if h and (h[names[1]] ~= nil or h[names[2]] ~= nil or #names > 2) then
    request_id = request_id_of(self, res)
  elseif self.request_id_field then
    request_id = request_id_of(self, res, true)
  end
  res.request_id = request_id
  res.correlation_id = correlation_id
  -- for the result or error the provider builds from this answer (paykit.errors.take_ids)
  remember_ids(request_id, correlation_id)
  return res
end

-- request's general way: every attempt, with the retries, hooks and log lines; handed the
-- outcome of a first attempt request's direct first try made (started: when it began), it
-- takes that outcome as its first attempt's (the first attempt is never made twice).
-- (pre_res false: the scheduler's wire did not start that first try, nothing was sent: the first
-- attempt goes as a request table, with the correlation id pre_cid when the try made one)
local function general_request(self, req, started, pre_cid, pre_res, pre_msg, pre_code, pre_sent)
  local pre = started ~= nil
  local retable = pre_res == false
  local handed = pre and not retable
  local op = req.op or "http"
  local call = open_scopes > 0 and scoped() or nil
  local in_ngx = rawget(G, "ngx") ~= nil
  if in_ngx then
    local refused = check_blocking(op, self.allow_blocking or req.allow_blocking)
    if refused then return nil, refused end
  end
  local call_timeout, call_connect, send_timeout, read_timeout
  if call == nil and req.timeout == nil and req.connect_timeout == nil and req.send_timeout == nil
      and req.read_timeout == nil then
    call_timeout, call_connect, send_timeout, read_timeout = self.timeout, self.connect_timeout, self.send_timeout,
      self.read_timeout
  else
    call_timeout, call_connect = pick(self, req, call, "timeout"), pick(self, req, call, "connect_timeout")
    send_timeout, read_timeout = pick(self, req, call, "send_timeout"), pick(self, req, call, "read_timeout")
  end
  local correlation_id = req.correlation_id
  if correlation_id == nil and call then correlation_id = call.correlation_id end
  if correlation_id ~= nil and not clean_id(correlation_id) then
    return nil, errors.validation("correlation_id", "invalid",
      "correlation_id must be printable ASCII without spaces, at most " .. MAX_ID .. " bytes")
  end
  if pre then correlation_id = pre_cid end
  local corr_header = self.correlation_header
  local method = req.method or (req.body and "POST" or "GET")
  local json = req.json
  local given = req.headers
  local body = req.body
  if json and type(body) == "table" then body = assert(json_encode(body)) end
  -- the headers table a request table carries (the caller's with paykit.http's own), made
  -- when an attempt first needs one: the wire client's direct call takes the caller's
  -- headers as they are and writes paykit.http's after them (see below)
  local headers
  -- Nothing is built for a logger or hooks that are not there: the redacted URL and the log
  -- lines exist only when a logger or a hook will see them (or an error message needs the URL).
  local log = self.log
  local logging = log ~= NOOP
  local hooks = self.hooks
  local before, after = hooks.before, hooks.after
  local watched = logging or before or after -- someone sees each attempt
  local url = req.url
  local safe_url = watched and redact.text(url) or nil
  local clock = self.clock
  -- outside nginx the default clock is the C core's monotonic one: called directly
  if clock == now and not in_ngx then clock = core_monotonic end
  if not pre then started = clock() end
  local retry = self.retry
  local deadline = started + retry.deadline
  local attempts = retry.attempts
  local idempotent = req.idempotent
  -- log scrubs the whole line (make_logger): the body is not scrubbed here as well.
  if body and logging then log("debug", "paykit " .. op .. " request " .. method .. " " .. safe_url .. " " .. body) end
  -- the per-attempt waits in milliseconds that do not depend on the time left
  local send_ms, read_ms, stall_ms
  if send_timeout or read_timeout then
    send_ms, read_ms = send_timeout and milliseconds(send_timeout), read_timeout and milliseconds(read_timeout)
    -- libcurl has one stall timer for both directions (see @{new})
    stall_ms = milliseconds((send_timeout and read_timeout) and mmin(send_timeout, read_timeout)
      or send_timeout or read_timeout)
  end

  local attempt = 0
  local t0 = started
  while true do
    attempt = attempt + 1
    if attempt > 1 or watched then t0 = clock() end
    -- the first attempt has the whole retry deadline left (t0 is the start)
    local remaining = attempt == 1 and retry.deadline or deadline - t0
    local timeout = call_timeout < remaining and call_timeout or remaining
    local ctx
    if before or after then
      ctx = { op = op, method = method, url = safe_url, attempt = attempt }
      if before then call_hook(self, "before", ctx) end
    end
    local res, msg, code, maybe_sent
    if timeout <= 0 and not handed then
      if corr_header and correlation_id == nil then correlation_id = core_uuid4() end
      msg, code, maybe_sent = "deadline passed before the request could be sent", "connect_timeout", false
    else
      -- one constructor: the table is made at its full size (no rehash as fields go in).
      -- idempotent nil: the transport decides by method (GET, HEAD, OPTIONS); false: the
      -- transport never sends it twice, whatever the connection does
      local ms = timeout * 1000
      local cms = (call_connect < timeout and call_connect or timeout) * 1000
      ms = ms < 1 and 1 or floor(ms)
      cms = cms < 1 and 1 or floor(cms)
      -- (handed: the first try's outcome is this attempt's, whatever the way: never sent again)
      local general = not handed and (in_ngx or runtime.schedulers_installed ~= 0 or self.send_once ~= send_once)
      local w, sched, sw = false, nil, nil
      -- (an outcome handed on from inside nginx, ngx_first's, needs no wire client: none is made there)
      if not general and not (handed and in_ngx) then
        w = self.wire
        if w == nil then w = self:wire_client() end
      elseif not in_ngx and self.send_once == send_once then
        -- a scheduler that takes the wire client's fields as arguments (paykit.loop's: its
        -- wire loop starts them as they are when the request can start at once)
        sched = scheduler()
        sw = sched and sched.wire
        if sw then
          w = self.wire
          if w == nil then w = self:wire_client() end
        end
      end
      local tabled = true
      -- (the core client wire_client made: a wire put in its place gets request tables)
      if not retable and (handed or (w and w == self.wire_core)) then
        -- outside nginx, send_once not replaced, the wire client, and no scheduler anywhere
        -- (send_once's own last step) or paykit.loop's for this call (its wire loop's start):
        -- the request's fields as arguments (no request table, no headers table); the wire
        -- client writes the correlation header after the caller's headers (a uuid4 of its own
        -- when there is no id yet: it comes back last) and json's Content-Type and Accept as
        -- the table below would carry them. It checks the fields as the table form does, in
        -- the same words (a method, url, body or headers of another type raises as it would
        -- there: no type() test here). The scheduler answers false when it did not start it
        -- (it would wait, it raised, or another client is to try): then the table below.
        tabled = false
        local made
        if handed then
          -- the first attempt request's direct first try made (see there): its outcome
          handed = false
          res, msg, code, maybe_sent = pre_res, pre_msg, pre_code, pre_sent
        elseif sw then
          res, msg, code, maybe_sent, made = sw(sched, self, w, method, url, given, body, idempotent, ms, cms, send_ms,
            read_ms, stall_ms, corr_header or nil, correlation_id, json)
        else
          res, msg, code, maybe_sent, made = w:request(method, url, given, body, idempotent, ms, cms, send_ms, read_ms,
            stall_ms, corr_header or nil, correlation_id, json)
        end
        if res then made, msg = msg, nil end
        if correlation_id == nil then correlation_id = made end
        if res == false then
          res, tabled = nil, true
        elseif not res and code == "unusable_url" and not sw then
          local again = self:client_for(w, code, maybe_sent)
          if again then
            if headers == nil then headers = merged_headers(req, given, json, body, corr_header, correlation_id) end
            res, msg, code, maybe_sent = again:request(request_table(method, url, headers, body, idempotent, ms, cms,
              send_ms, read_ms, stall_ms))
          end
        end
      end
      if tabled then
        local r
        r, correlation_id, headers = attempt_table(req, method, url, given, json, body, idempotent, corr_header,
          correlation_id, headers, ms, cms, send_ms, read_ms, stall_ms)
        if general then
          res, msg, code, maybe_sent = self:send_once(r)
        else
          -- outside nginx, no scheduler anywhere, send_once not replaced, libcurl: send_once's
          -- own last step, without the scheduler and phase lookups before it
          res, msg, code, maybe_sent = send_direct(self, r)
        end
        retable = false
      end
    end
    local elapsed = watched and clock() - t0
    if ctx then ctx.elapsed = elapsed end
    local err, retry_ok
    if res then
      local status = res.status
      if ctx then ctx.status = status end
      if logging then
        log(status >= 500 and "warn" or "info", string.format("paykit %s %s %s attempt=%d status=%d elapsed=%.3fs",
          op, method, safe_url, attempt, status, elapsed))
        if res.body and res.body ~= "" then
          log("debug", "paykit " .. op .. " response " .. status .. " " .. res.body)
        end
      end
      retry_ok = RETRY_STATUS[status] and idempotent
    else
      local info
      err, info, code, maybe_sent, retry_ok, safe_url =
        attempt_error(op, method, url, safe_url, correlation_id, idempotent, msg, code, maybe_sent)
      if ctx then ctx.err = err end
      if logging then
        log(info[1] == "timeout" and "warn" or "error", string.format("paykit %s %s %s attempt=%d error=%s sent=%s elapsed=%.3fs",
          op, method, safe_url, attempt, code, tostring(maybe_sent), elapsed))
      end
    end
    if after then call_hook(self, "after", ctx) end

    local give_up = not retry_ok or attempt >= attempts
    local delay = 0
    if not give_up then
      delay = backoff(self, attempt)
      if clock() + delay >= deadline then give_up = true end
    end
    if give_up then
      if res then return answered(self, res, json, correlation_id) end
      take_ids() -- an older answer's ids must not reach a later result
      return nil, err
    end
    if logging then
      log("info", string.format("paykit %s retrying in %.3fs (attempt %d of %d)", op, delay, attempt + 1, attempts))
    end
    self.sleep(delay)
  end
end

-- The direct first try inside nginx (request's conditions hold: no scheduler, @{with},
-- logger, hook or per-call timeout, send_once not replaced, time for a first attempt), in a
-- cosocket phase with paykit.cosocket there: the first attempt as the general way makes it
-- (the same request table, attempt_table's, from the waits new worked out, handed to
-- paykit.cosocket with this transport's opts) without the general way's set-up (the phase
-- looked up once, not by check_blocking and send_once again; no per-call option picking, no
-- retry loop). A final answer is returned from here; anything else (a failure, a status to
-- retry) goes on the general way with this attempt's outcome as its first (never sent twice),
-- and so does every call this does not serve (another phase: refused or blocking there).
function ngx_first(self, req)
  local correlation_id = req.correlation_id
  if (correlation_id ~= nil and not clean_id(correlation_id)) or not in_cosocket_phase() then
    return general_request(self, req)
  end
  local cm = cosocket_mod
  if cm == nil then
    local ok, mod = pcall(require, "paykit.cosocket")
    cm = (ok and type(mod) == "table" and mod.request) and mod or false
    cosocket_mod = cm
  end
  if not cm then return general_request(self, req) end
  local json, body = req.json, req.body
  local method = req.method or (body and "POST" or "GET")
  if json and type(body) == "table" then body = assert(json_encode(body)) end
  local clock = self.clock
  local started = clock()
  local idempotent = req.idempotent
  local send_ms, read_ms, stall_ms
  if self.waits then send_ms, read_ms, stall_ms = self.send_ms, self.read_ms, self.stall_ms end
  local r
  r, correlation_id = attempt_table(req, method, req.url, req.headers, json, body, idempotent, self.correlation_header,
    correlation_id, nil, self.first_ms, self.first_cms, send_ms, read_ms, stall_ms)
  -- the default clock (now) has just brought nginx's time up to date and read it: the
  -- cosocket request starts its deadline from that reading (nothing ran since that waits)
  -- rather than updating the time again
  local res, msg, code, maybe_sent = cm.request(r, cosocket_opts(self), clock == now and started or nil)
  if res then
    -- final: not a status to retry, or no attempt left
    if not (idempotent and RETRY_STATUS[res.status]) or self.retry.attempts < 2 then
      return answered(self, res, json, correlation_id)
    end
    msg = nil
  end
  return general_request(self, req, started, correlation_id, res, msg, code, maybe_sent)
end

--- A request with retries, hooks and redacted logging.
-- t:request{method=, url=, headers=, body=, op=, idempotent=, json=} -> res | nil, err
-- Retried (with backoff, within retry.deadline): failures that never reached the server,
-- always; failures after sending and HTTP 502/503/504, only when `idempotent`.
-- Any HTTP status is a response, not an error.
-- @tparam table req
--
--  * `url` (required), `method` (default POST with a body, else GET), `headers`
--  * `body` a string, or with `json` a table encoded as JSON
--  * `json` true: send Content-Type and Accept application/json (unless given) and decode
--    the answer into `res.json`
--  * `op` the operation name for logs, hooks and errors, e.g. "moka.capture"
--  * `idempotent` true when a request that may have been sent can be repeated safely
--  * `allow_blocking` true: this call may block the worker (see @{new})
--  * `timeout`, `connect_timeout`, `send_timeout`, `read_timeout` (seconds): this call's,
--    over @{with}'s and the transport's
--  * `correlation_id` sent in the correlation header instead of a generated one
--  * `own_headers` true: `headers` is this call's own table (made for it, used by no one
--    else while the call runs): where paykit.http makes a headers table for the transport
--    it adds its headers (the correlation header, json's Content-Type and Accept) to this one
--    instead of copying it first (the wire client's direct call writes them after the
--    caller's headers and leaves the table as it is)
-- @treturn table `{status=, headers=, body=, json=, request_id=, correlation_id=}`: the
--   provider's request id of the answer (nil when it has none) and the correlation id sent
-- @return[2] nil
-- @return[2] a transport or timeout error (`retryable`, and a message saying whether the
--   request may have reached the provider; `correlation_id` set), the config error
--   `blocking_phase` (nothing sent), or a validation error for a bad `correlation_id`
-- @raise when a json body table cannot be encoded, or for a malformed per-call timeout
function _M:request(req)
  local hooks = self.hooks
  -- The direct first try: no @{with} under way, send_once not replaced, no logger, no hook, no
  -- per-call timeout, time for a first attempt; inside nginx with no scheduler installed, the
  -- cosocket request (ngx_first); elsewhere the wire client (made here on a transport's first
  -- request, as the general way makes it; false: libcurl serves the transport): its direct
  -- call, or under a scheduler with a wire start that start (as general_request's), with the
  -- waits new worked out. An answer that is final is returned from here; anything else (a
  -- failure, a status to retry) goes on the general way with this attempt's outcome as its
  -- first, and so does every call this does not serve.
  if open_scopes == 0 and self.log == NOOP and not hooks.before and not hooks.after
      and self.send_once == send_once and self.first_ms
      and req.timeout == nil and req.connect_timeout == nil and req.send_timeout == nil and req.read_timeout == nil then
    -- inside nginx: the cosocket try (ngx_first), only when no scheduler is installed
    if rawget(G, "ngx") ~= nil then
      if runtime.schedulers_installed == 0 then return ngx_first(self, req) end
      return general_request(self, req)
    end
    -- under a scheduler (a paykit.loop call, a paykit.batch task), the try is its wire's start
    -- (see general_request): served here only when the scheduler has one
    local sched, sw = nil, nil
    if runtime.schedulers_installed ~= 0 then
      sched = scheduler_of[co_running()] -- (scheduler(), without its call; nil key: LuaJIT's main thread)
      if sched then sw = sched.wire end
    end
    local w = false
    if sched == nil or sw then
      w = self.wire
      if w == nil then w = self:wire_client() end
    end
    local correlation_id = req.correlation_id
    if w and w == self.wire_core and (correlation_id == nil or clean_id(correlation_id)) then
      local json, body = req.json, req.body
      local method = req.method or (body and "POST" or "GET")
      if json and type(body) == "table" then body = assert(json_encode(body)) end
      local clock = self.clock
      if clock == now then clock = core_monotonic end
      local started = clock()
      local idempotent = req.idempotent
      local send_ms, read_ms, stall_ms
      if self.waits then send_ms, read_ms, stall_ms = self.send_ms, self.read_ms, self.stall_ms end
      local res, msg, code, maybe_sent, made
      if sw then
        res, msg, code, maybe_sent, made = sw(sched, self, w, method, req.url, req.headers, body, idempotent,
          self.first_ms, self.first_cms, send_ms, read_ms, stall_ms, self.correlation_header or nil, correlation_id, json)
        -- not started (it would wait, or another client is to try; nothing sent): the general
        -- way makes the first attempt, as a table
        if res == false then return general_request(self, req, started, correlation_id or made, false) end
      else
        res, msg, code, maybe_sent, made = w:request(method, req.url, req.headers, body, idempotent,
          self.first_ms, self.first_cms, send_ms, read_ms, stall_ms, self.correlation_header or nil, correlation_id, json)
      end
      if res then
        if correlation_id == nil then correlation_id = msg end
        -- final: not a status to retry, or no attempt left
        if not (idempotent and RETRY_STATUS[res.status]) or self.retry.attempts < 2 then
          return answered(self, res, json, correlation_id)
        end
        msg = nil
      elseif correlation_id == nil then
        correlation_id = made
      end
      return general_request(self, req, started, correlation_id, res, msg, code, maybe_sent)
    end
  end
  return general_request(self, req)
end

return _M
