-- POST a bridge port; the bridge's ports URL comes from the command line.
wrk.method = "POST"
wrk.body = '{"type":"Bridge"}'
wrk.headers["Content-Type"] = "application/vnd.org.midonet.Port-v3+json"
