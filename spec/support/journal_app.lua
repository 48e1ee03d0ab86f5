-- The handlers of the nginx journal specs (spec/journal_nginx_spec.lua): every worker of a
-- 4-worker nginx runs them, on a shared-dict or a Redis (cosocket) journal.
--   /contract?store=shdict|redis|cluster&port=&pw=&nodes=  the store contract, inside nginx
--   /purchase?store=..&sandbox=URL  (JSON body)     a journaled Moka purchase
--   /notify, /complete?store=..&sandbox=URL (form)  the notification / the buyer's return
--   /status?store=..&sandbox=URL&ref=REF            a status check
--   /grants?token=T                                 how many times T was granted (all workers)
--   /stuck?sandbox=URL&ref=REF                      a shdict record left in "sent" by a dead
--                                                   process, for a payment Moka has taken
--   /record?ref=REF                                 the shdict record, and the sweeper's counts
--   /idle?store=redis&port=&pw=&idle=S[&tls=1&sni=]   a command on a pooled connection Redis closed
-- init_worker(sandbox): every worker starts the sweeper's timer (shdict journal, every 0.3 s).
local cjson = require "cjson"
local paykit = require "paykit"
local journal = require "paykit.journal"
local store = require "paykit.store"

local M = {}

local function the_store()
  local a = ngx.req.get_uri_args()
  if a.store == "cluster" then
    local nodes = {}
    for n in tostring(a.nodes):gmatch("[^,]+") do nodes[#nodes + 1] = n end
    return assert(store.redis { cluster = true, nodes = nodes, timeout = 5000 })
  end
  if a.store == "redis" then
    return assert(store.redis { port = tonumber(a.port), password = a.pw, timeout = 5000,
                                tls = a.tls == "1" or nil, server_name = a.sni })
  end
  return assert(store.shdict("paykit_journal"))
end

local function moka(sandbox)
  return paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass", base_url = sandbox .. "/moka" }
end

local function grant(_, token)
  ngx.shared.grants:incr(token, 1, 0)
  ngx.sleep(0.01) -- a grant takes a moment: the others arrive meanwhile
  return true
end

local function gateway(s)
  local j = journal.new { store = s or the_store() }
  return j:wrap(moka(ngx.req.get_uri_args().sandbox), { grant = grant })
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

-- /tls_get?...&tls=1&sni=NAME: one set and get over TLS (the error text when refused)
function M.tls_get()
  local s = the_store()
  local ok, err = s:set("tls-check", "over tls", 60)
  if not ok then return reply { error = err.message, code = err.code } end
  reply { value = s:get("tls-check") }
end

-- /idle?store=redis&port=&pw=&idle=S[&tls=1&sni=NAME][&cmd=incr]: a SET, S seconds idle (the
-- connection waits in this worker's pool while Redis's `timeout` closes it), then on the same
-- worker a GET (cmd=incr: an INCR, a command that is not safe to repeat) through the store's
-- client; the error text when it fails
function M.idle()
  local s = the_store()
  local a = ngx.req.get_uri_args()
  local ok, err = s:set("idle-check", "before", 60)
  if not ok then return reply { step = "set", error = err.message } end
  ngx.sleep(tonumber(a.idle))
  if a.cmd == "incr" then
    local v, e, code = s.client:call("INCR", "idle-count")
    return reply { value = v, error = e, code = code }
  end
  local v, gerr = s:get("idle-check")
  reply { value = v, error = gerr and gerr.message }
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

function M.stuck()
  local j = journal.new { store = assert(store.shdict("paykit_journal")) }
  local ref = ngx.var.arg_ref
  assert(j:create { provider = "moka", reference = ref, amount = "9.99", currency = "TL" })
  assert(j:move("moka", ref, "sent"))
  local r = assert(moka(ngx.req.get_uri_args().sandbox):purchase { reference = ref, amount = "9.99", currency = "TL",
    client_ip = "127.0.0.1", three_d = false,
    card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "12", exp_year = "2031", cvc = "123" } })
  reply { status = r.status }
end

function M.record()
  local j = journal.new { store = assert(store.shdict("paykit_journal")) }
  local c = ngx.shared.grants
  reply { record = j:get("moka", ngx.var.arg_ref), sweeps = c:get("sweeps") or 0, skipped = c:get("skipped") or 0,
          resolved = c:get("resolved:" .. ngx.var.arg_ref) or 0 }
end

function M.init_worker(sandbox)
  local sweep = require "paykit.journal.sweep"
  ngx.timer.at(0, function()
    local jg = journal.new { store = assert(store.shdict("paykit_journal")) }:wrap(moka(sandbox), { grant = grant })
    assert(sweep.every(jg, 0.3, { older_than = 1, on_report = function(report)
      local c = ngx.shared.grants
      if not report then return end
      if report.skipped then c:incr("skipped", 1, 0) else c:incr("sweeps", 1, 0) end
      for _, x in ipairs(report.resolved or {}) do c:incr("resolved:" .. x.reference, 1, 0) end
    end }))
  end)
end

return M
