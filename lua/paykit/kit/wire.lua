--- paykit.kit.wire: one `commit` every provider call goes through, and the one mapping of
-- HTTP statuses to errors.
--
--     wire.commit(self, op, req) -> answer, info | nil, err
--
-- req: `{method=, path=, query={{k, v}, ...}, body=table|string, idempotent=bool, headers=}`; no method:
-- POST with a body, else GET; no idempotent: true only for GET, HEAD, OPTIONS, PUT, DELETE.
-- The URL is `self.base_url .. path (.. "?" .. canonical query)`; a table body is written
-- with `paykit.kit.json.encode` (exact decimals). The provider's declaration adds
-- what differs, each optional (the declaration's `wire`):
--
--  * `sign(self, req)` -> true | nil, err: adds headers (Authorization, ...) to req;
--  * `exact` the set of JSON member names whose numbers stay text (money: `{Amount = true}`);
--  * `success_from(self, answer, res, op)` -> boolean (default: the HTTP status was 2xx);
--  * `message_from(self, answer, res, op)` -> message, code (the provider's own words);
--  * `authorization_from(self, answer, res, op)` -> the provider's reference;
--  * `error_from(self, answer, res, op)` -> err | nil: a provider-specific error for a non-2xx
--    answer (checked before the common mapping; e.g. a 409 that lists refused fields).
--
-- info: `{status=, success=, message=, code=, authorization=, res=}`. A non-2xx answer is an
-- error from @{http_error} (the one vocabulary):
--
--  | HTTP      | kind       | code                  | retryable        |
--  | 400, 422  | provider   | `bad_request`         | no               |
--  | 401, 403  | config     | `invalid_credentials` | no (field `credentials`) |
--  | 404       | provider   | `not_found` (names the URL: check base_url) | no |
--  | 409       | provider   | `conflict`            | no               |
--  | 429       | provider   | `rate_limited`        | when idempotent  |
--  | 5xx       | provider   | `server_error`        | when idempotent  |
--  | other     | provider   | `unexpected_status`   | no               |
--
-- A 2xx answer that is not JSON (when JSON was expected) is a provider error `invalid_response`.
-- @module paykit.kit.wire
-- @usage
--   local answer, info = wire.commit(self, "get_seller", {method = "GET", path = "/sellers/s-1", idempotent = true})
local core = require "paykit.core"
local errors = require "paykit.errors"
local redact = require "paykit.redact"
local json = require "paykit.kit.json"
local http = require "paykit.http"
local encode_quick = json.encode_quick

local _M = {}

local MAX_PROVIDER_TEXT = 500

local STATUS = {
  [400] = { "provider", "bad_request", "refused the request" },
  [422] = { "provider", "bad_request", "refused the request" },
  [401] = { "config", "invalid_credentials", "refused the credentials (check the instance's keys and the clock)" },
  [403] = { "config", "invalid_credentials", "refused the credentials (check the instance's keys and the clock)" },
  [404] = { "provider", "not_found" },
  [409] = { "provider", "conflict", "reports a conflict with an existing resource" },
  [429] = { "provider", "rate_limited", "asks to slow down (HTTP 429)" },
}
_M.STATUS = STATUS

--- The error for a non-2xx HTTP answer (see the table above).
-- @tparam table t `provider` (name), `title` (for messages, default provider), `op`, `status`,
--   `url` (scrubbed here), `idempotent`, `provider_code`, `provider_message`
-- @treturn table the error
function _M.http_error(t)
  local status, title = t.status, t.title or t.provider or "the provider"
  local row = STATUS[status]
  local kind, code, text
  if row then
    kind, code, text = row[1], row[2], row[3]
    if status == 404 then
      text = "has nothing at " .. redact.text(tostring(t.url)) .. " (HTTP 404): check base_url" ..
        " (a resource that does not exist answers 404 too)"
    end
  elseif status >= 500 and status <= 599 then
    kind, code, text = "provider", "server_error", "answered HTTP " .. status .. " (its server failed)"
  else
    kind, code, text = "provider", "unexpected_status", "answered HTTP " .. status
  end
  local msg = t.provider_message
  if msg and #msg > MAX_PROVIDER_TEXT then msg = msg:sub(1, MAX_PROVIDER_TEXT) .. "..." end
  local retry = (status == 429 or (status >= 500 and status <= 599)) and t.idempotent and true or false
  return errors.new {
    kind = kind, code = code, status = status, provider = t.provider, op = t.op, retryable = retry,
    field = kind == "config" and "credentials" or nil,
    provider_code = t.provider_code, provider_message = msg,
    message = (t.op and (t.op .. ": ") or "") .. title .. " " .. text .. (msg and (" (" .. msg .. ")") or ""),
  }
end

--- The full URL of a request: base_url .. path [.. "?" .. canonical query].
-- @tparam table self the instance (its `base_url`)
-- @tparam table req `path`, `query`
-- @treturn string
function _M.url(self, req)
  local q = req.query
  if q and #q > 0 then return self.base_url .. req.path .. "?" .. core.canonical_query(q) end
  -- without a query the URL is a function of base_url and path: the instance keeps the last
  -- few (a provider calls the same handful of paths)
  local base, path = self.base_url, req.path
  local memo = rawget(self, "_urls")
  if not memo or memo[0] ~= base then
    memo = { [0] = base, n = 0 }
    rawset(self, "_urls", memo)
  end
  local u = memo[path]
  if u then return u end
  u = base .. path
  if memo.n < 64 then memo[path], memo.n = u, memo.n + 1 end
  return u
end

--- The provider (`paykit.kit.provider`) of an instance, or of a table inheriting from one
-- through `__index` tables (a proxy such as `paykit.journal.wrap`'s, which replaces the
-- instance's `http`); nil for anything else.
-- @param x any value
-- @treturn ?table P
function _M.provider_of(x)
  for _ = 1, 8 do
    local mt = getmetatable(x)
    if type(x) ~= "table" or type(mt) ~= "table" then return nil end
    if rawget(mt, "__kit") then return rawget(mt, "__kit") end
    x = rawget(mt, "__index")
  end
  return nil
end

-- The methods a request without `idempotent` may be repeated for (RFC 9110 9.2.2).
local IDEMPOTENT_METHODS = { GET = true, HEAD = true, OPTIONS = true, PUT = true, DELETE = true }

-- provider -> op -> "provider.op" (made once per operation)
local full_ops = setmetatable({}, { __mode = "k" })
local function full_name(P, op)
  local names = full_ops[P]
  if not names then names = {}; full_ops[P] = names end
  local n = names[op]
  if not n then n = P.name .. "." .. op; names[op] = n end
  return n
end

-- an instance's metatable -> its provider (the `__kit` of the metatable, which never changes)
local KIT_OF = setmetatable({}, { __mode = "k" })

--- The instances `paykit.kit`'s constructors made, each with its provider (weak keys): an
-- instance found here is known without a look at its metatable (`getmetatable` is a C call,
-- dearer on Lua 5.4 than a table read); anything else (a proxy, a table of another's) is
-- looked at as before. Filled by `paykit.kit.provider`'s `new` only.
-- @table INSTANCES
local INSTANCES = setmetatable({}, { __mode = "k" })
_M.INSTANCES = INSTANCES

-- The provider of self (an instance or a proxy of one), or nil.
local function kit_of(self)
  local P = INSTANCES[self]
  if P ~= nil then return P end
  -- an instance's own metatable names its provider (a proxy's is found by provider_of); the
  -- metatables seen are remembered (no type/rawget calls per request)
  local mt = getmetatable(self)
  P = mt ~= nil and KIT_OF[mt] or nil
  if P == nil then
    P = type(mt) == "table" and rawget(mt, "__kit")
    if P then KIT_OF[mt] = P else P = _M.provider_of(self) end
  end
  return P
end

-- wire hooks -> the reader's options for their answers (made once per declaration; rebuilt
-- when its `exact` was replaced)
local read_opts = setmetatable({}, { __mode = "k" })
local function decode_opts(w)
  local o = read_opts[w]
  if not o or o.exact ~= w.exact then
    o = { exact = w.exact }
    read_opts[w] = o
  end
  return o
end

--- The request half of @{commit}: builds the URL, the JSON body and the headers, signs and
-- sends. A provider that reads its answer in its own way (`paykit.kit.json.pick`) calls
-- this, then @{answer} for anything its fast reading does not take.
-- @tparam table self the instance
-- @tparam string op the operation's name
-- @tparam table req the request (as @{commit}'s; it is completed in place and handed to
--   paykit.http as it is, with `op`, `idempotent` and `own_headers` set; `own_headers = true`
--   on the way in says `headers` is a table made for this call, which paykit.http may then fill
--   in place instead of copying)
-- @treturn table res (paykit.http's answer)
-- @treturn string the full operation name ("provider.op")
-- @return[2] nil
-- @return[2] err
function _M.send(self, op, req)
  local P = kit_of(self)
  local w = P._decl.wire
  local names = full_ops[P]
  local full_op = names and names[op] or full_name(P, op)
  -- no method: as paykit.http picks it (a body makes a POST), before the signer sees it
  if req.method == nil then req.method = req.body ~= nil and "POST" or "GET" end
  -- @{url}, its memo read here first (no call for a path seen before on this base_url)
  -- (a plain read: a proxy's read finds the instance's memo, whose URLs are right for it
  -- whenever memo[0] is its base_url too)
  local memo = req.query == nil and self._urls
  local url = memo and memo[0] == self.base_url and memo[req.path]
  req.url = url or _M.url(self, req)
  local headers = req.headers
  -- a caller that made req.headers for this call says so (own_headers = true): not copied
  local own = req.own_headers == true and headers ~= nil
  if type(req.body) == "table" then
    -- the default writer in one C call; anything it refuses (or another writer) as before
    local text = encode_quick(req.body)
    if text == nil then
      local ok
      ok, text = pcall(json.encode, req.body)
      if not ok then
        return nil, errors.validation("body", "invalid", full_op .. ": cannot write the request as JSON: " .. tostring(text))
      end
    end
    req.body = text
    if headers == nil then
      headers = { ["Content-Type"] = "application/json", Accept = "application/json" }
      own = true
    elseif headers["Content-Type"] == nil then
      headers["Content-Type"] = "application/json"
    end
  end
  if headers == nil then headers = { Accept = "application/json" }; own = true
  elseif headers.Accept == nil then headers.Accept = "application/json" end
  req.headers = headers
  if w.sign then
    local ok, err = w.sign(self, req)
    if not ok then return nil, err end
  end
  local idempotent = req.idempotent
  -- by default only the methods HTTP calls idempotent may be repeated (a POST or a PATCH,
  -- in any spelling, may charge)
  if idempotent == nil then idempotent = IDEMPOTENT_METHODS[req.method] == true end
  -- paykit.http reads method, url, body, headers, op and idempotent of it (the fields of a
  -- commit's request are none of its other options); headers made here are the call's own
  req.op, req.idempotent, req.own_headers = full_op, idempotent, own or nil
  local res, err = self.http:request(req)
  if not res then return nil, err end
  return res, full_op
end

-- The headers of a JSON text body when paykit.http's request sends it (send_json_text): never
-- changed (paykit.http copies a table that is not the call's own before it adds to it).
local JSON_HEADERS = { ["Content-Type"] = "application/json", Accept = "application/json" }
_M.JSON_HEADERS = JSON_HEADERS
local HTTP_REQUEST = http.request

--- @{send} for a POST whose body is JSON text already written (a compiled shape's): the same
-- request table @{send} completes from `{method = "POST", path = path, body = body, idempotent =
-- idempotent, headers = {["Content-Type"] = "application/json", Accept = "application/json"},
-- own_headers = true}`, made at once with its `url` and `op` (no field added later), signed
-- and sent. Without a signer, to paykit.http's own request, the headers are one shared table
-- (`JSON_HEADERS`, the same two headers, without `own_headers`: paykit.http copies it where
-- it adds its own).
-- @tparam table self the instance
-- @tparam string op the operation's name
-- @tparam string path the API path
-- @tparam string body the JSON text
-- @tparam boolean idempotent
-- @treturn table res (paykit.http's answer)
-- @treturn table req the request sent (for @{answer})
-- @return[2] nil
-- @return[2] err
function _M.send_json_text(self, op, path, body, idempotent)
  local P = kit_of(self)
  local w = P._decl.wire
  local names = full_ops[P]
  local full_op = names and names[op] or full_name(P, op)
  local memo = self._urls
  local url = memo and memo[0] == self.base_url and memo[path]
  if not url then url = _M.url(self, { path = path }) end
  -- the one shared table to paykit.http's own request (which never changes a headers table
  -- that is not the call's own: it copies it where it adds to it) when no signer sees it
  local shared = w.sign == nil and self.http.request == HTTP_REQUEST
  local req = { method = "POST", path = path, body = body, idempotent = idempotent and true or false, url = url,
    headers = shared and JSON_HEADERS or { ["Content-Type"] = "application/json", Accept = "application/json" },
    op = full_op, own_headers = not shared }
  if w.sign then
    local ok, err = w.sign(self, req)
    if not ok then return nil, err end
  end
  local res, err = self.http:request(req)
  if not res then return nil, err end
  return res, req
end

--- The answer half of @{commit}: decodes res's body and maps it (see the module description).
-- @tparam table self the instance
-- @tparam table res paykit.http's answer (from @{send})
-- @tparam table req the request @{send} completed
-- @return the decoded answer (true for an empty 2xx answer)
-- @treturn table info
-- @return[2] nil
-- @return[2] err
function _M.answer(self, res, req)
  local mt = getmetatable(self)
  local P = type(mt) == "table" and rawget(mt, "__kit") or _M.provider_of(self)
  local w = P._decl.wire
  local full_op = req.op
  local answer
  if res.body ~= nil and res.body ~= "" then
    local derr
    answer, derr = json.decode(res.body, decode_opts(w))
    if answer == nil and res.status >= 200 and res.status < 300 then
      return nil, errors.provider { code = "invalid_response", status = res.status, op = full_op, provider = P.name,
        message = full_op .. ": " .. P.title .. " answered " .. res.status .. " with a body that is not JSON (" .. tostring(derr) .. ")" }
    end
  elseif res.status >= 200 and res.status < 300 then
    answer = true
  end
  if res.status < 200 or res.status > 299 then
    local e = w.error_from and w.error_from(self, answer, res, full_op)
    if e then return nil, e end
    local pcode, pmsg
    if w.message_from then pmsg, pcode = w.message_from(self, answer, res, full_op) end
    if pmsg == nil and answer == nil and type(res.body) == "string" and res.body:find("^[%w%p ]+$") then
      pmsg = res.body -- a plain-text answer, e.g. "Server Error"
    end
    return nil, _M.http_error { provider = P.name, title = P.title, op = full_op, status = res.status, url = req.url,
      idempotent = req.idempotent, provider_code = pcode, provider_message = pmsg }
  end
  local success, message, code, authorization = true, nil, nil, nil
  if w.success_from then success = w.success_from(self, answer, res, full_op) and true or false end
  if w.message_from then message, code = w.message_from(self, answer, res, full_op) end
  if w.authorization_from then authorization = w.authorization_from(self, answer, res, full_op) end
  -- made in one go (no table growing member by member)
  return answer, { status = res.status, res = res, success = success, message = message, code = code,
    authorization = authorization }
end

--- The reader's options (`paykit.core.json_decode`'s) of the instance's answers: what
-- @{answer} decodes with (a lazily decoded `result.raw` uses them, `paykit.gateway.result`).
-- @tparam table self the instance
-- @treturn table
function _M.read_opts(self)
  local mt = getmetatable(self)
  local P = type(mt) == "table" and rawget(mt, "__kit") or _M.provider_of(self)
  return json.read_opts(P._decl.wire.exact)
end

--- One call to the provider (see the module description): @{send}, then @{answer}.
-- @tparam table self the instance
-- @tparam string op the operation's name ("get_seller"); errors say `provider.op`
-- @tparam table req the request
-- @return the decoded answer (true for an empty 2xx answer)
-- @treturn table info
-- @return[2] nil
-- @return[2] err
function _M.commit(self, op, req)
  local res, err = _M.send(self, op, req)
  if not res then return nil, err end
  return _M.answer(self, res, req)
end

return _M
