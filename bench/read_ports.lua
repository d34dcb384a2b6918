-- GET ports in turn; their paths are listed one per line in $PORT_PATHS.
local paths = {}
local i = 0
function init(args)
  for line in io.lines(os.getenv("PORT_PATHS")) do
    paths[#paths + 1] = line
  end
end
function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], { ["Accept"] = "application/vnd.org.midonet.Port-v3+json" })
end
