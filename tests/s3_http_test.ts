/**
 * lib/s3_http.ts against a real loopback listener that answers as a store might, well or badly:
 * bodies read whole into the caller's buffers over one kept connection, and a response that is
 * not what a GET of an object gets refused, never read past or waited on for ever.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BadResponseError, errorText, type RangeBody, S3Http } from "../lib/s3_http.ts";

const encoder = new TextEncoder();

/**
 * A listener that answers each request on a connection with the next of `answers`; with
 * `oneEach`, it closes each connection after one answer, as a store that lets idle ones go.
 */
function fakeStore(answers: (string | Uint8Array)[], oneEach = false) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const requests: string[] = [];
  let connections = 0;
  const served = (async () => {
    for await (const conn of listener) {
      connections++;
      const buffer = new Uint8Array(65536);
      while (answers.length > 0) {
        const n = await conn.read(buffer).catch(() => null);
        if (n === null) break;
        requests.push(new TextDecoder().decode(buffer.subarray(0, n)));
        const answer = answers.shift()!;
        await conn.write(typeof answer === "string" ? encoder.encode(answer) : answer)
          .catch(() => {});
        if (oneEach) break;
      }
      conn.close();
      if (answers.length === 0) break;
    }
  })();
  const { port } = listener.addr as Deno.NetAddr;
  return {
    url: new URL(`http://127.0.0.1:${port}`),
    requests,
    connections: () => connections,
    async [Symbol.asyncDispose]() {
      try {
        listener.close();
      } catch {
        // Closed already, by the loop leaving it once every answer was given.
      }
      await served;
    },
  };
}

async function readAll(body: RangeBody): Promise<string> {
  const bytes = new Uint8Array(body.length);
  let filled = 0;
  while (filled < bytes.length) {
    const n = await body.read(bytes.subarray(filled, filled + 3)); // small reads on purpose
    if (n === null) break;
    filled += n;
  }
  assert.equal(await body.read(new Uint8Array(1)), null);
  return new TextDecoder().decode(bytes.subarray(0, filled));
}

const signal = new AbortController().signal;

Deno.test("s3_http: bodies are read whole, two requests over one kept connection", async () => {
  await using store = fakeStore([
    'HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\nETag: "x"\r\n\r\nhello',
    "HTTP/1.1 412 Precondition Failed\r\nContent-Length: 14\r\n\r\n<Error></Error>".slice(0, -1),
  ]);
  const http = new S3Http(store.url);
  const first = await http.get(
    new URL("/b/k?x=1", store.url),
    new Headers({ range: "bytes=0-4" }),
    signal,
  );
  assert.deepEqual([first.status, first.ok, first.headers.get("etag")], [206, true, '"x"']);
  assert.equal(await readAll(first), "hello");
  const second = await http.get(new URL("/b/k", store.url), new Headers(), signal);
  assert.deepEqual([second.status, second.ok], [412, false]);
  assert.equal(await errorText(second), "<Error></Error");
  assert.equal(store.connections(), 1, "the connection was kept");
  assert.match(store.requests[0], /^GET \/b\/k\?x=1 HTTP\/1\.1\r\nHost: 127\.0\.0\.1:\d+\r\n/);
  assert.match(store.requests[0], /\r\nrange: bytes=0-4\r\n\r\n$/);
  http.close();
});

Deno.test("s3_http: a kept connection the store closed is replaced, once", async () => {
  const ok = "HTTP/1.1 206 Partial Content\r\nContent-Length: 2\r\n\r\nok";
  await using store = fakeStore([ok, ok], true);
  const http = new S3Http(store.url);
  assert.equal(
    await readAll(await http.get(new URL("/b/k", store.url), new Headers(), signal)),
    "ok",
  );
  assert.equal(
    await readAll(await http.get(new URL("/b/k", store.url), new Headers(), signal)),
    "ok",
  );
  assert.equal(store.connections(), 2);
  http.close();
});

Deno.test("s3_http: a response that is not an object's body is refused", async () => {
  for (
    const [answer, message] of [
      ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", /Length/],
      ["HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", /Length/],
      ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhello", /more bytes/],
      ["SSH-2.0-OpenSSH\r\n\r\n", /not an HTTP/],
      ["HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", /malformed/],
      [`HTTP/1.1 200 OK\r\nX: ${"a".repeat(70000)}\r\n\r\n`, /too long/],
    ] as const
  ) {
    await using store = fakeStore([answer]);
    const http = new S3Http(store.url);
    await assert.rejects(
      http.get(new URL("/b/k", store.url), new Headers(), signal),
      (error: Error) => error instanceof BadResponseError && message.test(error.message),
      answer.slice(0, 40),
    );
    http.close();
  }
});

Deno.test("s3_http: a body cut short fails its read; an abort ends a read under way", async () => {
  {
    await using store = fakeStore([
      "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\nabc",
    ]);
    const http = new S3Http(store.url);
    const body = await http.get(new URL("/b/k", store.url), new Headers(), signal);
    assert.equal(await body.read(new Uint8Array(10)), 3);
    await assert.rejects(body.read(new Uint8Array(10)), Deno.errors.UnexpectedEof);
    http.close();
  }
  {
    // The store sends the head and then nothing (the listener holds the connection open).
    await using store = fakeStore([
      "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n",
      "",
    ]);
    const http = new S3Http(store.url);
    const controller = new AbortController();
    const body = await http.get(new URL("/b/k", store.url), new Headers(), controller.signal);
    const reading = body.read(new Uint8Array(10));
    controller.abort();
    await assert.rejects(reading);
    http.close();
  }
});
