--- Zippy's wire: how a request is signed and an answer read (the hooks of
-- `paykit.kit.wire.commit`; the requests are `paykit.providers.zippy_request`).
--
-- Requests are signed with OAuth 1.0 (two-legged, HMAC-SHA1, `paykit.providers.zippy_oauth`)
-- over the method and the full URL. Answers are JSON; a failure carries
-- `{"error": {"name": ..., "message": ...}}` (or plain text, like the reference server's 500
-- "Server Error"). What differs from the kit's common HTTP mapping: a 409
-- `InvalidArgumentError` is a validation error `invalid_argument` whose `fields` maps each
-- refused field to Zippy's reason (its message is JSON of them, or a plain sentence).
-- @module paykit.providers.zippy_wire
local errors = require "paykit.errors"
local redact = require "paykit.redact"
local json = require "paykit.kit.json"

local _M = {}

--- Adds the OAuth Authorization header (the instance's `sign` closure holds the secrets).
-- @tparam table self the instance
-- @tparam table req the request (`method`, `url`, `headers`)
-- @treturn boolean true
-- @return[2] nil
-- @return[2] a config error (base_url)
function _M.sign(self, req)
  local auth, err = self.sign(req.method, req.url)
  if not auth then return nil, errors.config("base_url", "invalid", err) end
  req.headers.Authorization = auth
  return true
end

-- Money in answers stays text.
_M.exact = { price = true }

--- Zippy's own words in a failure: message, name.
-- @tparam table self
-- @param answer the decoded answer
-- @treturn ?string message
-- @treturn ?string name
function _M.message_from(_, answer)
  local e = type(answer) == "table" and type(answer.error) == "table" and answer.error or {}
  return type(e.message) == "string" and e.message or nil, type(e.name) == "string" and e.name or nil
end

--- The 409 `InvalidArgumentError`: a validation error `invalid_argument` with `fields`.
-- @tparam table self
-- @param answer the decoded answer
-- @tparam table res the HTTP answer
-- @tparam string op e.g. "zippy.create_seller"
-- @return the error, or nil for the common mapping
function _M.error_from(self, answer, res, op)
  local msg, name = _M.message_from(self, answer)
  if res.status ~= 409 or name ~= "InvalidArgumentError" then return nil end
  if msg and #msg > 500 then msg = msg:sub(1, 500) .. "..." end
  local fields = msg and json.decode(msg)
  local list, texts = {}, {}
  if type(fields) == "table" then
    for k, v in pairs(fields) do
      if type(k) == "string" then list[#list + 1] = k end
      fields[k] = redact.text(tostring(v))
    end
    table.sort(list)
    for _, k in ipairs(list) do texts[#texts + 1] = k .. ": " .. fields[k] end
  else
    -- plain text ("external_id must be unique per seller", "Unrecognized fields: colour"):
    -- kept, and the field named when the text starts with one
    fields = {}
    if msg then
      local f = msg:match("^Unrecognized fields?: ([%w_]+)") or msg:match("^([%a_][%w_]*) must ")
      if f then list[1] = f; fields[f] = redact.text(msg) end
      texts[1] = msg
    end
  end
  local err = errors.new { kind = "validation", code = "invalid_argument", field = list[1], status = 409, op = op,
    provider = "zippy", provider_code = name, provider_message = msg,
    message = op .. ": Zippy refused " .. (#texts > 0 and table.concat(texts, "; ") or "the request") }
  err.fields = fields
  return err
end

return _M
