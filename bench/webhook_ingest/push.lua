-- wrk script: a realistic GitLab push delivery with a fresh Idempotency-Key per request and
-- pushes spread over 500 projects (so jobs do not all coalesce into one).
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  thread_id = tid or 0
  body_template = io.open(os.getenv("BENCH_PUSH_BODY")):read("*a")
  token = os.getenv("BENCH_TOKEN")
end

function request()
  counter = counter + 1
  local project = (counter * 7 + thread_id) % 500 + 1
  local body = body_template:gsub("__PROJECT__", tostring(project))
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-Gitlab-Event"] = "Push Hook",
    ["X-Gitlab-Token"] = token,
    ["Idempotency-Key"] = string.format("bench-%d-%d-%d", thread_id, counter, os.time()),
    ["User-Agent"] = "GitLab/18.3.0",
  }
  return wrk.format("POST", "/webhooks/gitlab", headers, body)
end
