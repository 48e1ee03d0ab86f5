-- The fault-cell comparison that spec/http_fastpath_spec.lua (outside nginx) and
-- spec/http_nginx_fastpath_spec.lua (inside nginx, where this module is required too) share:
-- the fault server's cells, the call each cell and variant makes, what a call gave (without
-- what differs by nature) and the loop that runs every way of every case and compares them
-- with the first way's.
local M = {}

-- every cell of the fault server (spec/support/fault_server.lua)
M.CELLS = { "ok", "refused", "reset_before", "reset_mid", "hang", "s500", "s503", "garbage",
  "truncated", "oversize", "bad_chunk", "dup_cl", "bad_status", "drop_second", "idle_close" }
M.VARIANTS = 4

--- The call of case n (a cell, a variant 1-4): `method` (GET for variant 4, else POST with a
-- body that differs per case and variant), `idempotent` (true for 2 and 4, false for 3, nil
-- for 1), `url` (base: the fault server's URL with a trailing slash; refused: the URL of the
-- port nothing listens on) and `calls`, how many calls the case makes in a row (two for the
-- cells that answer a second call on the same connection differently).
function M.case(cell, variant, n, base, refused)
  local idempotent = (variant % 2 == 0) or nil
  if variant == 3 then idempotent = false end
  local method = variant == 4 and "GET" or "POST"
  return {
    method = method, idempotent = idempotent,
    body = method == "POST" and ('{"n":' .. n .. ',"s":"' .. string.rep("x", variant * 37) .. '"}') or nil,
    url = cell == "refused" and refused or (base .. cell .. "/p/" .. n .. "?v=" .. variant),
    calls = (cell == "drop_second" or cell == "idle_close") and 2 or 1,
  }
end

--- The headers of a call of case n: a new table each time (a call may write into its own).
function M.headers(n)
  return { ["Content-Type"] = "application/json", ["X-N"] = tostring(n) }
end

--- What a call gave, without what differs by nature: the answer's Date, the milliseconds in
-- libcurl's timeout messages. ids: with the correlation id sent.
function M.outcome(res, err, ids)
  local o
  if res then
    local h = {}
    for k, v in pairs(res.headers or {}) do if k ~= "date" then h[k] = v end end
    o = { status = res.status, body = res.body, headers = h, json = res.json, request_id = res.request_id }
  else
    o = { kind = err.kind, code = err.code, retryable = err.retryable, op = err.op,
      message = (err.message:gsub("%d+ milliseconds", "N milliseconds")) }
  end
  if ids then o.correlation_id = (res or err).correlation_id end
  return o
end

--- For every cell and variant (case n, counted from 1): run(way, cell, variant, n) for each of
-- ways, in order; what each gives must be the same as what the first gave (luassert's
-- assert.same, busted's; required here, not inside nginx). Returns the number of cases.
function M.compare(ways, run)
  local assert = require "luassert"
  local n = 0
  for _, cell in ipairs(M.CELLS) do
    for variant = 1, M.VARIANTS do
      n = n + 1
      local seen = {}
      for i, way in ipairs(ways) do seen[i] = run(way, cell, variant, n) end
      for i = 2, #seen do
        assert.same(seen[1], seen[i], cell .. " variant " .. variant .. " mode " .. i)
      end
    end
  end
  return n
end

return M
