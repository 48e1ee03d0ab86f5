--- paykit.store.base: what the stores share, below `paykit.store` and its backends
-- (`paykit.store.memory`, `.shdict`, `.redis`), which `paykit.store` loads: the error a store
-- answers, and the transition on decoded records for the stores that run it in Lua.
-- `paykit.store` re-exports both (`store.error`, `store.apply`).
-- @module paykit.store.base
local errors = require "paykit.errors"

local _M = {}
local cjson

--- The error a store answers when its backend did not answer.
-- @tparam string store the store's name ("redis", "shdict")
-- @tparam string message what happened (never a password)
-- @tparam[opt] string code the backend's code ("timeout", "WRONGPASS", ...)
-- @treturn table a paykit error: timeout/`store_timeout`, config/`store_auth` or
--   transport/`store_unavailable`
function _M.error(store, message, code)
  local text = "paykit store (" .. store .. "): " .. tostring(message)
  if code == "timeout" then return errors.timeout("store_timeout", text, false) end
  if code == "WRONGPASS" or code == "NOAUTH" or code == "NOPERM" then
    return errors.config("store", "store_auth", text)
  end
  return errors.new { kind = "transport", code = "store_unavailable", message = text }
end

--- Applies a transition to record text (for stores that run it in Lua).
-- @tparam string text the record (JSON)
-- @treturn boolean|nil true when applied, false on conflict, nil when text is not a record
-- @treturn string the record after (or as it is)
function _M.apply(text, field, from, to, patch)
  cjson = cjson or require("cjson").new()
  local ok, rec = pcall(cjson.decode, text)
  if not ok or type(rec) ~= "table" then return nil, text end
  local cur = rec[field]
  if type(cur) ~= "string" or not from[cur] then return false, text end
  for k, v in pairs(patch or {}) do rec[k] = v end
  rec[field] = to
  return true, cjson.encode(rec)
end

return _M
