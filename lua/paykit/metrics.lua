--- paykit.metrics: the transport's hooks as Prometheus metrics (text exposition format 0.0.4).
--
-- A collector counts every HTTP attempt paykit makes to a provider (the `after` hook of
-- `paykit.http`, see its `hooks` option) and renders:
--
--  * `paykit_requests_total{provider, operation, outcome}` (counter): one per attempt; outcome
--    is the HTTP status class (`2xx`, `3xx`, `4xx`, `5xx`) or, with no answer, the error
--    kind (`timeout`, `transport`). A declined payment is a `2xx`: the provider answered.
--  * `paykit_retries_total{provider, operation}` (counter): attempts after the first.
--  * `paykit_request_duration_seconds{provider, operation}` (histogram, `le` buckets `BUCKETS`
--    unless given): each attempt's elapsed time.
--
-- provider and operation come from the hook's `op` ("moka.capture" -> "moka", "capture").
-- No URL, body, reference or amount becomes a label: the series stay few and carry nothing
-- secret.
--
-- Two backends: in-process Lua tables (`metrics.new()`, one process: plain Lua, or one nginx
-- worker), and an nginx `lua_shared_dict` (`metrics.new{dict = "paykit_metrics"}`), which
-- every worker of the nginx writes to, so that any worker's `/metrics` reports them all.
-- @module paykit.metrics
-- @usage
--   -- nginx.conf: lua_shared_dict paykit_metrics 1m;
--   local metrics = require("paykit.metrics").new { dict = "paykit_metrics" }
--   local gw = paykit.moka { ..., hooks = metrics:hooks() }
--   -- location = /metrics { content_by_lua_block { ... } }:
--   ngx.header["Content-Type"] = require("paykit.metrics").CONTENT_TYPE
--   ngx.print(metrics:render())
local _M = {}

--- The Content-Type of @{Collector:render}'s text.
_M.CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

-- The default latency buckets, in seconds (`metrics.BUCKETS`).
_M.BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 }

local REQUESTS, RETRIES, DURATION = "paykit_requests_total", "paykit_retries_total", "paykit_request_duration_seconds"

local HELP = {
  [REQUESTS] = "HTTP attempts paykit made to payment providers, by provider, operation and outcome.",
  [RETRIES] = "HTTP attempts after the first of a call (retries), by provider and operation.",
  [DURATION] = "Time of each HTTP attempt to a payment provider, in seconds.",
}

local function escape(v)
  return (tostring(v):gsub("[\\\"\n]", { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

-- {k1, v1, k2, v2, ...} -> 'k1="v1",k2="v2"'
local function labels(list)
  local out = {}
  for i = 1, #list, 2 do out[#out + 1] = list[i] .. '="' .. escape(list[i + 1]) .. '"' end
  return table.concat(out, ",")
end

local function split_op(op)
  op = type(op) == "string" and op or "http"
  local provider, operation = op:match("^([^.]+)%.(.+)$")
  if not provider then return op, "request" end
  return provider, operation
end

local function outcome_of(ctx)
  local status = tonumber(ctx.status)
  if status then return math.floor(status / 100) .. "xx" end
  local err = ctx.err
  if type(err) == "table" and err.kind == "timeout" then return "timeout" end
  return "transport"
end

local function number_text(n)
  if n == math.floor(n) and n > -1e15 and n < 1e15 then return string.format("%d", n) end
  return string.format("%.9g", n)
end

-- backends ------------------------------------------------------------------------------
-- A backend keeps numbers under string keys: add(key, n) and each(fn(key, value)).

local Memory = {}
Memory.__index = Memory

local function memory()
  return setmetatable({ values = {} }, Memory)
end

function Memory:add(key, n) self.values[key] = (self.values[key] or 0) + n end
function Memory:each(fn) for k, v in pairs(self.values) do fn(k, v) end end

local Shared = {}
Shared.__index = Shared

local function shared(dict, name)
  return setmetatable({ dict = dict, name = name }, Shared)
end

function Shared:add(key, n)
  local _, err = self.dict:incr(key, n, 0)
  if err then
    local ngx = rawget(_G, "ngx")
    if ngx and ngx.log then ngx.log(ngx.WARN, "paykit.metrics: lua_shared_dict ", self.name, ": ", err) end
  end
end

function Shared:each(fn)
  for _, key in ipairs(self.dict:get_keys(0)) do
    local v = self.dict:get(key)
    if type(v) == "number" then fn(key, v) end
  end
end

-- the collector --------------------------------------------------------------------------

local Collector = {}
Collector.__index = Collector

--- A new collector.
-- @tparam[opt] table opts
--
--  * `dict` the name of a `lua_shared_dict` (or the dict itself): all nginx workers count
--    into it (inside nginx only); without it, in-process Lua tables
--  * `buckets` the histogram's upper bounds in seconds, increasing (default `BUCKETS`)
-- @treturn Collector
-- @raise a config error (`paykit.errors`) for a dict that is not there or bad buckets
function _M.new(opts)
  opts = opts or {}
  local errors = require "paykit.errors"
  local buckets = opts.buckets or _M.BUCKETS
  if type(buckets) ~= "table" or #buckets == 0 then
    error(errors.config("buckets", "invalid", "buckets must be a non-empty list of increasing numbers of seconds"), 2)
  end
  for i, le in ipairs(buckets) do
    if type(le) ~= "number" or le ~= le or (i > 1 and le <= buckets[i - 1]) then
      error(errors.config("buckets", "invalid", "buckets must be a non-empty list of increasing numbers of seconds"), 2)
    end
  end
  local backend
  if opts.dict ~= nil then
    local dict, name = opts.dict, tostring(opts.dict)
    if type(dict) == "string" then
      local ngx = rawget(_G, "ngx")
      dict = ngx and ngx.shared and ngx.shared[name]
      if not dict then
        error(errors.config("dict", "missing", "no lua_shared_dict " .. name .. " (add `lua_shared_dict " .. name ..
          " 1m;` to nginx's http{} block)"), 2)
      end
    end
    if (type(dict) ~= "table" and type(dict) ~= "userdata") or not dict.incr or not dict.get_keys then
      error(errors.config("dict", "invalid", "dict must be a lua_shared_dict or its name"), 2)
    end
    backend = shared(dict, name)
  else
    backend = memory()
  end
  local list = {}
  for i, le in ipairs(buckets) do list[i] = le end
  return setmetatable({ backend = backend, buckets = list }, Collector)
end

--- A collector (from @{new}).
-- @type Collector

-- Keys: "c\1<metric>\1<labels>" counters; "b\1<labels>\1<bucket index>" (not cumulative),
-- "s\1<labels>" sums and "n\1<labels>" counts of the histogram.
local SEP = "\1"

--- Records one attempt: what the `after` hook receives.
-- @tparam table ctx `{op=, status=, elapsed=, attempt=, err=}` (see `paykit.http.new`, hooks)
function Collector:observe(ctx)
  if type(ctx) ~= "table" then return end
  local provider, operation = split_op(ctx.op)
  local b = self.backend
  b:add("c" .. SEP .. REQUESTS .. SEP .. labels { "provider", provider, "operation", operation, "outcome", outcome_of(ctx) }, 1)
  local series = labels { "provider", provider, "operation", operation }
  if (tonumber(ctx.attempt) or 1) > 1 then b:add("c" .. SEP .. RETRIES .. SEP .. series, 1) end
  local elapsed = tonumber(ctx.elapsed)
  if elapsed and elapsed >= 0 then
    local index = #self.buckets + 1 -- +Inf
    for i, le in ipairs(self.buckets) do
      if elapsed <= le then index = i; break end
    end
    b:add("b" .. SEP .. series .. SEP .. index, 1)
    b:add("s" .. SEP .. series, elapsed)
    b:add("n" .. SEP .. series, 1)
  end
end

--- Hooks for a provider's or `paykit.http.new`'s `hooks` option.
-- @tparam[opt] table also hooks of your own `{before=, after=}`, called first
-- @treturn table `{before = fn, after = fn}`
function Collector:hooks(also)
  also = also or {}
  return {
    before = also.before,
    after = function(ctx)
      if also.after then also.after(ctx) end
      self:observe(ctx)
    end,
  }
end

--- The metrics in Prometheus' text format, series sorted.
-- @treturn string
function Collector:render()
  local counters, hist = {}, {}
  self.backend:each(function(key, v)
    local kind, a, b = key:match("^(%a)\1([^\1]*)\1?([^\1]*)$")
    if kind == "c" then
      counters[a] = counters[a] or {}
      counters[a][b] = v
    elseif kind == "b" or kind == "s" or kind == "n" then
      local h = hist[a]
      if not h then h = { buckets = {}, sum = 0, count = 0 }; hist[a] = h end
      if kind == "b" then h.buckets[tonumber(b)] = v
      elseif kind == "s" then h.sum = v
      else h.count = v end
    end
  end)

  local out = {}
  local function header(name, kind)
    out[#out + 1] = "# HELP " .. name .. " " .. HELP[name]
    out[#out + 1] = "# TYPE " .. name .. " " .. kind
  end
  local function sorted(t)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys)
    return keys
  end
  for _, name in ipairs { REQUESTS, RETRIES } do
    header(name, "counter")
    for _, l in ipairs(sorted(counters[name] or {})) do
      out[#out + 1] = name .. "{" .. l .. "} " .. number_text(counters[name][l])
    end
  end
  header(DURATION, "histogram")
  for _, l in ipairs(sorted(hist)) do
    local h, cumulative = hist[l], 0
    for i = 1, #self.buckets + 1 do
      cumulative = cumulative + (h.buckets[i] or 0)
      local le = self.buckets[i] and number_text(self.buckets[i]) or "+Inf"
      out[#out + 1] = DURATION .. "_bucket{" .. l .. ',le="' .. le .. '"} ' .. number_text(cumulative)
    end
    out[#out + 1] = DURATION .. "_sum{" .. l .. "} " .. number_text(h.sum)
    out[#out + 1] = DURATION .. "_count{" .. l .. "} " .. number_text(h.count)
  end
  return table.concat(out, "\n") .. "\n"
end

return _M
