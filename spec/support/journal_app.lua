-- The handlers of the nginx journal specs (spec/journal_nginx_spec.lua): every worker of a
-- 4-worker nginx runs them, on a shared-dict or a Redis (cosocket) journal.
--   /contract?store=shdict|redis&port=&pw=          the store contract, run inside nginx
--   /purchase?store=..&sandbox=URL  (JSON body)     a journaled Moka purchase
--   /notify, /complete?store=..&sandbox=URL (form)  the notification / the buyer's return
--   /status?store=..&sandbox=URL&ref=REF            a status check
--   /grants?token=T                                 how many times T was granted (all workers)
local cjson = require "cjson"
local paykit = require "paykit"
local journal = require "paykit.journal"
local store = require "paykit.store"

local M = {}

local function the_store()
  local a = ngx.req.get_uri_args()
  if a.store == "redis" then return assert(store.redis { port = tonumber(a.port), password = a.pw, timeout = 5000 }) end
  return assert(store.shdict("paykit_journal"))
end

local function gateway()
  local a = ngx.req.get_uri_args()
  local gw = paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass", base_url = a.sandbox .. "/moka" }
  local j = journal.new { store = the_store() }
  return j:wrap(gw, { grant = function(_, token)
    ngx.shared.grants:incr(token, 1, 0)
    ngx.sleep(0.01) -- a grant takes a moment: the others arrive meanwhile
    return true
  end })
end

local function reply(t)
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(t))
end

local function body()
  ngx.req.read_body()
  return ngx.req.get_body_data() or ""
end

local function outcome(r, err)
  if not r then return reply { error = tostring(err) } end
  return reply { status = r.status, duplicate = r.duplicate, grant = r.journal and r.journal.grant,
                 state = r.journal and r.journal.state, worker = ngx.worker.pid() }
end

function M.contract()
  local s = the_store()
  local failed, passed = {}, 0
  for _, c in ipairs(require "spec.support.store_contract") do
    local ok, e = pcall(c.run, s, ngx.sleep)
    if ok then passed = passed + 1 else failed[#failed + 1] = c.name .. ": " .. tostring(e) end
  end
  reply { passed = passed, failed = failed }
end

function M.purchase()
  local r, err = gateway():purchase(cjson.decode(body()))
  if not r then return reply { error = tostring(err) } end
  reply { status = r.status, redirect_url = r.redirect_url, state = r.journal.state }
end

function M.notify() return outcome(gateway():notification { method = "POST", body = body() }) end

function M.complete() return outcome(gateway():complete(ngx.decode_args(body(), 0))) end

function M.status() return outcome(gateway():status(ngx.var.arg_ref)) end

function M.grants() reply { count = ngx.shared.grants:get(ngx.var.arg_token) or 0 } end

return M
