-- The benchmark's server nginx (1 worker): canned provider answers, and a capture of the exact
-- request bytes a client sent (raw header + body), so that wrk can send those same bytes.
--   location = /PaymentDealer/DoDirectPaymentThreeD {
--     content_by_lua_block { require("bench.nginx_server").answer("moka") } }
--   answer(name, true): the same with a new X-Request-Id header on every answer
--   GET /__capture?arm=1 | ?arm=0 | ?key=<port><uri> (the first request captured for it) | ?clear=<key>
local M = {}
local fixtures

function M.answer(name, fresh)
  fixtures = fixtures or require "bench.fixtures"
  ngx.req.read_body()
  local cap = ngx.shared.bench_cap
  if cap:get("armed") then
    cap:add(ngx.var.server_port .. ngx.var.uri, ngx.req.raw_header() .. (ngx.req.get_body_data() or ""))
  end
  local text = fixtures[name .. "_answer"]
  -- fresh: every answer head new (nginx's random 32-hex $request_id)
  if fresh then ngx.header["X-Request-Id"] = ngx.var.request_id end
  ngx.header["Content-Length"] = #text
  ngx.print(text)
end

function M.capture()
  local cap, args = ngx.shared.bench_cap, ngx.req.get_uri_args()
  if args.arm then cap:set("armed", args.arm == "1"); return ngx.print("ok") end
  if args.clear then cap:delete(args.clear); return ngx.print("ok") end
  local v = cap:get(args.key or "")
  if not v then ngx.status = 404; return ngx.print("nothing captured for " .. tostring(args.key)) end
  ngx.header["Content-Length"] = #v
  ngx.print(v)
end

return M
