--- paykit.journal.states: the journal's state table and its one error, below the journal and
-- the modules it uses (paykit.journal.wrap, paykit.journal.sweep), which need them without
-- needing the journal itself. `paykit.journal` re-exports every field (`journal.STATES`, ...).
-- @module paykit.journal.states
local errors = require "paykit.errors"

local _M = {}

--- Every state, in the order of the table in `paykit.journal`.
_M.STATES = { "created", "sent", "redirect", "pending", "unknown", "authorized", "paid", "failed", "refused", "expired" }

local function set(list) local t = {}; for _, v in ipairs(list) do t[v] = true end; return t end

--- The moves allowed: `NEXT[from][to]`.
_M.NEXT = {
  created = set { "sent", "refused" },
  sent = set { "redirect", "pending", "authorized", "paid", "failed", "unknown", "refused" },
  redirect = set { "redirect", "pending", "authorized", "paid", "failed", "expired" },
  pending = set { "pending", "authorized", "paid", "failed", "expired" },
  unknown = set { "unknown", "redirect", "pending", "authorized", "paid", "failed", "expired" },
  authorized = set { "paid", "failed" },
  paid = {}, failed = {},
  refused = set { "sent" },
  expired = set { "paid", "failed" },
}

--- States a sweeper looks at: the outcome is not known yet.
_M.OPEN = set { "created", "sent", "redirect", "pending", "unknown", "authorized" }
--- States with an outcome (the index forgets them).
_M.FINAL = set { "paid", "failed", "refused", "expired" }

--- The error of a journal that cannot be written or read: nothing was sent.
-- @tparam table err the store's error
-- @tparam string what "written", "read", "marked as sent"
-- @treturn table a paykit error, code `journal_unavailable` (kind timeout or transport; `cause`
--   is the store's error)
function _M.unavailable(err, what)
  local e = errors.new {
    kind = err and err.kind == "timeout" and "timeout" or "transport", code = "journal_unavailable",
    message = "the payment journal could not be " .. what .. " (" .. (err and err.message or "no answer")
      .. "); nothing was sent",
  }
  e.cause = err
  return e
end

return _M
