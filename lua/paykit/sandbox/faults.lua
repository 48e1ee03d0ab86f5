-- Fault modes of the sandbox, for merchants testing their own error handling: an armed fault
-- makes a provider's next N requests (optionally only those matching a path and a method)
-- drop the connection, answer late, answer 5xx or answer garbage. And the request log: every
-- request a simulator received, with the fault it took and whether the simulator processed it.
--
-- Both live in lua_shared_dicts (paykit_sandbox_faults, paykit_sandbox_requests), so they hold
-- across nginx workers; a fault's remaining count is taken with one atomic incr, so two
-- concurrent requests never both take its last one. Runs inside nginx only.
--
-- Modes (what the sandbox does with a faulted request, after reading all of it):
--   drop_before  closes the connection; the simulator never sees the request
--   drop         the simulator processes it (a charge happens), the answer is thrown away and
--                the connection closed: the nastiest real case
--   delay        the simulator processes it; the answer leaves `delay_ms` later
--   status       answers HTTP `status` (500..599, default 503) with `body` (an HTML error page
--                by default); the simulator processes it only when `process` is true
--   garbage      answers `body` (default: HTML, not JSON) with the simulator's status and
--                Content-Type; the simulator processes it unless `process` is false
--   truncate     the simulator processes it; its answer is cut to `keep` bytes (default half)
local cjson = require "cjson.safe"

local M = {}

M.FAULTS_DICT = "paykit_sandbox_faults"
M.REQUESTS_DICT = "paykit_sandbox_requests"
M.LOG_SIZE = 1000     -- requests kept in the log (the oldest go first)
M.MAX_ARMED = 100     -- faults armed at once
M.MAX_COUNT = 1000000
M.MAX_DELAY_MS = 120000
M.MAX_BODY = 65536

M.MODES = { drop_before = true, drop = true, delay = true, status = true, garbage = true, truncate = true }
local MODE_LIST = "drop_before, drop, delay, status, garbage, truncate"

-- The fields each mode takes besides provider, mode, count, match and method.
local OPTIONS = {
  drop_before = {}, drop = {},
  delay = { delay_ms = true },
  status = { status = true, body = true, content_type = true, process = true },
  garbage = { body = true, content_type = true, process = true },
  truncate = { keep = true },
}
local COMMON = { provider = true, mode = true, count = true, match = true, method = true }
local METHODS = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true, HEAD = true, OPTIONS = true }

M.GARBAGE = "<html><body><h1>Service temporarily unavailable</h1><p>paykit sandbox: garbage answer, not JSON</p></body></html>"

local function dicts()
  local f, r = ngx.shared[M.FAULTS_DICT], ngx.shared[M.REQUESTS_DICT]
  if not f or not r then error("sandbox: lua_shared_dict " .. M.FAULTS_DICT .. " / " .. M.REQUESTS_DICT .. " missing", 0) end
  return f, r
end

-- Whether this nginx has the shared dicts (the sandbox's config declares them; a server that
-- embeds the dispatch without them runs the simulators with no faults and no log).
function M.available()
  return ngx.shared[M.FAULTS_DICT] ~= nil and ngx.shared[M.REQUESTS_DICT] ~= nil
end

local function is_int(v, lo, hi)
  return type(v) == "number" and v == math.floor(v) and v >= lo and v <= hi
end

-- The request path, without trailing slashes ("/" stays "/").
local function norm(path)
  local p = path:gsub("/+$", "")
  return p == "" and "/" or p
end

-- Whether `path` is matched by `pattern`: equal, or `pattern` ends with "*" and is a prefix.
function M.path_matches(pattern, path)
  if pattern == nil then return true end
  if pattern:sub(-1) == "*" then
    local prefix = pattern:sub(1, -2)
    return path:sub(1, #prefix) == prefix
  end
  return norm(pattern) == norm(path)
end

---------------------------------------------------------------------------- validation

-- A fault from an admin request's decoded body, or nil, field, message.
-- providers: set of the provider names the sandbox serves.
function M.check(t, providers)
  if type(t) ~= "table" then return nil, nil, "the request body must be a JSON object" end
  for k in pairs(t) do
    if type(k) ~= "string" then return nil, nil, "the request body must be a JSON object" end
  end
  local names = {}
  for p in pairs(providers) do names[#names + 1] = p end
  table.sort(names)
  if t.provider == nil then return nil, "provider", "provider is required (one of " .. table.concat(names, ", ") .. ")" end
  if type(t.provider) ~= "string" or not providers[t.provider] then
    return nil, "provider", "provider must be one of " .. table.concat(names, ", ")
  end
  if t.mode == nil then return nil, "mode", "mode is required (one of " .. MODE_LIST .. ")" end
  if type(t.mode) ~= "string" or not M.MODES[t.mode] then return nil, "mode", "mode must be one of " .. MODE_LIST end
  local allowed = OPTIONS[t.mode]
  for k in pairs(t) do
    if not COMMON[k] and not allowed[k] then
      local elsewhere = false
      for _, o in pairs(OPTIONS) do if o[k] then elsewhere = true end end
      if elsewhere then return nil, k, k .. " does not apply to mode " .. t.mode end
      return nil, k, "unknown field " .. k
    end
  end
  local f = { provider = t.provider, mode = t.mode, count = 1 }
  if t.count ~= nil then
    if not is_int(t.count, 1, M.MAX_COUNT) then return nil, "count", "count must be a whole number from 1 to " .. M.MAX_COUNT end
    f.count = t.count
  end
  if t.match ~= nil then
    if type(t.match) ~= "string" or t.match:sub(1, 1) ~= "/" or #t.match > 512 or t.match:find("[%c%s?#]") then
      return nil, "match", "match must be a path below the provider, starting with / (a trailing * matches a prefix), e.g. /PaymentDealer/DoDirectPayment"
    end
    f.match = t.match
  end
  if t.method ~= nil then
    if type(t.method) ~= "string" or not METHODS[t.method:upper()] then
      return nil, "method", "method must be an HTTP method (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS)"
    end
    f.method = t.method:upper()
  end
  if t.mode == "delay" then
    if t.delay_ms == nil then return nil, "delay_ms", "delay_ms is required for mode delay" end
    if not is_int(t.delay_ms, 1, M.MAX_DELAY_MS) then
      return nil, "delay_ms", "delay_ms must be a whole number of milliseconds from 1 to " .. M.MAX_DELAY_MS
    end
    f.delay_ms = t.delay_ms
  elseif t.mode == "status" then
    f.status = 503
    if t.status ~= nil then
      if not is_int(t.status, 500, 599) then return nil, "status", "status must be an HTTP status from 500 to 599" end
      f.status = t.status
    end
  elseif t.mode == "truncate" and t.keep ~= nil then
    if not is_int(t.keep, 0, M.MAX_BODY) then return nil, "keep", "keep must be a whole number of bytes from 0 to " .. M.MAX_BODY end
    f.keep = t.keep
  end
  if t.body ~= nil then
    if type(t.body) ~= "string" or #t.body > M.MAX_BODY then
      return nil, "body", "body must be a string of at most " .. M.MAX_BODY .. " bytes"
    end
    f.body = t.body
  end
  if t.content_type ~= nil then
    if type(t.content_type) ~= "string" or t.content_type == "" or #t.content_type > 200 or t.content_type:find("%c") then
      return nil, "content_type", "content_type must be a media type, e.g. text/html"
    end
    f.content_type = t.content_type
  end
  if t.process ~= nil then
    if type(t.process) ~= "boolean" then return nil, "process", "process must be true or false" end
    f.process = t.process
  end
  return f
end

-- Whether the simulator runs for a request that takes fault f.
function M.processes(f)
  if f.mode == "drop_before" then return false end
  if f.mode == "status" then return f.process == true end
  if f.mode == "garbage" then return f.process ~= false end
  return true
end

-- What goes on the wire for a request that took fault f (nil: none), given the simulator's
-- answer {status, body, content_type, headers} (nil when it did not run). The drop modes send
-- nothing and are not shaped. Returns status, body, content type, headers.
function M.shape(f, answer)
  local mode = f and f.mode
  if mode == "status" then
    local body = f.body or string.format("<html><body><h1>%d</h1><p>paykit sandbox fault</p></body></html>", f.status)
    return f.status, body, f.content_type or (f.body and "text/plain; charset=utf-8" or "text/html; charset=utf-8")
  elseif mode == "garbage" then
    return answer and answer.status or 200, f.body or M.GARBAGE,
      f.content_type or (answer and answer.content_type) or "application/json"
  end
  local body = answer.body
  if mode == "truncate" then body = body:sub(1, f.keep or math.floor(#body / 2)) end
  return answer.status, body, answer.content_type, answer.headers
end

---------------------------------------------------------------------------- armed faults

-- A short lock over the list of faults (arming and clearing are rare; taking needs no lock).
local function locked(fn)
  local d = dicts()
  local token = tostring(ngx.worker.pid()) .. ":" .. tostring(ngx.now()) .. ":" .. tostring(math.random())
  local got = false
  for _ = 1, 2000 do
    if d:add("lock", token, 2) then got = true; break end
    ngx.sleep(0.001)
  end
  if not got then error("sandbox: the fault list stays locked", 0) end
  local ok, a, b = pcall(fn, d)
  if d:get("lock") == token then d:delete("lock") end
  if not ok then error(a, 0) end
  return a, b
end

local function load_list(d)
  local text = d:get("list")
  local list = text and cjson.decode(text)
  return type(list) == "table" and list or {}
end

local function save_list(d, list)
  if #list == 0 then d:delete("list"); return end
  local ok, err = d:set("list", cjson.encode(list))
  if not ok then error("sandbox: cannot store the faults: " .. tostring(err), 0) end
end

-- A fault's own keys: its remaining count and its body (kept apart from the list, which every
-- request reads).
local function forget(d, f)
  d:delete("left:" .. f.id)
  d:delete("body:" .. f.id)
end

local function remaining(d, f)
  local left = d:get("left:" .. f.id)
  return left and math.max(0, left) or 0
end

-- The armed faults, dropping those used up.
local function live(d)
  local out = {}
  for _, f in ipairs(load_list(d)) do
    if remaining(d, f) > 0 then out[#out + 1] = f else forget(d, f) end
  end
  return out
end

local function view(d, f)
  local v = {}
  for k, x in pairs(f) do v[k] = x end
  v.remaining = remaining(d, f)
  v.fired = f.count - v.remaining
  return v
end

-- Arms a checked fault; returns its view, or nil, message when too many are armed.
function M.arm(f)
  return locked(function(d)
    local list = live(d)
    if #list >= M.MAX_ARMED then return nil, "too many faults armed (" .. M.MAX_ARMED .. "): DELETE /_sandbox/faults first" end
    f.id = d:incr("seq", 1, 0)
    if f.body then
      local ok, err = d:set("body:" .. f.id, f.body)
      if not ok then error("sandbox: cannot store the fault: " .. tostring(err), 0) end
      f.body_bytes, f.body = #f.body, nil
    end
    local ok, err = d:set("left:" .. f.id, f.count)
    if not ok then error("sandbox: cannot store the fault: " .. tostring(err), 0) end
    list[#list + 1] = f
    save_list(d, list)
    return view(d, f)
  end)
end

-- The armed faults (in the order they are taken), each with `remaining` and `fired`.
function M.list()
  local d = dicts()
  local out = {}
  for _, f in ipairs(load_list(d)) do
    local v = view(d, f)
    if v.remaining > 0 then out[#out + 1] = v end
  end
  return out
end

-- Disarms faults: all, one provider's (provider), or one (id). Returns how many.
function M.clear(provider, id)
  return locked(function(d)
    local keep, n = {}, 0
    for _, f in ipairs(load_list(d)) do
      if (id == nil or f.id == id) and (provider == nil or f.provider == provider) then
        forget(d, f)
        n = n + 1
      else
        keep[#keep + 1] = f
      end
    end
    save_list(d, keep)
    return n
  end)
end

-- Takes one use of the first armed fault matching this request, or nil. Atomic across
-- workers: a use is taken only by the incr that moves the count from 1 or more to 0 or more.
function M.take(provider, method, path)
  local d = dicts()
  local text = d:get("list")
  if not text then return nil end
  local list = cjson.decode(text)
  if type(list) ~= "table" then return nil end
  for _, f in ipairs(list) do
    if f.provider == provider and (f.method == nil or f.method == method) and M.path_matches(f.match, path) then
      local left = d:incr("left:" .. f.id, -1)
      if left and left >= 0 then
        f.use = f.count - left
        if f.body_bytes then f.body = d:get("body:" .. f.id) or "" end
        return f
      end
    end
  end
  return nil
end

---------------------------------------------------------------------------- request log

-- Records a request as received; returns its log entry (update it with M.update).
function M.received(provider, method, path)
  local _, r = dicts()
  local seq = r:incr("seq", 1, 0)
  r:incr("total:" .. provider, 1, 0)
  local e = { seq = seq, time = ngx.now(), provider = provider, method = method, path = path,
              outcome = "received", worker = ngx.worker.pid(),
              connection = tonumber(ngx.var.connection), connection_requests = tonumber(ngx.var.connection_requests) }
  r:set("req:" .. seq, cjson.encode(e))
  r:delete("req:" .. (seq - M.LOG_SIZE))
  return e
end

function M.update(e)
  local _, r = dicts()
  if r:get("req:" .. e.seq) then r:set("req:" .. e.seq, cjson.encode(e)) end
end

-- The logged requests, oldest first, filtered by provider, path (as a fault's match), method
-- and since (only those after that seq). Returns the list and the last seq so far.
function M.requests(provider, path, method, since)
  local _, r = dicts()
  local last = r:get("seq") or 0
  local out = {}
  for seq = math.max((r:get("floor") or 0) + 1, last - M.LOG_SIZE + 1, (since or 0) + 1), last do
    local text = r:get("req:" .. seq)
    local e = text and cjson.decode(text)
    if type(e) == "table" and (provider == nil or e.provider == provider) and (method == nil or e.method == method)
        and (path == nil or M.path_matches(path, e.path)) then
      out[#out + 1] = e
    end
  end
  return out, last
end

-- Requests received per provider since the last clear (also those gone from the log).
function M.totals(providers)
  local _, r = dicts()
  local t = {}
  for p in pairs(providers) do t[p] = r:get("total:" .. p) or 0 end
  return t
end

-- Empties the log. Sequence numbers go on (a request still in flight never overwrites a
-- later one's entry: its update finds its own entry gone and is dropped).
function M.clear_requests(providers)
  local _, r = dicts()
  local last = r:get("seq") or 0
  r:set("floor", last)
  for seq = math.max(1, last - M.LOG_SIZE + 1), last do r:delete("req:" .. seq) end
  for p in pairs(providers) do r:delete("total:" .. p) end
end

-- Disarms every fault and empties the log.
function M.reset(providers)
  locked(function(d)
    for _, f in ipairs(load_list(d)) do forget(d, f) end
    d:delete("list")
  end)
  M.clear_requests(providers)
end

return M
