-- wrk script: every request POSTs one chat completion with a bearer key (plain or streamed).
--
--   wrk -t1 -c16 -d8s -s bench/chat.lua http://127.0.0.1:PORT/v1/chat/completions -- KEY STREAM MODEL MAX_TOKENS
--
-- STREAM is 1 or 0. wrk times each request until the response is complete, so for a stream that is
-- the last SSE chunk ("data: [DONE]" and the end of the chunked body), i.e. after the gateway settled.
-- done() prints one machine-readable line, "BENCH_JSON {...}", that bench/run.py parses.

function init(args)
   local key = args[1] or error("usage: -- KEY STREAM MODEL MAX_TOKENS")
   local stream = (args[2] == "1") and "true" or "false"
   local model = args[3] or "gpt-4o-mini"
   local max_tokens = tonumber(args[4] or "256")
   wrk.method = "POST"
   wrk.headers["Authorization"] = "Bearer " .. key
   wrk.headers["Content-Type"] = "application/json"
   wrk.body = string.format(
      '{"model":"%s","max_tokens":%d,"stream":%s,"messages":['
         .. '{"role":"system","content":"You are a concise assistant."},'
         .. '{"role":"user","content":"Name one colour and one animal, in a short sentence."}]}',
      model, max_tokens, stream)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
         .. '"mean_us":%.1f,"max_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end
