#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target under corpus/<target>/: a handful of realistic
inputs each (what the providers, clients and store really send), in each target's input
format (see the target's doc comment). Run it again after changing a format; the files are
checked in, so CI does not need Python."""

import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def sse(*events):
    """An SSE body: each event a dict (event name optional) or a raw string."""
    out = []
    for e in events:
        if isinstance(e, str):
            out.append(e)
        else:
            name, data = e
            head = f"event: {name}\n" if name else ""
            out.append(f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n")
    return "".join(out)


def j(value):
    return json.dumps(value, separators=(",", ":"))


# --- sse_decoder: a cut-choosing byte, then the body --------------------------------------
write("sse_decoder", "lf_events", "\x07" + ": keep-alive\n\nevent: update\ndata: first\ndata:second\nid: 7\n\ndata: [DONE]\n\n")
write("sse_decoder", "crlf_byte_by_byte", "\x00data: a\r\n\r\ndata: b\r\rdata: {\"x\": \"\u00e9\"}\r\n\r\n")
write("sse_decoder", "bom_and_partial", "\x2a\ufeffdata: one\n\nevent: ping\n\nretry: 10\nid\ndata: half")

# --- provider_streams: a format byte, a cut-choosing byte, then the body -----------------
chunk = lambda delta, finish=None, **extra: {
    "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
write("provider_streams", "openai_text", "o\x09" + sse(
    (None, chunk({"role": "assistant", "content": ""})),
    (None, chunk({"content": "Hello"})),
    (None, chunk({"content": " there"}, "stop")),
    (None, {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                      "prompt_tokens_details": {"cached_tokens": 0}}}),
    "data: [DONE]\n\n"))
write("provider_streams", "openai_tool_calls", "o\x03" + sse(
    (None, chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                  "function": {"name": "get_weather", "arguments": ""}}]})),
    (None, chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]})),
    (None, chunk({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]})),
    (None, chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "now", "arguments": "{}"}}]}, "tool_calls")),
    "data: [DONE]\n\n"))
write("provider_streams", "openai_error", "o\x05" + sse(
    (None, {"error": {"message": "Rate limit reached", "type": "rate_limit_error", "code": 429}})))
write("provider_streams", "openai_whole", "w\x00" + j({
    "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi",
                 "tool_calls": [{"id": "call_1", "type": "function",
                                 "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                 "finish_reason": "tool_calls"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}))
write("provider_streams", "anthropic_text_and_tool", "a\x11" + sse(
    ("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                       "content": [], "usage": {"input_tokens": 12, "output_tokens": 1,
                                                "cache_read_input_tokens": 4}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check."}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1,
                             "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Paris\"}"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 20}}),
    ("message_stop", {"type": "message_stop"})))
write("provider_streams", "anthropic_error", "a\x01" + sse(
    ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})))
write("provider_streams", "gemini_text_and_call", "g\x0d" + sse(
    (None, {"candidates": [{"content": {"role": "model", "parts": [{"text": "Checking"}, {"text": "hmm", "thought": True}]}}]}),
    (None, {"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 5, "thoughtsTokenCount": 2,
                          "cachedContentTokenCount": 1}})).replace("\n\n", "\r\n\r\n"))
write("provider_streams", "responses_text_and_call", "r\x1f" + sse(
    ("response.created", {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}),
    ("response.output_text.delta", {"type": "response.output_text.delta", "output_index": 0, "delta": "Hi"}),
    ("response.output_item.added", {"type": "response.output_item.added", "output_index": 1,
                                    "item": {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": ""}}),
    ("response.function_call_arguments.delta", {"type": "response.function_call_arguments.delta",
                                                "output_index": 1, "delta": "{\"a\":1}"}),
    ("response.completed", {"type": "response.completed", "response": {"id": "resp_1", "status": "completed",
                            "usage": {"input_tokens": 10, "output_tokens": 3,
                                      "input_tokens_details": {"cached_tokens": 2}}}})))
write("provider_streams", "responses_incomplete", "r\x02" + sse(
    ("response.incomplete", {"type": "response.incomplete",
                             "response": {"incomplete_details": {"reason": "max_output_tokens"}}})))

# --- request_bodies: a byte naming the body type, then the body ---------------------------
write("request_bodies", "agent", "A" + j({
    "name": "support", "model": "openai/gpt-4o-mini", "instructions": "Be brief.",
    "tools": [{"name": "lookup", "description": "Find an order", "kind": "http", "url": "http://127.0.0.1:9/lookup",
               "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}},
              {"name": "clock", "kind": "builtin"}, {"name": "ask_user", "kind": "client"}],
    "limits": {"max_steps": 8}}))
write("request_bodies", "session", "S" + j({"agent": "support", "metadata": {"user": "u_1", "tier": [1, {"a": None}]}}))
write("request_bodies", "message", "M" + j({"content": "Where is my order?", "mode": "stream", "on_busy": "interrupt"}))
write("request_bodies", "tenant", "T" + j({"name": "acme"}))
write("request_bodies", "key", "K" + j({"scope": "admin"}))
write("request_bodies", "chat", "C" + j({
    "model": "openai/gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
    "messages": [{"role": "system", "content": "Be brief."},
                 {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                              {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]},
                 {"role": "assistant", "content": None, "tool_calls": [
                     {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                 {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
    "stop": ["\n\n"], "temperature": 0.2, "max_completion_tokens": 64, "user": "u_1"}))
write("request_bodies", "response", "R" + j({
    "model": "openai/gpt-4o-mini", "instructions": "Be brief.", "stream": True,
    "input": [{"role": "developer", "content": "Answer in French."},
              {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
              {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
              {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
    "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
    "tool_choice": "auto", "text": {"format": {"type": "json_object"}}, "metadata": {"k": "v"}}))
write("request_bodies", "conversation", "V" + j({"metadata": {"topic": "demo"}, "items": [
    {"type": "message", "role": "user", "content": "Hello"},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi!"}]}]}))
write("request_bodies", "conversation_update", "U" + j({"metadata": {"topic": "renamed"}}))
write("request_bodies", "items", "I" + j({"items": [{"role": "user", "content": "More?"}]}))

# --- stored_events: event bodies, one per line, as the store holds them ------------------
AGENT = {"id": "agt_01J0000000000000000000000A", "name": "support", "version": 2, "instructions": "Be brief.",
         "model": "openai/gpt-4o-mini",
         "tools": [{"name": "lookup", "description": "", "parameters": {"type": "object"}, "kind": "http", "url": "http://h/x"},
                   {"name": "ask_user", "parameters": {}, "kind": "client"}],
         "limits": {"max_steps": 4, "max_model_attempts": 2, "max_output_tokens": 256, "context_messages": 32}}
RUN = "run_01J0000000000000000000000R"
USAGE = {"input_tokens": 10, "output_tokens": 5, "cached_input_tokens": 2}
events = [
    {"type": "session_started", "tenant": "ten_00000000000000000000000000", "agent": AGENT, "metadata": {"user": "u_1"}},
    {"type": "run_started", "run_id": RUN, "input": {"role": "user", "parts": [{"type": "text", "text": "Order 7?"}]},
     "options": {"temperature": 0.5, "tools": [{"name": "f", "kind": "client"}], "annotations": {"a": 1}}},
    {"type": "model_called", "run_id": RUN, "step": 1, "attempt": 1},
    {"type": "model_failed", "run_id": RUN, "step": 1, "attempt": 1, "error": "429", "retryable": True},
    {"type": "model_called", "run_id": RUN, "step": 1, "attempt": 2},
    {"type": "model_replied", "run_id": RUN, "step": 1, "usage": USAGE, "finish": "tool_calls", "model": "openai/gpt-4o-mini",
     "latency_ms": 120, "queue_ms": 3, "target": "main#0", "attempts": 2, "cost_usd": 0.00012,
     "message": {"role": "assistant", "parts": [{"type": "text", "text": "Looking."},
                                                {"type": "tool_call", "id": "call_1", "name": "lookup", "arguments": {"id": "7"}}]}},
    {"type": "tool_called", "run_id": RUN, "call_id": "call_1", "name": "lookup", "arguments": {"id": "7"},
     "idempotency_key": "ses_01J0000000000000000000000S:6"},
    {"type": "tool_returned", "run_id": RUN, "call_id": "call_1", "content": "shipped", "is_error": False},
    {"type": "model_called", "run_id": RUN, "step": 2, "attempt": 1},
    {"type": "model_replied", "run_id": RUN, "step": 2, "usage": USAGE, "finish": "stop",
     "message": {"role": "assistant", "parts": [{"type": "text", "text": "It shipped."}]}},
    {"type": "run_completed", "run_id": RUN, "output": "It shipped.", "usage": USAGE},
]
write("stored_events", "one_run_with_a_tool", "\n".join(j(e) for e in events) + "\n")
RUN2 = "run_01J0000000000000000000002R"
write("stored_events", "between_runs", "\n".join(j(e) for e in [
    events[0],
    {"type": "messages_added", "messages": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]},
                                            {"role": "tool", "parts": [{"type": "tool_result", "call_id": "c", "content": "x", "is_error": True}]}]},
    {"type": "agent_upgraded", "agent": AGENT},
    {"type": "run_started", "run_id": RUN2, "input": {"role": "user", "parts": [{"type": "image", "url": "http://i/x.png"}]}},
    {"type": "run_cancelled", "run_id": RUN2, "reason": "interrupted"},
    {"type": "run_started", "run_id": RUN, "input": {"role": "user", "parts": []}},
    {"type": "run_failed", "run_id": RUN, "code": "model_failed", "error": "boom"},
    {"type": "session_renamed", "name": "from a newer keel"},
]) + "\n")

# --- snapshots: a stored SessionState --------------------------------------------------------
write("snapshots", "active_run", j({
    "tenant": "ten_00000000000000000000000000", "agent": AGENT, "last_seq": 6, "status": "running",
    "active": {"run_id": RUN, "step": 1, "attempt": 2, "model_pending": False, "replied": True, "reply_had_tools": True,
               "tools": [{"call_id": "call_1", "name": "lookup", "arguments": {"id": "7"}, "idempotency_key": None}],
               "last_text": "Looking.", "usage": USAGE, "failure": None, "client_tools": ["ask_user"]},
    "message_count": 2, "runs_finished": 0, "usage": USAGE, "last_run": None}))
write("snapshots", "idle_awaiting", j({
    "tenant": "ten_00000000000000000000000000", "agent": AGENT, "last_seq": 11, "status": "idle", "active": None,
    "message_count": 5, "runs_finished": 1, "usage": USAGE, "last_run": [RUN, "completed"],
    "awaiting": [{"call_id": "call_9", "name": "ask_user", "arguments": {}, "idempotency_key": "k"}]}))
write("snapshots", "new", j({"tenant": None, "agent": None, "last_seq": 0, "status": "new", "active": None,
                             "message_count": 0, "runs_finished": 0, "usage": USAGE, "last_run": None}))


# --- event_stream_frames: a cut-choosing byte, then AWS event-stream frames ---------------
def frame(headers, payload):
    def header(name, value):
        name, value = name.encode(), value.encode()
        return bytes([len(name)]) + name + b"\x07" + struct.pack(">H", len(value)) + value
    head = b"".join(header(k, v) for k, v in headers)
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def bedrock_event(kind, payload):
    return frame([(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")],
                 j(payload).encode())


write("event_stream_frames", "converse_stream", b"\x05" + b"".join([
    bedrock_event("messageStart", {"role": "assistant"}),
    bedrock_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}}),
    bedrock_event("contentBlockStop", {"contentBlockIndex": 0}),
    bedrock_event("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}),
    bedrock_event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\":1}"}}}),
    bedrock_event("messageStop", {"stopReason": "tool_use"}),
    bedrock_event("metadata", {"usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}, "metrics": {"latencyMs": 9}}),
]))
write("event_stream_frames", "exception", b"\x00" + frame(
    [(":exception-type", "throttlingException"), (":content-type", "application/json"), (":message-type", "exception")],
    j({"message": "Too many requests"}).encode()))
write("event_stream_frames", "no_headers_cut", b"\x33" + frame([], b"{}") + frame([], b"")[:9])


# --- gguf_header: a whole (tiny) llama GGUF, and damaged ones ------------------------------
def gguf(metadata, tensors, alignment=32):
    def string(s):
        b = s.encode()
        return struct.pack("<Q", len(b)) + b

    def value(v):
        if isinstance(v, bool):
            return struct.pack("<I", 7) + bytes([v])
        if isinstance(v, int):
            return struct.pack("<I", 4) + struct.pack("<I", v)
        if isinstance(v, float):
            return struct.pack("<I", 6) + struct.pack("<f", v)
        if isinstance(v, str):
            return struct.pack("<I", 8) + string(v)
        if isinstance(v, list):
            if all(isinstance(x, str) for x in v):
                return struct.pack("<IIQ", 9, 8, len(v)) + b"".join(string(x) for x in v)
            return struct.pack("<IIQ", 9, 5, len(v)) + b"".join(struct.pack("<i", x) for x in v)
        raise TypeError(v)

    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for k, v in metadata.items():
        out += string(k) + value(v)
    data = b""
    for name, dims, ggml_type, raw in tensors:
        data += b"\0" * (-len(data) % alignment)
        out += string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ggml_type, len(data))
        data += raw
    out += b"\0" * (-len(out) % alignment)
    return out + data


F32, Q4_1, Q8_0 = 0, 3, 8
DIM, HEADS, KV_HEADS, FFN = 32, 2, 1, 32
TOKENS = ["a", "b", "ab", "Ġ", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]


def q4_1(rows, cols):
    # Per 32 elements: f16 scale, f16 min, 16 bytes of nibbles.
    return (struct.pack("<ee", 0.01, -0.05) + bytes(range(16))) * (rows * cols // 32)


def f32(n):
    return struct.pack(f"<{n}f", *([1.0] * n))


meta = {
    "general.architecture": "llama", "general.alignment": 32,
    "llama.embedding_length": DIM, "llama.attention.head_count": HEADS, "llama.attention.head_count_kv": KV_HEADS,
    "llama.block_count": 1, "llama.feed_forward_length": FFN, "llama.context_length": 64,
    "llama.attention.layer_norm_rms_epsilon": 1e-5, "llama.rope.freq_base": 10000.0,
    "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": TOKENS,
    "tokenizer.ggml.token_type": [1, 1, 1, 1, 3, 3, 3], "tokenizer.ggml.merges": ["a b"],
}
kv_dim = DIM // HEADS * KV_HEADS
tensors = [
    ("token_embd.weight", [DIM, len(TOKENS)], Q4_1, q4_1(len(TOKENS), DIM)),
    ("blk.0.attn_norm.weight", [DIM], F32, f32(DIM)),
    ("blk.0.attn_q.weight", [DIM, DIM], Q4_1, q4_1(DIM, DIM)),
    ("blk.0.attn_k.weight", [DIM, kv_dim], Q4_1, q4_1(kv_dim, DIM)),
    ("blk.0.attn_v.weight", [DIM, kv_dim], Q4_1, q4_1(kv_dim, DIM)),
    ("blk.0.attn_output.weight", [DIM, DIM], Q4_1, q4_1(DIM, DIM)),
    ("blk.0.ffn_norm.weight", [DIM], F32, f32(DIM)),
    ("blk.0.ffn_gate.weight", [DIM, FFN], Q4_1, q4_1(FFN, DIM)),
    ("blk.0.ffn_up.weight", [DIM, FFN], Q4_1, q4_1(FFN, DIM)),
    ("blk.0.ffn_down.weight", [FFN, DIM], Q4_1, q4_1(DIM, FFN)),
    ("output_norm.weight", [DIM], F32, f32(DIM)),
]
whole = gguf(meta, tensors)
write("gguf_header", "tiny_llama", whole)
write("gguf_header", "truncated", whole[: len(whole) * 2 // 3])
write("gguf_header", "header_only", gguf({"general.architecture": "llama", "tokenizer.ggml.model": "gpt2",
                                          "nested": [1, 2, 3], "general.alignment": 64}, []))
