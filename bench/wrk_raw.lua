-- wrk script: sends the exact bytes of a request paykit sent (captured by the benchmark's
-- nginx), read from the file named after `--`:  wrk ... -s bench/wrk_raw.lua URL -- FILE
-- wrk builds its one static request with wrk.format() right after init(); answering the
-- captured bytes there keeps the request static (no Lua runs per request in wrk).
local raw
function init(args)
  local f = assert(io.open(args[1], "rb"))
  raw = f:read("*a")
  f:close()
  wrk.format = function() return raw end
end
