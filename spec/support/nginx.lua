-- The specs start nginx through the same runner the sandbox uses (paykit.sandbox.nginx).
return require "paykit.sandbox.nginx"
