"""`POST /v1/embeddings` driven by the official `openai` SDK against `keel serve`.

Run as `python embeddings.py MODEL` with OPENAI_BASE_URL (keel's `/v1`) and OPENAI_API_KEY (a
keel key) set; tests/openai_embeddings.rs starts keel. MODEL is `local/all-minilm-l6-v2` on the
embedded defaults. Raises with a message saying what differed; prints "ok" last.
"""

import sys

import openai

MODEL = sys.argv[1]


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b))


def refused(what, error_class, status, param=None, **create):
    try:
        client.embeddings.create(**create)
    except error_class as e:
        expect(e.status_code == status, f"{what}: status {e.status_code}")
        error = e.body if isinstance(e.body, dict) else {}
        expect(error.get("message"), f"{what}: no message in {e.body!r}")
        if param is not None:
            expect(error.get("param") == param, f"{what}: param {error.get('param')!r}")
        print(f"-- {what}: {e.status_code} {error.get('message')}", flush=True)
        return error
    raise AssertionError(f"{what}: accepted")


client = openai.OpenAI(max_retries=0, timeout=120)

# The SDK asks for base64 by default and decodes it.
texts = [
    "How do I reset my password?",
    "I forgot my password and need to set a new one.",
    "The train to the coast leaves at noon from platform four.",
]
reply = client.embeddings.create(model=MODEL, input=texts)
vectors = [d.embedding for d in reply.data]
expect([d.index for d in reply.data] == [0, 1, 2], f"indexes {[d.index for d in reply.data]}")
expect(all(len(v) == 384 for v in vectors), f"lengths {[len(v) for v in vectors]}")
expect(reply.model == MODEL, f"model {reply.model!r}")
close, far = cosine(vectors[0], vectors[1]), cosine(vectors[0], vectors[2])
print(f"-- paraphrase {close:.3f}, unrelated {far:.3f}", flush=True)
expect(close > far + 0.3, f"a paraphrase ({close}) is not closer than an unrelated text ({far})")
expect(reply.usage.prompt_tokens > 9, f"usage {reply.usage}")
expect(reply.usage.total_tokens == reply.usage.prompt_tokens, f"usage {reply.usage}")

# Floats, one text: the same vector as in the batch.
one = client.embeddings.create(model=MODEL, input=texts[0], encoding_format="float")
expect(len(one.data) == 1, f"{len(one.data)} items")
diff = max(abs(a - b) for a, b in zip(one.data[0].embedding, vectors[0]))
expect(diff < 1e-4, f"alone and in a batch differ by {diff}")

refused("empty text", openai.BadRequestError, 400, "input", model=MODEL, input="")
refused("empty list", openai.BadRequestError, 400, "input", model=MODEL, input=[])
refused("token arrays", openai.BadRequestError, 400, "input", model=MODEL, input=[[101, 2023, 102]])
refused("bad encoding", openai.BadRequestError, 400, "encoding_format", model=MODEL, input="x", encoding_format="bits")
error = refused("fewer dimensions", openai.BadRequestError, 400, model=MODEL, input="x", dimensions=8)
expect("384" in error["message"], error["message"])
refused("unknown model", openai.NotFoundError, 404, "model", model="nowhere/embedder", input="x")
error = refused("a chat model", openai.BadRequestError, 400, model="local/smollm2-135m-instruct", input="x")
expect("all-minilm-l6-v2" in error["message"], error["message"])
print("ok")
