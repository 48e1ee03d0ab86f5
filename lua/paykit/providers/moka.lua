--- paykit.providers.moka: Moka (Moka United) card payments, 3D Secure included.
--
-- Built on the provider kit (`paykit.kit`): this file is the declaration and the flow
-- (payments, the 3D check, complete, notification, status); `paykit.providers.moka_request`
-- checks and builds what is sent, `paykit.providers.moka_wire` is Moka's envelope on the kit's
-- one `commit` and how answers are read, `paykit.providers.moka_ops` is the table of the
-- after-sale, query and stored-card operations, `paykit.providers.moka_codes` the code tables.
--
-- Every call validates its input before any network call; errors name their field
-- ("card.number", "installments", ...). A bank decline is a result with status "failed".
-- HTTP failures are the kit's one vocabulary (README, "Errors": 5xx `server_error`, 401/403
-- `config` `invalid_credentials`, 404 `not_found`, ...); the 3D hash check answers the kit's
-- signature codes (`unsigned`, `malformed`, `bad_signature`) and Moka's own
-- `reference_mismatch` / `order_id_mismatch`. Amounts in answers are read as their JSON text
-- (`paykit.kit.json`), and every `result.amount` is `money.format`ed.
--
-- Notification field names are UNCONFIRMED upstream: they are matched case-insensitively
-- and can be replaced with opts.fields = {hash = {...}, result_code = {...}, ...}.
--
-- Module fields: `codes` (`paykit.providers.moka_codes`), `request`, `wire`, `ops` (the
-- modules above), `HOSTS` (`test`, `production` base
-- URLs), `CURRENCIES` (TL, USD, EUR, GBP), `PAYMENT_STATUS` (Moka's PaymentStatus number to
-- a result status).
--
-- The payment parameters `p` of @{Moka:start_3d}, @{Moka:pay} and @{Moka:purchase}:
--
--  * `amount` decimal string ("27.50"), or `amount_minor` integer minor units (2750); greater
--    than zero; a Lua number in `amount` is refused (27 could mean 27.00 or 0.27)
--  * `currency` TL (or TRY), USD, EUR or GBP; default the instance's `currency`
--  * `card` `{number=, exp_month=, exp_year= (YYYY or YY), cvc= (3 or 4 digits), holder=}`,
--   or `card_token` (a stored card's CardToken): exactly one of them
--  * `client_ip` the buyer's IP address, IPv4 or IPv6 in strict text form (default the
--   instance's `client_ip`; required)
--  * `reference` your unique OtherTrxCode (at most 64 characters)
--  * `redirect_url` where the buyer comes back after 3D (3D only, required), `redirect_type`
--   0 (page, default) or 1 (iframe)
--  * `installments` 0 to 12 (0 or 1: a single payment; more only in TL)
--  * `pre_auth` (authorize only, capture later), `pool` (pool payment), `tokenize` (store the
--   card; not with card_token)
--  * `description` (200), `sub_merchant` (100), `software` (30), `integrator_id` (integer)
--  * `basket` `{{product_id= or product_code=, unit_price=, quantity=}, ...}`: the total must
--   equal the amount
--  * `buyer` `{full_name=, gsm=, email=, address=}`
--  * `customer` `{dealer_customer_id=, customer_code=, first_name=, last_name=, gender=,`
--   `birth_date=, gsm=, email=, address=, card_name=}`
--
-- After-sale calls (@{Moka:capture}, @{Moka:void}, @{Moka:refund}, @{Moka:approve_pool},
-- @{Moka:undo_pool}) name the payment with exactly one of `order_id` (Moka's
-- VirtualPosOrderId) and `reference` (your OtherTrxCode). Capture and void also carry a
-- `client_ip` (the caller's, or the instance's default: DoCapture and DoVoid have a ClientIP
-- field, and paykit never makes one up).
--
-- Answers are read fail-closed: "paid" only for outer ResultCode "Success" with
-- `Data.IsSuccessful` the JSON boolean true, no bank code and the fields the result needs;
-- anything else that is not a decline is `moka.invalid_response`. The 3D hash covers only the
-- CodeForHash and the outcome, so a 3D result belongs to the kept order (`keep.reference`),
-- and `confirm` asks Moka before saying "paid".
-- @module paykit.providers.moka
-- @usage
--   local gw = require("paykit").moka{dealer_code = "...", username = "...", password = "...",
--                                     env = "test"}            -- or base_url = "http://..."
--   local r = gw:start_3d{amount = "27.50", card = {holder = "Ali Yilmaz", number = "4111111111111111",
--                         exp_month = "09", exp_year = "2030", cvc = "123"},
--                         client_ip = "203.0.113.7", redirect_url = "https://shop.example/return?o=1"}
--   -- r.status == "redirect": send the buyer to r.redirect_url, store r.keep (CodeForHash!)
--   local res, err = gw:verify_3d(posted_form, r.keep.code_for_hash)
local errors = require "paykit.errors"
local gateway = require "paykit.gateway"
local kit = require "paykit.kit"
local codes = require "paykit.providers.moka_codes"
local R = require "paykit.providers.moka_request"
local C = require "paykit.providers.moka_checks"
local wire = require "paykit.providers.moka_wire"
local ops = require "paykit.providers.moka_ops"
local notice = require "paykit.providers.moka_notice"
local checks = kit.checks

local V = errors.validation
local is_blank, denull, id_text = C.is_blank, wire.denull, wire.id_text

local HOSTS = {
  test = "https://service.refmokaunited.com",
  production = "https://service.mokaunited.com",
}

-- The VoidRefundReason values of DoVoid that Moka's pages publish: only 2. Other values are
-- UNCONFIRMED; an instance takes more with opts.void_reasons = {...}.
local VOID_REASONS = { 2 }
-- The fields of complete's opts.
local COMPLETE_OPTS = { confirm = true }

local DEFAULT_FIELDS = {
  hash = { "hashValue" },
  result_code = { "resultCode" },
  result_message = { "resultMessage" },
  trx_code = { "trxCode" },
  other_trx_code = { "OtherTrxCode" },
}

local OPTIONS = {
  dealer_code = { type = "string", required = true },
  username = { type = "string", required = true, secret = true },
  password = { type = "string", required = true, secret = true },
  env = { type = "string", one_of = { test = true, production = true } },
  base_url = { type = "url" },
  software = { type = "string", check = function(v)
    if C.utf8_len(v) > 30 then return "must be at most 30 characters" end
  end },
  client_ip = { type = "string", check = function(v)
    if not checks.is_ip(v) then return "must be an IPv4 or IPv6 address" end
  end },
  currency = { type = "string", default = "TL" },
  lookup = { type = "function" },
  confirm = { type = "boolean", default = false },
  void_reasons = { type = "table", check = function(v)
    for _, r in ipairs(v) do
      if type(r) ~= "number" or r ~= math.floor(r) or r < 0 then return "must be a list of integers" end
    end
  end },
  fields = { type = "table", check = function(v)
    for k in pairs(v) do
      if not DEFAULT_FIELDS[k] then return "names an unknown notification field " .. tostring(k) end
    end
  end },
  clock = { type = "function" },
}

local P
P = kit.provider {
  name = "moka", title = "Moka", options = OPTIONS, wire = wire.WIRE, operations = ops.KIT,
  init = function(self, o)
    self.base_url = (o.base_url or HOSTS[o.env or "test"]):gsub("/+$", "")
    self.software = o.software or "paykit"
    self.lookup, self.clock = o.lookup, o.clock or os.time
    self.void_reasons = {}
    for _, v in ipairs(o.void_reasons or VOID_REASONS) do self.void_reasons[v] = true end
    self.fields = {}
    for k, v in pairs(DEFAULT_FIELDS) do self.fields[k] = v end
    for k, v in pairs(o.fields or {}) do self.fields[k] = type(v) == "string" and { v } or v end
    -- Credentials live in a closure, so printing or inspecting the instance shows none.
    local dealer_code, username, password = o.dealer_code, o.username, o.password
    -- the block is the same for every call: made (and its CheckKey hashed) once
    local auth, auth_json
    self._auth = function()
      auth = auth or gateway.object_of({ "DealerCode", "Username", "Password", "CheckKey" },
        { dealer_code, username, password, P.check_key(dealer_code, username, password) })
      return auth
    end
    -- the same block as JSON text written once (paykit.core.json_raw), for the bodies; nil
    -- when it cannot be written (invalid UTF-8: the ordered object then goes the writer's way)
    self._auth_json = function()
      if auth_json == nil then auth_json = require("paykit.core").json_raw(self._auth()) or false end
      return auth_json or nil
    end
    -- the text of a body up to its request block ('{"<auth block>":{...},"<request block>":'),
    -- per path, for the compiled request shapes (moka_request.payment_body); nil when the
    -- credentials cannot be written (the ordered objects then go the writer's way)
    local prefixes = {}
    self._body_prefix = function(path)
      local t = prefixes[path]
      if t == nil then
        local core = require "paykit.core"
        local text = self._auth_json() and core.json_encode(self._auth())
        if text then
          local a, r = wire.blocks(path)
          t = "{" .. core.json_encode(a) .. ":" .. text .. "," .. core.json_encode(r) .. ":"
        else
          t = false
        end
        prefixes[path] = t
      end
      return t or nil
    end
    return self
  end,
}
ops.install(P)
P._mt.__tostring = function(self) return "paykit.moka(" .. self.base_url .. ")" end

local _M = P
_M.codes, _M.request, _M.wire, _M.ops, _M.notice = codes, R, wire, ops, notice
_M.HOSTS, _M.CURRENCIES, _M.VOID_REASONS = HOSTS, R.CURRENCIES, VOID_REASONS
_M._payment_request = R.payment

local core_mod
local function core()
  if not core_mod then core_mod = require "paykit.core" end
  return core_mod
end

--- Moka's CheckKey for a set of credentials.
-- CheckKey = lower-hex SHA-256(DealerCode .. "MK" .. Username .. "PD" .. Password)
-- @tparam string dealer_code
-- @tparam string username
-- @tparam string password
-- @treturn string 64 lowercase hex digits
function _M.check_key(dealer_code, username, password)
  return core().digest("sha256", dealer_code .. "MK" .. username .. "PD" .. password, "hex")
end

--- The hashValue Moka sends back for a CodeForHash: success ("T") or failure ("F").
-- hashValue = lower-hex SHA-256(upper(CodeForHash) .. "T" or "F")
-- @tparam string code_for_hash the CodeForHash of the 3D start
-- @tparam boolean success which outcome
-- @treturn string 64 lowercase hex digits
function _M.hash_3d(code_for_hash, success) return notice.hash_3d(code_for_hash, success) end

--- A Moka instance: `paykit.moka{...}` (the kit's one constructor).
-- The credentials are kept in a closure: printing or inspecting the instance shows none.
-- @tparam table opts
--
--  * `dealer_code`, `username`, `password` (required) issued by Moka
--  * `env` "test" (default) or "production", or `base_url` an absolute http(s) URL
--  * `software` (at most 30 characters, default "paykit"), `client_ip` (the payments' default),
--   `currency` (default "TL")
--  * `lookup` function(other_trx_code, trx_code) -> keep (or code_for_hash), for @{Moka:notification}
--  * `confirm` true: @{Moka:complete} and @{Moka:notification} ask Moka before saying "paid"
--   (default false; per call with opts.confirm)
--  * `void_reasons` the VoidRefundReason values @{Moka:void} takes (default `{2}`, the one Moka
--   publishes; others are UNCONFIRMED)
--  * `fields` replacement notification field names: `hash`, `result_code`, `result_message`,
--   `trx_code`, `other_trx_code` (each a name or a list of names)
--  * `clock` function -> unix seconds (card expiry checks; default os.time)
--  * transport: `logger`, `hooks`, `timeout`, `connect_timeout`, `retry`, `verify_tls`,
--   `cafile`, `capath`, `max_response`, `user_agent`, `sleep` (see `paykit.http.new`), or
--   `transport`; `duplicate_capacity` (default 1024), `store` (the notifications' dedupe store,
--   `paykit.kit.notify`), `dedupe_ttl`
--
-- An unknown option is refused naming the closest known one ("unknown option timeout_ms;
-- did you mean timeout?"); `timeout` is in seconds (5000 is refused as milliseconds).
-- @treturn Moka the instance
-- @return[2] nil
-- @return[2] a config error naming the option
-- @function new

--- A Moka instance (from @{new}); every method below returns `nil, err` on failure.
-- @type Moka
local Moka = P.methods

--- One authenticated API call (the building block of the other methods): `paykit.providers.moka_wire.call`.
-- POST {base}{path}; returns Data (nil when null), the decoded body | nil, err
-- @tparam string op the operation name for logs and errors, e.g. "capture"
-- @tparam string path the API path, e.g. "/PaymentDealer/DoCapture"
-- @tparam table payload the request block (a `paykit.gateway.object`)
-- @tparam boolean idempotent whether a request that may have been sent can be retried
-- @return Data of the answer (nil when null)
-- @treturn table the decoded answer
-- @return[2] nil
-- @return[2] an error: transport/timeout, HTTP (the kit's vocabulary: `server_error`, ...),
--   provider (`moka.invalid_response`), or the kind and code of a refusing ResultCode
--   (`paykit.providers.moka_codes.result`)
function Moka:call(op, path, payload, idempotent)
  return wire.call(self, op, path, payload, idempotent)
end

--- One call through the kit (`paykit.kit.wire.commit`): answer, info | nil, err.
-- @function Moka:commit
-- @tparam string op
-- @tparam table req

--- Captures a pre-authorised payment (DoCapture).
-- Amount absent = the whole pre-authorised amount. It turns a hold into a charge, so it is
-- not idempotent: never retried once it may have been sent.
-- @tparam table p `order_id` or `reference`; `amount`, `currency` (optional); `client_ip` (required:
--   the caller's or the instance's default, never made up)
-- @treturn table result "paid"
-- An operation of `paykit.providers.moka_ops`; an unknown field is refused by name.
-- @function Moka:capture
-- @return[2] nil
-- @return[2] a validation, transport or provider error

--- Voids (cancels) a payment (DoVoid).
-- Retried when it may have been sent (a void moves no money to anyone twice).
-- @tparam table p `order_id` or `reference`; `client_ip` (required); `reason` (VoidRefundReason:
--   default 2, the only value Moka publishes; others only when listed in `void_reasons`)
-- @treturn table result "voided"
-- An operation of `paykit.providers.moka_ops`; an unknown field is refused by name.
-- @function Moka:void
-- @return[2] nil
-- @return[2] a validation, transport or provider error

--- Asks for a refund (DoCreateRefundRequest).
-- Amount absent or 0 refunds the whole remaining amount. Not idempotent: never retried once sent.
-- @tparam table p `order_id` or `reference`; `amount`, `currency` (optional)
-- @treturn table result "pending", with `refund_id`
-- An operation of `paykit.providers.moka_ops`; an unknown field is refused by name.
-- @function Moka:refund
-- @return[2] nil
-- @return[2] a validation, transport or provider error

--- Releases a pool payment to the merchant (DoApprovePoolPayment).
-- @tparam table p `order_id` or `reference`
-- @treturn table result "paid"
-- An operation of `paykit.providers.moka_ops`; an unknown field is refused by name.
-- @function Moka:approve_pool
-- @return[2] nil
-- @return[2] a validation, transport or provider error

--- Takes a pool approval back (UndoApprovePoolPayment).
-- @tparam table p `order_id` or `reference`
-- @treturn table result "pending"
-- An operation of `paykit.providers.moka_ops`; an unknown field is refused by name.
-- @function Moka:undo_pool
-- @return[2] nil
-- @return[2] a validation, transport or provider error

--- A payment and its transactions, as Moka reports them (GetDealerPaymentTrxDetailList).
-- The answer must name the payment asked for (`moka.answer_mismatch` otherwise).
-- @tparam table|string p exactly one of `payment_id` (DealerPaymentId) and `reference`
--   (OtherTrxCode); a string is a reference
-- @treturn table Moka's Data block (amounts as their exact text)
-- An operation of `paykit.providers.moka_ops`; an unknown field is refused by name.
-- @function Moka:payment_details
-- @return[2] nil
-- @return[2] a validation, transport or provider error

--- Bank and card information for a BIN (GetBankCardInformation).
-- @tparam string|table bin the first 6 to 8 digits of a card, or `{bin=}`
-- @treturn table Moka's Data block
-- An operation of `paykit.providers.moka_ops`; an unknown field is refused by name.
-- @function Moka:bin_info
-- @return[2] nil
-- @return[2] a validation, transport or provider error

--- The installment table for a card and amount (DoCalcPaymentTable).
-- @tparam table p `bin` (6 to 8 digits), `amount`, `currency`, `three_d` (default true),
--   `include_commission` (default false)
-- @treturn table Moka's Data block (amounts as their exact text)
-- An operation of `paykit.providers.moka_ops`; an unknown field is refused by name.
-- @function Moka:installments
-- @return[2] nil
-- @return[2] a validation, transport or provider error

--- Creates a stored-card customer, optionally with a card (AddCustomerWithCard).
-- Not retried once it may have been sent.
-- @tparam table p `customer_code` (required), `customer_password`, `first_name`, `last_name`,
--   `gender`, `birth_date`, `gsm`, `email`, `address`; `card` `{number=, exp_month=,
--   exp_year=, holder=}` (never a CVC) and `card_name`
-- @treturn table Moka's Data block (DealerCustomer, CardList)
-- An operation of `paykit.providers.moka_ops`; an unknown field is refused by name.
-- @function Moka:add_customer
-- @return[2] nil
-- @return[2] a validation, transport or provider error

--- Stores a card for a customer (AddCard). Not retried once it may have been sent.
-- @tparam table p `dealer_customer_id` or `customer_code`; `card` (never a CVC), `card_name`
-- @treturn table Moka's Data block (with the CardToken)
-- An operation of `paykit.providers.moka_ops`; an unknown field is refused by name.
-- @function Moka:add_card
-- @return[2] nil
-- @return[2] a validation, transport or provider error

--- A customer's stored cards (GetCardList).
-- @tparam table p `dealer_customer_id` or `customer_code`
-- @treturn table Moka's Data block
-- An operation of `paykit.providers.moka_ops`; an unknown field is refused by name.
-- @function Moka:list_cards
-- @return[2] nil
-- @return[2] a validation, transport or provider error

--- Removes a stored card (RemoveCard).
-- @tparam table|string p `{card_token=}` or the card token
-- @treturn table Moka's Data block
-- An operation of `paykit.providers.moka_ops`; an unknown field is refused by name.
-- @function Moka:remove_card
-- @return[2] nil
-- @return[2] a validation, transport or provider error

-- ------------------------------------------------------------------------------------
-- payments

-- what start_3d reads of a good answer (kit.json.pick): the rest is decoded only for result.raw
local START_3D = kit.json.map({ "ResultCode", { "Data", "Url" }, { "Data", "CodeForHash" } }, wire.EXACT)
local lazy_result, READ_OPTS, take_ids = gateway.lazy_result, wire.READ_OPTS, errors.take_ids

--- Starts a 3D Secure payment (DoDirectPaymentThreeD).
-- Not retried once it may have been sent.
-- @tparam table p the payment parameters (see the module description; `redirect_url` required)
-- @treturn table result "redirect": send the buyer to `redirect_url`; store `keep`
--   (`code_for_hash`, `reference`, `amount`, `currency`, `pre_auth`) for @{Moka:complete}
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:start_3d(p)
  local path = "/PaymentDealer/DoDirectPaymentThreeD"
  local req, amount, currency, is_text = R.payment_body(self, p, true, path)
  if not req then return nil, amount end
  local reference, pre_auth = p.reference, p.pre_auth
  pre_auth = pre_auth == true or pre_auth == 1
  -- the answer is read through START_3D (Data.Url and Data.CodeForHash only: both are
  -- strings only when Data is an object); result.raw is decoded from its text when read
  local ok, text, link, cfh = wire.call_pick(self, "start_3d", path, req, false, START_3D, is_text)
  if not ok then return nil, text end
  if type(link) ~= "string" or link == "" or type(cfh) ~= "string" or cfh == "" then
    return nil, errors.provider { code = "moka.invalid_response", op = "moka.start_3d", provider = "moka",
      message = "Moka's 3D answer lacks Data.Url or Data.CodeForHash" }
  end
  -- amount is money.format's text of the checked request: the result takes it as it is
  -- (wire.result's work, done here: provider set, nothing to format); a fresh table with a
  -- fresh keep, as gateway.lazy_result takes it, made with the answer's ids (taken here, as
  -- lazy_result would take them: no member added to a full table later); the keep has
  -- pre_auth only when it is true (a nil member in a constructor costs a store on Lua 5.4)
  local keep
  if pre_auth then
    keep = { code_for_hash = cfh, reference = reference or "", amount = amount, currency = currency, pre_auth = true }
  else
    keep = { code_for_hash = cfh, reference = reference or "", amount = amount, currency = currency }
  end
  local request_id, correlation_id = take_ids()
  return lazy_result({
    status = "redirect", provider = "moka", redirect_url = link, method = "GET",
    reference = reference, amount = amount, currency = currency, keep = keep,
    request_id = request_id, correlation_id = correlation_id,
  }, text, READ_OPTS, true)
end

--- A direct payment without 3D Secure (DoDirectPayment).
-- Not retried once it may have been sent.
-- @tparam table p the payment parameters (see the module description)
-- @treturn table result "paid", "authorized" (pre_auth) or "failed" (bank code in `code`)
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:pay(p)
  local path = "/PaymentDealer/DoDirectPayment"
  local req, amount, currency = R.payment_body(self, p, false, path)
  if not req then return nil, amount end
  local reference, pre_auth = p.reference, p.pre_auth
  pre_auth = pre_auth == true or pre_auth == 1
  local data, raw = wire.call(self, "pay", path, req, false)
  if data == nil and errors.is(raw) then return nil, raw end
  local r, err = wire.inner("pay", data, pre_auth and "authorized" or "paid",
    { reference = reference, amount = amount, currency = currency, raw = raw },
    { VirtualPosOrderId = "string" }, true)
  if not r then
    self.log("error", "moka.pay: " .. err.message)
    return nil, err
  end
  r = wire.result(r)
  self.log("info", "moka.pay " .. r.status .. (r.code and (" " .. r.code) or ""))
  return r
end

--- Checks the signed outcome of a 3D payment (the buyer's return, or the notification).
-- The hashValue is compared in constant time with both outcomes' hashes. The hash covers
-- only the CodeForHash and the outcome: trxCode, OtherTrxCode and resultCode are unsigned.
-- So the order is the one of `keep` (never the posted OtherTrxCode): a posted OtherTrxCode
-- that differs from the kept reference is refused (`reference_mismatch`). Without keep the
-- result has no `reference`, only `posted_reference` (unsigned, for your lookup).
-- `provider_reference` is the posted trxCode (unsigned: `confirm` in @{Moka:complete} takes
-- it from Moka's own answer instead).
-- @tparam string|table params the posted fields (hashValue, resultCode, resultMessage, trxCode,
--   OtherTrxCode): the raw form-encoded POST body, `{body=, query=}` or the decoded fields
-- @tparam string code_for_hash the CodeForHash kept from @{Moka:start_3d}
-- @tparam[opt] table keep the kept table (its reference, amount and currency fill the result)
-- @treturn table result "paid" or "failed"
-- @return[2] nil
-- @return[2] a validation error (missing params or code_for_hash) or a signature error:
--   `unsigned`, `malformed`, `bad_signature` (`paykit.kit.signature`'s codes), and Moka's own
--   `reference_mismatch`
function Moka:verify_3d(params, code_for_hash, keep)
  return notice.verify(self, params, code_for_hash, keep)
end

local PAYMENT_STATUS = { [0] = "pending", [1] = "authorized", [2] = "paid", [3] = "voided", [4] = "refunded" }
_M.PAYMENT_STATUS = PAYMENT_STATUS

--- The status of a payment (uniform flow).
-- @tparam string|table ref the merchant reference (OtherTrxCode), or `{payment_id=}` / `{reference=}`
-- @treturn table result "pending", "authorized", "paid", "voided", "refunded" or "failed"
--   (a declined last transaction), with `payment_id`
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:status(ref)
  local q = type(ref) == "table" and ref or { reference = ref }
  if type(q.reference) == "number" or type(q.reference) == "boolean" then
    return nil, V("reference", "invalid", "reference must be a string")
  end
  local data, err = self:payment_details(q)
  if not data then return nil, err end
  local d = data.PaymentDetail
  local ps = d.PaymentStatus
  local st = type(ps) == "number" and PAYMENT_STATUS[ps]
  if not st then
    return nil, wire.invalid("status", "has no known PaymentStatus (0..4)")
  end
  local trx = denull(data.PaymentTrxDetailList)
  local last = type(trx) == "table" and trx[#trx] or nil
  local r = { status = st, reference = denull(d.OtherTrxCode) or q.reference,
    amount = wire.amount_text(denull(d.Amount)), currency = denull(d.CurrencyCode), raw = data,
    payment_id = denull(d.DealerPaymentId) ~= nil and id_text(d.DealerPaymentId) or nil }
  if type(last) == "table" then
    r.provider_reference = denull(last.VirtualPosOrderId) or denull(d.VirtualPosOrderId)
    if st == "pending" and tonumber(last.TrxStatus) == 2 then
      local code, message = codes.bank(denull(last.ResultCode))
      r.status = "failed"; r.code = code; r.message = message; r.provider_code = denull(last.ResultCode)
    end
  end
  return wire.result(r)
end

-- ------------------------------------------------------------------------------------
-- the uniform flow

-- what purchase takes beyond the payment parameters
local PURCHASE_FIELDS = { three_d = true, return_url = true }

--- Starts a payment (uniform flow).
-- 3D Secure by default (`three_d = false` for a direct payment). A reference (OtherTrxCode)
-- is generated when the caller gives none.
-- @tparam table p the payment parameters (see the module description); `return_url` is
--   taken as `redirect_url`; `three_d = false` for @{Moka:pay}
-- @treturn table result "redirect" (3D, see @{Moka:start_3d}) or the result of @{Moka:pay}
-- @return[2] nil
-- @return[2] a validation, transport or provider error
function Moka:purchase(p)
  if type(p) ~= "table" then return nil, V("params", "required", "purchase needs a table") end
  local unknown = C.fields(p, "purchase", PURCHASE_FIELDS)
  if unknown then return nil, unknown end
  local q = {}
  for k, v in pairs(p) do q[k] = v end
  if is_blank(q.reference) then q.reference = core().uuid4() end
  -- the uniform name of the buyer's way back (Moka's RedirectUrl)
  if q.redirect_url == nil then q.redirect_url = q.return_url end
  q.return_url = nil
  if q.three_d ~= nil and type(q.three_d) ~= "boolean" then
    return nil, V("three_d", "invalid", "three_d must be true (3D Secure, the default) or false (a direct payment)")
  end
  local three_d = q.three_d
  q.three_d = nil
  if three_d == false then return self:pay(q) end
  return self:start_3d(q)
end

--- Completes a 3D payment when the buyer comes back with the posted form (uniform flow).
-- The order is always the kept one (`keep.reference`): a posted OtherTrxCode that differs is
-- refused. opts.confirm = true (or the instance's `confirm` option) also asks Moka
-- (GetDealerPaymentTrxDetailList by the kept reference) before saying "paid": then an
-- attacker who learned the CodeForHash still cannot make an unpaid order paid.
-- @tparam string|table params the posted form: the raw POST body (a string, as MoCoPay and
--   Zippy take theirs), `{body=, query=}`, or the decoded fields
-- @tparam table keep the `keep` table of the purchase result
-- @tparam[opt] table opts `confirm`
-- @treturn table result "paid" ("authorized" for a pre_auth payment), "failed", or "pending" (code "moka.unconfirmed") when the
--   confirmation disagrees (another status, amount or currency) or cannot be made
-- @return[2] nil
-- @return[2] a validation or signature error (see @{Moka:verify_3d}; `order_id_mismatch` when
--   the posted trxCode is not Moka's), or the status call's error
function Moka:complete(params, keep, opts)
  if type(keep) ~= "table" then return nil, V("keep", "required", "complete needs the keep table stored at purchase") end
  if opts ~= nil then
    if type(opts) ~= "table" then return nil, V("opts", "invalid", "complete's opts must be a table") end
    local _, oerr = kit.fields(opts, COMPLETE_OPTS, "complete's opts")
    if oerr then return nil, oerr end
  end
  local r, err = notice.verify(self, params, keep.code_for_hash, keep)
  if not r then return nil, err end
  local want = self.confirm
  if opts and opts.confirm ~= nil then want = opts.confirm end
  if (r.status == "paid" or r.status == "authorized") and want then return notice.confirm(self, r, keep) end
  return r
end

--- Handles Moka's notification of a 3D result, its server-to-server POST (uniform flow).
-- The CodeForHash comes from opts.code_for_hash, opts.keep, or opts.lookup (else the
-- instance's lookup option) called as lookup(other_trx_code, trx_code): it returns the kept
-- table of the purchase (best: the result is then bound to keep.reference exactly as in
-- @{Moka:complete}) or just the CodeForHash string (the result's reference is then the
-- OtherTrxCode the lookup was given). Answers exactly "OK". Repeats of the same signed result
-- are flagged `duplicate`, whatever their unsigned fields say (the key is the hashValue,
-- which is unique per payment and outcome). opts.confirm = true (or the instance's
-- `confirm`) asks Moka before saying "paid", as @{Moka:complete} does; an unconfirmed
-- result ("pending") is answered 503 "PENDING" (so Moka sends it again) and not remembered.
-- @tparam table req `{method=, query=, body=, headers=}` (raw form-encoded query and body)
-- @tparam[opt] table opts `code_for_hash`, `keep`, `lookup`, `confirm`
-- @treturn table result "paid", "failed" or "pending" (unconfirmed), `duplicate` true when seen before
-- @treturn table reply `{status=200, body="OK", content_type="text/plain"}`
-- @return[2] nil
-- @return[2] a validation error (bad form, unknown payment), a signature error, or the
--   confirmation's error
-- @return[2] table reply to send (400 "INVALID" or 500 "UNKNOWN")
function Moka:notification(req, opts)
  return notice.notification(self, req, opts)
end

return _M
