-- Where one provider call's client CPU time goes, split into exclusive parts that add up to the
-- whole call. Shared by bench/breakdown.lua (plain Lua, the default transport) and
-- bench/nginx_client.lua (/breakdown: inside nginx, the cosocket transport).
--
--   local split = require "bench.split"
--   io.write(split.run { title = "Moka 3D start", n = 3000, make = function() ... return call, gw end })
--
-- make() builds the call (requiring paykit's modules itself) and returns a function doing one
-- call (true when the answer mapped as expected) and, optionally, the provider instance.
-- run() measures, in this order:
--  1. the whole call as shipped, no probe anywhere (os.clock: process CPU time);
--  2. then it wraps every function of paykit.core and the core clients' methods, forgets the
--     paykit Lua modules (package.loaded), calls make() again (the modules are loaded anew and
--     take the wrapped core functions), makes one call (what loads lazily is loaded), and wraps
--     every function of every paykit.* module then loaded, and of the provider instance's
--     class. A probe times its function and subtracts the probes called inside it: exclusive
--     times (nothing counted twice; a local function no probe sees is charged to its caller);
--  3. a quarter of the calls with every probe, after which the functions costing less than
--     PRUNE_US a call stop timing themselves (they are charged to their callers): the probes'
--     own cost stays small next to what they measure;
--  4. the measured run. What it took beyond the call as shipped, per probe call, is the probes'
--     cost in the call; it is taken off each part for the probes it ran and the probes it called
--     (split between the two as on an empty function in a tight loop), so the parts add up to the
--     whole call as shipped. That assumes every probe call costs the same: a part's error is
--     about its probe calls times the spread of that cost. Garbage collection is charged to
--     whichever part allocated when it ran. On LuaJIT a probe (a C call) also ends the compiled
--     trace around it, and that cost is spread the same way.
local M = {}
local clock = os.clock

-- ------------------------------------------------------------------ probes
local excl, calls, kids = {}, {}, {} -- label -> exclusive seconds, calls, probe calls made inside
local depth = 0
local child = { [0] = 0 }             -- child[d]: elapsed seconds of the probes called at depth d
local label_at = { [0] = "(outside every probe)" }
local wrapped = setmetatable({}, { __mode = "k" }) -- wrapper -> true (never wrap a probe)
local live = {}                       -- label -> false once pruned (the wrapper then only calls through)

local function finish(label, t0, ...)
  local el = clock() - t0
  local d = depth
  excl[label] = excl[label] + el - child[d]
  calls[label] = calls[label] + 1
  depth = d - 1
  child[d - 1] = child[d - 1] + el
  local parent = label_at[d - 1]
  kids[parent] = (kids[parent] or 0) + 1
  return ...
end

local function wrap(label, fn)
  if wrapped[fn] then return fn end
  excl[label], calls[label] = excl[label] or 0, calls[label] or 0
  live[label] = true
  local w = function(...)
    if not live[label] then return fn(...) end
    local d = depth + 1
    depth = d
    child[d] = 0
    label_at[d] = label
    return finish(label, clock(), fn(...))
  end
  wrapped[w] = true
  return w
end

local function wrap_table(t, prefix, sep, seen)
  if type(t) ~= "table" or seen[t] then return 0 end
  seen[t] = true
  local names = {}
  for k, v in pairs(t) do
    if type(k) == "string" and type(v) == "function" and not wrapped[v] then names[#names + 1] = k end
  end
  for _, k in ipairs(names) do t[k] = wrap(prefix .. sep .. k, t[k]) end
  return #names
end

-- paykit.core: what the Lua side calls per request (not the constructors, clocks and sleeps,
-- which the call does not use per request or which would time themselves)
local CORE_SKIP = { wire_client = true, http_client = true, http_loop = true, wire_loop = true, monotonic = true,
  sleep = true, realtime_ms = true, redis_connect = true, http_response_parser = true, redis_reader = true }

local function install_core()
  local core = require "paykit.core"
  local seen = {}
  for k, v in pairs(core) do
    if type(v) == "function" and not CORE_SKIP[k] and not wrapped[v] then core[k] = wrap("paykit.core." .. k .. " (C)", v) end
  end
  -- the clients' methods: the transport itself (C: connect, TLS, send, receive, parse)
  local w = core.wire_client()
  wrap_table(getmetatable(w).__index, "wire client", ":", seen)
  w:close()
  local c = core.http_client()
  wrap_table(getmetatable(c).__index, "libcurl client", ":", seen)
  c:close()
end

local function install_lua(obj)
  local seen, n = {}, 0
  local names = {}
  for name in pairs(package.loaded) do
    if type(name) == "string" and (name == "paykit" or name:match("^paykit%.")) and name ~= "paykit.core" then
      names[#names + 1] = name
    end
  end
  table.sort(names)
  for _, name in ipairs(names) do n = n + wrap_table(package.loaded[name], name, ".", seen) end
  local mt = obj and getmetatable(obj)
  if type(mt) == "table" then n = n + wrap_table(mt.__index, tostring(mt.__name or "provider") .. " method", ":", seen) end
  return n
end

local function forget_lua_modules()
  for name in pairs(package.loaded) do
    if type(name) == "string" and (name == "paykit" or name:match("^paykit%.")) and name ~= "paykit.core" then
      package.loaded[name] = nil
    end
  end
end

-- ------------------------------------------------------------------ measuring
local function loop(call, n)
  collectgarbage("collect")
  local bad = 0
  local c0 = clock()
  for _ = 1, n do if not call() then bad = bad + 1 end end
  return clock() - c0, bad
end

-- The cost of one probe: W, what a caller pays per probe call (beyond the function), and E,
-- the part of it the probe records as its own elapsed time.
local function calibrate(n)
  local function noop() end
  local probe = wrap("(calibration)", noop)
  collectgarbage("collect")
  local c0 = clock()
  for _ = 1, n do noop() end
  local plain = clock() - c0
  excl["(calibration)"], calls["(calibration)"] = 0, 0
  local d0 = child[0]
  c0 = clock()
  for _ = 1, n do probe() end
  local with = clock() - c0
  local recorded = child[0] - d0
  child[0] = d0
  kids[label_at[0]] = (kids[label_at[0]] or 0) - n
  excl["(calibration)"], calls["(calibration)"] = nil, nil
  return (with - plain) / n, recorded / n
end

-- The layer a label belongs to, for the summary.
local LAYERS = {
  { "transport: the core client's request (C)", function(l) return l:match("^wire client:") or l:match("^libcurl client:") end },
  { "transport: paykit.cosocket (nginx cosockets)", function(l) return l:match("^paykit%.cosocket%.") end },
  { "paykit.http (retries, hooks, logging decisions, transport choice)", function(l) return l:match("^paykit%.http%.") end },
  { "other paykit.core C functions (JSON, hashes, codecs)", function(l) return l:match("^paykit%.core%.") end },
  { "provider: its methods and paykit.providers.*", function(l)
      return l:match("^paykit%.providers%.") or l:match(" method:") end },
  { "kit: paykit.kit.* (commit, JSON, checks, signatures)", function(l) return l:match("^paykit%.kit") end },
  { "other paykit Lua (gateway, money, redact, url, errors, ...)", function(l) return l:match("^paykit") end },
  { "outside every probe (the bench's loop and closure)", function(l) return l == label_at[0] end },
}

local function reset()
  for k in pairs(excl) do excl[k], calls[k] = 0, 0 end
  for k in pairs(kids) do kids[k] = 0 end
  child[0] = 0
end

-- Exclusive seconds of each label after taking off the probes' cost: W per probe call, of
-- which the fraction r lands in the probe's own time and the rest in its caller's.
local function corrected(W, r)
  local out = {}
  for label, s in pairs(excl) do
    if calls[label] > 0 then
      local own = label ~= label_at[0] and calls[label] or 0
      out[label] = s - own * r * W - (kids[label] or 0) * (1 - r) * W
    end
  end
  return out
end

local PRUNE_US = 0.5
local KEEP = { ["wire client:request"] = true, ["wire client:batch"] = true, ["libcurl client:request"] = true,
  ["libcurl client:batch"] = true, ["paykit.cosocket.request"] = true }

function M.run(o)
  assert(not M.used, "bench.split runs once per process (its probes stay in place)")
  M.used = true
  local n = o.n or 3000
  local us = function(s) return s * 1e6 / n end
  local out = {}
  local function p(s) out[#out + 1] = s end

  -- 1. as shipped
  local call = o.make()
  for _ = 1, 50 do assert(call(), "the call did not map the answer as expected") end
  local plain, bad0 = loop(call, n)

  -- 2. every function probed, for a quarter of the calls; the ones costing less than PRUNE_US
  -- (after the probe's cost) stop timing themselves and are charged to their callers
  install_core()
  forget_lua_modules()
  local call2, obj = o.make()
  call2() -- loads what the first call loads lazily (paykit.cosocket, the transport's client)
  local nprobes = install_lua(obj)
  local W, E = calibrate(100000)
  for _ = 1, 50 do call2() end
  local n1 = math.max(100, math.floor(n / 4))
  reset()
  loop(call2, n1)
  local pruned = 0
  for label, s in pairs(corrected(W, E / W)) do
    if label ~= label_at[0] and not KEEP[label] and s * 1e6 / n1 < PRUNE_US then live[label] = false; pruned = pruned + 1 end
  end

  -- 3. the measured run: the remaining probes
  reset()
  local total, bad1 = loop(call2, n)
  local outside = total - child[0]
  excl[label_at[0]], calls[label_at[0]] = outside, n
  local stack_ok = depth == 0
  local probe_calls = 0
  for label, c in pairs(calls) do if label ~= label_at[0] then probe_calls = probe_calls + c end end
  -- the probes' cost in this run: what the probed run took beyond the call as shipped, per probe
  -- call (the tight-loop W above says how it splits between a probe and its caller)
  local Wc = probe_calls > 0 and (total - plain) / probe_calls or 0
  local parts, sum = {}, 0
  for label, s in pairs(corrected(Wc, E / W)) do
    parts[#parts + 1] = { label = label, s = s, calls = (label == label_at[0]) and 0 or calls[label] }
    sum = sum + s
  end
  table.sort(parts, function(a, b) return a.s > b.s end)

  p(string.format("%s, %s, %d calls (client CPU us per call, os.clock):", o.title, type(jit) == "table" and jit.version or _VERSION, n))
  local served = {}
  for _, label in ipairs { "wire client:request", "wire client:batch", "libcurl client:request", "libcurl client:batch",
                           "paykit.cosocket.request" } do
    if (calls[label] or 0) > 0 then served[#served + 1] = string.format("%s (%.2f per call)", label, calls[label] / n) end
  end
  p("  the transport that served: " .. (#served > 0 and table.concat(served, ", ") or "none seen by a probe"))
  p(string.format("  %-66s %8.1f us", "whole call as shipped (no probes)", us(plain)))
  p(string.format("  %-66s %8.1f us", "whole call with probes", us(total)))
  p(string.format("  %-66s %8.2f us", "one probe call's cost in the call (taken off below)", Wc * 1e6))
  p(string.format("  %-66s %8.2f us", "one probe call's cost on an empty function in a tight loop", W * 1e6))
  p(string.format("  %d functions probed, %d of them under %.1f us a call and charged to their callers; %.1f probe calls per call%s%s",
    nprobes, pruned, PRUNE_US, probe_calls / n,
    (bad0 + bad1 > 0) and string.format("; %d calls NOT mapped as expected", bad0 + bad1) or "",
    stack_ok and "" or "; the probe stack is off (a probed function raised): parts are unreliable"))
  if Wc < 0 then p("  (the probed run was faster than the call as shipped: the machine's noise is larger than the probes)") end

  p("  by layer (exclusive CPU; the lines add up to the whole call as shipped):")
  local layer_s, layer_order = {}, {}
  for _, part in ipairs(parts) do
    local name = "?"
    for _, L in ipairs(LAYERS) do if L[2](part.label) then name = L[1]; break end end
    if not layer_s[name] then layer_s[name] = 0; layer_order[#layer_order + 1] = name end
    layer_s[name] = layer_s[name] + part.s
  end
  table.sort(layer_order, function(a, b) return layer_s[a] > layer_s[b] end)
  for _, name in ipairs(layer_order) do p(string.format("    %-64s %8.1f us", name, us(layer_s[name]))) end
  p(string.format("    %-64s %8.1f us", "= the sum (the whole call as shipped)", us(sum)))

  local negative = 0
  for _, part in ipairs(parts) do if part.s < 0 then negative = negative + 1 end end
  if negative > 0 then
    p(string.format("  (%d parts came out below zero: the probes' cost varies by more than those parts%s; read a part"
      .. " smaller than about one probe call's cost as zero)", negative,
      type(jit) == "table" and ", and on LuaJIT a probe also ends the compiled trace around it" or ""))
  end
  local top = o.top or 25
  p(string.format("  by function (exclusive CPU, the %d largest; calls per whole call):", top))
  for i = 1, math.min(top, #parts) do
    local part = parts[i]
    p(string.format("    %-58s %5s %8.1f us", part.label, part.calls > 0 and string.format("%.1f", part.calls / n) or "",
      us(part.s)))
  end
  if #parts > top then
    local rest = 0
    for i = top + 1, #parts do rest = rest + parts[i].s end
    p(string.format("    %-58s %5s %8.1f us", (#parts - top) .. " more functions", "", us(rest)))
  end
  return table.concat(out, "\n") .. "\n"
end

return M
