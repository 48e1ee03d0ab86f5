-- wrk script: the same JSON POST every paykit benchmark client sends.
local payload = dofile("bench/payload.lua")
wrk.method = "POST"
wrk.body = payload.request
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
