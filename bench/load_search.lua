-- wrk script: POST the body in $FATHOM_LOAD_BODY to the path in $FATHOM_LOAD_PATH.
local f = assert(io.open(os.getenv("FATHOM_LOAD_BODY"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.path = os.getenv("FATHOM_LOAD_PATH")
wrk.headers["Content-Type"] = "application/json"
