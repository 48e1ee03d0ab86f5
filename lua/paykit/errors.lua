-- paykit.errors: the one error type.
--
--   local errors = require "paykit.errors"
--   local err = errors.validation("card.number", "invalid_luhn", "card number fails the Luhn check")
--   tostring(err) --> "paykit validation error [card.number invalid_luhn]: card number fails the Luhn check"
--
-- kind is one of: config, validation, transport, timeout, provider, signature.
-- code is stable (tests and callers may branch on it); message is for a person.
-- A bank decline is NOT an error: providers return a result with status "failed".
-- Every text field is scrubbed with paykit.redact on the way in, so an error never
-- carries a card number, CVC, password or secret.
local redact = require "paykit.redact"

local _M = {}

local KINDS = {
  config = true, validation = true, transport = true, timeout = true,
  provider = true, signature = true,
}
_M.KINDS = KINDS

local Error = {}
Error.__index = Error

function Error.__tostring(e)
  local where = e.field and (e.field .. " " .. e.code) or e.code
  return "paykit " .. e.kind .. " error [" .. where .. "]: " .. e.message
end

local function scrub(s)
  if s == nil then return nil end
  return redact.text(tostring(s))
end

-- errors.new{kind=, code=, message=, field=, retryable=, status=, provider_code=,
--            provider_message=, provider=, op=}
function _M.new(t)
  if type(t) ~= "table" then error("errors.new expects a table", 2) end
  local kind = t.kind
  if not KINDS[kind] then error("errors.new: unknown kind " .. tostring(kind), 2) end
  local e = {
    kind = kind,
    code = tostring(t.code or kind),
    message = scrub(t.message) or kind .. " error",
    field = t.field and tostring(t.field) or nil,
    retryable = t.retryable and true or false,
    status = t.status,
    provider = t.provider,
    op = t.op,
    provider_code = scrub(t.provider_code),
    provider_message = scrub(t.provider_message),
  }
  return setmetatable(e, Error)
end

function _M.is(x)
  return getmetatable(x) == Error
end

function _M.validation(field, code, message)
  return _M.new { kind = "validation", field = field, code = code, message = message }
end

function _M.config(field, code, message)
  return _M.new { kind = "config", field = field, code = code, message = message }
end

function _M.signature(code, message)
  return _M.new { kind = "signature", code = code, message = message }
end

function _M.provider(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  c.kind = "provider"
  return _M.new(c)
end

function _M.transport(code, message, retryable)
  return _M.new { kind = "transport", code = code, message = message, retryable = retryable }
end

function _M.timeout(code, message, retryable)
  return _M.new { kind = "timeout", code = code, message = message, retryable = retryable }
end

return _M
