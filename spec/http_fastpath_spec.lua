-- paykit.http's inline send (outside nginx, no scheduler, send_once not replaced) against the
-- general one (the same transport with send_once replaced by a wrapper, so request() goes
-- through it), each with and without a logger and hooks: over every fault server cell, both
-- transports (wire, curl), charging and idempotent calls, varied methods, bodies, headers and
-- per-call timeouts, the answers, the errors and what reached the server must be the same.
local http = require "paykit.http"
local fault = require "spec.support.fault"
local nginx = require "spec.support.nginx"

local P = fault.PORTS
local PLAIN = "http://127.0.0.1:" .. P.http .. "/"
local REFUSED = "http://127.0.0.1:" .. P.refused .. "/refused"
local CELLS = { "ok", "refused", "reset_before", "reset_mid", "hang", "s500", "s503", "garbage",
  "truncated", "oversize", "bad_chunk", "dup_cl", "bad_status", "drop_second", "idle_close" }
local RETRY = { attempts = 3, base_delay = 0.001, max_delay = 0.002, deadline = 30 }

local function make(transport, general, watched)
  local opts = { transport = transport, retry = RETRY, timeout = 0.4, connect_timeout = 0.4,
    correlation_header = false, sleep = function() end, random = function() return 0.5 end }
  if watched then
    opts.logger = function() end
    opts.hooks = { before = function() end, after = function() end }
  end
  local t = http.new(opts)
  if general then t.send_once = function(self, r) return http.send_once(self, r) end end
  return t
end

-- what a call gave, without what differs by nature (timings)
local function outcome(res, err)
  if res then
    local h = {}
    for k, v in pairs(res.headers or {}) do if k ~= "date" then h[k] = v end end
    return { status = res.status, body = res.body, headers = h, json = res.json, request_id = res.request_id }
  end
  -- libcurl's timeout messages carry the milliseconds that passed
  local message = err.message:gsub("%d+ milliseconds", "N milliseconds")
  return { kind = err.kind, code = err.code, retryable = err.retryable, message = message, op = err.op }
end

describe("paykit.http inline send against send_once", function()
  local f
  setup(function() f = fault.start(nginx.root()) end)
  teardown(function() if f then f.stop() end end)

  for _, transport in ipairs { "wire", "curl" } do
    it("gives the same answers, errors and server record (" .. transport .. ")", function()
      local n = 0
      for _, cell in ipairs(CELLS) do
        for variant = 1, 4 do
          n = n + 1
          local idempotent = (variant % 2 == 0) or nil
          if variant == 3 then idempotent = false end
          local method = variant == 4 and "GET" or "POST"
          local body = method == "POST" and ('{"n":' .. n .. ',"s":"' .. string.rep("x", variant * 37) .. '"}') or nil
          local url = cell == "refused" and REFUSED or (PLAIN .. cell .. "/p/" .. n .. "?v=" .. variant)
          local req = { method = method, url = url, body = body, op = "spec.fast", idempotent = idempotent,
            headers = { ["Content-Type"] = "application/json", ["X-N"] = tostring(n) },
            json = variant == 2 or nil, timeout = variant == 3 and 0.35 or nil,
            read_timeout = variant == 4 and 0.3 or nil }
          local seen = {}
          for _, mode in ipairs { { false, false }, { true, false }, { false, true }, { true, true } } do
            local t = make(transport, mode[1], mode[2])
            f.reset()
            local calls = (cell == "drop_second" or cell == "idle_close") and 2 or 1
            local outs = {}
            for i = 1, calls do
              local r = {}
              for k, v in pairs(req) do r[k] = v end
              r.headers = { ["Content-Type"] = "application/json", ["X-N"] = tostring(n) }
              if i == 2 and cell == "idle_close" then require("socket").sleep(0.5) end
              outs[i] = outcome(t:request(r))
            end
            t:close()
            local log = f.log()
            local reached = {}
            for _, q in ipairs(log.requests) do reached[#reached + 1] = q.cell .. " " .. q.method .. " " .. q.path end
            seen[#seen + 1] = { outs = outs, reached = reached }
          end
          for i = 2, #seen do
            assert.same(seen[1], seen[i], cell .. " variant " .. variant .. " mode " .. i)
          end
        end
      end
    end)
  end
end)
