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
-- Inside a `paykit.batch` task a request (and a retry's sleep) is yielded to the batch
-- scheduler instead of run: `http.batch_coroutines` (weak set of task coroutines),
-- `http.BATCH_REQUEST` and `http.BATCH_SLEEP` (the yield markers) are that interface.
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

-- paykit.batch registers its task coroutines here (weak keys): inside one of them a request
-- (and a retry's sleep) is handed to the batch scheduler with coroutine.yield instead of run.
local batch_coroutines = setmetatable({}, { __mode = "k" })
_M.batch_coroutines = batch_coroutines
_M.BATCH_REQUEST, _M.BATCH_SLEEP = {}, {}

local function batched()
  local co = coroutine.running()
  return co ~= nil and batch_coroutines[co] == true
end

local function default_sleep(s)
  if s <= 0 then return end
  if batched() then return coroutine.yield(_M.BATCH_SLEEP, s) end
  return runtime.sleep(s)
end
_M.sleep = default_sleep

--- Waits s seconds the way a retry's backoff does.
-- Yielded to the scheduler inside a `paykit.batch` task, ngx.sleep in a cosocket phase,
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
  if type(v) ~= "number" or v ~= v or v < 0 then
    error(errors.config(name, "invalid", name .. " must be a non-negative number of seconds"), 0)
  end
  return v
end

--- A new transport.
-- http.new(opts) -> transport (raises a config error for malformed options)
-- @tparam[opt] table opts
--
--  * `timeout` (seconds, default 30), `connect_timeout` (seconds, default 10)
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
-- @treturn transport the transport
-- @raise a config error (a `paykit.errors` table) for a malformed option
function _M.new(opts)
  opts = opts or {}
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
  local self = {
    timeout = num(opts.timeout, "timeout", 30),
    connect_timeout = num(opts.connect_timeout, "connect_timeout", 10),
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
-- Inside a `paykit.batch` task the request is yielded to the batch scheduler.
-- @tparam table req `{method=, url=, headers=, body=, timeout=, connect_timeout=}`
--   (timeouts in milliseconds), as `paykit.core` client:request
-- @treturn table `{status=, headers=, body=}`
-- @return[2] nil
-- @return[2] string message
-- @return[2] string code (see `paykit.core` client:request)
-- @return[2] boolean maybe_sent
function _M:send_once(req)
  if batched() then return coroutine.yield(_M.BATCH_REQUEST, self, req) end
  if in_cosocket_phase() then
    local ok, cosocket = pcall(require, "paykit.cosocket")
    if ok and type(cosocket) == "table" and cosocket.request then
      return cosocket.request(req, {
        timeout = req.timeout, connect_timeout = req.connect_timeout, -- milliseconds, as core
        verify = self.verify_tls, cafile = self.cafile, capath = self.capath,
        max_response = self.max_response, user_agent = self.user_agent,
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
-- @treturn table `{status=, headers=, body=, json=}`
-- @return[2] nil
-- @return[2] a transport or timeout error (`retryable`, and a message saying whether the
--   request may have reached the provider), or the config error `blocking_phase` (nothing sent)
-- @raise when a json body table cannot be encoded
function _M:request(req)
  local op = req.op or "http"
  local refused = runtime.check_blocking(op, self.allow_blocking or req.allow_blocking)
  if refused then return nil, refused end
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
    local timeout = math.min(self.timeout, remaining)
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
        connect_timeout = math.max(1, math.floor(math.min(self.connect_timeout, timeout) * 1000)),
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
        kind = info[1], code = code, op = op, retryable = retry_ok,
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
        return res
      end
      return nil, err
    end
    self.log("info", string.format("paykit %s retrying in %.3fs (attempt %d of %d)", op, delay, attempt + 1, attempts))
    self.sleep(delay)
  end
end

return _M
