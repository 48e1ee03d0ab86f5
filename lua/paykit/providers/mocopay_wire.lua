--- MoCoPay's wire: how a request is signed and an answer read (the hooks of
-- `paykit.kit.wire.commit`; the requests are `paykit.providers.mocopay_request`, the
-- signature scheme `paykit.providers.mocopay_sign`).
--
-- A request is signed over base_url's path prefix, the endpoint and its query parameters,
-- and the signature goes in the `Signature: ApiKey {key}:{sig}` header or, with
-- `signature_in = "param"`, in a `signature` query parameter. Answers are JSON read with the
-- kit's exact reader: every amount (`chargedAmount`, `totalChargedAmount`, ...) stays the
-- text MoCoPay wrote, never a float. A failure carries `errorCode` / `errorMessage`; HTTP
-- statuses map to errors as everywhere (`paykit.kit.wire`: a 401 is a config error
-- `invalid_credentials`, a 400 `bad_request`, a 5xx `server_error`, ...).
--
-- Amounts: UNCONFIRMED by MoCoPay's documents whether an answer's amounts are minor units
-- (199 = 1.99 EUR, what the sandbox sends) or major units. The instance's `amount_unit`
-- ("minor", the default, or "major") says which; `result.amount` is then `money.format`ed
-- for `currencyCode`, and nil for a currency paykit does not know (the raw text stays in
-- `result.payment`).
-- @module paykit.providers.mocopay_wire
local json = require "paykit.kit.json"
local money = require "paykit.money"
local wire = require "paykit.kit.wire"

local _M = {}

local AMOUNTS = { charged_amount = "chargedAmount", failed_amount = "failedAmount",
                  last_charged_amount = "lastChargedAmount", last_failed_amount = "lastFailedAmount",
                  total_charged_amount = "totalChargedAmount", total_failed_amount = "totalFailedAmount" }

-- Money in answers stays text.
_M.exact = { amount = true }
for _, api in pairs(AMOUNTS) do _M.exact[api] = true end

--- Signs a request: the `Signature` header, or the `signature` query parameter. A request
-- whose Signature header paykit's own call already made (verifyPayment's one key, checked and
-- signed in one C call) is left as it is.
-- @tparam table self the instance (its `sign` closure holds the secret)
-- @tparam table req the request (`path`: the endpoint; `query`: the parameter pairs)
-- @treturn boolean true
function _M.sign(self, req)
  -- signed already by the caller, in the one C call that checked its key (verify_payment)
  if self.signature_in ~= "param" and req.headers.Signature ~= nil then return true end
  local path = self.base_path .. req.path
  if self.signature_in == "param" then
    req.query[#req.query + 1] = { "signature", self.sign(path, req.query, self.signature_prefix or (self.api_key .. ":")) }
    req.url = wire.url(self, req)
  else
    req.headers.Signature = self.sign(path, req.query, self.header_prefix or ("ApiKey " .. self.api_key .. ":"))
  end
  return true
end

local MESSAGE_NAMES, CODE_NAMES = { "errorMessage", "message", "error_description" }, { "errorCode", "code", "error" }

-- the first of names that answer has as a string or a number, as text
local function first(answer, names)
  for i = 1, #names do
    local v = answer[names[i]]
    local t = type(v)
    if t == "string" then return v end
    if t == "number" then return tostring(v) end
  end
  return nil
end

--- MoCoPay's own words in a failure: message, code.
-- @tparam table self
-- @param answer the decoded answer
-- @treturn ?string message (`errorMessage`, `message` or `error_description`)
-- @treturn ?string code (`errorCode`, `code` or `error`)
function _M.message_from(_, answer)
  if type(answer) ~= "table" then return nil, nil end
  return first(answer, MESSAGE_NAMES), first(answer, CODE_NAMES)
end

local PAID = { authorized = true, charged = true, completed = true, complete = true, paid = true,
               success = true, successful = true, active = true, paymentcomplete = true }
local FAILED = { cancelled = true, canceled = true, expired = true, failed = true, rejected = true,
                 declined = true, error = true, paymentcancelled = true, paymentexpired = true,
                 paymentfailed = true, stopped = true }

--- A MoCoPay status word as a result status.
-- @tparam string s e.g. "PaymentComplete", "Charged", "Expired" (case-insensitive)
-- @treturn string "paid", "failed" or "pending" (anything unknown)
function _M.map_status(s)
  local k = type(s) == "string" and s:lower() or ""
  if PAID[k] then return "paid" end
  if FAILED[k] then return "failed" end
  return "pending"
end

local function nonnull(v)
  if v == json.null then return nil end
  return v
end

-- A whole number read from text or a number; other values as they are.
local function int(v)
  if type(v) == "string" and v:find("^%-?%d+$") then v = tonumber(v) end
  if type(v) ~= "number" or v ~= math.floor(v) then return v end
  return math.tointeger and math.tointeger(v) or v
end

-- An amount as the exact text of the answer (an integer number is written in digits).
local function amount_text(v)
  v = nonnull(v)
  if type(v) == "string" then return v end
  if type(v) == "number" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
  return nil -- not an exact amount: never guessed through a float
end

--- Every field of a verifyPayment answer, in Lua names. Amounts are the answer's own text.
-- @tparam table answer the answer as `paykit.kit.json.decode` read it (with @{exact})
-- @treturn table `session_id`, `request_id` and `reference_id` (when the answer names the
--   purchase the session belongs to), `service_code`, `pid`, `type`, `lang`, `series`, `status`,
--   `currency_code`, `recurrent`, `expires_in`, `time_init`, `time_authorized`,
--   `time_last_successful_payment`, `transactions`, `end_user` `{user_id, phone, mcc, mnc}`,
--   and the amounts `charged_amount`, `failed_amount`, `last_charged_amount`,
--   `last_failed_amount`, `total_charged_amount`, `total_failed_amount`
function _M.payment_info(answer)
  local a = answer
  local transactions = {}
  if type(a.transactions) == "table" then
    for i, t in ipairs(a.transactions) do transactions[i] = t end
  end
  local eu = type(a.endUser) == "table" and a.endUser or nil
  -- one constructor: the table is made at its size once (the AMOUNTS written out)
  return {
    session_id = nonnull(a.sessionId), request_id = nonnull(a.requestId), reference_id = nonnull(a.referenceId),
    service_code = nonnull(a.serviceCode), pid = nonnull(a.pid),
    type = nonnull(a.type), lang = nonnull(a.lang), series = int(nonnull(a.series)),
    status = nonnull(a.status), currency_code = nonnull(a.currencyCode),
    recurrent = nonnull(a.recurrent), expires_in = int(nonnull(a.expiresIn)),
    time_init = nonnull(a.timeInit), time_authorized = nonnull(a.timeAuthorized),
    time_last_successful_payment = nonnull(a.timeLastSuccessfullPayment),
    transactions = transactions,
    charged_amount = amount_text(a.chargedAmount), failed_amount = amount_text(a.failedAmount),
    last_charged_amount = amount_text(a.lastChargedAmount), last_failed_amount = amount_text(a.lastFailedAmount),
    total_charged_amount = amount_text(a.totalChargedAmount), total_failed_amount = amount_text(a.totalFailedAmount),
    end_user = eu and { user_id = nonnull(eu.userId), phone = nonnull(eu.phone), mcc = nonnull(eu.mcc), mnc = nonnull(eu.mnc) } or nil,
  }
end

--- The members of a verifyPayment answer @{payment_info} reads, for `paykit.kit.json.pick`
-- (a null read as absent; the values come in this order, see @{payment_info_of}). The map
-- keeps the strings it last picked (`keep_strings`: an answer's values that repeat from call to
-- call, its currency, status, product, amounts, are given as the strings the last answer
-- made; nothing secret is read here).
_M.PAYMENT_MAP = json.map({ "sessionId", "requestId", "referenceId", "serviceCode", "pid", "type", "lang", "series",
  "status", "currencyCode", "recurrent", "expiresIn", "timeInit", "timeAuthorized", "timeLastSuccessfullPayment",
  "transactions", "chargedAmount", "failedAmount", "lastChargedAmount", "lastFailedAmount", "totalChargedAmount",
  "totalFailedAmount", "endUser", { "endUser", "userId" }, { "endUser", "phone" }, { "endUser", "mcc" },
  { "endUser", "mnc" } }, _M.exact, true, true)

local object_mark, array_mark = json.object_mark, json.array_mark

--- @{payment_info} read by `paykit.core.json_pick` in one C call: the map's values go into the
-- table under payment_info's names (`opts.names`), amounts kept only as text, `transactions`
-- only as an array, `series` and `expiresIn` read as int() reads them (`opts.kinds`). The
-- answer is `kind, table`: @{payment_info_fast} completes the table.
local INFO_PATHS, INFO_NAMES = {}, {}
do
  local names = { sessionId = "session_id", requestId = "request_id", referenceId = "reference_id",
    serviceCode = "service_code", pid = "pid", type = "type", lang = "lang", series = "series", status = "status",
    currencyCode = "currency_code", recurrent = "recurrent", expiresIn = "expires_in", timeInit = "time_init",
    timeAuthorized = "time_authorized", timeLastSuccessfullPayment = "time_last_successful_payment",
    transactions = "transactions", endUser = "end_user", userId = "user_id", phone = "phone", mcc = "mcc", mnc = "mnc" }
  for api, lua in pairs(AMOUNTS) do names[lua] = api end
  for i, p in ipairs { "sessionId", "requestId", "referenceId", "serviceCode", "pid", "type", "lang", "series",
    "status", "currencyCode", "recurrent", "expiresIn", "timeInit", "timeAuthorized", "timeLastSuccessfullPayment",
    "transactions", "chargedAmount", "failedAmount", "lastChargedAmount", "lastFailedAmount", "totalChargedAmount",
    "totalFailedAmount", "endUser", { "endUser", "userId" }, { "endUser", "phone" }, { "endUser", "mcc" },
    { "endUser", "mnc" } } do
    INFO_PATHS[i] = p
    local last = type(p) == "table" and p[#p] or p
    INFO_NAMES[i] = names[last]
  end
  for lua, api in pairs(AMOUNTS) do
    for i, p in ipairs(INFO_PATHS) do if p == api then INFO_NAMES[i] = lua end end
  end
end
local INFO_KINDS = { transactions = "array", series = "integer", expires_in = "integer" }
for lua in pairs(AMOUNTS) do INFO_KINDS[lua] = "string" end
_M.INFO_MAP = require("paykit.core").json_map(INFO_PATHS, { text = _M.exact, null = "absent", names = INFO_NAMES,
  kinds = INFO_KINDS, keep_strings = true })

--- The table `paykit.core.json_pick(text, INFO_MAP)` gives, made @{payment_info}'s (its
-- `transactions` an empty table when the answer has no array there).
-- @tparam table info the picked table (changed in place)
-- @treturn table info
function _M.payment_info_fast(info)
  if info.transactions == nil then info.transactions = {} end
  return info
end

--- @{payment_info} of the values `paykit.kit.json.pick` read with @{PAYMENT_MAP}: the same
-- table, field for field.
-- @treturn table
function _M.payment_info_of(session_id, request_id, reference_id, service_code, pid, typ, lang, series, status,
    currency_code, recurrent, expires_in, time_init, time_authorized, time_last, txs, charged, failed, last_charged,
    last_failed, total_charged, total_failed, eu, eu_user, eu_phone, eu_mcc, eu_mnc)
  local transactions = {}
  if type(txs) == "table" then
    for i, t in ipairs(txs) do transactions[i] = t end
  end
  series, expires_in = int(series), int(expires_in)
  return {
    session_id = session_id, request_id = request_id, reference_id = reference_id,
    service_code = service_code, pid = pid, type = typ, lang = lang, series = series,
    status = status, currency_code = currency_code, recurrent = recurrent, expires_in = expires_in,
    time_init = time_init, time_authorized = time_authorized, time_last_successful_payment = time_last,
    transactions = transactions,
    -- amounts are text (EXACT) or absent: amount_text only for what is neither
    charged_amount = type(charged) == "string" and charged or amount_text(charged),
    failed_amount = type(failed) == "string" and failed or amount_text(failed),
    last_charged_amount = type(last_charged) == "string" and last_charged or amount_text(last_charged),
    last_failed_amount = type(last_failed) == "string" and last_failed or amount_text(last_failed),
    total_charged_amount = type(total_charged) == "string" and total_charged or amount_text(total_charged),
    total_failed_amount = type(total_failed) == "string" and total_failed or amount_text(total_failed),
    end_user = (eu == object_mark or eu == array_mark)
      and { user_id = eu_user, phone = eu_phone, mcc = eu_mcc, mnc = eu_mnc } or nil,
  }
end

--- The members of a verifyPayment answer that the call itself reads (for `paykit.kit.json.pick`,
-- positional, nulls absent, strings kept as @{PAYMENT_MAP}'s): `sessionId` (which session the
-- answer is about), `status`, `currencyCode` and `totalChargedAmount` (the result's status,
-- code, currency and amount). The result's `payment` (@{payment_info}) is read from the text
-- when it is first used (`paykit.providers.mocopay`'s verify_payment).
_M.VERIFY_MAP = json.map({ "sessionId", "status", "currencyCode", "totalChargedAmount" }, _M.exact, true, true)

--- An answer's amount as money for its currency (see the module description).
-- @tparam string text the amount's text in the answer
-- @tparam string currency the answer's currencyCode
-- @tparam[opt="minor"] string unit "minor" or "major"
-- @treturn ?string `money.format`ed ("1.99"), or nil (unknown currency, not exact)
function _M.amount(text, currency, unit)
  if type(text) ~= "string" or type(currency) ~= "string" or not money.exponent(currency) then return nil end
  if unit == "major" then return json.amount(text, currency) end
  if not text:find("^%d+$") or #text > 15 then return nil end
  return money.format(math.tointeger and math.tointeger(tonumber(text)) or tonumber(text), currency)
end

local core = require "paykit.core"
local money_parse, money_format = core.money_parse, core.money_format
-- currency string -> exponent: money.exponent's, for the currencies seen (at most 64)
local EXPONENT, exponent_count = {}, 0

-- the last amount made and what it was made of (a status poll's next answer is alike)
local last_text, last_currency, last_unit, last_amount

--- @{amount} of an amount payment_info read (a string or nil), in fewer calls: the same text.
-- The last one is remembered: the same text, currency and unit again give it at once.
-- @tparam ?string text
-- @tparam string currency
-- @tparam[opt="minor"] string unit
-- @treturn ?string
function _M.result_amount(text, currency, unit)
  if text == nil then return nil end
  -- the same amount as the last one: the same text (the function reads nothing else)
  if text == last_text and currency == last_currency and unit == last_unit then return last_amount end
  local amount = _M.result_amount_of(text, currency, unit)
  last_text, last_currency, last_unit, last_amount = text, currency, unit, amount
  return amount
end

--- @{result_amount} without its memory of the last amount (the specs compare the two).
-- @tparam string text
-- @tparam string currency
-- @tparam[opt="minor"] string unit
-- @treturn ?string
function _M.result_amount_of(text, currency, unit)
  local exp = currency ~= nil and EXPONENT[currency]
  if not exp then
    if type(currency) == "string" and exponent_count < 64 and money.exponent(currency) then
      EXPONENT[currency], exponent_count = money.exponent(currency), exponent_count + 1
    end
    return _M.amount(text, currency, unit)
  end
  local m
  if unit == "major" then
    m = money_parse(text, exp)
  elseif #text <= 15 then
    m = money_parse(text, 0) -- digits only (money.parse without decimals: no sign, point or exponent)
  end
  if not m then return nil end
  return money_format(m, exp)
end

return _M
