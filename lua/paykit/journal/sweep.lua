--- paykit.journal.sweep: resolves payments stuck without an outcome.
--
-- `jgw:sweep{older_than = 60, limit = 100}` on a journaled gateway (`paykit.journal.wrap`):
--
--  1. takes the store lock `<prefix>:sweep:<provider>` (`lock_ttl`, 60 s), so that one sweeper
--     at a time works on a provider's payments, whatever the number of workers and servers
--     (another caller gets `report.skipped = "locked"`);
--  2. reads up to `limit` open payments from the journal's index (oldest first: by creation,
--     or by the last sweep that could not resolve them, which sends them to the back) that are
--     more than `older_than` seconds old and, for each record not touched for `older_than`
--     seconds:
--     * `created` (its process died before sending): nothing was sent -> `refused`;
--     * `sent`, `redirect`, `pending`, `unknown`, `authorized`: asks the provider's status
--       (all of them at once through `paykit.batch`: libcurl multi outside nginx, light
--       threads inside) and moves the record to what the provider says; a paid one is granted;
--     * no status call (Zippy; MoCoPay before its session is known): left to its notices, and
--       `expired` once `expire_after` seconds (24 h by default) have passed since its creation;
--     * an outcome already (paid, failed, ...): dropped from the index; a paid one whose grant
--       never finished (its process died) is granted now, with the same token.
--  3. answers a report: `checked`, `resolved` ({reference=, from=, to=}, ...), `refused`,
--     `expired`, `granted`, `unresolved`, `errors` ({reference=, error=}, ...).
--
-- Inside nginx, `sweep.every(jgw, seconds, opts)` starts an `ngx.timer.every` (call it from
-- init_worker_by_lua in every worker: the store lock lets one of them work at a time).
-- @module paykit.journal.sweep
local batch = require "paykit.batch"
local core = require "paykit.core"
local states = require "paykit.journal.states"

local _M = {}

--- Sweeps once (see the module description).
-- @tparam table jgw a journaled gateway
-- @tparam[opt] table opts `older_than` (seconds, 60), `limit` (100), `lock_ttl` (seconds, 60),
--   `max_in_flight` (paykit.batch, 16)
-- @treturn table the report
-- @return[2] nil
-- @return[2] a store error (the lock or the index could not be read)
function _M.run(jgw, opts)
  opts = opts or {}
  local j, provider = jgw.journal, jgw.provider
  local older = (opts.older_than or 60) * 1000
  local limit = opts.limit or 100
  local report = { checked = 0, resolved = {}, refused = 0, expired = 0, granted = 0, unresolved = 0, errors = {} }
  local lock_key, owner = j.prefix .. ":sweep:" .. provider, j.owner .. "-sweep-" .. core.random_hex(4)
  local locked, lerr = j.store:lock(lock_key, owner, opts.lock_ttl or 60)
  if locked == nil then return nil, lerr end
  if not locked then report.skipped = "locked"; return report end

  local now = j.clock()
  local refs, ierr = j.store:index_range(j:index(provider), now - older, limit)
  if not refs then j.store:unlock(lock_key, owner); return nil, ierr end
  local asks, tasks = {}, {}
  -- a payment that cannot be resolved now goes to the back of the index (its score becomes
  -- now), so that it does not hold the first `limit` places against newer ones
  local function requeue(ref)
    report.unresolved = report.unresolved + 1
    if j.store:index_remove(j:index(provider), ref) then j.store:index_add(j:index(provider), ref, now) end
  end
  for _, ref in ipairs(refs) do
    report.checked = report.checked + 1
    local rec, gerr = j:get(provider, ref)
    if rec == nil then
      if gerr then report.errors[#report.errors + 1] = { reference = ref, error = gerr }
      else j.store:index_remove(j:index(provider), ref) end
    elseif rec.state == "paid" and rec.grant ~= "done" and jgw.grant then
      -- its grant never finished (a process died inside it, or the grant failed)
      if jgw:fulfil(ref) == "granted" then report.granted = report.granted + 1 else requeue(ref) end
    elseif states.FINAL[rec.state] or not states.OPEN[rec.state] then
      j.store:index_remove(j:index(provider), ref)
    elseif (rec.updated_at or 0) > now - older then
      requeue(ref) -- touched recently: its process may still be at it
    elseif rec.state == "created" then
      if j:move(provider, ref, "refused", { note = "left in created: never sent" }) then
        report.refused = report.refused + 1
        report.resolved[#report.resolved + 1] = { reference = ref, from = "created", to = "refused" }
      end
    else
      local q = jgw.adapter.status_query(rec)
      if q == nil then
        if now - (rec.created_at or now) >= jgw.expire_after * 1000 then
          if j:move(provider, ref, "expired", { note = "no outcome within expire_after" }) then
            report.expired = report.expired + 1
            report.resolved[#report.resolved + 1] = { reference = ref, from = rec.state, to = "expired" }
          end
        else
          requeue(ref)
        end
      else
        asks[#asks + 1] = rec
        local keep = jgw.adapter.status_keep(rec)
        tasks[#tasks + 1] = function() return jgw.gw:status(q, keep) end
      end
    end
  end
  if #tasks > 0 then
    local results, errs = batch(tasks, { max_in_flight = opts.max_in_flight or 16 })
    for i, rec in ipairs(asks) do
      local r = results[i]
      if r then
        local before = rec.state
        jgw:record(r, rec.reference)
        local after = r.journal and r.journal.state
        if after and after ~= before then
          report.resolved[#report.resolved + 1] = { reference = rec.reference, from = before, to = after }
        end
        if not states.FINAL[after or before] then requeue(rec.reference) end
        if r.journal and r.journal.grant == "granted" then report.granted = report.granted + 1 end
      else
        report.errors[#report.errors + 1] = { reference = rec.reference, error = errs[i] }
        if now - (rec.created_at or now) >= jgw.expire_after * 1000
          and j:move(provider, rec.reference, "expired", { note = "status failed past expire_after" }) then
          report.expired = report.expired + 1
        else
          requeue(rec.reference)
          report.unresolved = report.unresolved - 1 -- counted as an error
        end
      end
    end
  end
  j.store:unlock(lock_key, owner)
  return report
end

--- Inside nginx: sweeps every `seconds` from a timer in this worker (the store lock keeps it to
-- one worker and server at a time).
-- @tparam table jgw a journaled gateway
-- @tparam number seconds the interval
-- @tparam[opt] table opts the options of @{run}, and `on_report` (function(report, err))
-- @treturn boolean true when the timer started
-- @return[2] nil
-- @return[2] nginx's error
function _M.every(jgw, seconds, opts)
  local ngx = rawget(_G, "ngx")
  opts = opts or {}
  return ngx.timer.every(seconds, function(premature)
    if premature then return end
    local ok, report, err = pcall(_M.run, jgw, opts)
    if not ok then err, report = report, nil end
    if opts.on_report then opts.on_report(report, err) end
  end)
end

return _M
