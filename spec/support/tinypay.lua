-- Tinypay: a fourth provider written only with the provider kit (paykit.kit), entirely under
-- spec/ (ISSUE9 item 7): a hosted payment page, HMAC-SHA256-signed notices (key rotation, a
-- replay window), exact amounts. Its simulator is spec/support/tinypay_sim.lua.
--
--   require("paykit").register{name = "tinypay", module = "spec.support.tinypay", ...}
--   local gw = paykit.tinypay{api_key = ..., notice_keys = {[1] = ..., [2] = ...}, base_url = ...}
--   local r = gw:purchase{amount = "12.50", currency = "EUR", reference = "o-1",
--                         return_url = ..., notify_url = ...}       -- r.redirect_url, r.keep
--   gw:complete(return_query, r.keep)    gw:notification{body=, headers=}    gw:status(id)
local kit = require "paykit.kit"
local errors = require "paykit.errors"
local money = require "paykit.money"
local core = require "paykit.core"
local gateway = require "paykit.gateway"
local checks, signature, json = kit.checks, kit.signature, kit.json

local STATUS = { paid = "paid", failed = "failed", created = "pending" }
local PURCHASE = { amount = true, amount_minor = true, currency = true, reference = true, return_url = true, notify_url = true }

local function invalid(message)
  return nil, errors.provider { code = "invalid_response", provider = "tinypay", message = "Tinypay " .. message }
end

-- A payment as Tinypay tells it -> a result (amount exact, formatted for the currency).
local function result_of(p)
  if type(p) ~= "table" or type(p.id) ~= "string" or not STATUS[p.status] or not json.amount(p.amount, p.currency) then
    return invalid("answered a payment that is not one")
  end
  return kit.result { status = STATUS[p.status], provider = "tinypay", reference = p.reference,
    provider_reference = p.id, amount = p.amount, currency = p.currency, raw = p }
end

local P = kit.provider {
  name = "tinypay", title = "Tinypay",
  options = {
    api_key = { type = "string", required = true, secret = true },
    notice_keys = { type = "keys", required = true },
    base_url = { type = "url", required = true },
    max_age = { type = "seconds_long", default = 300 },
  },
  init = function(self, o)
    local key, keys = o.api_key, o.notice_keys.keys
    self.api_key_header = function() return key end
    self.verify = function(t)
      t.keys, t.max_age, t.provider = keys, self.max_age, "Tinypay"
      return signature.verify(t)
    end
    return self
  end,
  wire = {
    sign = function(self, req) req.headers["X-Tiny-Key"] = self.api_key_header(); return true end,
    exact = { amount = true },
    message_from = function(_, a)
      local e = type(a) == "table" and a.error
      if type(e) == "table" then return e.message, e.code end
    end,
  },
  operations = { get_payment = { method = "GET", path = "/payments/:id", args = { id = checks.key } } },
  notice = {
    decode = function(_, req)
      local sig = type(req.headers) == "table" and gateway.field(req.headers, "X-Tiny-Signature")
      if type(req.body) ~= "string" or req.body == "" then return nil, signature.error("unsigned", "the Tinypay notice has no body") end
      return { body = req.body, sig = sig }
    end,
    verify = function(self, raw)
      if not raw.sig then return nil, signature.error("unsigned", "the Tinypay notice has no X-Tiny-Signature") end
      local t, k, v1 = tostring(raw.sig):match("^t=(%d+),k=(%d+),v1=(%x+)$")
      if not t then return nil, signature.error("malformed", "X-Tiny-Signature is not t=..,k=..,v1=..") end
      local ok, err = self.verify { message = t .. "." .. raw.body, signature = v1, key_id = k, timestamp = t }
      if not ok then return nil, err end
      local p = json.decode(raw.body, { exact = { amount = true } })
      local r, rerr = result_of(p)
      if not r then return nil, signature.error("malformed", "the Tinypay notice is signed but not a payment: " .. rerr.message) end
      return r
    end,
    payment = function(r) return r.provider_reference end,
    result = function(_, r) return r end,
  },
}

local M = P.methods

function M:purchase(p)
  local t, err = kit.fields(p, PURCHASE, "purchase")
  if not t then return nil, err end
  err = checks.one_of(t.currency, "currency", { EUR = true, USD = true })
  if err then return nil, err end
  local minor, amount = money.read(t, "amount", t.currency, "amount", true)
  if not minor then return nil, amount end
  err = checks.text(t.reference, "reference", 64) or checks.url(t.return_url, "return_url", { no_fragment = true })
    or checks.url(t.notify_url, "notify_url")
  if err then return nil, err end
  local body = json.object()
  for _, kv in ipairs { { "amount", json.decimal(amount) }, { "currency", t.currency }, { "reference", t.reference },
                        { "return_url", t.return_url }, { "notify_url", t.notify_url } } do
    json.put(body, kv[1], kv[2])
  end
  local a, info = self:commit("purchase", { method = "POST", path = "/payments", body = body, idempotent = false })
  if not a then return nil, info end
  if type(a) ~= "table" or json.amount(a.amount, a.currency) ~= amount or a.currency ~= t.currency
     or type(a.page_url) ~= "string" or type(a.id) ~= "string" then
    return invalid("created a payment that is not the one asked for")
  end
  return kit.result { status = "redirect", method = "GET", provider = "tinypay", redirect_url = a.page_url,
    reference = t.reference, provider_reference = a.id, amount = amount, currency = t.currency, raw = a,
    keep = { id = a.id, amount = amount, currency = t.currency, reference = t.reference } }
end

function M:complete(query, keep)
  if type(query) == "table" then query = query.query end
  if type(query) ~= "string" then return nil, errors.validation("query", "raw_query_required", "complete needs the raw query string") end
  if type(keep) ~= "table" or type(keep.id) ~= "string" then return nil, errors.validation("keep", "required", "complete needs purchase's keep") end
  local cut = query:find("&k=", 1, true)
  if not cut then return nil, signature.error("unsigned", "the Tinypay return carries no signature") end
  local signed = query:sub(1, cut - 1):gsub("^.-(id=)", "%1", 1) -- the shop's own parameters may come first
  local k, sig = query:sub(cut + 3):match("^(%d+)&sig=(%x+)$")
  local ok, err = self.verify { message = signed, signature = sig or "", key_id = k, timestamp = signed:match("&t=(%d+)$") }
  if not ok then return nil, err end
  local f = core.query_decode(signed)
  if f.id ~= keep.id then return nil, signature.error("bad_signature", "the Tinypay return is for another payment") end
  if not STATUS[f.status] then return nil, signature.error("malformed", "the Tinypay return has no status") end
  return kit.result { status = STATUS[f.status], provider = "tinypay", reference = keep.reference,
    provider_reference = keep.id, amount = keep.amount, currency = keep.currency, raw = f }
end

function M:status(id)
  local a, err = self:get_payment(id)
  if not a then return nil, err end
  return result_of(a)
end

return P
