-- luacheck (Debian's lua-check): `luacheck lua spec examples bench`, run by `make lint` and `make test`.
-- One source tree for Lua 5.4 and LuaJIT: the globals of every Lua version are known ("max"),
-- and the code must not write any.
std = "max"
-- nginx's Lua module: ngx (read, and ngx.status/ngx.header/ngx.ctx written), ndk
read_globals = { "ndk" }
globals = { "ngx" }
-- Lines carry long error messages and doc text; past 160 columns a line is split.
max_line_length = 160
-- `self` is part of a method's signature even where a method does not use it.
self = false

files["spec"] = { std = "+busted" }
-- wrk's Lua scripts (bench/wrk_*.lua) set its hooks and fields as globals
files["bench/wrk_post.lua"] = { globals = { "wrk" } }
files["bench/wrk_raw.lua"] = { globals = { "wrk", "init" } }
files["spec/browser"] = { only = {} }
-- LDoc's configuration runs with LDoc's option table as its environment.
files["config.ld"] = { globals = { "project", "title", "description", "file", "topics", "use_markdown_titles",
  "dir", "format", "sort", "sort_modules", "no_space_before_args", "postprocess_html" } }
