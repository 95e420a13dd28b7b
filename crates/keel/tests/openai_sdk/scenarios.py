"""Scenarios that drive keel's OpenAI-compatible API with the official `openai` SDK.

Run as `python scenarios.py NAME` with OPENAI_BASE_URL (keel's `/v1`) and OPENAI_API_KEY (a
keel key) set; tests/openai_sdk.rs starts keel and the mock upstreams and runs one scenario per
test. A scenario raises (so the process exits non-zero) with a message that says what differed.
The model names below are the ones that test's keel.toml configures.
"""

import json
import sys
import time

import openai

ROUTE = "fast"  # a route to the scripted model, which answers "echo: <last user text>"
SCRIPTED = "scripted/echo"
SLOW = "slow/echo"  # the scripted model, streaming one word per 100 ms
OPENAI = "openai/gpt-4o-mini"  # the mock OpenAI upstream (replies queued by the Rust test)
ANTHROPIC = "anthropic/claude-3-5-haiku-latest"  # the mock Anthropic upstream (likewise)
REPORTED = "openai/mock-listed"  # in the mock OpenAI upstream's own GET /v1/models only
USED = "openai/ft-in-use"  # in no list until a call uses it

LOOKUP = {
    "type": "object",
    "properties": {"q": {"type": "string"}},
    "required": ["q"],
}


def client(**options):
    # No retries: a 5xx must show as the failure it is, not be hidden by a second try.
    return openai.OpenAI(max_retries=0, timeout=60, **options)


def step(what):
    print(f"-- {what}", flush=True)


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def expect_eq(actual, expected, what):
    expect(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def poll(fetch, done, what, limit_s=30):
    """Calls `fetch` until `done(value)`, for at most `limit_s` seconds."""
    deadline = time.monotonic() + limit_s
    while True:
        value = fetch()
        if done(value):
            return value
        expect(time.monotonic() < deadline, f"{what}: still {value!r} after {limit_s}s")
        time.sleep(0.05)


def expect_api_error(call, error_class, status, what):
    """`call` must raise `error_class` with `status` and an OpenAI error body."""
    try:
        call()
    except error_class as error:
        expect_eq(error.status_code, status, f"{what}: status")
        body = error.response.json()
        expect(isinstance(body.get("error"), dict), f"{what}: no `error` object in {body}")
        for key in ("message", "type", "param", "code"):
            expect(key in body["error"], f"{what}: `error.{key}` missing in {body}")
        expect(body["error"]["message"], f"{what}: empty error message in {body}")
        return error
    except openai.APIStatusError as error:
        raise AssertionError(
            f"{what}: expected {error_class.__name__}, got {type(error).__name__} "
            f"{error.status_code}: {error.response.text}"
        ) from error
    raise AssertionError(f"{what}: expected {error_class.__name__}, the call succeeded")


def message_texts(items):
    """(role, text) of each message item of a Responses item list, other items skipped."""
    out = []
    for item in items:
        if item.type != "message":
            continue
        text = "".join(getattr(part, "text", "") or "" for part in item.content)
        out.append((item.role, text))
    return out


# -- models ----------------------------------------------------------------------------------


def models(c):
    step("models.list: routes first, the configured and catalog models, the upstream's own list")
    ids = poll(
        lambda: [m.id for m in c.models.list()],
        lambda ids: REPORTED in ids,
        "the upstream's models (fetched in the background at start)",
    )
    for model in [ROUTE, SCRIPTED, OPENAI, ANTHROPIC, REPORTED]:
        expect(model in ids, f"{model} not in {ids}")
    expect_eq(ids[0], ROUTE, "the first model listed")
    expect(USED not in ids, f"{USED} listed before any use: {ids}")

    step("a model used through the gateway is listed from then on")
    c.chat.completions.create(model=USED, messages=[{"role": "user", "content": "hi"}])
    ids = [m.id for m in c.models.list()]
    expect(USED in ids, f"{USED} not in {ids} after a call used it")

    step("models.retrieve takes an id with a slash, and a route's name")
    model = c.models.retrieve(REPORTED)
    expect_eq((model.id, model.object, model.owned_by), (REPORTED, "model", "openai"), "retrieved")
    route = c.models.retrieve(ROUTE)
    expect_eq((route.id, route.owned_by), (ROUTE, "keel"), "retrieved route")

    step("an unknown id is a 404 in OpenAI's shape")
    error = expect_api_error(
        lambda: c.models.retrieve("openai/no-such-model"), openai.NotFoundError, 404, "unknown"
    )
    expect_eq(error.response.json()["error"]["code"], "model_not_found", "error.code")


# -- chat completions ------------------------------------------------------------------------


def chat_plain(c):
    step("plain, through a route, with a system message")
    reply = c.chat.completions.create(
        model=ROUTE,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello there"},
        ],
    )
    expect(reply.id.startswith("chatcmpl-"), f"id: {reply.id}")
    expect_eq(reply.object, "chat.completion", "object")
    expect_eq(reply.model, ROUTE, "model")
    expect_eq(len(reply.choices), 1, "choices")
    choice = reply.choices[0]
    expect_eq(choice.message.role, "assistant", "role")
    expect_eq(choice.message.content, "echo: hello there", "content")
    expect_eq(choice.finish_reason, "stop", "finish_reason")
    usage = reply.usage
    expect(usage.prompt_tokens > 0, f"prompt_tokens: {usage}")
    expect_eq(usage.completion_tokens, 3, "completion_tokens")
    expect_eq(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens, "total_tokens")

    step("max_tokens cuts the reply")
    cut = c.chat.completions.create(
        model=SCRIPTED,
        max_tokens=1,
        messages=[{"role": "user", "content": "one two three"}],
    )
    expect_eq(cut.choices[0].finish_reason, "length", "finish_reason with max_tokens=1")

    step("through the mock Anthropic upstream")
    reply = c.chat.completions.create(
        model=ANTHROPIC,
        messages=[{"role": "user", "content": "who serves this?"}],
    )
    expect_eq(reply.choices[0].message.content, "Anthropic served this.", "content")
    expect_eq(reply.model, ANTHROPIC, "model")

    step("models.list has the route and the upstreams' provider/model names")
    ids = [m.id for m in c.models.list()]
    for model in [ROUTE, OPENAI, ANTHROPIC]:
        expect(model in ids, f"{model} not in {ids}")


def chat_stream(c):
    step("stream=True with include_usage")
    stream = c.chat.completions.create(
        model=SCRIPTED,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream me please"}],
    )
    text, finish, usage, ids = "", None, None, set()
    for chunk in stream:
        expect_eq(chunk.object, "chat.completion.chunk", "chunk object")
        ids.add(chunk.id)
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
            expect(chunk.usage is None, f"usage on a chunk with choices: {chunk}")
        else:
            usage = chunk.usage
    expect_eq(text, "echo: stream me please", "streamed text")
    expect_eq(finish, "stop", "finish_reason")
    expect(usage is not None, "no usage chunk with include_usage")
    expect_eq(usage.completion_tokens, 4, "completion_tokens")
    expect_eq(len(ids), 1, "one id for every chunk")

    step("the chat.completions.stream helper")
    with c.chat.completions.stream(
        model=ROUTE, messages=[{"role": "user", "content": "helper stream"}]
    ) as helper:
        deltas = [e.delta for e in helper if e.type == "content.delta"]
        final = helper.get_final_completion()
    expect_eq("".join(deltas), "echo: helper stream", "helper deltas")
    expect_eq(final.choices[0].message.content, "echo: helper stream", "helper final")


def chat_tools(c):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Looks a thing up.",
                "parameters": LOOKUP,
            },
        }
    ]
    ask = {"role": "user", "content": '/call lookup {"q": "keel"}'}
    step("the model asks for a function")
    asked = c.chat.completions.create(model=ROUTE, tools=tools, tool_choice="auto", messages=[ask])
    choice = asked.choices[0]
    expect_eq(choice.finish_reason, "tool_calls", "finish_reason")
    calls = choice.message.tool_calls or []
    expect_eq(len(calls), 1, "tool calls")
    call = calls[0]
    expect_eq(call.type, "function", "call type")
    expect_eq(call.function.name, "lookup", "function name")
    expect_eq(json.loads(call.function.arguments), {"q": "keel"}, "arguments")

    step("the client sends the tool's result; the model answers")
    answered = c.chat.completions.create(
        model=ROUTE,
        tools=tools,
        messages=[
            ask,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "a runtime"},
        ],
    )
    expect_eq(
        answered.choices[0].message.content,
        f"tool results: {call.id}=a runtime",
        "answer after the tool",
    )
    expect_eq(answered.choices[0].finish_reason, "stop", "finish_reason")

    step("streamed tool call")
    stream = c.chat.completions.create(model=ROUTE, tools=tools, stream=True, messages=[ask])
    names, arguments, finish = [], "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            if delta.function and delta.function.name:
                names.append(delta.function.name)
            if delta.function and delta.function.arguments:
                arguments += delta.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    expect_eq(names, ["lookup"], "streamed call names")
    expect_eq(json.loads(arguments), {"q": "keel"}, "streamed arguments")
    expect_eq(finish, "tool_calls", "streamed finish_reason")


def chat_errors(c):
    user = [{"role": "user", "content": "hi"}]
    step("unknown model: 404")
    error = expect_api_error(
        lambda: c.chat.completions.create(model="no-such-model", messages=user),
        openai.NotFoundError,
        404,
        "unknown model",
    )
    expect_eq((error.code, error.param), ("model_not_found", "model"), "error code and param")
    step("bad body: 400")
    error = expect_api_error(
        lambda: c.chat.completions.create(model=ROUTE, messages="not a list"),
        openai.BadRequestError,
        400,
        "messages as a string",
    )
    expect_eq(error.type, "invalid_request_error", "error type")
    step("wrong key: 401")
    wrong = client(api_key="kk_0000000000000000.wrong")
    expect_api_error(
        lambda: wrong.chat.completions.create(model=ROUTE, messages=user),
        openai.AuthenticationError,
        401,
        "wrong key",
    )
    expect_api_error(lambda: wrong.models.list(), openai.AuthenticationError, 401, "wrong key")


# -- responses -------------------------------------------------------------------------------


def responses_chain(c):
    """Five turns chained with previous_response_id; the provider changes at turns 3 and 4.
    The Rust test then checks that each upstream received the turns before its own."""
    turns = [
        (SCRIPTED, "first turn", "echo: first turn", None),
        (ROUTE, "second turn", "echo: second turn", None),
        (OPENAI, "third turn", "Third answer from OpenAI.", None),
        (ANTHROPIC, "fourth turn", "Fourth answer from Anthropic.", "Answer briefly."),
        (ANTHROPIC, "fifth turn", "Fifth answer from Anthropic.", None),
    ]
    previous = None
    for n, (model, text, answer, instructions) in enumerate(turns, start=1):
        step(f"turn {n} on {model}")
        extra = {"instructions": instructions} if instructions else {}
        if previous:
            extra["previous_response_id"] = previous.id
        response = c.responses.create(model=model, input=text, **extra)
        expect(response.id.startswith("resp_"), f"turn {n} id: {response.id}")
        expect_eq(response.object, "response", f"turn {n} object")
        expect_eq(response.status, "completed", f"turn {n} status")
        expect_eq(response.output_text, answer, f"turn {n} output_text")
        expect_eq(response.model, model, f"turn {n} model")
        expect_eq(
            response.previous_response_id,
            previous.id if previous else None,
            f"turn {n} previous_response_id",
        )
        expect(previous is None or response.id != previous.id, f"turn {n} reused an id")
        expect(response.usage and response.usage.output_tokens > 0, f"turn {n} usage")
        message = response.output[-1]
        expect_eq(message.type, "message", f"turn {n} output item type")
        expect_eq(message.role, "assistant", f"turn {n} output role")
        expect(message.id.startswith("msg_"), f"turn {n} message id: {message.id}")
        previous = response

    step("the last response's input items are its own input only")
    items = c.responses.input_items.list(previous.id, order="asc").data
    expect_eq(message_texts(items), [("user", "fifth turn")], "input items of turn 5")


def responses_conversation(c):
    step("create a conversation with metadata and an initial item")
    conv = c.conversations.create(
        metadata={"topic": "sdk"},
        items=[{"type": "message", "role": "user", "content": "remember: blue"}],
    )
    expect(conv.id.startswith("conv_"), f"conversation id: {conv.id}")
    expect_eq(conv.object, "conversation", "object")
    expect_eq(conv.metadata, {"topic": "sdk"}, "metadata")
    expect(conv.created_at > 0, f"created_at: {conv.created_at}")

    step("three responses in the conversation")
    for text in ["one", "two", "three"]:
        response = c.responses.create(model=SCRIPTED, conversation=conv.id, input=text)
        expect_eq(response.output_text, f"echo: {text}", f"answer to {text}")
        expect_eq(
            response.conversation.id if response.conversation else None, conv.id, "conversation"
        )

    step("items.list shows every message in order")
    expected = [
        ("user", "remember: blue"),
        ("user", "one"),
        ("assistant", "echo: one"),
        ("user", "two"),
        ("assistant", "echo: two"),
        ("user", "three"),
        ("assistant", "echo: three"),
    ]
    asc = c.conversations.items.list(conv.id, order="asc", limit=100)
    expect_eq(message_texts(asc.data), expected, "items, asc")
    desc = c.conversations.items.list(conv.id, limit=100)
    expect_eq(message_texts(desc.data), expected[::-1], "items, default order (desc)")
    paged = list(c.conversations.items.list(conv.id, order="asc", limit=2))
    expect_eq(message_texts(paged), expected, "items, auto-paginated by 2")
    ids = [item.id for item in asc.data]
    expect_eq(len(set(ids)), len(ids), "item ids are distinct")
    one = c.conversations.items.retrieve(ids[2], conversation_id=conv.id)
    expect_eq(message_texts([one]), [expected[2]], "items.retrieve")

    step("items.create adds items")
    added = c.conversations.items.create(
        conv.id,
        items=[
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "added"}],
            },
        ],
    )
    expect_eq(message_texts(added.data), [("user", "added")], "items.create answer")
    response = c.responses.create(model=SCRIPTED, conversation=conv.id, input="four")
    expect_eq(response.output_text, "echo: four", "answer after the added item")
    items = c.conversations.items.list(conv.id, order="asc", limit=100).data
    expect_eq(
        message_texts(items)[len(expected) :],
        [("user", "added"), ("user", "four"), ("assistant", "echo: four")],
        "items after items.create",
    )

    step("retrieve, update metadata, delete")
    got = c.conversations.retrieve(conv.id)
    expect_eq((got.id, got.metadata), (conv.id, {"topic": "sdk"}), "retrieve")
    updated = c.conversations.update(conv.id, metadata={"topic": "sdk", "stage": "done"})
    expect_eq(updated.metadata, {"topic": "sdk", "stage": "done"}, "update")
    expect_eq(c.conversations.retrieve(conv.id).metadata, updated.metadata, "retrieve after update")
    deleted = c.conversations.delete(conv.id)
    expect_eq(
        (deleted.id, deleted.deleted, deleted.object),
        (conv.id, True, "conversation.deleted"),
        "delete",
    )
    expect_api_error(
        lambda: c.conversations.retrieve(conv.id), openai.NotFoundError, 404, "deleted conversation"
    )


def responses_stream(c):
    step("responses.create(stream=True)")
    stream = c.responses.create(model=SCRIPTED, input="stream this reply", stream=True)
    events = list(stream)
    types = [e.type for e in events]
    expect_eq(types[0], "response.created", "first event")
    expect_eq(types[-1], "response.completed", "last event")
    for needed in [
        "response.output_item.added",
        "response.output_text.delta",
        "response.output_text.done",
    ]:
        expect(needed in types, f"no {needed} in {types}")
    seq = [e.sequence_number for e in events]
    expect_eq(seq, sorted(set(seq)), "sequence_number increases")
    created, completed = events[0].response, events[-1].response
    expect(created.id.startswith("resp_"), f"id: {created.id}")
    expect(created.status in ("queued", "in_progress"), f"created status: {created.status}")
    expect_eq(completed.id, created.id, "one response id")
    expect_eq(completed.status, "completed", "completed status")
    pieces = [e.delta for e in events if e.type == "response.output_text.delta"]
    deltas = "".join(pieces)
    expect_eq(deltas, "echo: stream this reply", "deltas concatenated")
    # Even a reply that ends at once is followed live (the end found by a poll of the run's
    # record waits for the updates already queued), not sent as one piece afterwards.
    expect(len(pieces) >= 3, f"a fast reply's deltas arrived in one piece, not live: {pieces}")
    expect_eq(completed.output_text, deltas, "completed response text")
    done = [e for e in events if e.type == "response.output_text.done"]
    expect_eq(done[0].text, deltas, "output_text.done text")
    expect_eq(c.responses.retrieve(created.id).output_text, deltas, "retrieve after streaming")

    step("a reply that takes a while streams live, a delta per word")
    slow = list(c.responses.create(model=SLOW, input="one two three four", stream=True))
    live = [e.delta for e in slow if e.type == "response.output_text.delta"]
    expect(len(live) >= 4, f"deltas arrived in one piece, not live: {live}")
    expect_eq("".join(live), "echo: one two three four", "live deltas concatenated")

    step("the responses.stream helper")
    with c.responses.stream(
        model=ROUTE, input="helper stream", previous_response_id=created.id
    ) as helper:
        helper_deltas = "".join(e.delta for e in helper if e.type == "response.output_text.delta")
        final = helper.get_final_response()
    expect_eq(helper_deltas, "echo: helper stream", "helper deltas")
    expect_eq(final.output_text, "echo: helper stream", "helper final response")
    expect_eq(final.previous_response_id, created.id, "helper previous_response_id")


def responses_function_tools(c):
    tools = [
        {
            "type": "function",
            "name": "lookup",
            "description": "Looks a thing up.",
            "parameters": LOOKUP,
            "strict": False,
        }
    ]
    step("the model calls a function")
    asked = c.responses.create(model=ROUTE, tools=tools, input='/call lookup {"q": "keel"}')
    expect_eq(asked.status, "completed", "status")
    calls = [item for item in asked.output if item.type == "function_call"]
    expect_eq(len(calls), 1, f"function_call items in {asked.output}")
    call = calls[0]
    expect_eq(call.name, "lookup", "name")
    expect_eq(json.loads(call.arguments), {"q": "keel"}, "arguments")
    expect(call.call_id, "call_id is empty")
    expect_eq(asked.output_text, "", "no text beside the call")

    step("function_call_output with previous_response_id")
    answered = c.responses.create(
        model=ROUTE,
        tools=tools,
        previous_response_id=asked.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "a runtime"}],
    )
    expect_eq(answered.status, "completed", "status")
    expect_eq(
        answered.output_text, f"tool results: {call.call_id}=a runtime", "answer after the tool"
    )
    items = c.responses.input_items.list(answered.id).data
    expect_eq([i.type for i in items], ["function_call_output"], "input items of the answer")
    expect_eq(items[0].call_id, call.call_id, "input item call_id")


def responses_background(c):
    step("background=True, polled to completion")
    started = c.responses.create(model=SLOW, input="poll me", background=True)
    expect(started.id.startswith("resp_"), f"id: {started.id}")
    expect(started.status in ("queued", "in_progress"), f"status at creation: {started.status}")
    expect_eq(started.background, True, "background")
    done = poll(
        lambda: c.responses.retrieve(started.id),
        lambda r: r.status not in ("queued", "in_progress"),
        "background response",
    )
    expect_eq(done.status, "completed", "final status")
    expect_eq(done.output_text, "echo: poll me", "final text")

    step("responses.cancel on a slow one")
    long_input = " ".join(f"word{i}" for i in range(200))
    slow = c.responses.create(model=SLOW, input=long_input, background=True)
    cancelled = c.responses.cancel(slow.id)
    expect_eq(cancelled.id, slow.id, "cancel answers the response")
    expect(
        cancelled.status in ("cancelled", "queued", "in_progress"),
        f"status after cancel: {cancelled.status}",
    )
    final = poll(
        lambda: c.responses.retrieve(slow.id),
        lambda r: r.status not in ("queued", "in_progress"),
        "cancelled response",
    )
    expect_eq(final.status, "cancelled", "final status after cancel")
    print(f"cancel answered status {cancelled.status!r}", flush=True)


def responses_lifecycle(c):
    step("create, retrieve, input_items")
    first = c.responses.create(
        model=SCRIPTED,
        input=[
            {"type": "message", "role": "user", "content": "context line"},
            {"role": "user", "content": [{"type": "input_text", "text": "question"}]},
        ],
        metadata={"case": "lifecycle"},
    )
    expect_eq(first.output_text, "echo: question", "answer")
    got = c.responses.retrieve(first.id)
    expect_eq(
        (got.id, got.status, got.output_text), (first.id, "completed", "echo: question"), "retrieve"
    )
    expect_eq(got.metadata, {"case": "lifecycle"}, "metadata")
    items = c.responses.input_items.list(first.id, order="asc")
    expect_eq(
        message_texts(items.data), [("user", "context line"), ("user", "question")], "input items"
    )
    desc = c.responses.input_items.list(first.id)
    expect_eq(
        message_texts(desc.data),
        [("user", "question"), ("user", "context line")],
        "default order (desc)",
    )
    expect(all(i.id for i in items.data), "input items have ids")

    step("store=False is not retrievable")
    unstored = c.responses.create(model=SCRIPTED, input="forget me", store=False)
    expect_eq(unstored.output_text, "echo: forget me", "answer")
    expect_api_error(
        lambda: c.responses.retrieve(unstored.id), openai.NotFoundError, 404, "store=False"
    )

    step("delete, then retrieve is a 404")
    result = c.responses.delete(first.id)
    expect(result is None, f"delete answered {result!r}")
    expect_api_error(
        lambda: c.responses.retrieve(first.id), openai.NotFoundError, 404, "deleted response"
    )
    expect_api_error(
        lambda: c.responses.delete(first.id), openai.NotFoundError, 404, "deleted twice"
    )


def responses_errors(c):
    step("unknown previous_response_id: 404")
    error = expect_api_error(
        lambda: c.responses.create(
            model=SCRIPTED, input="hi", previous_response_id="resp_01JZZZZZZZZZZZZZZZZZZZZZZZ"
        ),
        openai.NotFoundError,
        404,
        "unknown previous_response_id",
    )
    expect_eq(error.param, "previous_response_id", "error param")
    step("unknown model: 404")
    error = expect_api_error(
        lambda: c.responses.create(model="no-such-model", input="hi"),
        openai.NotFoundError,
        404,
        "unknown model",
    )
    expect_eq((error.code, error.param), ("model_not_found", "model"), "error code and param")
    step("unknown conversation: 404")
    expect_api_error(
        lambda: c.responses.create(
            model=SCRIPTED, input="hi", conversation="conv_01JZZZZZZZZZZZZZZZZZZZZZZZ"
        ),
        openai.NotFoundError,
        404,
        "unknown conversation",
    )
    step("unknown response id: 404")
    expect_api_error(
        lambda: c.responses.retrieve("resp_01JZZZZZZZZZZZZZZZZZZZZZZZ"),
        openai.NotFoundError,
        404,
        "retrieve unknown",
    )
    step("bad body: 400")
    expect_api_error(
        lambda: c.responses.create(model=SCRIPTED, input=42),
        openai.BadRequestError,
        400,
        "input as a number",
    )
    expect_api_error(
        lambda: c.responses.create(
            model=SCRIPTED, input="hi", previous_response_id="resp_x", conversation="conv_x"
        ),
        openai.BadRequestError,
        400,
        "previous_response_id with conversation",
    )
    step("wrong key: 401")
    wrong = client(api_key="kk_0000000000000000.wrong")
    expect_api_error(
        lambda: wrong.responses.create(model=SCRIPTED, input="hi"),
        openai.AuthenticationError,
        401,
        "wrong key",
    )
    expect_api_error(
        lambda: wrong.conversations.create(), openai.AuthenticationError, 401, "wrong key"
    )



def words(n):
    return " ".join(f"w{i}" for i in range(n))


HUGE = words(60)  # longer than the mock's context window (40 words, set by the Rust test)


def provider_errors(c):
    """The mock OpenAI upstream refuses, rate-limits and fails (the Rust test queues the
    faults in this order); keel answers as OpenAI would, and the SDK raises accordingly."""
    step("chat: context overflow is 400 context_length_exceeded on messages")
    huge = [{"role": "user", "content": HUGE}]
    error = expect_api_error(
        lambda: c.chat.completions.create(model=OPENAI, messages=huge),
        openai.BadRequestError,
        400,
        "chat overflow",
    )
    expect_eq((error.code, error.param), ("context_length_exceeded", "messages"), "code, param")
    expect("maximum context length" in error.message, f"the provider's words: {error.message}")
    expect_api_error(
        lambda: c.chat.completions.create(model=OPENAI, messages=huge, stream=True),
        openai.BadRequestError,
        400,
        "streamed chat overflow",
    )
    hi = [{"role": "user", "content": "hi"}]
    step("chat: rate limit is 429 with the provider's Retry-After")
    error = expect_api_error(
        lambda: c.chat.completions.create(model=OPENAI, messages=hi),
        openai.RateLimitError,
        429,
        "chat rate limit",
    )
    expect_eq(error.code, "rate_limit_exceeded", "code")
    expect_eq(error.response.headers.get("retry-after"), "7", "Retry-After")
    step("chat: the provider refusing keel's key is keel's problem (502)")
    error = expect_api_error(
        lambda: c.chat.completions.create(model=OPENAI, messages=hi),
        openai.InternalServerError,
        502,
        "chat upstream 401",
    )
    expect_eq(error.code, "upstream_auth_failed", "code")
    step("chat: the provider failing is 502")
    error = expect_api_error(
        lambda: c.chat.completions.create(model=OPENAI, messages=hi),
        openai.InternalServerError,
        502,
        "chat upstream 500",
    )
    expect_eq(error.code, "upstream_unavailable", "code")

    step("responses: context overflow is 400 context_length_exceeded on input")
    error = expect_api_error(
        lambda: c.responses.create(model=OPENAI, input=HUGE),
        openai.BadRequestError,
        400,
        "responses overflow",
    )
    expect_eq((error.code, error.param), ("context_length_exceeded", "input"), "code, param")
    step("responses: in the background, a failed response carrying the code")
    queued = c.responses.create(model=OPENAI, input=HUGE, background=True)
    failed = poll(
        lambda: c.responses.retrieve(queued.id),
        lambda r: r.status not in ("queued", "in_progress"),
        "background overflow",
    )
    expect_eq(failed.status, "failed", "status")
    expect_eq(failed.error.code, "context_length_exceeded", "error code")
    step("responses: streamed, ending with response.failed")
    events = list(c.responses.create(model=OPENAI, input=HUGE, stream=True))
    expect_eq(events[-1].type, "response.failed", "last event")
    expect_eq(events[-1].response.error.code, "context_length_exceeded", "error code")
    step("responses: rate limited on every attempt is 429")
    error = expect_api_error(
        lambda: c.responses.create(model=OPENAI, input="hi"),
        openai.RateLimitError,
        429,
        "responses rate limit",
    )
    expect_eq(error.code, "rate_limit_exceeded", "code")
    expect(error.response.headers.get("retry-after"), "a Retry-After")

    step("a conversation: a turn, an overflow, then a shorter turn that works")
    conv = c.conversations.create()
    first = c.responses.create(model=OPENAI, conversation=conv.id, input="first turn")
    expect_eq(first.output_text, "first answer", "first turn")
    expect_api_error(
        lambda: c.responses.create(model=OPENAI, conversation=conv.id, input=HUGE),
        openai.BadRequestError,
        400,
        "overflow in the conversation",
    )
    third = c.responses.create(model=OPENAI, conversation=conv.id, input="third turn")
    expect_eq(third.output_text, "third answer", "the turn after the overflow")


def request_fields(c):
    """keel's field lists cover every field of the SDK's request types, and the SDK sees
    refused and invalid values as 400s naming the field."""
    from openai.types.chat import completion_create_params
    from openai.types.responses import response_create_params
    import os

    for name, typed, listed in [
        ("chat completions", completion_create_params.CompletionCreateParamsBase, "KEEL_CHAT_FIELDS"),
        ("responses", response_create_params.ResponseCreateParamsBase, "KEEL_RESPONSES_FIELDS"),
    ]:
        step(f"{name}: keel lists every field the SDK sends")
        sdk = set(typed.__required_keys__) | set(typed.__optional_keys__) | {"stream"}
        keel = set(os.environ[listed].split(","))
        expect_eq(sorted(sdk - keel), [], f"{name} fields the SDK has and keel does not list")
        expect_eq(sorted(keel - sdk), [], f"{name} fields keel lists and the SDK does not have")

    hi = [{"role": "user", "content": "hi"}]
    for what, call, param, code in [
        (
            "truncation: bogus",
            lambda: c.responses.create(model=SCRIPTED, input="hi", truncation="bogus"),
            "truncation",
            "invalid_value",
        ),
        (
            "context_management",
            lambda: c.responses.create(
                model=SCRIPTED,
                input="hi",
                context_management=[{"type": "compaction", "compact_threshold": 10}],
            ),
            "context_management[0].compact_threshold",
            "invalid_value",
        ),
        (
            "reasoning effort",
            lambda: c.responses.create(model=SCRIPTED, input="hi", reasoning={"effort": "high"}),
            "reasoning",
            "unsupported_parameter",
        ),
        (
            "include",
            lambda: c.responses.create(model=SCRIPTED, input="hi", include=["bogus"]),
            "include[0]",
            "invalid_value",
        ),
        (
            "chat logprobs",
            lambda: c.chat.completions.create(model=SCRIPTED, messages=hi, logprobs=True),
            "logprobs",
            "unsupported_parameter",
        ),
        (
            "an unknown field",
            lambda: c.chat.completions.create(
                model=SCRIPTED, messages=hi, extra_body={"bogus_field": 1}
            ),
            "bogus_field",
            "unknown_parameter",
        ),
    ]:
        step(what)
        error = expect_api_error(call, openai.BadRequestError, 400, what)
        expect_eq((error.param, error.code), (param, code), f"{what}: param, code")
    step("truncation auto is echoed")
    reply = c.responses.create(model=SCRIPTED, input="hi", truncation="auto")
    expect_eq(reply.truncation, "auto", "truncation")


def responses_compaction(c):
    """Server-side compaction (`context_management`) over a chained conversation, then the
    standalone `responses.compact` and its item sent back as input; bad thresholds refused."""
    management = [{"type": "compaction", "compact_threshold": 300}]
    previous = None
    compactions = []
    for n in range(1, 13):
        step(f"turn {n} with a compaction threshold of 300 tokens")
        text = f"turn {n}: my favourite colour is teal" if n == 1 else f"turn {n}: {words(30)}"
        extra = {"previous_response_id": previous.id} if previous else {}
        response = c.responses.create(
            model=SCRIPTED, input=text, context_management=management, **extra
        )
        expect_eq(response.status, "completed", f"turn {n} status")
        expect_eq(response.output_text, f"echo: {text}", f"turn {n} output_text")
        kinds = [item.type for item in response.output]
        expect_eq(kinds[-1], "message", f"turn {n}: the reply comes last")
        compactions += [item for item in response.output if item.type == "compaction"]
        previous = response
    expect(1 <= len(compactions) < 12, f"{len(compactions)} compactions in 12 turns")
    item = compactions[0]
    expect(item.id.startswith("cmp_"), f"compaction item id: {item.id}")
    # keel's summary is readable (the scripted model echoes what it is asked to summarise).
    expect("teal" in item.encrypted_content, f"the summary keeps turn 1: {item.encrypted_content!r}")

    step("a compaction entry without a threshold compacts at the model's own budget")
    plain = c.responses.create(model=SCRIPTED, input="hi", context_management=[{"type": "compaction"}])
    expect_eq(plain.output_text, "echo: hi", "compaction at the default budget")

    step("the chain goes on after compaction")
    after = c.responses.create(model=SCRIPTED, input="and now?", previous_response_id=previous.id)
    expect_eq(after.output_text, "echo: and now?", "a turn after compaction")

    step("standalone compaction of input items")
    compacted = c.responses.compact(
        model=SCRIPTED,
        input=[
            {"role": "user", "content": "my name is Ada"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello Ada."}]},
        ],
    )
    expect_eq(compacted.object, "response.compaction", "compact object")
    kinds = [item.type for item in compacted.output]
    expect_eq(kinds, ["message", "compaction"], "compact output: the user messages, then the item")
    summary = compacted.output[-1].encrypted_content
    expect("Ada" in summary, f"standalone summary: {summary!r}")
    expect(compacted.usage.output_tokens > 0, "compact usage")

    step("the compaction item as input to the next response")
    follow = c.responses.create(
        model=SCRIPTED,
        input=[compacted.output[-1].model_dump(exclude_none=True), {"role": "user", "content": "what is my name?"}],
    )
    expect_eq(follow.output_text, "echo: what is my name?", "a response after a compaction item")

    step("standalone compaction of a previous response's conversation")
    from_chain = c.responses.compact(model=SCRIPTED, previous_response_id=after.id)
    expect_eq(from_chain.output[-1].type, "compaction", "compact from previous_response_id")

    step("bad thresholds and unknown responses are refused")
    for bad in ([{"type": "compaction", "compact_threshold": -1}], [{"type": "compaction", "compact_threshold": 10}]):
        error = expect_api_error(
            lambda: c.responses.create(model=SCRIPTED, input="x", context_management=bad),
            openai.BadRequestError, 400, f"context_management {bad}",
        )
        expect_eq(error.body["param"], "context_management[0].compact_threshold", "param")
    expect_api_error(
        lambda: c.responses.compact(model=SCRIPTED, previous_response_id="resp_missing"),
        openai.NotFoundError, 404, "compact of an unknown response",
    )


SCENARIOS = {
    f.__name__: f
    for f in [
        models,
        chat_plain,
        chat_stream,
        chat_tools,
        chat_errors,
        responses_chain,
        responses_conversation,
        responses_stream,
        responses_function_tools,
        responses_background,
        responses_lifecycle,
        responses_errors,
        responses_compaction,
        provider_errors,
        request_fields,
    ]
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        sys.exit(f"usage: scenarios.py {{{'|'.join(SCENARIOS)}}}")
    print(f"openai {openai.__version__}, scenario {sys.argv[1]}", flush=True)
    SCENARIOS[sys.argv[1]](client())
    print("ok", flush=True)
