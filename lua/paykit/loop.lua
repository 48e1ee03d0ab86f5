--- paykit.loop: provider calls that never block the caller, for a game tick or an event loop.
--
-- A call is an ordinary function making provider calls (`gw:purchase{...}`, `gw:status(ref)`, a
-- whole flow); it runs in its own coroutine, exactly as a `paykit.batch` task does, with the
-- loop as its scheduler (`paykit.runtime.set_scheduler`; the call's handle is what is installed,
-- its methods the loop's): when the transport (paykit.http) is
-- about to send a request it hands it to the scheduler, which yields the coroutine; the loop
-- hands the request to the C core: `paykit.core.wire_loop` for the wire client,
-- `paykit.core.http_loop` (libcurl's socket API) for libcurl's, the client the transport picks
-- for a single request too (`paykit.http` client_for: wire unless libcurl is needed), each with
-- the same request setup as a single request, so a charging request is never resent. A retry's
-- backoff is a timer of the
-- loop, not a sleep. Nothing waits unless the host asks: `step(0)` never waits.
--
-- The host either calls @{Loop:step} from its own tick, or sleeps on @{Loop:fd} (readable when
-- a transfer can go on) and @{Loop:timeout}; `paykit.loop.luv` and `paykit.loop.cqueues` plug
-- those into libuv and cqueues.
--
-- Cancelling a call (@{Handle:cancel}) stops its transfer; the call's code then meets the
-- transport error `cancelled` (maybe sent, when a byte of the request may have left): a charging
-- call cancelled after sending is an unknown outcome, and a journaled gateway leaves it
-- `unknown` for the sweeper. Later requests of a cancelled call fail at once without sending.
-- @module paykit.loop
-- @usage
--   local lp = paykit.loop.new()
--   local h = lp:start(function() return gw:purchase{...} end, function(r, err) ... end)
--   while game_running do
--     simulate_one_tick()
--     lp:step(0)                  -- or lp:step(time_left_in_tick)
--   end
local core = require "paykit.core"
local runtime = require "paykit.runtime"

local _M = {}

local unpack = table.unpack or unpack -- luacheck: ignore
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local pcall = pcall

local Loop = {}
Loop.__index = Loop
local Handle = {}
Handle.__index = Handle

-- What a call yields to the loop that resumed it, with a marker of this module: a request to
-- start (REQUEST, the transport, the attempt), a backoff (SLEEP, seconds), or WAITING: its
-- request is in flight on the wire loop already (started from inside the call, see
-- make_scheduler).
local REQUEST, SLEEP, WAITING = {}, {}, {}

-- What a call's coroutine returns when its function returned: DONE and the values, packed.
-- Every call runs in body (its function handed over by the first resume), so what a resume
-- gives back is always at most a marker and two values: no vararg passing per resume, and no
-- status asked to tell a return from a yield.
local DONE = {}
local function pack(...) return { n = select("#", ...), ... } end
local function body(fn) return DONE, pack(fn()) end

-- What a runnable call is resumed with (h.outcome): its function (its start: body takes it),
-- WAKE (nothing: the end of a backoff), or a core outcome as core loops report them: a
-- response table, or a failure
-- {error = message, code = , maybe_sent = }, which the scheduler's request (or wire) turns into
-- the core shape (nil, message, code, maybe_sent). Kept on the handle: no table of its own per
-- resume.
local WAKE = {}

-- A core outcome as the transport takes it: res, made | nil, message, code, maybe_sent, made
-- (made: the correlation id the wire loop made for a positional start, else nil).
local function outcome_values(o, made)
  if o == nil then return nil, "no response", "other", true, made end
  if o.error ~= nil and o.status == nil then return nil, o.error, o.code, o.maybe_sent, made end
  return o, made
end

-- The metatable of the wire transport's clients (core.wire_client): a transport's client with
-- it is served by the wire loop, any other by libcurl's.
local WIRE_MT = getmetatable(core.wire_client())

local function cancelled(maybe_sent)
  return { error = maybe_sent and "the call was cancelled while its request was in flight"
    or "the call was cancelled before its request was sent", code = "cancelled", maybe_sent = maybe_sent and true or false }
end

local make_scheduler

--- A new loop.
-- @tparam[opt] table opts `max_in_flight` (a positive integer, default 64): the most requests
--   in flight at once; more wait in a queue (in start order)
-- @treturn Loop the loop
-- @raise when max_in_flight is not a positive integer
function _M.new(opts)
  opts = opts or {}
  local max = opts.max_in_flight or 64
  if type(max) ~= "number" or max < 1 or max ~= math.floor(max) then
    error("paykit.loop: max_in_flight must be a positive integer", 2)
  end
  local curl, wire = core.http_loop(), core.wire_loop()
  wire:watch(curl:fd()) -- the wire loop's descriptor is the host's one: readable for both
  local self = setmetatable({
    core = curl,    -- libcurl's transfers (core.http_loop)
    wire = wire,    -- the wire transport's (core.wire_loop)
    max = max,
    runnable = {},  -- handles to resume (each with its h.outcome), run by the next drain
    nrun = 0,
    spare = {},     -- the other runnable array (drain swaps them: no table per round)
    queue = {},     -- handles waiting for a free transfer, oldest first, from qhead to qtail
    qhead = 1,
    qtail = 0,
    cinflight = {}, -- libcurl's transfers in flight: id -> handle
    wslot = {},     -- the wire loop's: slot (a small integer it reuses) -> handle (an array:
                    -- no new hash key per request, as ever-growing ids made)
    ncurl = 0,      -- transfers in flight on each core (counted here: no call into C to ask)
    nwire = 0,
    sleepers = {},  -- handle -> wake time (a retry's backoff)
    nsleep = 0,
    npending = 0,   -- calls not done
    finished = 0,   -- calls done, ever
    wakeup = nil,   -- set by an adapter: called when a call starts (re-arm the host's watchers)
                    -- and when the loop closes (let go of its descriptor)
  }, Loop)
  self.sched = make_scheduler(self)
  return self
end

--- A loop (from @{new}).
-- @type Loop

local function finish(self, h, values)
  h.values, h.state, h.outcome = values, "done", false
  runtime.set_scheduler(h.co, nil)
  h.co = nil
  self.npending = self.npending - 1
  self.finished = self.finished + 1
  if h.callback then h.callback(unpack(values, 1, values.n)) end
end

local function runnable(self, h, outcome)
  h.state, h.outcome = "runnable", outcome
  local n = self.nrun + 1
  self.nrun = n
  self.runnable[n] = h
end

local start_now, start_on

-- Files h as in flight on the wire loop: transfer id, in the loop's slot.
local function file_wire(self, h, id, slot)
  h.state, h.id, h.slot = "wire", id, slot
  self.wslot[slot] = h
  self.nwire = self.nwire + 1
end

-- Files what h's coroutine yielded (or returned) after a resume: coroutine.resume's first
-- values (see body: a return is DONE and the packed values), but WAITING (resume takes that).
-- A request starts on its core at once when there is room and no other request waits before
-- it (the queue is empty), else it joins the queue (submit starts it, in order).
local function after(self, h, ok, tag, a, b)
  if not ok then return finish(self, h, pack(nil, tag)) end
  -- the markers are this module's own: a call cannot yield or return one
  if tag == REQUEST then
    if h.cancelled then return runnable(self, h, cancelled(false)) end
    local t = self.qtail
    if t < self.qhead and self.ncurl + self.nwire < self.max and not self.closed then
      return start_now(self, h, a, b)
    end
    h.state, h.transport, h.req = "queued", a, b
    t = t + 1
    self.qtail = t
    self.queue[t] = h
  elseif tag == DONE then
    return finish(self, h, a)
  elseif tag == SLEEP then
    local s = tonumber(a) or 0
    if h.cancelled or s <= 0 then return runnable(self, h, WAKE) end
    h.state = "sleep"
    self.sleepers[h] = runtime.now() + s
    self.nsleep = self.nsleep + 1
  else
    return finish(self, h, pack(nil, "paykit.loop: a call yielded something other than a request "
      .. "(coroutine.yield inside a call is not supported)"))
  end
end

-- Resumes h's coroutine with its outcome (the scheduler it yielded from turns it into what the
-- transport takes) and files what it yields next.
-- The common yield, WAITING (a request the scheduler's wire filed in flight), is seen here: no
-- call of after for it. (drain has the same lines written out: keep the two alike.)
local function resume(self, h)
  -- (a call's first resume: its outcome is its function; WAKE goes to a backoff's yield, which
  -- drops it). The outcome stays on the handle until the next one replaces it (every way to
  -- runnable sets one) or the call is done (finish lets go of it): no write per resume; the
  -- state stays "runnable" while the call runs (nothing asks for more).
  local ok, tag, a, b = co_resume(h.co, h.outcome)
  if tag == WAITING then return end
  return after(self, h, ok, tag, a, b)
end

-- Starts h's request on the core of its transport's client, and files it in flight there;
-- returns the outcome of a start that failed (nothing when it started).
-- The client is the transport's own choice (paykit.http's client_for, the rule a single request
-- follows): the wire client's transfers go to the wire loop, libcurl's to libcurl's; a URL the
-- wire client refuses as unusable (nothing sent) goes to libcurl when the transport says so.
local function start_transfer(self, h, t, req)
  local client = h.instead
  if client then
    h.instead = false -- the client the scheduler's wire was told to try instead: the wire client refused it
    return start_on(self, h, client, req)
  end
  client = t.client_for and t:client_for() or t:core_client()
  if getmetatable(client) == WIRE_MT then
    local wire = self.wire
    local id, slot = wire:start(client, req)
    if id then return file_wire(self, h, id, slot) end
    local outcome = slot
    local again = t.client_for and t:client_for(client, outcome.code, outcome.maybe_sent)
    if not again then return outcome end
    client = again
  end
  return start_on(self, h, client, req)
end

-- Starts h's request on libcurl's loop with client (libcurl's).
function start_on(self, h, client, req)
  local c = self.core
  local id, outcome = c:start(client, req)
  if not id then return outcome end
  h.state, h.id = "curl", id
  self.cinflight[id] = h
  self.ncurl = self.ncurl + 1
end

-- The scheduler methods of a loop's calls: request and sleep yield to the loop what the
-- transport (paykit.http) hands them; wire starts the request on the wire loop from inside the
-- call, so that only WAITING is yielded (no request fields through the yield and the resume).
-- Each call's handle is its coroutine's scheduler (runtime.set_scheduler), these three its
-- fields: the transport calls them as methods of the handle, so wire has the call's handle as
-- its self (no record of the running handle kept by the loop for it).
function make_scheduler(self)
  local wire_loop = self.wire
  local wire_start = wire_loop.start -- (the loop's wire never changes: no method lookup per request)
  return {
    request = function(_, transport, req) return outcome_values(co_yield(REQUEST, transport, req)) end,
    sleep = function(_, s) co_yield(SLEEP, s) end,
    -- paykit.http's first try on its wire client, the request's fields as arguments (those of
    -- the wire client's positional request): started on the wire loop as they are when it can
    -- start at once (the queue empty, room, not closed), else false (nothing sent): the
    -- transport asks again with request(), which waits as any other. Returns what the wire
    -- client's positional request returns (the made correlation id last). A start that raised
    -- (misuse), or that failed where the transport would try another client, is false too:
    -- asked again as a table, it goes the general way (the same error, the same fallback).
    -- (the fields named, not a vararg: no frame copy per request)
    wire = function(h, transport, client, method, url, headers, payload, idempotent, ms, cms, send_ms, read_ms,
                    stall_ms, corr_header, correlation_id, json)
      if h.cancelled then return outcome_values(cancelled(false)) end
      if self.qtail >= self.qhead or self.ncurl + self.nwire >= self.max or self.closed then return false end
      local ok, id, slot, made = pcall(wire_start, wire_loop, client, method, url, headers, payload, idempotent, ms,
        cms, send_ms, read_ms, stall_ms, corr_header, correlation_id, json)
      if not ok then return false end
      if id then
        -- filed in flight (as file_wire does)
        h.state, h.id, h.slot = "wire", id, slot
        self.wslot[slot] = h
        self.nwire = self.nwire + 1
        local o = co_yield(WAITING)
        -- an answer as it is; anything else as outcome_values makes it
        if o and o.status ~= nil then return o, made end
        return outcome_values(o, made)
      end
      local again = transport.client_for and transport:client_for(client, slot.code, slot.maybe_sent)
      if not again then return outcome_values(slot, made) end
      h.instead = again -- what the table asked for next starts on (the wire client refused it)
      return false, nil, nil, nil, made
    end,
  }
end

-- Starts h's request (transport t, attempt req) now: in flight, or runnable with the outcome
-- of a start that failed.
function start_now(self, h, t, req)
  local ok, outcome = pcall(start_transfer, self, h, t, req)
  if not ok then
    runnable(self, h, { error = tostring(outcome), code = "other", maybe_sent = false })
  elseif outcome then
    runnable(self, h, outcome)
  end
end

-- Hands queued requests to the core while there is room.
local function submit(self)
  local q = self.queue
  if self.closed then -- closed by a callback: what is still asked for is never sent
    for i = self.qhead, self.qtail do
      local h = q[i]
      q[i] = nil
      if h.state == "queued" then
        h.transport, h.req = false, false
        runnable(self, h, cancelled(false))
      end
    end
    self.qhead, self.qtail = 1, 0
    return
  end
  local head, tail = self.qhead, self.qtail
  while head <= tail and self.ncurl + self.nwire < self.max do
    local h = q[head]
    q[head] = nil
    head = head + 1
    if h.state == "queued" then
      local t, req = h.transport, h.req
      h.transport, h.req = false, false
      start_now(self, h, t, req)
    end
  end
  if head > tail then head, tail = 1, 0 end -- empty: the array starts over (its slots are nil)
  self.qhead, self.qtail = head, tail
end

-- Runs every runnable call until none is left; submits what they asked for.
-- Re-entrant: a callback may start or cancel a call (paykit.batch starts a new worker from the
-- callback of one whose task raised), which drains again inside this one; the inner drain finds
-- the spare array taken (nil) and fills a new one, never the array this one is going through.
local function drain(self)
  while self.nrun > 0 do
    local list, n = self.runnable, self.nrun
    self.runnable, self.spare, self.nrun = self.spare or {}, nil, 0
    for i = 1, n do
      local h = list[i]
      list[i] = nil
      -- resume(self, h), written out here: no call per resume on the common way
      local ok, tag, a, b = co_resume(h.co, h.outcome)
      if tag ~= WAITING then after(self, h, ok, tag, a, b) end
    end
    self.spare = list -- empty again
    submit(self)
  end
  submit(self)
end

-- Files the transfers a core's run reported finished as runnable; returns how many there were.
-- filed is where that core's transfers in flight are, keyed by keys[k]: libcurl's by id (keys
-- is ids), the wire loop's by slot (keys is its slots array); a handle whose id is not the
-- finished transfer's is not that transfer's.
local function take(self, ids, outs, keys, filed)
  if not ids then return 0 end
  local list, n = self.runnable, self.nrun
  local n0 = n
  for k = 1, #ids do
    local key = keys[k]
    local h = filed[key]
    if h and h.id == ids[k] then
      filed[key] = nil -- (h.id and h.slot stay: read only while h is filed, set again at its next start)
      h.state, h.outcome = "runnable", outs[k]
      n = n + 1
      list[n] = h
    end
  end
  self.nrun = n
  return n - n0
end

-- Moves finished transfers (waiting at most wait seconds) and due timers to runnable.
-- Returns whether a call can go on, and whether the cores handled anything at all.
local function collect(self, wait)
  if self.closed then return false, false end -- closed by a callback of this step
  local got, handled, ids, outs, slots
  if self.nwire == 0 and self.ncurl > 0 then
    handled, ids, outs = self.core:run(wait)
    local k = take(self, ids, outs, ids, self.cinflight)
    self.ncurl = self.ncurl - k
    got = k > 0
  else
    -- the wire loop's wait also ends when libcurl's descriptor is readable; libcurl's timers are
    -- its own, so the wait stops at the next one
    local curl_busy = self.ncurl > 0
    if curl_busy and wait > 0 then
      local t = self.core:timeout()
      local tw = self.wire:timeout()
      if tw and (not t or tw < t) then t = tw end
      if t and t < wait then wait = t end
    end
    handled, ids, outs, slots = self.wire:run(wait)
    local k = take(self, ids, outs, slots, self.wslot)
    self.nwire = self.nwire - k
    got = k > 0
    if curl_busy then
      local h2
      h2, ids, outs = self.core:run(0)
      handled = handled + h2
      k = take(self, ids, outs, ids, self.cinflight)
      self.ncurl = self.ncurl - k
      got = k > 0 or got
    end
  end
  if self.nsleep > 0 then
    local now = runtime.now()
    for h, wake in pairs(self.sleepers) do
      if wake <= now then
        self.sleepers[h] = nil
        self.nsleep = self.nsleep - 1
        runnable(self, h, WAKE)
        got = true
      end
    end
  end
  return got, handled > 0
end

-- What is ready now, without waiting: a few rounds (a connect, the request, the answer can be
-- ready one after the other), bounded so that a steady stream of answers cannot hold a step.
local ROUNDS = 8
local function advance(self)
  for _ = 1, ROUNDS do
    local got, handled = collect(self, 0)
    if got then drain(self) end
    if not got and not handled then return end
  end
end

local function next_wake(self)
  if self.nsleep == 0 then return nil end
  local soonest
  for _, wake in pairs(self.sleepers) do
    if not soonest or wake < soonest then soonest = wake end
  end
  return soonest
end

--- Starts a call; it runs up to its first request before start returns.
-- @tparam function fn a function of no arguments making provider calls (run in a coroutine)
-- @tparam[opt] function callback called with what fn returned (or nil, the error it raised)
--   when it ends, from inside @{Loop:step} (or @{Handle:cancel}); an error it raises goes up
--   out of that step
-- @treturn Handle the call's handle
-- @raise when fn (or callback) is not a function
function Loop:start(fn, callback)
  if type(fn) ~= "function" then error("paykit.loop: start needs a function", 2) end
  if callback ~= nil and type(callback) ~= "function" then error("paykit.loop: the callback must be a function", 2) end
  if self.closed then -- a callback run by close() starting more: refused, its callback not run
    return setmetatable({ loop = self, state = "done", values = pack(nil, "paykit.loop: the loop is closed") }, Handle)
  end
  -- every field the handle takes is there from the start (false when unset, never set back to
  -- nil): a key set to nil is dead once a collection went over the table, and setting it
  -- again is a new key (luaH_newkey, now and then a rehash)
  -- the handle is its coroutine's scheduler: request, sleep and wire are the loop's (see
  -- make_scheduler)
  local sched = self.sched
  local h = setmetatable({ loop = self, co = co_create(body), callback = callback, state = "runnable",
    outcome = fn, id = false, slot = false, instead = false, cancelled = false,
    transport = false, req = false, request = sched.request, sleep = sched.sleep, wire = sched.wire }, Handle)
  runtime.set_scheduler(h.co, h)
  self.npending = self.npending + 1
  resume(self, h)
  drain(self)
  if self.wakeup then self.wakeup() end
  return h
end

--- Advances every call in flight.
-- Runs what is ready (a bounded number of rounds, so that a steady stream of answers cannot
-- hold the caller); with max_wait > 0 and no call finished yet, waits (at most max_wait
-- seconds in all) until one has finished. `step(0)` never waits. Returns at once when no call
-- is pending.
-- @tparam[opt=0] number max_wait seconds
-- @treturn integer the number of calls that finished during this step
-- @raise when max_wait is not a non-negative number, or what a callback raised
function Loop:step(max_wait)
  max_wait = max_wait or 0
  if type(max_wait) ~= "number" or max_wait ~= max_wait or max_wait < 0 then
    error("paykit.loop: max_wait must be a non-negative number of seconds", 2)
  end
  local before = self.finished
  drain(self)
  advance(self)
  if max_wait > 0 then
    local t_end = runtime.now() + max_wait
    while self.npending > 0 and self.finished == before do
      local now = runtime.now()
      local wait = t_end - now
      if wait <= 0 then break end
      local wake = next_wake(self)
      if wake and wake - now < wait then wait = math.max(0, wake - now) end
      if collect(self, wait) then drain(self) end
      advance(self)
    end
  end
  return self.finished - before
end

--- Steps until every call has finished (blocking; `paykit.batch` is start all + run).
-- @tparam[opt=1] number slice the most seconds one wait lasts
function Loop:run(slice)
  while self.npending > 0 do self:step(slice or 1) end
end

--- The one descriptor the host waits on: readable when a transfer can go on.
-- (An epoll descriptor that follows the transfers' sockets, libcurl's and the wire transport's;
-- its number never changes.)
-- @treturn integer the descriptor
function Loop:fd() return self.wire:fd() end

--- The transfers' own sockets and what each waits for.
-- For a host that watches sockets one by one; @{Loop:fd} covers them all.
-- @treturn table `{[fd] = "r" | "w" | "rw"}`
function Loop:fds()
  local all = self.core:sockets()
  for fd, what in pairs(self.wire:sockets()) do all[fd] = what end
  return all
end

--- Seconds until the loop must be stepped even when its descriptor stays quiet.
-- 0 when something is ready now; nil when nothing is pending (or only the descriptor matters).
-- @treturn ?number seconds
function Loop:timeout()
  if self.nrun > 0 then return 0 end
  local t = self.core:timeout()
  local tw = self.wire:timeout()
  if tw and (not t or tw < t) then t = tw end
  local wake = next_wake(self)
  if wake then
    local d = math.max(0, wake - runtime.now())
    if not t or d < t then t = d end
  end
  return t
end

--- The number of calls started and not finished.
-- @treturn integer
function Loop:pending() return self.npending end

--- Cancels every pending call (see @{Handle:cancel}) and frees the transfers.
-- A call started afterwards (also by a callback that close runs) is done at once with
-- nil, "paykit.loop: the loop is closed", and its callback is not called.
function Loop:close()
  self.closed = true
  while self.npending > 0 do
    local list = {}
    for _, h in pairs(self.cinflight) do list[#list + 1] = h end
    for _, h in pairs(self.wslot) do list[#list + 1] = h end
    for h in pairs(self.sleepers) do list[#list + 1] = h end
    for i = self.qhead, self.qtail do list[#list + 1] = self.queue[i] end
    if #list == 0 then break end
    for _, h in ipairs(list) do h:cancel() end
  end
  self.core:close()
  self.wire:close()
  if self.wakeup then self.wakeup() end
end

--- A call (from @{Loop:start}).
-- @type Handle

--- Whether the call has finished.
-- @treturn boolean
function Handle:done() return self.state == "done" end

--- What the call returned: its values (or nil, the error it raised); nothing while not done.
-- @return the values
function Handle:result()
  if self.state ~= "done" then return end
  return unpack(self.values, 1, self.values.n)
end

--- Cancels the call and runs it to its end at once.
-- A request in flight is stopped: the call's code gets the transport error `cancelled`, maybe
-- sent when a byte of it may have left (a charging call: an unknown outcome, `retryable =
-- false`; a journaled gateway leaves the payment `unknown` for the sweeper). Later requests and
-- backoffs of the call end at once, without sending. The callback runs.
-- @treturn boolean true when the call was still pending
function Handle:cancel()
  local self_loop = self.loop
  if self.state == "done" then return false end
  self.cancelled = true
  local state = self.state
  if state == "wire" or state == "curl" then -- in flight on the wire loop, or on libcurl's
    local maybe
    if state == "wire" then
      maybe = self_loop.wire:cancel(self.id)
      self_loop.wslot[self.slot] = nil
      self_loop.nwire = self_loop.nwire - 1
    else
      maybe = self_loop.core:cancel(self.id)
      self_loop.cinflight[self.id] = nil
      self_loop.ncurl = self_loop.ncurl - 1
    end
    self.id = false
    runnable(self_loop, self, cancelled(maybe))
  elseif state == "queued" then
    self.transport, self.req = false, false
    runnable(self_loop, self, cancelled(false))
  elseif state == "sleep" then
    self_loop.sleepers[self] = nil
    self_loop.nsleep = self_loop.nsleep - 1
    runnable(self_loop, self, WAKE)
  end
  drain(self_loop)
  return true
end

return _M
