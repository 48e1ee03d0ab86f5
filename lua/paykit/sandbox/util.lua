-- What the sandbox's provider simulators share: request reading, replies, HTML pages,
-- per-provider state, outbound notifications with retries, a notification sink, and the
-- dispatch that puts every provider request through the fault modes and the request log
-- (paykit.sandbox.faults).
-- Runs inside nginx (LuaJIT) only. The simulators' state lives in Lua memory (one worker);
-- armed faults and the request log live in shared dicts (any number of workers).
local cjson = require "cjson.safe"
local core = require "paykit.core"
local urls = require "paykit.url"
local faults = require "paykit.sandbox.faults"

local M = {}

-- providers: those dispatched by paykit.sandbox's config (its PROVIDERS), whose faults the
-- admin calls accept.
-- simulators: {{name=, module=, title=, doc=}, ...}, written into the config by
-- paykit.sandbox.start from paykit.kit.registry (used directly here when not configured).
local config = { port = 8790 }
local stores = {}      -- provider name -> state table
local sinks = {}       -- sink name -> list of recorded requests
local outbox = {}      -- every outbound notification attempt, in order

local function from_registry()
  local out = {}
  for _, e in ipairs(require("paykit.kit.registry").simulators()) do
    out[#out + 1] = { name = e.name, module = e.simulator, title = e.title, doc = e.doc }
  end
  return out
end

local function refresh()
  config.simulators = config.simulators or from_registry()
  config.providers, config.modules = {}, {}
  for i, e in ipairs(config.simulators) do config.providers[i] = e.name; config.modules[e.name] = e.module end
end

function M.configure(opts)
  for k, v in pairs(opts or {}) do config[k] = v end
  refresh()
end

-- The set of provider names the sandbox serves.
local function provider_set()
  if not config.providers then refresh() end
  local set = {}
  for _, p in ipairs(config.providers) do set[p] = true end
  return set
end

function M.base_url() return "http://127.0.0.1:" .. config.port end

-- Per-provider state, cleared by POST /_sandbox/reset.
function M.store(name)
  local s = stores[name]
  if not s then s = {}; stores[name] = s end
  return s
end

function M.reset()
  stores = {}
  sinks = {}
  outbox = {}
end

---------------------------------------------------------------------------- requests

-- The raw request body ("" when there is none).
function M.body()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return data end
  local file = ngx.req.get_body_file()
  if not file then return "" end
  local f = io.open(file, "rb")
  if not f then return "" end
  data = f:read("*a"); f:close()
  return data
end

-- The body as an x-www-form-urlencoded map (nil when it is not valid).
function M.form()
  local map = core.form_decode(M.body())
  return map
end

-- The raw query string ("" when absent) and its decoded map.
function M.query_string() return ngx.var.args or "" end
function M.query() return (core.query_decode(M.query_string())) or {} end

-- The request path below the provider's prefix: "/moka/PaymentDealer/DoVoid" -> "/PaymentDealer/DoVoid".
function M.subpath(name)
  local uri = ngx.var.uri
  return uri:sub(#name + 2)
end

function M.json_body()
  local decoded = cjson.decode(M.body())
  if type(decoded) ~= "table" then return nil end
  return decoded
end

-- Decodes JSON text keeping every number as its literal text (27.50 -> "27.50"), so that
-- amounts never pass through a float: read them with core.money_parse. Returns value or nil, err.
-- (JSON numbers and numeric strings look the same to the caller afterwards.)
function M.json_decode_exact(text)
  local out, pos, n = {}, 1, #text
  while pos <= n do
    local i = text:find('["%-%d]', pos)
    if not i then out[#out + 1] = text:sub(pos); break end
    out[#out + 1] = text:sub(pos, i - 1)
    if text:sub(i, i) == '"' then
      local j = i + 1
      while true do
        local k = text:find('[\\"]', j)
        if not k then return nil, "unterminated string" end
        if text:sub(k, k) == '"' then j = k; break end
        j = k + 2
      end
      out[#out + 1] = text:sub(i, j)
      pos = j + 1
    else
      local lit = text:match("^%-?[%d%.eE%+%-]*", i)
      out[#out + 1] = '"' .. lit .. '"'
      pos = i + #lit
    end
  end
  return cjson.decode(table.concat(out))
end

---------------------------------------------------------------------------- replies

local function write(status, body, content_type, headers)
  ngx.status = status
  ngx.header["Content-Type"] = content_type or "text/plain; charset=utf-8"
  for k, v in pairs(headers or {}) do ngx.header[k] = v end
  if body and body ~= "" then ngx.print(body) end
  return ngx.exit(status)
end

-- Raised by send while dispatch captures a simulator's answer (it ends the handler, as
-- ngx.exit would); caught by dispatch.
local CAPTURED = setmetatable({}, { __tostring = function() return "sandbox: answer captured" end })

-- Sends the answer and ends the request. Inside dispatch the answer is captured instead, so
-- that a fault can delay, replace, cut or drop it.
function M.send(status, body, content_type, headers)
  local ctx = ngx.ctx
  if ctx.sandbox_capture then
    if not ctx.sandbox_answer then
      ctx.sandbox_answer = { status = status, body = body or "", content_type = content_type, headers = headers }
    end
    error(CAPTURED, 0)
  end
  return write(status, body, content_type, headers)
end

function M.json(status, value, headers)
  return M.send(status, cjson.encode(value), "application/json", headers)
end

-- A JSON array, "[]" when empty (Debian's cjson has no array metatable).
function M.json_array(status, list, headers)
  if #list == 0 then return M.send(status, "[]", "application/json", headers) end
  return M.json(status, list, headers)
end

-- JSON with some number fields written from exact decimal strings: raw[k] = "27.50" puts the
-- bare number 27.50 in place of the placeholder value, never through a float.
function M.json_exact(status, value, headers)
  local text = cjson.encode(value)
  text = text:gsub('"@num:([%-%d%.]+)"', "%1")
  return M.send(status, text, "application/json", headers)
end
function M.num(decimal) return "@num:" .. decimal end

-- Whether a string of digits passes the Luhn check (the simulators' card checks).
function M.luhn(digits)
  local sum, alt = 0, false
  for i = #digits, 1, -1 do
    local d = digits:byte(i) - 48
    if alt then d = d * 2; if d > 9 then d = d - 9 end end
    sum = sum + d; alt = not alt
  end
  return sum % 10 == 0
end

function M.redirect(url, status)
  return M.send(status or 302, "", "text/plain", { Location = url })
end

function M.escape_html(s)
  return (tostring(s or ""):gsub("[&<>\"']", {
    ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }))
end

-- A plain HTML page in the sandbox's look. `body` is trusted HTML; escape values with escape_html.
function M.page(title, body, status)
  local html = table.concat({
    "<!doctype html><html><head><meta charset=\"utf-8\">",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
    "<title>", M.escape_html(title), "</title><style>",
    "body{font-family:system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em;color:#222}",
    "h1{font-size:1.4em}.sandbox{background:#fff3cd;border:1px solid #e0c36c;padding:.4em .8em;border-radius:4px;font-size:.9em}",
    "form{margin:1em 0}label{display:block;margin:.5em 0}input,select{font-size:1em;padding:.3em}",
    "button{font-size:1em;padding:.5em 1.2em;margin:.3em .3em .3em 0;cursor:pointer}",
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}",
    "</style></head><body><p class=\"sandbox\">paykit sandbox: no real money moves here.</p>",
    "<h1>", M.escape_html(title), "</h1>", body, "</body></html>" })
  return M.send(status or 200, html, "text/html; charset=utf-8")
end

-- A self-submitting form (how 3D pages hand the browser back with a POST).
function M.autopost(url, fields, title)
  local inputs = {}
  for _, kv in ipairs(fields) do
    inputs[#inputs + 1] = string.format('<input type="hidden" name="%s" value="%s">',
      M.escape_html(kv[1]), M.escape_html(kv[2]))
  end
  return M.page(title or "Returning to the shop", string.format(
    '<form id="back" method="post" action="%s">%s<button type="submit">Continue</button></form>'
    .. '<script>document.getElementById("back").submit()</script>',
    M.escape_html(url), table.concat(inputs)))
end

---------------------------------------------------------------------------- outbound HTTP

-- The sandbox only ever talks to this machine: notifications to any other host are not sent.
local function loopback(host)
  return host == "localhost" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end
M.loopback = loopback

local function parse_url(u)
  local parts, err = urls.parse(u)
  if not parts then return nil, err end
  if parts.tls then return nil, "the sandbox notifies over plain HTTP only" end
  if not loopback(parts.host) then return nil, "the sandbox sends nothing off this machine (" .. parts.host .. ")" end
  return parts.host, parts.port, parts.target
end

-- One HTTP/1.0 request over a cosocket (the answer is read until the server closes).
-- Returns status, body or nil, err.
function M.http_request(method, url, headers, body, timeout_ms)
  local host, port, path = parse_url(url)
  if not host then return nil, port end
  local sock = ngx.socket.tcp()
  sock:settimeout(timeout_ms or 5000)
  local ok, err = sock:connect(host, port)
  if not ok then return nil, "connect: " .. tostring(err) end
  local lines = { method .. " " .. path .. " HTTP/1.0", "Host: " .. host .. ":" .. port,
                  "User-Agent: paykit-sandbox", "Connection: close" }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  local _, serr = sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or ""))
  if serr then sock:close(); return nil, "send: " .. serr end
  local data, rerr, partial = sock:receive("*a")
  sock:close()
  data = data or partial
  if not data or data == "" then return nil, "receive: " .. tostring(rerr) end
  local status = tonumber(data:match("^HTTP/%d%.%d (%d%d%d)"))
  if not status then return nil, "bad status line" end
  local sep = data:find("\r\n\r\n", 1, true)
  return status, sep and data:sub(sep + 4) or ""
end

-- Sends a notification in the background and retries it.
-- opts: url, method ("POST"), body, headers, attempts (3), delay (seconds between tries, 0.2),
--       accept(status, body) -> true when the merchant took it (default: 2xx),
--       provider (for the outbox record), on_done(accepted, attempts).
function M.notify(opts)
  local attempts = opts.attempts or 3
  local accept = opts.accept or function(status) return status >= 200 and status < 300 end
  local function run(premature, n)
    if premature then return end
    local status, body = M.http_request(opts.method or "POST", opts.url, opts.headers, opts.body, 5000)
    local accepted = status ~= nil and accept(status, body) or false
    outbox[#outbox + 1] = { provider = opts.provider, url = opts.url, method = opts.method or "POST",
      attempt = n, status = status, reply = status and body or nil, error = (not status) and body or nil,
      accepted = accepted }
    if accepted or n >= attempts then
      if opts.on_done then opts.on_done(accepted, n) end
      return
    end
    ngx.timer.at(opts.delay or 0.2, run, n + 1)
  end
  local ok, err = ngx.timer.at(0, run, 1)
  if not ok then ngx.log(ngx.ERR, "sandbox: cannot schedule notification: ", err) end
end

---------------------------------------------------------------------------- dispatch

-- Runs a simulator and returns its answer {status, body, content_type, headers}.
local function run(name, mod)
  local ctx = ngx.ctx
  ctx.sandbox_capture = true
  local ran, err = xpcall(function() return mod.handle(M) end, function(e)
    if e == CAPTURED then return e end
    return debug.traceback(e)
  end)
  ctx.sandbox_capture = false
  if ctx.sandbox_answer then return ctx.sandbox_answer end
  if not ran then
    ngx.log(ngx.ERR, "sandbox ", name, ": ", err)
    return { status = 500, body = "sandbox internal error\n" }
  end
  return { status = 200, body = "" } -- the handler ended without an answer
end

-- Closes the connection without an answer (nginx's 444).
local function drop() return ngx.exit(444) end

-- Every request to /<provider>/...: logged, then answered by the simulator, through the first
-- armed fault that matches it. The provider's own test controls (/<provider>/_sandbox/...)
-- are neither faulted nor logged.
function M.dispatch(name)
  if not config.modules then refresh() end
  local ok, mod = pcall(require, config.modules[name] or ("paykit.sandbox." .. name))
  if not ok then
    ngx.log(ngx.ERR, "sandbox: ", mod)
    return write(501, "the " .. name .. " simulator is not available\n")
  end
  local path = M.subpath(name)
  if path:find("^/_sandbox/") or not faults.available() then
    local a = run(name, mod)
    return write(a.status, a.body, a.content_type, a.headers)
  end
  local method = ngx.req.get_method()
  local entry = faults.received(name, method, path)
  local f = faults.take(name, method, path)
  ngx.req.read_body() -- a fault acts after the whole request was read
  local answer
  if f then
    entry.fault, entry.mode, entry.use = f.id, f.mode, f.use
    entry.processed = faults.processes(f)
    if entry.processed then answer = run(name, mod) end
  else
    entry.processed = true
    answer = run(name, mod)
  end
  local mode = f and f.mode
  if mode == "drop" or mode == "drop_before" then
    entry.outcome = "dropped"
    faults.update(entry)
    return drop()
  end
  local status, body, ctype, headers = faults.shape(f, answer)
  entry.status = status
  if mode == "delay" then
    entry.outcome, entry.delay_ms = "delayed", f.delay_ms
    faults.update(entry)
    ngx.sleep(f.delay_ms / 1000)
  end
  entry.outcome = "answered"
  faults.update(entry)
  return write(status, body, ctype, headers)
end

-- /_sink/<name>[?reply=TEXT&status=N]: records each request; answers `reply` (default "OK").
-- GET /_sink/<name>/log: the recorded requests as JSON. DELETE /_sink/<name>/log clears them.
function M.sink()
  local name, rest = ngx.var.uri:match("^/_sink/([%w%-_%.]+)(.*)$")
  if not name then return M.send(404, "no such sink\n") end
  if rest == "/log" then
    if ngx.req.get_method() == "DELETE" then sinks[name] = nil; return M.send(204, "") end
    return M.json_array(200, sinks[name] or {})
  end
  local q = M.query()
  local list = sinks[name] or {}
  sinks[name] = list
  list[#list + 1] = { method = ngx.req.get_method(), uri = ngx.var.request_uri, query = M.query_string(),
    headers = ngx.req.get_headers(), body = M.body() }
  return M.send(tonumber(q.status) or 200, q.reply or "OK", "text/plain")
end

local function refuse(status, field, message)
  return M.json(status, { error = message, field = field })
end

-- /_sandbox/faults: POST arms one ({provider, mode, count, match, method, ...}), GET lists the
-- armed ones (?provider=), DELETE disarms (?provider=, or /_sandbox/faults/<id>).
local function admin_faults(method, id)
  local providers = provider_set()
  local q = M.query()
  if q.provider and not providers[q.provider] then return refuse(400, "provider", "unknown provider " .. q.provider) end
  if id ~= nil and not id:match("^%d+$") then return refuse(404, "id", "no such fault") end
  id = tonumber(id)
  if method == "POST" and not id then
    local t, err = cjson.decode(M.body())
    if type(t) ~= "table" or err then return refuse(400, nil, "the request body must be a JSON object") end
    local f, field, message = faults.check(t, providers)
    if not f then return refuse(400, field, message) end
    local armed, why = faults.arm(f)
    if not armed then return refuse(409, "count", why) end
    return M.json(201, armed)
  elseif method == "GET" then
    local out = {}
    for _, f in ipairs(faults.list()) do
      if (q.provider == nil or f.provider == q.provider) and (id == nil or f.id == id) then out[#out + 1] = f end
    end
    if id then
      if not out[1] then return refuse(404, "id", "no such fault (or it is used up)") end
      return M.json(200, out[1])
    end
    return M.json_array(200, out)
  elseif method == "DELETE" then
    local n = faults.clear(q.provider, id)
    if id and n == 0 then return refuse(404, "id", "no such fault") end
    return M.json(200, { cleared = n })
  end
  return refuse(405, "method", "use GET, POST or DELETE")
end

-- /_sandbox/requests: GET the request log (?provider=, path= as a fault's match, method=,
-- since= a seq: only later requests), DELETE empties it.
local function admin_requests(method)
  local providers = provider_set()
  local q = M.query()
  if method == "DELETE" then
    faults.clear_requests(providers)
    return M.json(200, { cleared = true })
  elseif method ~= "GET" then
    return refuse(405, "method", "use GET or DELETE")
  end
  if q.provider and not providers[q.provider] then return refuse(400, "provider", "unknown provider " .. q.provider) end
  if q.path and q.path:sub(1, 1) ~= "/" then return refuse(400, "path", "path must start with /") end
  local since = q.since and tonumber(q.since)
  if q.since and not (since and since >= 0 and since == math.floor(since)) then
    return refuse(400, "since", "since must be a request's seq (a whole number)")
  end
  local list, last = faults.requests(q.provider, q.path, q.method and q.method:upper(), since)
  local body = cjson.encode { count = #list, last = last, totals = faults.totals(providers), requests = list }
  if #list == 0 then body = body:gsub('"requests":{}', '"requests":[]') end
  return M.send(200, body, "application/json")
end

-- /_sandbox/reset (POST) clears all state (faults and the request log too);
-- /_sandbox/outbox (GET) lists notification attempts; /_sandbox/faults, /_sandbox/requests above.
function M.admin()
  local what, id = ngx.var.uri:match("^/_sandbox/([%w_]+)/?(.*)$")
  local method = ngx.req.get_method()
  if id == "" then id = nil end
  if what == "reset" and method == "POST" and not id then
    M.reset()
    if faults.available() then faults.reset(provider_set()) end
    return M.json(200, { result = "reset" })
  elseif what == "outbox" and not id then
    return M.json_array(200, outbox)
  elseif (what == "faults" or what == "requests") and not faults.available() then
    return refuse(501, nil, "this nginx has no lua_shared_dict " .. faults.FAULTS_DICT .. " / " .. faults.REQUESTS_DICT)
  elseif what == "faults" then
    return admin_faults(method, id)
  elseif what == "requests" and not id then
    return admin_requests(method)
  end
  return M.send(404, "unknown sandbox call\n")
end

function M.index()
  if not config.simulators then refresh() end
  local base = M.base_url()
  local items = {}
  for _, e in ipairs(config.simulators) do
    items[#items + 1] = string.format("<li>%s: <code>%s/%s</code>%s</li>", M.escape_html(e.title),
      base, e.name, (e.doc and e.doc ~= "") and (" (" .. M.escape_html(e.doc) .. ")") or "")
  end
  return M.page("paykit sandbox", "<p>Local simulators of the payment providers:</p><ul>" .. table.concat(items) .. "</ul>")
end

return M
