-- wrk script of bench/capture.sh and bench/cluster.sh: urlencoded form POSTs
-- to /lead, each with a unique phone (+79 and 9 digits: the base given
-- after --, the wrk thread and a per-thread counter), so none is merged.
local threads, n = 0, 0
function setup(thread)
	thread:set("tid", threads)
	threads = threads + 1
end
function init(args)
	base = tonumber(args[1]) + tid * 1000000
end
function request()
	n = n + 1
	local body = string.format("name=Bench&phone=%%2B79%09d&uid=w%d&message=Hello+from+the+benchmark", base + n, base + n)
	return wrk.format("POST", "/lead", { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
end
