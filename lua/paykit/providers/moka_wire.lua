--- paykit.providers.moka_wire: Moka's envelope on the kit's one `commit`, and how answers are read.
--
-- Every Moka call is a JSON POST of two blocks, the authentication block (DealerCode,
-- Username, Password, CheckKey) and the request block, sent through `paykit.kit.wire.commit` (so the HTTP statuses map to
-- the kit's one vocabulary: 5xx `server_error`, 401/403 `config` `invalid_credentials`, 404
-- `not_found`, ...). The kit's hooks (`WIRE`) say what Moka's answers mean: `success_from` is
-- the outer ResultCode "Success", `message_from` its ResultMessage and code,
-- `authorization_from` Data.VirtualPosOrderId. Money members (`EXACT`) are read by
-- `paykit.kit.json` as their literal text, never through a float.
--
-- Answers are read fail-closed: a 2xx without the envelope is `moka.invalid_response`; a
-- refusing ResultCode is the kind and code of `paykit.providers.moka_codes.result`.
-- @module paykit.providers.moka_wire
-- @usage
--   local wire = require "paykit.providers.moka_wire"
--   local data, answer = wire.call(gw, "capture", "/PaymentDealer/DoCapture", payload, false)
local errors = require "paykit.errors"
local gateway = require "paykit.gateway"
local kwire = require "paykit.kit.wire"
local json = require "paykit.kit.json"
local codes = require "paykit.providers.moka_codes"
local cjson_null = require("cjson").null

local _M = {}

--- The JSON members whose numbers are money (kept as text by `paykit.kit.json`).
_M.EXACT = { Amount = true, OrderAmount = true, UnitPrice = true, RefAmount = true, AuthAmount = true,
  PerInstallmentAmount = true, FirstInstallmentAmount = true, DealerCommissionAmount = true }

--- What the kit's commit decodes Moka's answers with (`paykit.kit.json.read_opts` of `EXACT`):
-- a lazily decoded `result.raw` is read with the same.
local READ_OPTS = json.read_opts(_M.EXACT)
_M.READ_OPTS = READ_OPTS

--- Nil for JSON null (either reader's) and nil, else v.
-- @param v a decoded value
-- @return v or nil
local json_null = json.null
function _M.denull(v)
  if v == nil or v == json_null or v == cjson_null then return nil end
  return v
end
local denull = _M.denull

local function envelope(answer) return type(answer) == "table" and type(answer.ResultCode) == "string" end

local byte, match = string.byte, string.match
-- s without leading and trailing white space (%s); s itself when it has none (the usual case)
local function trim(s)
  local a, z = byte(s, 1), byte(s, -1)
  if a and a > 32 and z > 32 then return s end
  return match(s, "^%s*(.-)%s*$")
end

--- The kit's wire hooks for Moka (`paykit.kit.wire.commit`).
-- @table WIRE
_M.WIRE = {
  exact = _M.EXACT,
  success_from = function(_, answer)
    return envelope(answer) and trim(answer.ResultCode) == "Success"
  end,
  message_from = function(_, answer)
    if not envelope(answer) then return nil end
    local pm = denull(answer.ResultMessage)
    return pm ~= nil and tostring(pm) or nil, trim(answer.ResultCode)
  end,
  authorization_from = function(_, answer)
    local data = envelope(answer) and denull(answer.Data)
    return type(data) == "table" and denull(data.VirtualPosOrderId) or nil
  end,
}

-- The authentication and request block names of a path.
local function blocks(path)
  if path:find("^/DealerCustomer/") then return "DealerCustomerAuthentication", "DealerCustomerRequest" end
  if path == "/PaymentDealer/GetBankCardInformation" then return "PaymentDealerAuthentication", "BankCardInformationRequest" end
  return "PaymentDealerAuthentication", "PaymentDealerRequest"
end

--- The authentication and request block names of an API path.
-- @tparam string path
-- @treturn string the authentication block's name
-- @treturn string the request block's name
-- @function blocks
_M.blocks = blocks

-- path -> the body's shared member list {auth block name, request block name}
local body_keys = {}

--- The body of a call: the authentication block and the request block.
-- @tparam table self the instance (its `_auth` closure)
-- @tparam string path the API path
-- @tparam table payload the request block (a `paykit.gateway.object`)
-- @treturn table the body (a `paykit.gateway.object`)
function _M.body(self, path, payload)
  local keys = body_keys[path]
  if not keys then
    keys = gateway.shared_keys { blocks(path) }
    body_keys[path] = keys
  end
  local auth = self._auth_json and self._auth_json() or self._auth()
  return gateway.object_of(keys, { auth, payload })
end

-- op -> the info line of a good answer ("moka.capture ok"), made once per operation
local ok_lines = setmetatable({}, { __index = function(t, op)
  local line = "moka." .. op .. " ok"
  t[op] = line
  return line
end })

--- Reads a committed answer: Data (nil when null) and the answer, or the error it carries.
-- @tparam table self the instance
-- @tparam string op the operation's name
-- @param answer the decoded answer (from `paykit.kit.wire.commit`)
-- @tparam table info its info (`success`, `code`, `message`, `status`)
-- @return Data (nil when null)
-- @treturn table the answer
-- @return[2] nil
-- @return[2] a provider error (`moka.invalid_response`) or the ResultCode's error
function _M.open(self, op, answer, info)
  if info.status ~= 200 then
    -- Moka answers 200 and nothing else: another 2xx is no answer to read (fail closed), in
    -- the kit's vocabulary (`unexpected_status`)
    local e = kwire.http_error { provider = "moka", title = "Moka", op = "moka." .. op, status = info.status,
      url = self.base_url, idempotent = false }
    self.log("error", "moka." .. op .. " failed: " .. tostring(e))
    return nil, e
  end
  if not envelope(answer) then
    local e = errors.provider { code = "moka.invalid_response", status = info.status, op = "moka." .. op,
      provider = "moka", message = "Moka's answer to " .. op .. " is not the expected JSON envelope" }
    self.log("error", "moka." .. op .. " failed: " .. tostring(e))
    return nil, e
  end
  if not info.success then
    local rc, pm = info.code, info.message
    local kind, code, message = codes.result(rc)
    if code == "moka.invalid_auth_request" and self._auth_ok then
      -- these credentials were accepted before, so the request object is the likely fault
      kind, code, message = codes.invalid_request_after_auth()
    end
    local e = errors.new { kind = kind, code = code, op = "moka." .. op, status = info.status,
      provider = "moka", provider_code = rc, provider_message = pm,
      message = message .. (pm and pm ~= "" and (" (" .. pm .. ")") or "") }
    self.log("warn", "moka." .. op .. " refused: " .. rc)
    return nil, e
  end
  if not self._auth_ok then self._auth_ok = true end
  self.log("info", ok_lines[op])
  return denull(answer.Data), answer
end

--- Moka's code for the kit's `invalid_response` (a 2xx that is not JSON): to Moka's callers
-- the same as any other answer that cannot be read, `moka.invalid_response`.
-- @param err an error from `paykit.kit.wire.commit` (or nil)
-- @return err
function _M.own(err)
  if type(err) == "table" and err.kind == "provider" and err.code == "invalid_response" then
    err.code = "moka.invalid_response"
  end
  return err
end

--- One authenticated call: POST {base}{path} through `paykit.kit.wire.commit`, then @{open}.
-- @tparam table self the instance
-- @tparam string op the operation name for logs and errors, e.g. "capture"
-- @tparam string path the API path, e.g. "/PaymentDealer/DoCapture"
-- @tparam table|string payload the request block (a `paykit.gateway.object`), or the whole
--   body as JSON text (`paykit.providers.moka_request.payment_body`'s)
-- @tparam boolean idempotent whether a request that may have been sent can be retried
-- @return Data of the answer (nil when null)
-- @treturn table the decoded answer
-- @return[2] nil
-- @return[2] a transport, HTTP (the kit's vocabulary) or provider error
function _M.call(self, op, path, payload, idempotent)
  local answer, info
  if type(payload) == "string" then
    -- the whole body already written (a compiled shape's): the headers commit gives a JSON body
    answer, info = kwire.commit(self, op, { method = "POST", path = path, body = payload,
      idempotent = idempotent and true or false, url = nil,
      headers = { ["Content-Type"] = "application/json", Accept = "application/json" }, own_headers = true })
  else
    -- url and headers (set by commit) have their room from the start: no rehash per call
    answer, info = kwire.commit(self, op, { method = "POST", path = path, body = _M.body(self, path, payload),
      idempotent = idempotent and true or false, url = nil, headers = nil })
  end
  if answer == nil then
    self.log("error", "moka." .. op .. " failed: " .. tostring(info))
    return nil, _M.own(info)
  end
  return _M.open(self, op, answer, info)
end

local pick, send_json_text = json.pick, kwire.send_json_text
-- the instance's log when it has no logger (nothing to call)
local NOOP = require("paykit.http").NOOP_LOGGER

--- One authenticated call whose good answer is read through a map (`paykit.kit.json.map`)
-- instead of decoded whole: on a 200 answer whose ResultCode is "Success" it returns true,
-- the text of the answer (for a lazily decoded `result.raw`) and the values at the map's
-- paths after its first, which must be "ResultCode"; anything else (an error, another status,
-- a refusing or unreadable answer) is read as @{call} reads it and gives the same error.
-- @tparam table self the instance
-- @tparam string op
-- @tparam string path
-- @tparam table|string payload the request object, or the whole body already written
-- @tparam boolean idempotent
-- @tparam userdata map from `paykit.kit.json.map` with `EXACT`, "ResultCode" first
-- @tparam[opt] boolean is_text true when payload is the body text (`payment_body`'s fourth
--   value), else payload is the request object
-- @return true
-- @treturn string the answer's text
-- @return ... the values at the map's other paths (up to 6)
-- @return[2] nil
-- @return[2] err
function _M.call_pick(self, op, path, payload, idempotent, map, is_text)
  local res, req, err
  if is_text then
    -- the whole body already written (a compiled shape's), as @{call} takes it
    res, req = send_json_text(self, op, path, payload, idempotent)
    if not res then err = req end
  else
    req = { method = "POST", path = path, body = _M.body(self, path, payload),
      idempotent = idempotent and true or false, url = nil, headers = nil, op = nil, own_headers = nil }
    res, err = kwire.send(self, op, req)
  end
  if not res then
    self.log("error", "moka." .. op .. " failed: " .. tostring(err))
    return nil, _M.own(err)
  end
  local body = res.body
  if res.status == 200 and type(body) == "string" then
    local kind, rc, a, b, c, d, e, f = pick(body, map)
    if kind == "object" and (rc == "Success" or (type(rc) == "string" and trim(rc) == "Success")) then
      if not self._auth_ok then self._auth_ok = true end
      local log = self.log
      if log ~= NOOP then log("info", ok_lines[op]) end
      return true, body, a, b, c, d, e, f
    end
  end
  -- the general reading: its errors (the fast reading took only a good answer)
  local answer, info = kwire.answer(self, res, req)
  if answer == nil then
    self.log("error", "moka." .. op .. " failed: " .. tostring(info))
    return nil, _M.own(info)
  end
  local data, e2 = _M.open(self, op, answer, info)
  if data == nil and e2 ~= answer then return nil, e2 end
  -- a good answer the map did not take cannot be (the same text, the same test)
  return nil, _M.invalid(op, "could not be read")
end

--- A result of Moka's (`paykit.kit.result`: its amount `money.format`ed). An amount that is
-- not exact in its currency is left out (a comparison with it then fails closed), never a crash.
-- @tparam table t the result's fields
-- @treturn table the result
-- @tparam[opt] boolean owned t is a fresh table of the caller's whose amount is already
--   `money.format`ed (a checked request's): it becomes the result as it is (no copy, no re-format)
-- @tparam[opt] string raw_text the answer's text: `raw` decoded from it on first read
--   (`paykit.gateway.result`)
function _M.result(t, owned, raw_text)
  t.provider = "moka"
  -- formatted here once (what kit.result would do again), nil when not exact
  if t.amount ~= nil and not owned then t.amount = json.amount(t.amount, t.currency) end
  return gateway.result(t, owned, raw_text, raw_text and READ_OPTS or nil)
end

--- The error for a Success answer that lacks what paykit needs to read it.
-- @tparam string op
-- @tparam string message what is missing
-- @tparam boolean maybe_done whether the call may have moved money
-- @treturn table a provider error `moka.invalid_response`
function _M.invalid(op, message, maybe_done)
  return errors.provider { code = "moka.invalid_response", op = "moka." .. op, retryable = false, provider = "moka",
    message = "Moka's answer to " .. op .. " " .. message ..
      (maybe_done and ": the outcome is unknown, check it with status() or payment_details()" or "") }
end

--- An amount of an answer as decimal text: the JSON literal kept by `paykit.kit.json` (a
-- string). Anything else (a float would have come from another reader) is not read: nil.
-- @param v the member's value
-- @treturn ?string
function _M.amount_text(v)
  if type(v) == "string" and v:match("^%-?%d+%.?%d*$") then return v end
  return nil
end

--- Whether v is a non-empty string or an integral number.
-- @param v
-- @treturn boolean
function _M.nonempty(v) return (type(v) == "string" and v ~= "") or (type(v) == "number" and v == math.floor(v)) end

--- An id as text: integral numbers without a decimal point.
-- @param v
-- @treturn string
function _M.id_text(v)
  if type(v) == "number" and v == math.floor(v) then return string.format("%d", v) end
  return tostring(v)
end

--- The Data.IsSuccessful / Data.ResultCode level of a payment or after-sale answer.
-- Fails closed: ok_status only for IsSuccessful == true (the JSON boolean) with no bank code
-- and every field of `need` present; "failed" (the bank's code) for IsSuccessful == false;
-- anything else is not an answer paykit can read (`moka.invalid_response`).
-- @tparam string op
-- @param data the Data block
-- @tparam string ok_status the result's status when successful
-- @tparam table r the result's other fields
-- @tparam ?table need member -> "string" | "id" that must be present
-- @tparam boolean maybe_done whether the call may have moved money
-- @treturn table the result fields (status, code, ...) for `paykit.kit.result`
-- @return[2] nil
-- @return[2] err
function _M.inner(op, data, ok_status, r, need, maybe_done)
  if type(data) ~= "table" then return nil, _M.invalid(op, "has no Data block", maybe_done) end
  local ok, rc = data.IsSuccessful, denull(data.ResultCode)
  if ok == false then
    if rc ~= nil and type(rc) ~= "string" and type(rc) ~= "number" then
      return nil, _M.invalid(op, "has a declined Data block with an unreadable ResultCode", maybe_done)
    end
    local code, message = codes.bank(rc)
    r.status = "failed"; r.code = code; r.message = message
    r.provider_code = rc; r.provider_message = denull(data.ResultMessage)
    return r
  end
  if ok ~= true then
    return nil, _M.invalid(op, "has no boolean Data.IsSuccessful", maybe_done)
  end
  if rc ~= nil and rc ~= "" then
    return nil, _M.invalid(op, "says IsSuccessful but carries the bank code " .. tostring(rc):sub(1, 16), maybe_done)
  end
  for k, what in pairs(need or {}) do
    local v = data[k]
    if not (_M.nonempty(v) and (what == "id" or type(v) == "string")) then
      return nil, _M.invalid(op, "lacks Data." .. k, maybe_done)
    end
  end
  r.status = ok_status
  r.provider_reference = r.provider_reference or denull(data.VirtualPosOrderId)
  return r
end

return _M
