--- paykit.errors: the one error type.
--
-- kind is one of: config, validation, transport, timeout, provider, signature.
-- code is stable (tests and callers may branch on it); message is for a person.
-- A bank decline is NOT an error: providers return a result with status "failed".
-- Every text field is scrubbed with paykit.redact on the way in, so an error never
-- carries a card number, CVC, password or secret.
--
-- `errors.KINDS` is the set of kinds (`KINDS.validation == true`, ...).
-- An error is a table with the fields of @{new} and a `__tostring`:
-- `"paykit KIND error [FIELD CODE]: MESSAGE"` (`[CODE]` when there is no field).
-- @module paykit.errors
-- @usage
--   local errors = require "paykit.errors"
--   local err = errors.validation("card.number", "invalid_luhn", "card number fails the Luhn check")
--   tostring(err) --> "paykit validation error [card.number invalid_luhn]: card number fails the Luhn check"
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

-- The ids of the last provider answer seen by each coroutine (paykit.http puts them here),
-- taken by the next result (paykit.gateway.result) or provider error built in that coroutine.
-- A slot `{r = request_id, c = correlation_id}` per coroutine, made once and refilled (weak
-- keys: it goes with its coroutine), the main thread's held here: no table per answer, and
-- for the main thread no lookup by thread (a write keyed by a thread costs more than
-- the slot's two fields). An id that is not there is false in the slot (a field set to nil
-- and then to a value takes Lua 5.4's slow way each time).
local running = coroutine.running
local MAIN_SLOT = { r = false, c = false }
local slots = setmetatable({}, { __mode = "k" })

--- Notes the ids of a provider answer for the result or error built from it.
-- paykit.http calls this when a request gets an answer; the next @{take_ids} in the same
-- coroutine (a provider error from @{new}, or `paykit.gateway.result`) takes them, so a
-- provider needs no code to carry them.
-- @tparam ?string request_id the provider's request id of the answer
-- @tparam ?string correlation_id the correlation id paykit sent
function _M.remember_ids(request_id, correlation_id)
  -- (running(): nil in LuaJIT's main thread, the main thread and true in Lua 5.4's)
  local co, main = running()
  local slot = MAIN_SLOT
  if co ~= nil and not main then
    slot = slots[co]
    if slot == nil then
      if request_id == nil and correlation_id == nil then return end
      slot = {}
      slots[co] = slot
    end
  end
  slot.r, slot.c = request_id or false, correlation_id or false
end

--- Takes (and forgets) the ids noted by @{remember_ids} in the running coroutine.
-- @treturn ?string request_id
-- @treturn ?string correlation_id
function _M.take_ids()
  local co, main = running()
  local slot = MAIN_SLOT
  if co ~= nil and not main then
    slot = slots[co]
    if slot == nil then return nil, nil end
  end
  local request_id, correlation_id = slot.r, slot.c
  if not request_id and not correlation_id then return nil, nil end
  slot.r, slot.c = false, false
  return request_id or nil, correlation_id or nil
end

-- Kinds that describe an answer (or the lack of one) of a provider: these carry the ids.
local ANSWER_KINDS = { provider = true, transport = true, timeout = true }

-- The running coroutine's slot, made when it has none (for paykit.batch: a worker takes its
-- slot once and empties it before each task, `slot.r, slot.c = false, false`, instead of a
-- take_ids per task: no running() and no lookup by thread per task). Not for the main thread
-- (its slot is MAIN_SLOT, not reached by thread). Internal ("_": outside the reference).
function _M._ids_slot()
  local co = running()
  local slot = slots[co]
  if slot == nil then
    slot = { r = false, c = false }
    slots[co] = slot
  end
  return slot
end

--- A new error.
-- errors.new{kind=, code=, message=, field=, retryable=, status=, provider_code=,
--            provider_message=, provider=, op=, request_id=, correlation_id=}
-- @tparam table t the fields:
--
--  * `kind` (required) one of `KINDS`
--  * `code` stable code (default: the kind)
--  * `message` for a person (default: "KIND error")
--  * `field` the input field at fault, e.g. "card.number"
--  * `retryable` true when the same call may be made again (default false)
--  * `status` the HTTP status, when there was an answer
--  * `provider`, `op` the provider name and operation, e.g. "moka", "moka.capture"
--  * `provider_code`, `provider_message` what the provider said
--  * `request_id` the provider's id of the answer (a header or JSON member, see
--    `paykit.http.new`), `correlation_id` the id paykit sent with the request: given, or for a
--    provider, transport or timeout error taken from the last answer of this coroutine
--    (@{take_ids}); nil when there is none
--
-- message, provider_code and provider_message are scrubbed with `paykit.redact.text`.
-- @treturn table the error (`errors.is(err) == true`)
-- @raise when t is not a table or kind is unknown (misuse)
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
    request_id = t.request_id, correlation_id = t.correlation_id,
  }
  if ANSWER_KINDS[kind] and e.request_id == nil and e.correlation_id == nil then
    e.request_id, e.correlation_id = _M.take_ids()
  end
  return setmetatable(e, Error)
end

--- Whether x is a paykit error.
-- @param x any value
-- @treturn boolean
function _M.is(x)
  return getmetatable(x) == Error
end

--- A validation error: the caller's input is wrong.
-- @tparam string field the field at fault, e.g. "card.number"
-- @tparam string code stable code, e.g. "invalid_luhn"
-- @tparam string message for a person
-- @treturn table the error
function _M.validation(field, code, message)
  return _M.new { kind = "validation", field = field, code = code, message = message }
end

--- A config error: an option of the instance is missing or wrong.
-- @tparam string field the option at fault
-- @tparam string code stable code, e.g. "required"
-- @tparam string message for a person
-- @treturn table the error
function _M.config(field, code, message)
  return _M.new { kind = "config", field = field, code = code, message = message }
end

--- A signature error: a return or notification is not signed, malformed or forged.
-- @tparam string code stable code, e.g. "bad_signature"
-- @tparam string message for a person
-- @treturn table the error
function _M.signature(code, message)
  return _M.new { kind = "signature", code = code, message = message }
end

--- A provider error: the provider refused the request or answered something unusable.
-- @tparam table t the fields of @{new} (kind is set to "provider"; t is not modified)
-- @treturn table the error
function _M.provider(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  c.kind = "provider"
  return _M.new(c)
end

--- A transport error: the request did not get a usable answer.
-- @tparam string code stable code, e.g. "connect"
-- @tparam string message for a person
-- @tparam[opt] boolean retryable true when the request may be sent again
-- @treturn table the error
function _M.transport(code, message, retryable)
  return _M.new { kind = "transport", code = code, message = message, retryable = retryable }
end

--- A timeout error: no answer in time (the outcome may be unknown).
-- @tparam string code stable code, e.g. "timeout"
-- @tparam string message for a person
-- @tparam[opt] boolean retryable true when the request may be sent again
-- @treturn table the error
function _M.timeout(code, message, retryable)
  return _M.new { kind = "timeout", code = code, message = message, retryable = retryable }
end

return _M
