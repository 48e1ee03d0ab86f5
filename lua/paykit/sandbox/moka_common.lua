-- Pieces shared by the Moka simulator's parts: state, replies, raising Moka error codes,
-- reading request values (exact amounts), cards, BINs and bank error codes.
-- The contract is documented at the top of paykit/sandbox/moka.lua.
local cjson = require "cjson.safe"
local core = require "paykit.core"
local util = require "paykit.sandbox.util"

local C = {}

C.dealers = {
  ["1730"] = { DealerCode = "1730", Username = "sandbox", Password = "sandbox-pass",
    foreign_currency = true, pool = true, preauth = true, tokenization = true },
  ["1731"] = { DealerCode = "1731", Username = "restricted", Password = "restricted-pass",
    foreign_currency = false, pool = false, preauth = false, tokenization = false },
}

C.bank_errors = {
  ["000"] = "General Error", ["001"] = "Cardholder Confirmation Failed", ["002"] = "Insufficient Limit",
  ["003"] = "Credit Card Number Not in Valid Format", ["004"] = "General Disclaimer",
  ["005"] = "Transaction Not Open to Card Holder", ["006"] = "Card Expiry Date Incorrect",
  ["007"] = "Invalid Transaction", ["008"] = "Unable to Connect to Bank", ["009"] = "Undefined Error Code",
  ["010"] = "Bank SSL Error", ["011"] = "Call the Bank for Manual Approval",
  ["012"] = "Card Information Incorrect - Card Number or CVV2",
  ["013"] = "Cards Except Visa MC Do Not Support 3D Secure", ["014"] = "Invalid Account Number",
  ["015"] = "Invalid CVV", ["016"] = "No Approval Mechanism Available", ["017"] = "System failure",
  ["018"] = "Stolen Card", ["019"] = "Lost Card", ["020"] = "Restricted Card", ["021"] = "Time out",
  ["022"] = "Invalid Workplace", ["023"] = "Fake Confirmation",
  ["024"] = "3D Approval Received But Money Couldn't Be Withdrawn From Card",
  ["025"] = "3D Confirmation Error", ["026"] = "Card Holder is Not a Bank or Card 3D-Secure Member",
  ["027"] = "The User Is Not Authorized To Take This Action", ["028"] = "Fraud Probability",
  ["029"] = "Your card is closed to e-commerce transactions", ["030"] = "Transaction Declined by the Bank",
}

-- Installment groups (DoCalcPaymentTable) and the BIN table (GetBankCardInformation).
-- rate = commission in basis points for a single payment; each extra installment adds `step`.
C.groups = {
  { name = "Axess", bank = "Akbank", code = "046", rate = 179, step = 85, max = 12 },
  { name = "Bonus", bank = "Garanti BBVA", code = "062", rate = 189, step = 85, max = 12 },
  { name = "World", bank = "Yapi Kredi", code = "067", rate = 175, step = 90, max = 12 },
  { name = "Maximum", bank = "Is Bankasi", code = "064", rate = 199, step = 80, max = 9 },
  { name = "Amex", bank = "Garanti BBVA", code = "062", rate = 249, step = 100, max = 6 },
  { name = "Sandbox", bank = "Sandbox Test Bank", code = "999", rate = 150, step = 75, max = 12 },
}
local group_by_name = {}
for _, g in ipairs(C.groups) do group_by_name[g.name] = g end

C.bins = {
  ["411111"] = { CardType = "VISA", CreditType = "CreditCard", ProductCategory = "Bireysel", group = "Axess" },
  ["555566"] = { CardType = "MASTER", CreditType = "CreditCard", ProductCategory = "Bireysel", group = "Bonus" },
  ["526911"] = { CardType = "MASTER", CreditType = "CreditCard", ProductCategory = "Bireysel", group = "World" },
  ["979204"] = { CardType = "TROY", CreditType = "CreditCard", ProductCategory = "Bireysel", group = "Maximum" },
  ["374245"] = { CardType = "AMEX", CreditType = "CreditCard", ProductCategory = "Bireysel", group = "Amex" },
  ["400000"] = { CardType = "VISA", CreditType = "CreditCard", ProductCategory = "Bireysel", group = "Sandbox" },
  ["676770"] = { CardType = "MAESTRO", CreditType = "DebitCard", ProductCategory = "Bireysel", group = "Sandbox" },
}

-- The BIN entry (with its group) for a BIN or card number, or nil.
function C.bin_info(number)
  local b = C.bins[tostring(number or ""):sub(1, 6)]
  if not b then return nil end
  return b, group_by_name[b.group]
end

---------------------------------------------------------------------------- state

function C.state(sandbox_util)
  local st = sandbox_util.store("moka")
  if not st.payments then
    st.payments = {}         -- DealerPaymentId -> payment
    st.list = {}             -- payments in creation order
    st.next_id = 1000001
    st.next_trx = 5000001
    st.next_refund = 7000001
    st.next_customer = 30001
    st.threed = {}           -- threeDTrxCode -> session
    st.customers = {}        -- dealer code -> { by_id = {}, by_code = {} }
    st.cards = {}            -- lower-case CardToken -> stored card
    st.notify = {}           -- dealer code -> notification URL
  end
  return st
end

function C.next(st, field)
  local v = st[field]; st[field] = v + 1
  return v
end

---------------------------------------------------------------------------- replies, errors

local Raise = {}
Raise.__index = Raise
Raise.__tostring = function(e) return "moka error " .. e.code end

-- Stops the handler; the dispatcher answers {Data:null, ResultCode:code, ResultMessage:message}.
function C.raise(code, message) error(setmetatable({ code = code, message = message or "" }, Raise), 0) end
function C.is_raise(e) return getmetatable(e) == Raise end

C.EMPTY_ARRAY = "@empty-array"
C.null = cjson.null

local Special = {}
-- A reply that is not the JSON envelope (the 500 card).
function C.special(status, body, content_type)
  return setmetatable({ status = status, body = body, content_type = content_type }, Special)
end
function C.is_special(v) return getmetatable(v) == Special end

-- The Moka envelope. `data` may hold util.num("27.50") placeholders and C.EMPTY_ARRAY.
function C.envelope(data, code, message)
  local text = cjson.encode({ Data = (data == nil) and cjson.null or data, ResultCode = code or "Success",
    ResultMessage = message or "", Exception = cjson.null })
  text = text:gsub('"@num:([%-%d%.]+)"', "%1"):gsub('"@empty%-array"', "[]")
  return text
end

function C.money(minor) return "@num:" .. core.money_format(minor, 2) end

---------------------------------------------------------------------------- request values

local null = cjson.null

-- A string value (numbers arrive as their literal text), nil when absent, null or "".
function C.str(v)
  if v == nil or v == null then return nil end
  if type(v) == "string" then return v ~= "" and v or nil end
  if type(v) == "number" then return tostring(v) end
  return nil
end

-- An integer value: nil when absent/empty, false when present but not an integer.
function C.int(v)
  if v == nil or v == null or v == "" then return nil end
  if v == true then return 1 elseif v == false then return 0 end
  if type(v) == "string" and v:match("^%-?%d+$") and #v < 10 then return tonumber(v) end
  return false
end

-- A 0/1 flag (absent = 0); raises `bad` when it is anything else.
function C.flag(v, bad)
  local n = C.int(v)
  if n == nil then return 0 end
  if n ~= 0 and n ~= 1 then C.raise(bad) end
  return n
end

-- An amount in kurus from its exact text: nil when absent, false when malformed.
function C.amount(v)
  if v == nil or v == null or v == "" then return nil end
  if type(v) ~= "string" then return false end
  local minor = core.money_parse(v, 2)
  return minor or false
end

---------------------------------------------------------------------------- cards

-- Checks number, expiry (MM, YYYY or YY) and, when need_cvc, the CVC. Returns the normalised
-- card {number, month, year, holder} or nil.
function C.card(number, month, year, cvc, holder, need_cvc)
  number = C.str(number); month = C.str(month); year = C.str(year); cvc = C.str(cvc)
  if not number or not number:match("^%d+$") or #number < 12 or #number > 19 or not util.luhn(number) then return nil end
  local m = month and month:match("^%d%d?$") and tonumber(month)
  if not m or m < 1 or m > 12 then return nil end
  local y = year and (year:match("^%d%d%d%d$") or year:match("^%d%d$")) and tonumber(year)
  if not y then return nil end
  if y < 100 then y = 2000 + y end
  local now = os.date("!*t", ngx.time())
  if y < now.year or (y == now.year and m < now.month) or y > now.year + 30 then return nil end
  if need_cvc and not (cvc and cvc:match("^%d%d%d%d?$")) then return nil end
  return { number = number, month = string.format("%02d", m), year = tostring(y), holder = C.str(holder) or "" }
end

-- What a test card does: "approve", "decline" (+ bank code), "slow", "error500".
function C.behaviour(number)
  if number == "4000000000200008" then return "slow" end
  if number == "4000000000300006" then return "error500" end
  local ccc = number:match("^40000000001(%d%d%d)0%d$")
  if ccc and C.bank_errors[ccc] then return "decline", ccc end
  return "approve"
end

function C.card_type(number)
  local b = C.bin_info(number)
  if b then return b.CardType end
  local c = number:sub(1, 1)
  if c == "4" then return "VISA" elseif c == "5" or c == "2" then return "MASTER"
  elseif c == "3" then return "AMEX" elseif c == "9" then return "TROY" end
  return "UNKNOWN"
end

function C.sha256_hex(s) return core.digest("sha256", s, "hex") end

return C
