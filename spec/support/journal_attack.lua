-- What the journal attack specs (spec/attack_journal_spec.lua, spec/attack_mocopay_bind_spec.lua,
-- spec/attack_mocopay_sweep_spec.lua) share: the sandbox started for the file, fresh references,
-- the sandbox's gateways, and a journaled gateway whose grant hook records what it granted.
--   local atk = require "spec.support.journal_attack"
--   local sandbox = atk.sandbox()            -- in a describe:
--   lazy_setup(sandbox.start); lazy_teardown(sandbox.stop)
--   local jg, j, grants = atk.journaled(atk.mocopay(sandbox.base))
local paykit = require "paykit"
local core = require "paykit.core"
local journal = require "paykit.journal"
local sb = require "spec.support.sandbox"

local M = {}

--- The sandbox of a spec file: `start` (for lazy_setup) sets `base` to its URL, `stop` (for
--- lazy_teardown) stops it. (busted's lazy_setup is the spec file's, not a global.)
function M.sandbox()
  local t = {}
  function t.start() t.base = sb.start() end
  function t.stop() sb.stop() end
  return t
end

--- A reference no earlier run used: tag-<12 hex>.
function M.ref(tag) return (tag or "atk") .. "-" .. core.random_hex(6) end

--- The sandbox's Moka dealer, and a counter of the requests it sent ({n =}).
function M.moka(base)
  local counter = { n = 0 }
  local gw = paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass",
    base_url = base .. "/moka", hooks = { before = function() counter.n = counter.n + 1 end } }
  return gw, counter
end

--- The sandbox's MoCoPay application.
function M.mocopay(base)
  return paykit.mocopay { api_key = "sandbox-app", api_secret = "sandbox-secret", base_url = base .. "/mocopay" }
end

--- gw wrapped by a new journal (memory store) whose grant records each grant: by the
--- record's reference, or with by_token by the grant's token. Answers jg, j, grants.
function M.journaled(gw, by_token)
  local grants = {}
  local j = journal.new {}
  local jg = j:wrap(gw, { grant = function(rec, token)
    grants[#grants + 1] = by_token and token or rec.reference
    return true
  end })
  return jg, j, grants
end

return M
