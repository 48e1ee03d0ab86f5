--- paykit.http: the transport under every provider. Picks the OpenResty cosocket
-- transport inside nginx request/timer phases and the libcurl core elsewhere; retries
-- only what is safe; calls hooks; logs one redacted line per attempt.
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

local RETRY_STATUS = { [502] = true, [503] = true, [504] = true }

local DEFAULT_RETRY = { attempts = 3, base_delay = 0.2, max_delay = 2, deadline = 30 }


local request_id_of, scoped -- below

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

-- Deprecated, read-only: `batch_coroutines[co]` is true when co has a scheduler. Only
-- paykit.gateway's Seen:wait still reads it; use `paykit.runtime.scheduler(co)`.
_M.batch_coroutines = setmetatable({}, {
  __index = function(_, co) return type(co) == "thread" and scheduler(co) ~= nil or nil end,
  __newindex = function() error("paykit.http.batch_coroutines is read-only: use paykit.runtime.set_scheduler", 2) end,
})

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

--- Normalise a logger into a function that scrubs every line.
-- Normalise a logger (function(level, line) or object with :log(level, line)) into a
-- function that scrubs every line. Returns a no-op when there is no logger.
-- A logger that raises is ignored (the call returns false).
-- @tparam ?function|table logger function(level, line), an object with `:log(level, line)`,
--   or nil/false for none
-- @treturn function function(level, line) passing `paykit.redact.line(line)` (scrubbed, at most
--   `redact.MAX_LINE` bytes) to the logger
-- @raise for a logger of another kind
function _M.make_logger(logger)
  if logger == nil or logger == false then return function() end end
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
  clock = "function",
}

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

--- A new transport.
-- http.new(opts) -> transport (raises a config error for malformed options)
-- @tparam[opt] table opts
--
--  * `timeout` (seconds, default 30), `connect_timeout` (seconds, default 10)
--  * `send_timeout`, `read_timeout` (seconds; default none: up to `timeout`): over cosockets
--    the longest wait for one send / one read (`sock:settimeouts`); libcurl has no such
--    timers: a transfer moving less than 1 byte a second for the smaller of the two (whole
--    seconds, rounded up) times out (`CURLOPT_LOW_SPEED_LIMIT` / `CURLOPT_LOW_SPEED_TIME`)
--  * `pool_size` (1..10000; default cosocket 32 per pool, libcurl 16): idle connections kept
--    (cosocket `setkeepalive`, libcurl `CURLOPT_MAXCONNECTS`)
--  * `keepalive_timeout` (seconds; default cosocket 30, libcurl 118): how long an idle
--    connection is kept (cosocket `setkeepalive`, libcurl `CURLOPT_MAXAGE_CONN`, whole seconds)
--  * `pool_name` cosockets: a prefix of the nginx pool name (nginx fixes a pool's size when
--    it is made: give other sizes their own name)
--  * `correlation_header` (default "X-Correlation-Id"; false: none): the header carrying the
--    call's correlation id (`core.uuid4()` per call, or `correlation_id` per call)
--  * `request_id_headers` (default `{"X-Request-Id", "Request-Id"}`; false: none) and
--    `request_id_field` (a top-level JSON member, default none): where the provider's
--    request id is read from an answer (UNCONFIRMED for every provider; see README)
--  * `verify_tls` (default true), `cafile`, `capath`, `max_response` (bytes),
--    `user_agent` (default "paykit/VERSION", `paykit.runtime.USER_AGENT`)
--  * `transport` "curl" (libcurl, the default) or "wire" (`paykit.core.wire_client`: plain
--    HTTP/1.1 over sockets and OpenSSL, no proxies or redirects; libcurl is used anyway when a
--    proxy variable is set); the environment variable PAYKIT_TRANSPORT sets the default
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
  if opts.transport ~= nil and opts.transport ~= "wire" and opts.transport ~= "curl" then
    error(errors.config("transport", "invalid", 'transport must be "wire" or "curl"'), 0)
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
    request_id_field = opts.request_id_field,
    cafile = opts.cafile, capath = opts.capath,
    verify_tls = opts.verify_tls ~= false,
    max_response = opts.max_response,
    user_agent = opts.user_agent or runtime.USER_AGENT,
    allow_blocking = opts.allow_blocking == true,
    transport = opts.transport or os.getenv("PAYKIT_TRANSPORT") or "curl", -- core.wire_client or core.http_client
    log = _M.make_logger(opts.logger),
    hooks = { before = hooks.before, after = hooks.after },
    retry = r,
    sleep = opts.sleep or default_sleep,
    random = opts.random or math.random,
    clock = opts.clock or now,
    client = nil, -- the core client, made on first use
  }
  return setmetatable(self, mt)
end

--- A transport (from @{new}).
-- @type transport

--- The transport's libcurl client (`paykit.core.http_client`), made on first use.
-- @treturn paykit.core.client the client
function _M:core_client()
  if not self.client then
    local core = require "paykit.core"
    local wire = self.transport == "wire" and not (os.getenv("http_proxy") or os.getenv("https_proxy")
      or os.getenv("HTTPS_PROXY") or os.getenv("all_proxy") or os.getenv("ALL_PROXY")) -- proxies: libcurl
    self.client = (wire and core.wire_client or core.http_client) {
      connect_timeout = math.floor(self.connect_timeout * 1000),
      timeout = math.floor(self.timeout * 1000),
      verify = self.verify_tls, cafile = self.cafile, capath = self.capath,
      max_response = self.max_response, user_agent = self.user_agent,
      max_connections = self.pool_size, keepalive_timeout = milliseconds(self.keepalive_timeout),
    }
  end
  return self.client
end

--- Closes the libcurl client, if one was made (a later request makes a new one).
function _M:close()
  if self.client then self.client:close(); self.client = nil end
end

--- One attempt, without retries, hooks or logging: through cosocket or curl.
-- One attempt, through cosocket or curl. Returns the core shape:
-- res | nil, message, code, maybe_sent.
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
    local ok, cosocket = pcall(require, "paykit.cosocket")
    if ok and type(cosocket) == "table" and cosocket.request then
      return cosocket.request(req, {
        verify = self.verify_tls, cafile = self.cafile, capath = self.capath,
        max_response = self.max_response, user_agent = self.user_agent,
        pool_size = self.pool_size, keepalive_timeout = milliseconds(self.keepalive_timeout),
        pool_name = self.pool_name,
      })
    end
  end
  return self:core_client():request(req)
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

-- The provider's request id in an answer: the first of the request_id_headers present, else
-- the top-level JSON member request_id_field (decoded here when the caller did not ask for
-- json); nil when the answer has none.
function request_id_of(self, res)
  local h = res.headers or {}
  for _, name in ipairs(self.request_id_headers) do
    local v = h[name]
    if type(v) == "table" then v = v[1] end
    v = clean_id(v)
    if v then return v end
  end
  local field = self.request_id_field
  if field and res.body and res.body ~= "" then
    local json = res.json
    if json == nil then
      local ct = h["content-type"]
      if type(ct) == "string" and ct:lower():find("json", 1, true) then json = cjson().decode(res.body) end
    end
    if type(json) == "table" then return clean_id(json[field]) end
  end
  return nil
end

-- Per-call options set by @{with} for the running coroutine (a stack: the innermost wins).
local MAIN = {}
local function pack(...) return { n = select("#", ...), ... } end
local scopes = setmetatable({}, { __mode = "k" })

function scoped()
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
  local out = pack(pcall(fn, ...))
  for i = #list, depth, -1 do list[i] = nil end
  if not out[1] then error(out[2], 0) end
  return (table.unpack or unpack)(out, 2, out.n)
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
--  * `transport` "curl" (libcurl, the default) or "wire" (`paykit.core.wire_client`: plain
--    HTTP/1.1 over sockets and OpenSSL, no proxies or redirects; libcurl is used anyway when a
--    proxy variable is set); the environment variable PAYKIT_TRANSPORT sets the default
--  * `allow_blocking` true: this call may block the worker (see @{new})
--  * `timeout`, `connect_timeout`, `send_timeout`, `read_timeout` (seconds): this call's,
--    over @{with}'s and the transport's
--  * `correlation_id` sent in the correlation header instead of a generated one
-- @treturn table `{status=, headers=, body=, json=, request_id=, correlation_id=}`: the
--   provider's request id of the answer (nil when it has none) and the correlation id sent
-- @return[2] nil
-- @return[2] a transport or timeout error (`retryable`, and a message saying whether the
--   request may have reached the provider; `correlation_id` set), the config error
--   `blocking_phase` (nothing sent), or a validation error for a bad `correlation_id`
-- @raise when a json body table cannot be encoded, or for a malformed per-call timeout
function _M:request(req)
  local op = req.op or "http"
  local call = scoped()
  local refused = runtime.check_blocking(op, self.allow_blocking or req.allow_blocking)
  if refused then return nil, refused end
  local function pick(name)
    local v = req[name]
    if v == nil and call then v = call[name] end
    if v == nil then return self[name] end
    return num(v, name, nil)
  end
  local call_timeout, call_connect = pick("timeout"), pick("connect_timeout")
  local send_timeout, read_timeout = pick("send_timeout"), pick("read_timeout")
  local correlation_id = req.correlation_id
  if correlation_id == nil and call then correlation_id = call.correlation_id end
  if correlation_id ~= nil and not clean_id(correlation_id) then
    return nil, errors.validation("correlation_id", "invalid",
      "correlation_id must be printable ASCII without spaces, at most " .. MAX_ID .. " bytes")
  end
  if self.correlation_header and correlation_id == nil then
    correlation_id = require("paykit.core").uuid4()
  end
  local method = req.method or (req.body and "POST" or "GET")
  -- one pass: copy the caller's headers and, for json, note a Content-Type / Accept of theirs
  local headers, have_ct, have_accept = {}, false, false
  for k, v in pairs(req.headers or {}) do
    headers[k] = v
    if req.json and type(k) == "string" then
      local lk = k:lower()
      if lk == "content-type" then have_ct = true elseif lk == "accept" then have_accept = true end
    end
  end
  if self.correlation_header and correlation_id then headers[self.correlation_header] = correlation_id end
  local body = req.body
  if req.json then
    if type(body) == "table" then body = assert(cjson().encode(body)) end
    if body and not have_ct then headers["Content-Type"] = "application/json" end
    if not have_accept then headers["Accept"] = "application/json" end
  end
  local safe_url = redact.text(req.url)
  local started = self.clock()
  local deadline = started + self.retry.deadline
  local attempts = self.retry.attempts
  -- self.log scrubs the whole line (make_logger), and does nothing without a logger: the
  -- body is not scrubbed here as well.
  if body then self.log("debug", "paykit " .. op .. " request " .. method .. " " .. safe_url .. " " .. body) end

  local attempt = 0
  while true do
    attempt = attempt + 1
    local t0 = self.clock()
    local remaining = deadline - t0
    local timeout = math.min(call_timeout, remaining)
    local ctx = { op = op, method = method, url = safe_url, attempt = attempt }
    call_hook(self, "before", ctx)
    local res, msg, code, maybe_sent
    if timeout <= 0 then
      msg, code, maybe_sent = "deadline passed before the request could be sent", "connect_timeout", false
    else
      res, msg, code, maybe_sent = self:send_once {
        method = method, url = req.url, headers = headers, body = body,
        -- nil: the transport decides by method (GET, HEAD, OPTIONS); false: the transport
        -- never sends it twice, whatever the connection does
        idempotent = req.idempotent,
        timeout = math.max(1, math.floor(timeout * 1000)),
        connect_timeout = math.max(1, math.floor(math.min(call_connect, timeout) * 1000)),
        send_timeout = milliseconds(send_timeout), read_timeout = milliseconds(read_timeout),
        -- libcurl has one stall timer for both directions (see @{new})
        stall_timeout = milliseconds((send_timeout and read_timeout) and math.min(send_timeout, read_timeout)
          or send_timeout or read_timeout),
      }
    end
    local elapsed = self.clock() - t0
    ctx.elapsed = elapsed
    local err, retry_ok
    if res then
      ctx.status = res.status
      self.log(res.status >= 500 and "warn" or "info", string.format("paykit %s %s %s attempt=%d status=%d elapsed=%.3fs",
        op, method, safe_url, attempt, res.status, elapsed))
      if res.body and res.body ~= "" then
        self.log("debug", "paykit " .. op .. " response " .. res.status .. " " .. res.body)
      end
      retry_ok = RETRY_STATUS[res.status] and req.idempotent
    else
      code = code or "other"
      local info = CODES[code] or { "transport", true }
      if maybe_sent == nil then maybe_sent = info[2] end
      retry_ok = not info[3] and ((not maybe_sent) or (req.idempotent and true or false))
      err = errors.new {
        kind = info[1], code = code, op = op, retryable = retry_ok, correlation_id = correlation_id,
        message = op .. ": " .. method .. " " .. safe_url .. " failed (" .. code .. "): " .. tostring(msg) ..
          (maybe_sent and "; the request may have reached the provider" or "; the request never reached the provider"),
      }
      ctx.err = err
      self.log(info[1] == "timeout" and "warn" or "error", string.format("paykit %s %s %s attempt=%d error=%s sent=%s elapsed=%.3fs",
        op, method, safe_url, attempt, code, tostring(maybe_sent), elapsed))
    end
    call_hook(self, "after", ctx)

    local give_up = not retry_ok or attempt >= attempts
    local delay = 0
    if not give_up then
      delay = backoff(self, attempt)
      if self.clock() + delay >= deadline then give_up = true end
    end
    if give_up then
      if res then
        if req.json then
          local decoded = nil
          if res.body and res.body ~= "" then decoded = cjson().decode(res.body) end
          res.json = decoded
        end
        res.request_id = request_id_of(self, res)
        res.correlation_id = correlation_id
        -- for the result or error the provider builds from this answer (paykit.errors.take_ids)
        errors.remember_ids(res.request_id, res.correlation_id)
        return res
      end
      errors.take_ids() -- an older answer's ids must not reach a later result
      return nil, err
    end
    self.log("info", string.format("paykit %s retrying in %.3fs (attempt %d of %d)", op, delay, attempt + 1, attempts))
    self.sleep(delay)
  end
end

return _M
